"""Where each job of a sweep stands: done, running, resumable, failed (with its error) or missing.

Give the sweep's overrides exactly as to ``train.py -m``: the experiment's grid (its
``hydra.sweeper.params``) and the command line's comma lists expand as Hydra's basic sweeper
expands them (``mimetic.cli.sweep_jobs``); the launcher's overrides such as hydra/launcher=...
are ignored:

    python scripts/sweep_status.py experiment=vit_tiny_tiny_imagenet          # its whole grid
    python scripts/sweep_status.py experiment=vit_tiny_tiny_imagenet seed=0   # the grid, seed 0 only
    python scripts/sweep_status.py --missing experiment=...      # only the overrides still to train
    python scripts/sweep_status.py --json experiment=...

Each job's run directory is ``<paths.runs_dir>/<run key>``, a function of its config and
its data (what train.py itself computes), so the status is read without running anything:

  done       DONE is there (a relaunch skips it)
  running    a live process holds its LOCK (same host: the PID; other hosts: a fresh heartbeat)
  resumable  a checkpoint and no live owner: a relaunch resumes it (preempted, killed, stopped)
  failed     FAILED is there (its first line is shown), or the job crashed: its train.log ends in a
             Python traceback and no live process owns it ("crashed: " and the traceback's last line);
             a relaunch retries it (resuming from its checkpoint, if it wrote one)
  started    the directory exists, no checkpoint yet (stopped before the first one)
  missing    no directory: never started
  invalid    the job's config does not compose or validate (the message is shown)

Relaunching the same ``train.py -m`` command trains only what is not done: finished jobs are
skipped, the others resume from their checkpoints. Exit status: 0 when every job is done, 1
otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATES = ("done", "running", "resumable", "failed", "started", "missing", "invalid")


def expand(overrides: list[str], config_dir: Path = REPO / "configs") -> list[list[str]]:
    """The jobs of a sweep, in Hydra's order: the experiment's grid with the command line's overrides."""
    from mimetic.cli import register_resolvers, sweep_jobs

    register_resolvers()
    return sweep_jobs(overrides, config_dir=config_dir)


def job_status(overrides: list[str], config_dir: Path = REPO / "configs") -> dict:
    """State, run directory and detail of one job."""
    from hydra import compose, initialize_config_dir

    from mimetic.cli import register_resolvers
    from mimetic.errors import MimeticError
    from mimetic.runtime.rundir import CHECKPOINT, DONE, FAILED, LOG
    from mimetic.runtime.runlock import RunLock
    from mimetic.train.config import load_config, run_identity

    register_resolvers()
    record = {"overrides": overrides, "run_dir": "", "state": "invalid", "detail": ""}
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = load_config(compose(config_name="train", overrides=overrides))
        run_dir = Path(cfg.paths.runs_dir).expanduser() / run_identity(cfg).run_key
    except (MimeticError, Exception) as err:  # Hydra's own errors (unknown key, bad group) too
        text = " ".join(line.strip() for line in str(err).strip().splitlines())
        record["detail"] = text[:300] or type(err).__name__
        return record
    record["run_dir"] = str(run_dir)
    owner = RunLock(run_dir).live_owner() if (run_dir / "LOCK").exists() else None
    if (run_dir / DONE).exists():
        record["state"] = "done"
    elif owner is not None:
        record["state"], record["detail"] = "running", owner.describe()
    elif (run_dir / FAILED).exists():
        lines = (run_dir / FAILED).read_text(errors="replace").strip().splitlines()
        record["state"], record["detail"] = "failed", lines[0] if lines else ""
    elif (crash := crashed(run_dir / LOG)) is not None:
        record["state"], record["detail"] = "failed", f"crashed: {crash}"
        if (run_dir / CHECKPOINT).exists():
            record["detail"] += f"; a relaunch resumes from {_progress(run_dir / CHECKPOINT)}"
    elif (run_dir / CHECKPOINT).exists():
        record["state"] = "resumable"
        record["detail"] = _progress(run_dir / CHECKPOINT)
    elif run_dir.is_dir():
        record["state"] = "started"
    else:
        record["state"] = "missing"
    return record


TRACEBACK = "Traceback (most recent call last):"
LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d[ T]")  # a line logged after it: "[2026-11-24 10:00:00,000][..."
TAIL_BYTES = 256 * 1024


def crashed(log: Path) -> str | None:
    """The last line of the Python traceback ``log`` ends in (the exception), or None.

    A traceback followed by later log records is not the end (the job was relaunched and went
    on); an interrupt's traceback (KeyboardInterrupt) is a stop, not a crash.
    """
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith(TRACEBACK)]
    if not starts:
        return None
    after = [line for line in lines[starts[-1] + 1:] if line.strip()]
    if not after or any(LOG_RECORD.match(line) for line in after):
        return None
    last = after[-1].strip()
    if last.startswith("KeyboardInterrupt") or after[-1].startswith(" "):
        return None  # an interrupt, or a log cut inside a frame (still being written)
    return last


def _progress(path: Path) -> str:
    import torch

    try:
        progress = torch.load(path, map_location="cpu", weights_only=True)["progress"]
        return f"epoch {progress['epoch']} step {progress['global_step']}"
    except Exception as err:  # a torn or foreign file: say so, the run will refuse it clearly
        return f"checkpoint unreadable ({type(err).__name__})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the sweep's overrides, as given to train.py -m")
    parser.add_argument("--json", action="store_true", help="one JSON object per job")
    parser.add_argument("--missing", action="store_true",
                        help="print only the jobs not done (one line of overrides each)")
    parser.add_argument("--config-dir", type=Path, default=REPO / "configs")
    args = parser.parse_args(argv)
    try:
        jobs = expand(args.overrides, args.config_dir)
    except Exception as err:  # Hydra's parser and composition errors (a bad override, no such experiment)
        print(f"error: cannot expand the sweep: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    records = [job_status(job, args.config_dir) for job in jobs]
    if args.json:
        for record in records:
            print(json.dumps(record))
    elif args.missing:
        for record in records:
            if record["state"] != "done":
                print(" ".join(record["overrides"]))
    else:
        width = max(len(s) for s in STATES)
        for record in records:
            where = record["run_dir"] or "-"
            detail = f"  ({record['detail']})" if record["detail"] else ""
            print(f"{record['state']:<{width}}  {where}  {' '.join(record['overrides'])}{detail}")
        counts = {s: sum(r["state"] == s for r in records) for s in STATES}
        print("  ".join(f"{s}: {n}" for s, n in counts.items() if n) + f"  (of {len(records)} jobs)")
    return 0 if all(r["state"] == "done" for r in records) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
