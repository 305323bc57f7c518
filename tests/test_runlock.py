"""RunLock with real processes: one live owner per run directory; dead or stale owners are taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from mimetic.errors import RunDirError
from mimetic.runtime import runlock
from mimetic.runtime.rundir import LOCK
from mimetic.runtime.runlock import LockOwner, RunLock, read_owner

LOG = "test.runlock"

# Acquire the lock, say so, hold it for argv[2] seconds (or die without releasing: argv[3] == "die").
HOLDER = """
import logging, os, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from mimetic.runtime.runlock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("LOCKED", flush=True)
if sys.argv[3] == "die":
    os._exit(0)
time.sleep(float(sys.argv[2]))
lock.release()
print("RELEASED", flush=True)
"""

# Wait for the go file, try to acquire, report WON (and hold until go.release) or LOST with the message.
RACER = """
import logging, os, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from mimetic.errors import RunDirError
from mimetic.runtime import runlock
runlock._USE_FLOCK = sys.argv[3] == "flock"
lock = runlock.RunLock(sys.argv[1])
print("READY", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
try:
    lock.acquire()
except RunDirError as err:
    print("LOST", err, flush=True)
    sys.exit(0)
print("WON", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2] + ".release") and time.monotonic() < deadline:
    time.sleep(0.01)
lock.release()
"""


def _start(snippet: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", snippet, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # A child that hangs is killed, so that a blocking readline in the test ends (at EOF) instead of hanging.
    timer = threading.Timer(90, lambda: proc.poll() is None and proc.kill())
    timer.daemon = True
    timer.start()
    return proc


def _expect_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline()
    if not line.startswith(expected):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"expected {expected!r} from the child, got {line!r}; stderr:\n{err}")


def _finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child did not finish; stdout:\n{out}\nstderr:\n{err}")


@pytest.fixture
def holder(tmp_path):
    """A live process holding tmp_path/run for 60 s; killed at the end of the test."""
    proc = _start(HOLDER, tmp_path / "run", 60, "hold")
    _expect_line(proc, "LOCKED")
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def _write_lock(run_dir: Path, age_s: float = 0.0, **fields) -> Path:
    """A LOCK record like this process's, with ``fields`` changed, and an mtime ``age_s`` in the past."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {**asdict(LockOwner.current("someone-else")), "command": "python train.py (elsewhere)", **fields}
    path = run_dir / LOCK
    path.write_text(json.dumps(record))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------- live owners


def test_second_process_is_refused_with_the_holders_pid_host_and_what_to_do(tmp_path, holder):
    run_dir = tmp_path / "run"
    second = _start(HOLDER, run_dir, 0, "hold")
    out, err = _finish(second)
    assert second.returncode != 0 and "LOCKED" not in out
    assert f"PID {holder.pid} on host {socket.gethostname()}" in err
    assert "Traceback" in err  # the bare snippet does not catch it; the entry point prints the message alone

    with pytest.raises(RunDirError) as info:
        RunLock(run_dir).acquire()
    message = str(info.value)
    assert f"PID {holder.pid} on host {socket.gethostname()}, since " in message
    assert f"kill {holder.pid} on {socket.gethostname()}" in message
    assert f"delete {run_dir / LOCK}" in message
    assert read_owner(run_dir).pid == holder.pid  # the refused process left the holder's lock alone


def test_kill_9_frees_the_directory_and_the_takeover_names_the_old_owner(tmp_path, holder, caplog):
    run_dir = tmp_path / "run"
    holder.send_signal(signal.SIGKILL)
    if sys.platform.startswith("linux"):
        time.sleep(0.2)  # not reaped yet: a zombie still has its PID, and must count as dead
    lock = RunLock(run_dir, log=logging.getLogger(LOG))
    with caplog.at_level(logging.WARNING, logger=LOG):
        lock.acquire()
    holder.wait(timeout=30)
    try:
        assert read_owner(run_dir).pid == os.getpid()
        (warning,) = _warnings(caplog)
        assert f"from PID {holder.pid} on host {socket.gethostname()}" in warning
    finally:
        lock.release()
    assert not (run_dir / LOCK).exists()


