"""One live process per run directory: ``run_dir/LOCK``.

Two copies of one training command (two terminals, a SLURM job submitted twice) would
otherwise both train to the end in the same directory, each overwriting the other's
checkpoint and metrics. The first to start writes ``LOCK``; the second stops at once with
a message naming the first (PID, host, since when) and what to do about it.

The lock file is a small JSON record: pid, host, the process's start time (so a reused PID
is not mistaken for the owner), boot id and PID namespace (so a reboot or another container
is told apart), when it was taken and the command line. Whether its owner is alive:

* same host (and same boot, same PID namespace): the PID exists, is not a zombie, and its
  start time (``/proc/<pid>/stat`` field 22, where there is a ``/proc``; PID only elsewhere)
  is the recorded one. A process killed with ``kill -9`` therefore frees the directory at
  once: the next process sees the dead PID and takes over.
* anywhere else (another node on a shared filesystem): the file's mtime is younger than
  ``heartbeat_timeout_s``. The owner keeps it young with :meth:`RunLock.refresh` (a touch),
  which the trainer calls at every checkpoint / evaluation and about every minute
  (:meth:`RunLock.tick` does the "about every minute" cheaply from the step loop). Clocks of
  the nodes and the file server must agree to well within the timeout.

A lock whose owner is gone, or a file that cannot be read as a lock, is *stale*: it is taken
over with a WARNING naming the old owner. Takeover is race-free: a process that finds a stale
lock first takes an exclusive ``flock`` on that very file (a mutex the kernel drops if the
process dies), checks that ``LOCK`` still names that file and that it is still stale, and
renames its own record over it, so ``LOCK`` never vanishes for a newcomer to grab. Of several
processes that find the same stale lock at once, exactly one wins; the others get the ordinary
"in use" error naming the winner. New locks are created atomically with their content (written
to a temporary file, then ``link``-ed to ``LOCK``, which fails if it exists; ``O_CREAT |
O_EXCL`` where a filesystem has no hard links), so a lock is never seen half written.

On a filesystem without ``flock`` the stale file is renamed to a unique name instead, the
renamed inode is checked (a lock another taker created a moment before is put back), and
``LOCK`` is then created exclusively; the process that logged the takeover is then not always
the one that won it. Two contenders are safe there; three taking over within the same
microseconds are not guaranteed to be (the loser of that race finds out at its next refresh).

A process that already holds the lock may acquire it again (another ``RunLock`` on the same
directory in the same process): the second one is *nested*, and its ``release`` leaves the
file to the first.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from mimetic.errors import RunDirError
from mimetic.runtime.rundir import LOCK

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_log = logging.getLogger(__name__)

_USE_FLOCK = fcntl is not None  # tests switch it off to exercise the fallback
_HAS_PROC = os.path.isdir("/proc/self")
_MAX_BYTES = 65536  # a lock record is a few hundred bytes; anything longer is not one
_YOUNG_CORRUPT_S = 2.0  # a lock made with the O_EXCL fallback is empty for a moment after creation
_PATIENCE_S = 10.0  # how long acquire retries while other processes change LOCK under it
_COMMAND_CHARS = 1000


# ----------------------------------------------------------------------------- this process


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of ``pid``; None when /proc has no entry for it."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    # Field 2 (the command name) may hold spaces and parentheses: count from the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # field 3 (state) and field 22 (starttime)
    except (IndexError, ValueError):
        return None


def _pid_ns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


@dataclass(frozen=True)
class LockOwner:
    """The record in a LOCK file: who holds the run directory."""

    pid: int
    host: str
    start_time: int | None  # /proc/<pid>/stat field 22 (clock ticks after boot); None without /proc
    boot_id: str | None  # /proc/sys/kernel/random/boot_id: tells a reboot apart
    pid_ns: str | None  # PID namespace: PIDs of another container are not ours to check
    acquired_at: str  # ISO 8601, local time with its UTC offset
    command: str
    token: str  # unique per RunLock: release removes the file only if it still holds ours

    @classmethod
    def current(cls, token: str) -> LockOwner:
        pid = os.getpid()
        stat = _proc_stat(pid) if _HAS_PROC else None
        command = shlex.join(getattr(sys, "orig_argv", None) or sys.argv)
        if len(command) > _COMMAND_CHARS:
            command = command[: _COMMAND_CHARS - 3] + "..."
        return cls(
            pid=pid, host=socket.gethostname(), start_time=None if stat is None else stat[1],
            boot_id=_read_text("/proc/sys/kernel/random/boot_id"), pid_ns=_pid_ns(),
            acquired_at=datetime.now().astimezone().isoformat(timespec="seconds"), command=command, token=token,
        )

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> LockOwner:
        """Raises ValueError for anything that is not a complete lock record."""
        value = json.loads(raw.decode())
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, found {type(value).__name__}")
        pid, host = value.get("pid"), value.get("host")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"bad pid {pid!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"bad host {host!r}")
        start_time = value.get("start_time")
        return cls(
            pid=pid, host=host, start_time=start_time if isinstance(start_time, int) else None,
            boot_id=value.get("boot_id") or None, pid_ns=value.get("pid_ns") or None,
            acquired_at=str(value.get("acquired_at", "an unknown time")), command=str(value.get("command", "?")),
            token=str(value.get("token", "")),
        )

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host} (since {self.acquired_at})"


def _same(a: str | None, b: str | None) -> bool:
    """Equal, or unknown on one side (then we cannot tell them apart)."""
    return a is None or b is None or a == b


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def read_owner(run_dir: str | Path) -> LockOwner | None:
    """The record in ``run_dir/LOCK``, alive or not; None when there is none or it is unreadable."""
    try:
        with open(Path(run_dir) / LOCK, "rb") as f:
            return LockOwner.parse(f.read(_MAX_BYTES))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- the lock


class RunLock:
    """Exclusive ownership of a run directory by one live process.

    ``with RunLock(run_dir): ...`` or ``acquire()`` / ``release()``. Call :meth:`refresh` at
    every checkpoint and evaluation, and :meth:`tick` from the step loop (it refreshes at most
    every ``refresh_interval_s``), so that processes on other nodes see a heartbeat younger
    than ``heartbeat_timeout_s``.
    """

    def __init__(self, run_dir: str | Path, *, heartbeat_timeout_s: float = 900.0,
                 refresh_interval_s: float = 60.0, log: logging.Logger | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        # A heartbeat must come well within the timeout, or a live owner on another node looks dead.
        self.refresh_interval_s = min(float(refresh_interval_s), self.heartbeat_timeout_s / 3)
        self.log = log or _log
        self._token = uuid.uuid4().hex
        self._me: LockOwner | None = None
        self._fd: int | None = None  # open on the lock file we hold: pins its inode number while we hold it
        self._nested = False  # acquired while this process already held the directory
        self._last_refresh = 0.0
        self._unreadable_since: float | None = None  # when acquire first found LOCK unreadable

    # -------------------------------------------------------------- public
    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the directory, or raise RunDirError naming the live process that has it."""
        if self.held:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create the run directory {self.run_dir}: {err}. "
                              "Point paths.runs_dir at a writable place.") from None
        self._me = LockOwner.current(self._token)
        self._unreadable_since = None
        deadline = time.monotonic() + _PATIENCE_S
        while True:
            if self._create():
                self.log.debug("%s: locked by %s", self.run_dir, self._me.describe())
                return
            if self._examine_existing():
                return
            if time.monotonic() > deadline:
                raise RunDirError(
                    f"could not lock {self.run_dir}: {self.path} kept changing for {_PATIENCE_S:.0f} s "
                    "(other processes starting in the same directory). Run the same command again.")
            time.sleep(0.02)

    def refresh(self) -> None:
        """Heartbeat: touch the lock's mtime. Raises RunDirError if another process now holds it.

        A no-op unless held. If the file was deleted by hand while we hold it, it is written again.
        """
        if self._fd is None:
            return
        self._last_refresh = time.monotonic()
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or not _same_file(current, os.fstat(self._fd)):
            if current is None and self._create(replace_fd=True):
                self.log.warning("%s was deleted while this process held it; wrote it again", self.path)
                return
            owner = read_owner(self.run_dir)
            holder = owner.describe() if owner else "an unreadable lock file"
            os.close(self._fd)
            self._fd = None
            raise RunDirError(
                f"lost the lock on {self.run_dir}: {self.path} now names {holder}, not this process "
                f"(PID {os.getpid()}). Stopping here so that two processes do not write the same run; "
                "the other one carries on.")
        try:
            os.utime(self.path)
        except OSError as err:  # a heartbeat must not kill a run that can still write its files
            self.log.warning("could not refresh %s (%s); other nodes may take it as stale after %.0f s",
                             self.path, err, self.heartbeat_timeout_s)

    def tick(self) -> None:
        """refresh() if ``refresh_interval_s`` passed since the last one; one clock read otherwise."""
        if self._fd is not None and time.monotonic() - self._last_refresh >= self.refresh_interval_s:
            self.refresh()

    def release(self) -> None:
        """Remove the lock if it is still ours (never a nested one's, never another process's). Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._nested:
                return
            owner = read_owner(self.run_dir)
            if owner is not None and owner.token == self._token:
                self.path.unlink(missing_ok=True)
                self.log.debug("%s: released", self.run_dir)
            else:
                self.log.warning("%s no longer holds this process's lock (%s); left it in place", self.path,
                                 owner.describe() if owner else "unreadable")
        finally:
            os.close(fd)

    def live_owner(self) -> LockOwner | None:
        """The live process (other than this one) holding the directory now; None if free, stale or ours."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                owner = LockOwner.parse(f.read(_MAX_BYTES))
        except (OSError, ValueError):
            return None
        if self._me is None:
            self._me = LockOwner.current(self._token)
        if self._is_me(owner):
            return None
        return owner if self._judge(owner, st)[0] else None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:  # the fd only; the file stays for the next process to judge
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except Exception:  # interpreter shutdown
                pass

    # -------------------------------------------------------------- internals
    def _write_record(self) -> Path:
        """Our record in a temporary file next to LOCK, complete and on disk."""
        tmp = self.path.with_name(f"{LOCK}.new-{self._token}")
        try:
            with open(tmp, "wb") as f:
                f.write(self._me.to_bytes())
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise RunDirError(f"cannot write {tmp}: {err}. Make {self.run_dir} writable, or point "
                              "paths.runs_dir at a writable place.") from None
        return tmp

    def _create(self, replace_fd: bool = False) -> bool:
        """Atomically create LOCK with our record; False if it exists."""
        tmp = self._write_record()
        try:
            try:
                os.link(tmp, self.path)
                created = True
            except FileExistsError:
                # NFS may answer EEXIST to a retried link that did succeed: the link count tells.
                created = os.stat(tmp).st_nlink == 2
            except OSError:  # no hard links on this filesystem
                created = self._create_exclusive()
        finally:
            tmp.unlink(missing_ok=True)
        if created:
            self._hold(replace_fd)
        return created

    def _hold(self, replace_fd: bool = False) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        if replace_fd and self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._nested = False
        self._last_refresh = time.monotonic()

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._me.to_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _is_me(self, owner: LockOwner) -> bool:
        me = self._me
        return (owner.host == me.host and owner.pid == me.pid and owner.start_time == me.start_time
                and _same(owner.boot_id, me.boot_id) and _same(owner.pid_ns, me.pid_ns))

    def _judge(self, owner: LockOwner | None, st: os.stat_result, problem: str = "") -> tuple[bool, str]:
        """(alive, why): whether the holder of a lock file with this record and this stat is alive."""
        if owner is None:
            return False, f"the lock file is unreadable ({problem})"
        me = self._me
        if owner.host == me.host and not _same(owner.boot_id, me.boot_id):
            return False, "the machine has rebooted since"
        if owner.host == me.host and _same(owner.pid_ns, me.pid_ns):
            if not _pid_exists(owner.pid):
                return False, f"no process has PID {owner.pid} any more"
            if _HAS_PROC and owner.start_time is not None:
                stat = _proc_stat(owner.pid)
                if stat is None:
                    return False, f"no process has PID {owner.pid} any more"
                if stat[0] in ("Z", "X"):
                    return False, f"PID {owner.pid} has exited"
                if stat[1] != owner.start_time:
                    return False, f"PID {owner.pid} now belongs to a newer process"
            return True, "alive"
        age = time.time() - st.st_mtime
        if age > self.heartbeat_timeout_s:
            return False, f"no heartbeat for {age:.0f} s (timeout {self.heartbeat_timeout_s:.0f} s)"
        return True, "alive"

    def _in_use(self, owner: LockOwner, st: os.stat_result) -> RunDirError:
        same_host = owner.host == self._me.host
        heartbeat = "" if same_host else f", last heartbeat {max(0.0, time.time() - st.st_mtime):.0f} s ago"
        return RunDirError(
            f"{self.run_dir} is in use by another live process: PID {owner.pid} on host {owner.host}, "
            f"since {owner.acquired_at}{heartbeat} (command: {owner.command}). Two processes in one run directory "
            f"would overwrite each other's checkpoints and metrics. Wait for it, or stop it "
            f"(kill {owner.pid} on {owner.host}); if you are sure it is gone, delete {self.path}.")

    @staticmethod
    def _read(fd: int) -> tuple[LockOwner | None, str]:
        try:
            return LockOwner.parse(os.pread(fd, _MAX_BYTES, 0)), ""
        except (ValueError, OSError) as err:
            text = str(err).splitlines()[0] if str(err) else ""
            return None, f"{type(err).__name__}: {text}" if text else type(err).__name__

    @staticmethod
    def _exclusive(fd: int) -> str:
        """The takeover mutex on this lock file's inode: "held", "busy" (another process has it) or "none"."""
        if not _USE_FLOCK:
            return "none"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"
        except OSError:  # no flock on this filesystem: rely on the inode checks alone
            return "none"
        return "held"

    def _examine_existing(self) -> bool:
        """LOCK exists: True if it is now ours (nested, or taken over); False to retry; raise if alive."""
        try:
            fd = os.open(self.path, os.O_RDWR)  # NFS emulates flock with POSIX locks: those need write access
        except PermissionError:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return False
        except FileNotFoundError:
            return False  # released or taken over meanwhile: try to create it again
        keep = False
        try:
            st = os.fstat(fd)
            owner, problem = self._read(fd)
            if owner is not None and self._is_me(owner):
                self._fd, self._nested, keep = fd, True, True
                self._last_refresh = time.monotonic()
                self.log.debug("%s: already held by this process (PID %d)", self.run_dir, os.getpid())
                return True
            alive, _ = self._judge(owner, st, problem)
            if alive:
                raise self._in_use(owner, st)
            if owner is None:
                # Fresh and unreadable: most likely being written by the O_EXCL fallback right now. Give it a
                # moment (by its mtime, or by our own clock where the file server's runs ahead of ours).
                now = time.monotonic()
                self._unreadable_since = self._unreadable_since or now
                young = time.time() - st.st_mtime < _YOUNG_CORRUPT_S
                if young and now - self._unreadable_since < _YOUNG_CORRUPT_S:
                    return False
            mutex = self._exclusive(fd)
            if mutex == "busy":
                return False  # another process is taking it over right now
            # LOCK must still name this very file, and it must still be stale.
            try:
                if not _same_file(os.stat(self.path), st):
                    return False
            except FileNotFoundError:
                return False
            st = os.fstat(fd)
            owner, problem = self._read(fd)
            alive, why = self._judge(owner, st, problem)
            if alive:
                raise self._in_use(owner, st)
            old = owner.describe() if owner else "an unknown process"
            if mutex == "held":
                return self._replace(old, why)
            return self._move_aside(st, old, why)
        finally:
            if not keep:
                os.close(fd)

    def _replace(self, old: str, why: str) -> bool:
        """With the mutex held: put our record over the stale one in one rename; LOCK never vanishes.

        Nothing else can change LOCK meanwhile: another taker needs the mutex, a creator finds
        LOCK present, and the stale owner is gone.
        """
        tmp = self._write_record()
        try:
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self._hold()
        self.log.warning("%s: taking over the run directory from %s: %s", self.run_dir, old, why)
        return True

    def _move_aside(self, st: os.stat_result, old: str, why: str) -> bool:
        """Without flock: rename the stale lock to a unique name, check it was that one, then create."""
        stale = self.path.with_name(f"{LOCK}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return False
        try:
            if not _same_file(os.stat(stale), st):
                # We moved a lock another taker created a moment ago. Put it back.
                try:
                    os.link(stale, self.path)
                except OSError:
                    pass  # LOCK exists again: its creator holds it; the one we moved finds out at its next refresh
                return False
            # The stale lock is gone for good; whoever creates LOCK next (most likely us) owns the directory.
            self.log.warning("%s: taking over the run directory from %s: %s", self.run_dir, old, why)
            return self._create()
        finally:
            stale.unlink(missing_ok=True)
