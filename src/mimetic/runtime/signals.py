"""Graceful stop on SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (SLURM's warning before preemption).

Without this, Ctrl-C raises KeyboardInterrupt wherever the interpreter happens to be (a long
traceback from deep inside torch) and SIGTERM kills the process with no log line at all. Under
:class:`GracefulStop` a stop signal only sets a flag and logs one line; the trainer looks at
:attr:`GracefulStop.requested` after each step, writes a checkpoint (atomically, as always),
and raises :class:`StopRequested`; the entry point logs its one-line message and exits with
:meth:`GracefulStop.exit_code` (128 + the signal number, the shell's convention: 130 for
SIGINT, 143 for SIGTERM, 138 for SIGUSR1). Running the same command again resumes.

Policy for repeated signals (decided here, so that the trainer need not):

* the first stop signal: WARNING "got SIGTERM: stopping after the current step and writing a
  checkpoint"; nothing is raised, so no code is interrupted half way;
* any later signal: WARNING "got SIGINT again: already stopping ..." and carry on; a second
  signal can therefore never interrupt the checkpoint write;
* the ``force_after``-th SIGINT (default 3; None: never): the escape hatch for a stop that does
  not come (a step hung in Python). It logs one ERROR line and calls ``os._exit`` at once,
  without a new checkpoint: the checkpoint writer is atomic (temporary file + rename), so the
  last complete checkpoint is intact and the same command resumes from it; the run
  directory's LOCK is left behind and taken over by the next run (its PID is dead). Only SIGINT
  counts: schedulers repeat SIGTERM and follow it with SIGKILL on their own.

Forked children (e.g. DataLoader workers started with ``fork``) inherit the handlers. In them,
SIGINT and SIGUSR1 are ignored: a terminal's Ctrl-C and SLURM's ``--signal`` reach every
process of the job, and a worker that died would break the step the parent is finishing; the
parent stops its workers itself. SIGTERM there behaves as it did before this module (the
previous handler, or the default: terminate), because ``Process.terminate()`` relies on it.
Workers started with ``spawn`` keep Python's default handlers.

A signal that is ignored when the block starts (SIG_IGN: ``nohup``, background jobs of a
non-interactive shell) stays ignored, as Python itself does for SIGINT.

Signals reach Python handlers only in the main thread, between bytecodes: a step blocked
inside a C call sees the flag when the call returns. Outside the main thread
:class:`GracefulStop` installs nothing (logged at DEBUG) and ``requested`` stays False.

On SLURM, ask for the warning with ``#SBATCH --signal=USR1@180`` (without ``B:``, so that it
reaches the training process rather than only the batch shell); requeueing is the launcher's
business: the handlers that were there before are in :attr:`GracefulStop.previous_handlers`.
With several ranks (DDP) each rank has its own flag: the trainer must agree on the step to
stop at (e.g. all-reduce the flag every step, then :meth:`GracefulStop.request` on the others).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

_log = logging.getLogger(__name__)

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
)
_IGNORED_IN_CHILDREN = {getattr(signal, name) for name in ("SIGINT", "SIGUSR1") if hasattr(signal, name)}

Handler = Callable[[int, FrameType | None], Any] | int | None


def exit_code_for(signum: int) -> int:
    """The shell's convention for a process stopped by a signal: 128 + its number."""
    return 128 + int(signum)


class StopRequested(BaseException):
    """A stop signal was honoured: the trainer raises this after writing its checkpoint.

    A BaseException (like KeyboardInterrupt) so that an ``except Exception`` between the
    trainer and the entry point cannot swallow it. ``str()`` is the one line to show the user;
    ``exit_code`` is what the process should exit with.
    """

    def __init__(self, signal_name: str, epoch: int | None = None, step: int | None = None, *,
                 checkpointed: bool = True, exit_code: int | None = None):
        where = ""
        if epoch is not None:
            where = f" at epoch {epoch}" + (f" step {step}" if step is not None else "")
        elif step is not None:
            where = f" at step {step}"
        if checkpointed:
            message = f"interrupted by {signal_name}{where}; a checkpoint was written; the same command resumes"
        else:
            message = (f"interrupted by {signal_name}{where}, before the first checkpoint; "
                       "the same command starts the run again")
        super().__init__(message)
        self.signal_name = signal_name
        self.epoch = epoch
        self.step = step
        self.checkpointed = checkpointed
        if exit_code is None:
            try:
                exit_code = exit_code_for(signal.Signals[signal_name])
            except KeyError:
                exit_code = 1
        self.exit_code = exit_code

    def __reduce__(self):  # keep the keyword arguments when pickled (e.g. across processes)
        return (_rebuild_stop, (self.signal_name, self.epoch, self.step, self.checkpointed, self.exit_code))


def _rebuild_stop(name: str, epoch: int | None, step: int | None, checkpointed: bool, code: int) -> StopRequested:
    return StopRequested(name, epoch, step, checkpointed=checkpointed, exit_code=code)