def test_a_released_directory_is_free_without_a_warning(tmp_path, caplog):
    proc = _start(HOLDER, tmp_path / "run", 0, "hold")
    out, _ = _finish(proc)
    assert "RELEASED" in out and not (tmp_path / "run" / LOCK).exists()
    with caplog.at_level(logging.WARNING, logger=LOG), RunLock(tmp_path / "run", log=logging.getLogger(LOG)):
        pass
    assert _warnings(caplog) == []


# ----------------------------------------------------------------------------- racing takeovers


@pytest.mark.parametrize(("mode", "racers"), [("flock", 4), ("no-flock", 2)])
def test_racing_takeovers_of_a_stale_lock_have_exactly_one_winner(tmp_path, mode, racers):
    for attempt in range(3):
        run_dir, go = tmp_path / f"run{attempt}", tmp_path / f"go{attempt}"
        dead = _start(HOLDER, run_dir, 0, "die")
        _expect_line(dead, "LOCKED")
        _finish(dead)
        assert read_owner(run_dir).pid == dead.pid  # a stale lock: its owner exited without releasing

        procs = [_start(RACER, run_dir, go, mode) for _ in range(racers)]
        for proc in procs:
            _expect_line(proc, "READY")
        go.touch()
        deadline = time.monotonic() + 30
        while sum(proc.poll() is not None for proc in procs) < racers - 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # the losers have answered; the winner still holds the lock
        go.with_name(go.name + ".release").touch()
        results = [(proc, *_finish(proc)) for proc in procs]
        winners = [proc for proc, out, _ in results if out.startswith("WON")]
        assert len(winners) == 1, [out for _, out, _ in results]
        (winner,) = winners
        for proc, out, err in results:
            assert proc.returncode == 0, err
            if proc is not winner:
                assert out.startswith("LOST") and f"PID {winner.pid} on host" in out, out
        takeovers = [err for _, _, err in results if f"taking over the run directory from PID {dead.pid}" in err]
        assert len(takeovers) == 1, [err for _, _, err in results]
        if mode == "flock":  # with flock the taker is the winner (without it, a loser may have moved it aside)
            assert "taking over" in next(err for proc, _, err in results if proc is winner)
        assert not (run_dir / LOCK).exists()  # the winner released it
        assert sorted(p.name for p in run_dir.iterdir()) == []  # no stale/new leftovers


# ----------------------------------------------------------------------------- stale records


def test_a_corrupt_lock_file_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text('{"pid": 12')
    os.utime(run_dir / LOCK, (time.time() - 60, time.time() - 60))
    with caplog.at_level(logging.WARNING, logger=LOG), RunLock(run_dir, log=logging.getLogger(LOG)):
        assert read_owner(run_dir).pid == os.getpid()
    (warning,) = _warnings(caplog)
    assert "unreadable" in warning


def test_an_empty_lock_file_is_given_a_moment_then_taken_over(tmp_path):
    # Empty and fresh: possibly being written by a process on a filesystem without hard links.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_bytes(b"")
    start = time.monotonic()
    with RunLock(run_dir, log=logging.getLogger(LOG)):
        waited = time.monotonic() - start
        assert read_owner(run_dir).pid == os.getpid()
    assert 1.0 < waited < 8.0


def test_a_lock_from_another_host_is_judged_by_its_heartbeat(tmp_path, caplog):
    run_dir = tmp_path / "run"
    _write_lock(run_dir, age_s=60, host="node-that-is-not-here", pid=os.getpid())
    with pytest.raises(RunDirError) as info:
        RunLock(run_dir, heartbeat_timeout_s=900).acquire()
    message = str(info.value)
    assert "node-that-is-not-here" in message and "last heartbeat 60 s ago" in message

    _write_lock(run_dir, age_s=2000, host="node-that-is-not-here", pid=os.getpid())
    with caplog.at_level(logging.WARNING, logger=LOG), \
            RunLock(run_dir, heartbeat_timeout_s=900, log=logging.getLogger(LOG)):
        assert read_owner(run_dir).host == socket.gethostname()
    (warning,) = _warnings(caplog)
    assert "node-that-is-not-here" in warning and "no heartbeat for 2000 s (timeout 900 s)" in warning


