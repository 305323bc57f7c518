"""GracefulStop with real signals: finish the step, write the checkpoint intact, one clear line, the right code."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mimetic.runtime.signals import GracefulStop, StopRequested

# A toy trainer: steps of argv[2] seconds; on a stop, a slow atomic "checkpoint" (announced on stdout
# with WRITING, so that the test can signal again during it), then StopRequested, caught like an entry
# point does: one line, the exit code, no traceback.
TRAINER = """
import json, logging, os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive shell, whatever launched us
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from mimetic.runtime.signals import GracefulStop, StopRequested

out, step_s, chunks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
log = logging.getLogger("mimetic")

def write_checkpoint(step, slept, chunks):
    payload = json.dumps({"step": step, "slept": slept, "pad": "x" * 100_000}).encode()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        for i in range(chunks):  # slowly: a second signal lands in the middle of it
            f.write(payload[i * len(payload) // chunks:(i + 1) * len(payload) // chunks])
            time.sleep(0.02)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)

def main():
    write_checkpoint(0, 0.0, 1)
    with GracefulStop() as stop:
        print("READY", flush=True)
        step = 0
        while True:
            step += 1
            start = time.monotonic()
            time.sleep(step_s)  # the step: a signal must not cut it short
            slept = time.monotonic() - start
            if stop.requested:
                print("WRITING", flush=True)
                write_checkpoint(step, slept, chunks)
                raise stop.exception(epoch=1, step=step)

try:
    main()
except StopRequested as stop:
    log.warning("%s", stop)
    sys.exit(stop.exit_code)
"""

STEP_S = 0.3


def _watchdog(proc: subprocess.Popen, after_s: float = 60.0) -> None:
    """Kill a child that hangs, so that a blocking readline in the test ends (at EOF) instead of hanging."""
    timer = threading.Timer(after_s, lambda: proc.poll() is None and proc.kill())
    timer.daemon = True
    timer.start()


def _start(tmp_path: Path, write_s: float = 0.4) -> tuple[subprocess.Popen, Path]:
    """The toy trainer, its checkpoint write taking about ``write_s`` seconds."""
    out = tmp_path / "checkpoint.json"
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(out), str(STEP_S), str(int(write_s / 0.02))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _watchdog(proc)
    assert proc.stdout.readline() == "READY\n", proc.communicate(timeout=30)
    return proc, out


def _wait_for(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline()
    assert got == line + "\n", (got, proc.communicate(timeout=30))


def _signal_and_wait(proc: subprocess.Popen, sig: signal.Signals, stderr_line: str) -> str:
    """Send ``sig`` and wait for its log line: signals of one kind that are pending together coalesce."""
    os.kill(proc.pid, sig)
    line = proc.stderr.readline().rstrip("\n")
    assert line.startswith(stderr_line), line
    return line


def _finish(proc: subprocess.Popen) -> tuple[str, list[str]]:
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child did not stop; stderr:\n{err}")
    return out, err.splitlines()


def _checkpoint(out: Path) -> dict:
    record = json.loads(out.read_text())  # intact: a torn file would not parse
    assert len(record["pad"]) == 100_000
    return record


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR1, 138)])
def test_a_stop_signal_finishes_the_step_writes_the_checkpoint_and_exits_cleanly(tmp_path, sig, code):
    proc, out = _start(tmp_path)
    os.kill(proc.pid, sig)
    _wait_for(proc, "WRITING")
    _, err = _finish(proc)
    assert proc.returncode == code
    record = _checkpoint(out)
    assert record["step"] >= 1 and record["slept"] >= STEP_S * 0.99  # the step ran to its end
    hint = " (Ctrl-C 2 more times to quit at once, without a checkpoint)" if sig == signal.SIGINT else ""
    assert err == [
        f"WARNING got {sig.name}: stopping after the current step and writing a checkpoint{hint}",
        f"WARNING interrupted by {sig.name} at epoch 1 step {record['step']}; a checkpoint was written; "
        "the same command resumes",
    ]
    assert not out.with_name(out.name + ".tmp").exists()


def test_a_second_signal_during_the_checkpoint_write_leaves_it_intact(tmp_path):
    proc, out = _start(tmp_path, write_s=3.0)
    first = _signal_and_wait(proc, signal.SIGTERM, "WARNING got SIGTERM: stopping")
    _wait_for(proc, "WRITING")
    again = " again: already stopping (after the current step, once its checkpoint is written)"
    _signal_and_wait(proc, signal.SIGTERM, f"WARNING got SIGTERM{again}")
    _signal_and_wait(proc, signal.SIGINT, f"WARNING got SIGINT{again}")
    _, err = _finish(proc)
    assert proc.returncode == 143  # the first signal decides
    record = _checkpoint(out)
    assert record["step"] >= 1 and "Traceback" not in first
    assert err == [f"WARNING interrupted by SIGTERM at epoch 1 step {record['step']}; a checkpoint was written; "
                   "the same command resumes"]


def test_the_third_ctrl_c_exits_at_once_and_keeps_the_last_complete_checkpoint(tmp_path):
    proc, out = _start(tmp_path, write_s=10.0)
    _signal_and_wait(proc, signal.SIGINT, "WARNING got SIGINT: stopping")
    _wait_for(proc, "WRITING")
    _signal_and_wait(proc, signal.SIGINT, "WARNING got SIGINT again: already stopping")
    os.kill(proc.pid, signal.SIGINT)
    _, err = _finish(proc)
    assert proc.returncode == 130
    assert _checkpoint(out)["step"] == 0  # the new one was not finished; the old one is whole
    assert err == ["ERROR got SIGINT 3 times: exiting now without a new checkpoint; the last complete one "
                   "is kept and the same command resumes from it"]


FORKER = """
import os, signal, sys, time
from mimetic.runtime.signals import GracefulStop

def child_status(sig):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.0)
        os._exit(0)
    time.sleep(0.2)
    os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

