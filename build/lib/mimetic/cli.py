"""Glue between Hydra and the run: resolvers, and clean exits on user errors."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig, OmegaConf

from mimetic.errors import MimeticError

log = logging.getLogger("mimetic")


def register_resolvers() -> None:
    """``${run_key:}``: the deterministic run name used by ``hydra.run.dir``."""
    from mimetic.train.config import run_key_from_composed

    if not OmegaConf.has_resolver("run_key"):
        OmegaConf.register_new_resolver("run_key", lambda *, _root_: run_key_from_composed(_root_))


def main(cfg: DictConfig) -> dict | None:
    """Run one training job; a user error prints one message and exits with status 2."""
    from mimetic.train.run import run

    try:
        return run(cfg)
    except MimeticError as err:
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