@pytest.mark.skipif(not runlock._HAS_PROC, reason="needs /proc for process start times")
def test_a_reused_pid_is_not_mistaken_for_the_owner(tmp_path, caplog):
    # The recorded PID is alive (it is ours), but started at another time: a different process.
    me = LockOwner.current("x")
    _write_lock(tmp_path / "run", start_time=me.start_time - 1)
    with caplog.at_level(logging.WARNING, logger=LOG), RunLock(tmp_path / "run", log=logging.getLogger(LOG)):
        pass
    (warning,) = _warnings(caplog)
    assert "now belongs to a newer process" in warning


@pytest.mark.skipif(not runlock._HAS_PROC, reason="needs /proc for the boot id")
def test_a_lock_from_before_a_reboot_is_stale(tmp_path, caplog):
    _write_lock(tmp_path / "run", boot_id="00000000-0000-0000-0000-000000000000")
    with caplog.at_level(logging.WARNING, logger=LOG), RunLock(tmp_path / "run", log=logging.getLogger(LOG)):
        pass
    (warning,) = _warnings(caplog)
    assert "rebooted" in warning


# ----------------------------------------------------------------------------- our own lock


def test_release_removes_only_our_own_lock(tmp_path, holder, caplog):
    run_dir = tmp_path / "run"
    RunLock(run_dir).release()  # never acquired: touches nothing
    assert read_owner(run_dir).pid == holder.pid

    mine = tmp_path / "mine"
    lock = RunLock(mine, log=logging.getLogger(LOG))
    lock.acquire()
    (mine / LOCK).unlink()  # deleted by hand, and another process took the directory
    _write_lock(mine, token="theirs", pid=holder.pid)
    with caplog.at_level(logging.WARNING, logger=LOG):
        lock.release()
        lock.release()  # idempotent
    assert read_owner(mine).token == "theirs"
    assert len(_warnings(caplog)) == 1


def test_the_same_process_may_acquire_again_and_the_nested_release_keeps_the_lock(tmp_path):
    outer = RunLock(tmp_path / "run")
    outer.acquire()
    outer.acquire()  # the same object: a no-op
    with RunLock(tmp_path / "run") as inner:
        assert inner.held
    assert read_owner(tmp_path / "run").token == outer._token  # the nested release left it
    outer.release()
    assert not (tmp_path / "run" / LOCK).exists()
    with RunLock(tmp_path / "run"):  # free again
        pass


def test_refresh_touches_recreates_and_notices_a_lost_lock(tmp_path, caplog):
    run_dir = tmp_path / "run"
    lock = RunLock(run_dir, log=logging.getLogger(LOG))
    lock.acquire()
    path = run_dir / LOCK
    os.utime(path, (time.time() - 500, time.time() - 500))
    lock.refresh()
    assert time.time() - path.stat().st_mtime < 60

    path.unlink()
    with caplog.at_level(logging.WARNING, logger=LOG):
        lock.refresh()
    assert read_owner(run_dir).token == lock._token
    assert "deleted" in _warnings(caplog)[0]

    path.unlink()
    _write_lock(run_dir, token="theirs", host="node-that-is-not-here")
    with pytest.raises(RunDirError, match="lost the lock .* node-that-is-not-here"):
        lock.refresh()
    assert not lock.held
    lock.release()
    assert read_owner(run_dir).token == "theirs"


def test_tick_refreshes_only_after_the_interval(tmp_path):
    lock = RunLock(tmp_path / "run", refresh_interval_s=30)
    with lock:
        path = tmp_path / "run" / LOCK
        os.utime(path, (1000, 1000))
        lock.tick()
        assert path.stat().st_mtime == 1000
        lock._last_refresh -= 31
        lock.tick()
        assert time.time() - path.stat().st_mtime < 60


def test_live_owner_reports_only_a_live_other_process(tmp_path, holder):
    assert RunLock(tmp_path / "run").live_owner().pid == holder.pid
    holder.kill()
    holder.wait(timeout=30)
    assert RunLock(tmp_path / "run").live_owner() is None
    with RunLock(tmp_path / "free") as lock:
        assert lock.live_owner() is None  # ours