signal.signal(signal.SIGINT, signal.default_int_handler)
with GracefulStop() as stop:
    print(child_status(signal.SIGINT), child_status(signal.SIGUSR1), child_status(signal.SIGTERM), stop.requested)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_leave_ctrl_c_and_sigusr1_to_the_parent_but_die_on_sigterm(tmp_path):
    proc = subprocess.run([sys.executable, "-c", FORKER], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", f"-{int(signal.SIGTERM)}", "False"]
    assert proc.stderr == ""  # no "got SIGINT" line from a child


# ----------------------------------------------------------------------------- in this process


def test_handlers_are_restored_and_an_in_process_signal_only_sets_the_flag():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    with GracefulStop(log=logging.getLogger("test.signals")) as stop:
        assert stop.installed and not stop.requested and stop.exit_code() == 0
        signal.raise_signal(signal.SIGUSR1)
        assert stop.requested and stop.signal_name == "SIGUSR1" and stop.exit_code() == 138
        exc = stop.exception(epoch=3, step=7)
    assert {s: signal.getsignal(s) for s in before} == before
    assert isinstance(exc, BaseException) and not isinstance(exc, Exception)
    assert str(exc) == ("interrupted by SIGUSR1 at epoch 3 step 7; a checkpoint was written; "
                        "the same command resumes")
    assert exc.exit_code == 138 and (exc.signal_name, exc.epoch, exc.step) == ("SIGUSR1", 3, 7)
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc) and again.exit_code == 138


def test_stop_requested_without_a_checkpoint_and_exit_codes():
    exc = StopRequested("SIGTERM", checkpointed=False)
    assert str(exc) == "interrupted by SIGTERM, before the first checkpoint; the same command starts the run again"
    assert exc.exit_code == 143 and StopRequested("SIGINT").exit_code == 130
    with pytest.raises(RuntimeError):
        GracefulStop().exception()


def test_outside_the_main_thread_nothing_is_installed(caplog):
    before = signal.getsignal(signal.SIGTERM)
    seen = {}

    def worker():
        with GracefulStop(log=logging.getLogger("test.signals")) as stop:
            seen["installed"] = stop.installed
            seen["handler"] = signal.getsignal(signal.SIGTERM)

    with caplog.at_level(logging.DEBUG, logger="test.signals"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen == {"installed": False, "handler": before}
    assert any("not in the main thread" in r.getMessage() for r in caplog.records)


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        with GracefulStop() as stop:
            assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
            signal.raise_signal(signal.SIGUSR1)
            assert not stop.requested
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, previous)
