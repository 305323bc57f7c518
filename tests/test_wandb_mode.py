"""WandbMirror decides online vs offline up front, never prompts, and offline never touches the network.

No test needs the internet: unreachable hosts are closed loopback ports, a reachable one is
a loopback listener, and wandb.init is replaced by a recorder except in the subprocess tests
(which run the real wandb, offline).
"""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import pytest

from mimetic.errors import ConfigError
from mimetic.runtime.tracking import WandbMirror

wandb = pytest.importorskip("wandb")

KEY = "k" * 40
ENV = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE", "HTTPS_PROXY", "https_proxy",
       "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


def logger(mode: str, **extra) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, project="p", entity=None, group=None, tags=[], **extra)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


@pytest.fixture
def inits(monkeypatch):
    """Record wandb.init / wandb.setup calls instead of starting wandb."""
    class Calls(list):
        fail_online = False

    calls = Calls()

    def fake_init(**kwargs):
        calls.append(kwargs)
        if kwargs.get("mode") == "online" and calls.fail_online:
            raise RuntimeError("server said no")
        return SimpleNamespace(log=lambda *a, **k: None, summary={}, finish=lambda **k: None)

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "setup", lambda settings=None: calls.append({"setup": settings.mode}))
    return calls


def mirror(tmp_path, cfg) -> WandbMirror:
    return WandbMirror(cfg, run_key="run-1", run_dir=tmp_path, config={}, group="g", tags=[], job_type="j")


def test_online_without_key_falls_back_offline_with_a_warning(clean_env, inits, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = mirror(tmp_path, logger("online"))  # no if_unreachable key: the default applies
    assert m.mode == "offline" and "no wandb API key" in m.fallback_reason
    assert [c.get("mode") for c in inits if "mode" in c] == ["offline"]  # never tried online
    assert {"setup": "offline"} in inits
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "no wandb API key" in warning and "wandb sync" in warning


def test_online_without_key_fails_when_asked(clean_env, inits, tmp_path):
    with pytest.raises(ConfigError) as err:
        mirror(tmp_path, logger("online", if_unreachable="fail"))
    text = str(err.value)
    assert "no wandb API key" in text and "logger.mode=offline" in text and "logger.if_unreachable=offline" in text
    assert inits == []
    with pytest.raises(ConfigError, match="logger.if_unreachable must be one of offline, fail"):
        mirror(tmp_path, logger("online", if_unreachable="maybe"))


def test_unreachable_host_is_decided_within_seconds(clean_env, inits, tmp_path):
    clean_env.setenv("WANDB_API_KEY", KEY)
    clean_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    m = mirror(tmp_path, logger("online", if_unreachable="offline"))
    assert time.monotonic() - start < 5
    assert m.mode == "offline" and "cannot reach" in m.fallback_reason
    assert [c.get("mode") for c in inits if "mode" in c] == ["offline"]
    with pytest.raises(ConfigError, match="cannot reach http://127.0.0.1"):
        mirror(tmp_path, logger("online", if_unreachable="fail"))


def test_a_hanging_connect_is_cut_at_the_timeout(clean_env, inits, tmp_path, monkeypatch):
    clean_env.setenv("WANDB_API_KEY", KEY)
    clean_env.setenv("WANDB_BASE_URL", "https://wandb.example.invalid")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))
    monkeypatch.setattr(WandbMirror, "reach_timeout_s", 0.3)
    start = time.monotonic()
    m = mirror(tmp_path, logger("online"))
    assert time.monotonic() - start < 3
    assert "no connection within 0.3 s" in m.fallback_reason


def test_key_from_netrc_and_reachable_host_go_online_with_that_key(clean_env, inits, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1:{server.getsockname()[1]}\n  login user\n  password {KEY}\n")
        clean_env.setenv("NETRC", str(netrc))
        clean_env.setenv("WANDB_BASE_URL", url)
        m = mirror(tmp_path, logger("online"))
    assert m.mode == "online" and m.fallback_reason is None
    (call,) = inits
    assert call["mode"] == "online" and call["settings"].api_key == KEY and call["settings"].base_url == url


def test_online_init_error_falls_back_or_fails(clean_env, inits, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        clean_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        clean_env.setenv("WANDB_API_KEY", KEY)
        inits.fail_online = True
        m = mirror(tmp_path, logger("online"))
        assert m.mode == "offline" and "server said no" in m.fallback_reason
        assert [c.get("mode") for c in inits if "mode" in c] == ["online", "offline"]
        with pytest.raises(ConfigError, match="wandb.init failed online"):
            mirror(tmp_path, logger("online", if_unreachable="fail"))


# ----------------------------------------------------------------------------- real wandb, in a subprocess
DRIVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from types import SimpleNamespace
    from mimetic.runtime.tracking import WandbMirror
    start = time.monotonic()
    cfg = SimpleNamespace(mode=sys.argv[1], project="p", entity=None, group=None, tags=[])
    m = WandbMirror(cfg, run_key="run-1", run_dir=Path(sys.argv[2]), config={"a": 1}, group="g", tags=[],
                    job_type="j")
    m.log({"loss": 1.0}, step=0)
    m.finish()
    print(json.dumps({"mode": getattr(m, "mode", cfg.mode), "seconds": time.monotonic() - start}), flush=True)
""")


def run_driver(mode, run_dir, env, timeout, **popen):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode, str(run_dir)], env=env, stdout=subprocess.PIPE,
                            **popen)
    start = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"logger.mode={mode} did not finish within {timeout} s (blocked)")
    return json.loads(out.decode().strip().splitlines()[-1]), time.monotonic() - start


def child_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), **extra)
    return env


def test_offline_run_never_connects_and_exits_promptly(tmp_path):
    """wandb's telemetry used to probe the server at exit of an offline run (here: 10 s on a silent host)."""
    accepted = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept():  # a host that takes connections and never answers
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        env = child_env(tmp_path, WANDB_BASE_URL=f"http://127.0.0.1:{server.getsockname()[1]}")
        result, elapsed = run_driver("offline", tmp_path / "run", env, timeout=120)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
    assert result["mode"] == "offline" and accepted == []
    assert elapsed < 8, elapsed  # the old exit waited out a 10 s HTTP timeout
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-run-1.wandb"))


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_online_without_key_on_a_terminal_never_prompts(tmp_path):
    """With stdin and stderr on a terminal, wandb used to wait forever at 'Enter your choice'."""
    primary, secondary = os.openpty()
    try:
        result, _ = run_driver("online", tmp_path / "run", child_env(tmp_path), timeout=90, stdin=secondary,
                               stderr=secondary)
    finally:
        os.close(secondary)
        os.close(primary)
    assert result["mode"] == "offline"
