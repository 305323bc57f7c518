"""The wandb mirror of a run (local files in the run directory stay the source of truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mimetic.errors import ConfigError
from mimetic.runtime.rundir import MetricsFile, clean_record, write_json_atomic

__all__ = ["MetricsFile", "WandbMirror", "write_json_atomic"]


class WandbMirror:
    """Mirror config and metrics to wandb; a no-op when ``logger.mode=disabled``.

    wandb is imported only when needed, so disabled runs never require it. The run id is
    the run key, so a resumed run continues the same wandb run.

    ``online`` is decided before wandb starts: without credentials (``WANDB_API_KEY``, a
    netrc entry for the wandb host, or wandb's settings) or without a TCP connection to the
    host within :attr:`reach_timeout_s`, the run either falls back to offline with a logged
    warning (``logger.if_unreachable=offline``, the default) or stops with one ConfigError
    (``fail``). wandb is then handed the key that was found, so it never prompts.
    ``offline`` sets wandb's process-wide mode too, so nothing touches the network (wandb's
    telemetry exporter otherwise probes the server at exit, with 10 s timeouts).

    ``mode`` is the mode actually used; ``fallback_reason`` says why it differs, if it does.
    """

    reach_timeout_s = 3.0  # TCP connect (name lookup included) to the wandb host before going online
    if_unreachable_choices = ("offline", "fail")

    def __init__(self, logger_cfg: Any, *, run_key: str, run_dir: Path, config: dict, group: str, tags: list[str],
                 job_type: str):
        self.run = None
        self.mode = logger_cfg.mode
        self.fallback_reason: str | None = None
        if self.mode == "disabled":
            return
        self._policy = getattr(logger_cfg, "if_unreachable", "offline")
        if self._policy not in self.if_unreachable_choices:
            raise ConfigError(f"logger.if_unreachable must be one of {', '.join(self.if_unreachable_choices)}, "
                              f"got {self._policy!r}")
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                f"logger.mode={self.mode} needs wandb (pip install wandb), or set logger.mode=disabled"
            ) from None
        self._wandb = wandb
        self._run_dir = Path(run_dir)
        kwargs = dict(project=logger_cfg.project, entity=logger_cfg.entity, group=group, job_type=job_type,
                      tags=tags, name=run_key, id=run_key, resume="allow", dir=str(run_dir), config=config)
        if self.mode == "online":
            settings = self._online_settings()
            if settings is not None:
                try:
                    self.run = wandb.init(**kwargs, mode="online", settings=wandb.Settings(**settings))
                    return
                except Exception as err:  # auth, network and server errors come in many types
                    self._fall_back(f"wandb.init failed online ({type(err).__name__}: {err})")
        # wandb.init(mode="offline") covers the run only; its telemetry exporter reads the
        # process-wide settings and would otherwise probe the server at exit.
        wandb.setup(settings=wandb.Settings(mode="offline"))
        self.run = wandb.init(**kwargs, mode="offline", settings=wandb.Settings(silent=True, console="off"))

    def _online_settings(self) -> dict | None:
        """wandb settings for an online run, or None after falling back (ConfigError with ``fail``)."""
        base_url = self.base_url()
        api_key, source = self.credentials(base_url)
        if source is None:
            netrc_path, hosts = self._netrc_path(), " or ".join(self._netrc_hosts(base_url))
            where = f"{netrc_path} has no entry for {hosts}" if netrc_path.exists() else f"there is no {netrc_path}"
            return self._fall_back(f"no wandb API key found for {base_url} (WANDB_API_KEY is unset and {where})")
        if problem := self.unreachable(base_url, self.reach_timeout_s):
            return self._fall_back(problem)
        settings: dict[str, Any] = {"silent": True, "console": "off", "base_url": base_url}
        if api_key:
            settings["api_key"] = api_key  # an explicit key: wandb neither looks further nor prompts
        return settings

    def _fall_back(self, problem: str) -> None:
        import logging

        sync = f"wandb sync {self._run_dir / 'wandb'}/offline-run-*"
        if self._policy == "fail":
            raise ConfigError(
                f"logger.mode=online, but {problem}. Fix the credentials or the network (`wandb login`, "
                f"WANDB_API_KEY, WANDB_BASE_URL), or run with logger.mode=offline and upload later "
                f"({sync}), or set logger.if_unreachable=offline to fall back to offline automatically."
            )
        self.mode, self.fallback_reason = "offline", problem
        logging.getLogger(__name__).warning(
            "wandb: %s; mirroring this run offline instead (logger.if_unreachable=offline). "
            "Upload it later with: %s", problem, sync)

    # ----------------------------------------------------------------- online pre-checks
    @staticmethod
    def base_url() -> str:
        """The server wandb would talk to: WANDB_BASE_URL, else wandb's settings, else its default."""
        import os

        if url := os.environ.get("WANDB_BASE_URL"):
            return url.rstrip("/")
        try:
            from wandb.sdk import wandb_setup

            return str(wandb_setup.singleton().settings.base_url).rstrip("/")
        except Exception:  # another wandb version: the public server
            return "https://api.wandb.ai"

    @staticmethod
    def _netrc_path() -> Path:
        import os

        if path := os.environ.get("NETRC"):
            return Path(path).expanduser()
        home = Path("~").expanduser()
        return home / "_netrc" if not (home / ".netrc").exists() and (home / "_netrc").exists() else home / ".netrc"

    @staticmethod
    def _netrc_hosts(base_url: str) -> list[str]:
        from urllib.parse import urlsplit

        hosts = [urlsplit(base_url).netloc]
        try:  # wandb's default CoreWeave address keeps its key under the api.wandb.ai entry
            from wandb.sdk.lib.urls import forge_upstream_url

            hosts.append(urlsplit(forge_upstream_url(base_url)).netloc)
        except Exception:
            pass
        return [h for i, h in enumerate(hosts) if h and h not in hosts[:i]] or [base_url]

    @classmethod
    def credentials(cls, base_url: str) -> tuple[str | None, str | None]:
        """(API key or None, where it was found); the source is None when wandb would have to prompt.

        Looks where wandb looks, without prompting: WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE,
        the netrc file (NETRC or ~/.netrc) entry for the host, wandb's settings.
        """
        import netrc
        import os

        if key := os.environ.get("WANDB_API_KEY"):
            return key, "WANDB_API_KEY"
        if (token := os.environ.get("WANDB_IDENTITY_TOKEN_FILE")) and Path(token).expanduser().is_file():
            return None, "WANDB_IDENTITY_TOKEN_FILE"
        path = cls._netrc_path()
        try:
            entries = netrc.netrc(str(path))
        except (OSError, netrc.NetrcParseError):
            entries = None
        for host in cls._netrc_hosts(base_url) if entries else []:
            found = entries.authenticators(host)
            if found and found[2]:
                return found[2], str(path)
        try:
            from wandb.sdk import wandb_setup

            settings = wandb_setup.singleton().settings
            if settings.api_key and str(settings.base_url).rstrip("/") == base_url:
                return settings.api_key, "wandb settings"
        except Exception:
            pass
        return None, None

    @staticmethod
    def unreachable(base_url: str, timeout: float) -> str | None:
        """Why ``base_url`` (or the proxy in front of it) takes no TCP connection within ``timeout`` s.

        None if it does. The connect runs in a daemon thread, so a name lookup that ignores
        socket timeouts cannot hold the run up either.
        """
        import socket
        import threading
        import urllib.request
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        if not host:
            return f"the wandb base URL {base_url!r} names no host"
        where = f"{host}:{port}"
        proxies = urllib.request.getproxies()
        proxy = proxies.get(parts.scheme) or proxies.get("all")
        if proxy and not urllib.request.proxy_bypass(host):
            via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if via.hostname:
                host, port = via.hostname, via.port or 80
                where = f"proxy {host}:{port}"
        outcome: list[BaseException | None] = []

        def probe() -> None:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                outcome.append(None)
            except BaseException as err:  # reported below, never raised
                outcome.append(err)

        thread = threading.Thread(target=probe, name="wandb-reachability", daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            return f"cannot reach {base_url} ({where}): no connection within {timeout:g} s"
        if outcome[0] is not None:
            return f"cannot reach {base_url} ({where}): {outcome[0]}"
        return None

    def log(self, record: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(clean_record(record), step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