class GracefulStop:
    """Context manager: installs the stop handlers in the main thread, restores the previous ones on exit.

    ::

        with GracefulStop() as stop:
            for step in ...:
                train_step()
                if stop.requested:
                    save_checkpoint()
                    raise stop.exception(epoch, step)
    """

    def __init__(self, signals: Iterable[int] = DEFAULT_SIGNALS, log: logging.Logger | None = None,
                 force_after: int | None = 3):
        self.signals = tuple(signal.Signals(s) for s in signals)
        self.log = log or _log
        self.force_after = force_after
        self.installed = False
        self._signum: signal.Signals | None = None  # the first stop signal
        self._count = 0  # stop signals received (all kinds)
        self._sigints = 0
        self._pid: int | None = None
        self._previous: dict[signal.Signals, Handler] = {}

    # -------------------------------------------------------------- state
    @property
    def requested(self) -> bool:
        """A stop signal arrived (or :meth:`request` was called)."""
        return self._signum is not None

    @property
    def signal_name(self) -> str | None:
        """The first stop signal's name, e.g. "SIGTERM"; None before one."""
        return None if self._signum is None else self._signum.name

    @property
    def count(self) -> int:
        """How many stop signals arrived."""
        return self._count

    @property
    def previous_handlers(self) -> dict[signal.Signals, Handler]:
        """The handlers this replaced (while installed), e.g. a launcher's requeue handler."""
        return dict(self._previous)

    def exit_code(self) -> int:
        """128 + the first stop signal's number (130 SIGINT, 143 SIGTERM, 138 SIGUSR1); 0 if none arrived."""
        return 0 if self._signum is None else exit_code_for(self._signum)

    def exception(self, epoch: int | None = None, step: int | None = None, *,
                  checkpointed: bool = True) -> StopRequested:
        """The StopRequested to raise once the checkpoint is written."""
        if self._signum is None:
            raise RuntimeError("no stop was requested")
        return StopRequested(self._signum.name, epoch, step, checkpointed=checkpointed, exit_code=self.exit_code())

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask for a stop as if ``signum`` had arrived, without a log line (e.g. another DDP rank got it)."""
        if self._signum is None:
            self._signum = signal.Signals(signum)

    # -------------------------------------------------------------- install / restore
    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is not threading.main_thread():
            self.log.debug("not in the main thread: no stop-signal handlers installed "
                           "(signals keep their current behaviour)")
            return self
        self._pid = os.getpid()
        try:
            for sig in self.signals:
                previous = signal.getsignal(sig)
                if previous == signal.SIG_IGN:
                    # Deliberately ignored (nohup, a background job of a script): Python's own rule, kept.
                    self.log.debug("%s is ignored in this process; left ignored", sig.name)
                    continue
                signal.signal(sig, self._handle)
                self._previous[sig] = previous
        except (ValueError, OSError) as err:  # e.g. not the main interpreter
            self._restore()
            self.log.debug("could not install stop-signal handlers (%s); signals keep their current behaviour", err)
            return self
        self.installed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            # None: the previous handler was not installed from Python; the default is the best we can do.
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        self.installed = False

    # -------------------------------------------------------------- the handler
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if os.getpid() != self._pid:
            self._in_child(sig, frame)
            return
        self._count += 1
        if sig == signal.SIGINT:
            self._sigints += 1
        if self._signum is None:
            self._signum = sig
            hint = ""
            if sig == signal.SIGINT and self.force_after is not None and self.force_after > 1:
                hint = f" (Ctrl-C {self.force_after - 1} more times to quit at once, without a checkpoint)"
            self.log.warning("got %s: stopping after the current step and writing a checkpoint%s", sig.name, hint)
            return
        if sig == signal.SIGINT and self.force_after is not None and self._sigints >= self.force_after:
            self.log.error("got SIGINT %d times: exiting now without a new checkpoint; the last complete one is "
                           "kept and the same command resumes from it", self._sigints)
            _flush_logs(self.log)
            os._exit(exit_code_for(self._signum))
        self.log.warning("got %s again: already stopping (after the current step, once its checkpoint is written)",
                         sig.name)

    def _in_child(self, sig: signal.Signals, frame: FrameType | None) -> None:
        """A forked child inherited the handler: let the parent coordinate the stop (see module doc)."""
        if sig in _IGNORED_IN_CHILDREN:
            return
        previous = self._previous.get(sig)
        if callable(previous):
            previous(int(sig), frame)
        elif previous != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)


def _flush_logs(log: logging.Logger) -> None:
    """Best effort before os._exit: the handler may have interrupted a write to the same stream."""
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            try:
                handler.flush()
            except Exception:  # nothing may stop the exit
                pass
        logger = logger.parent if logger.propagate else None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # idem
            pass
