"""The run directory: the one place that knows its file names and how they are written.

A run directory holds everything the tables need (local files are the source of truth;
wandb only mirrors them):

    config.yaml            resolved config + ``_run`` (run key, config hash, command)
    environment.json       code version (and diff), library versions, device, cluster ids
    init_diagnostics.json  what the init touched at step 0
    metrics.jsonl          one JSON record per evaluation
    checkpoint.pt          everything a bit-exact resume needs (loads with weights_only=True)
    summary.json + DONE    written once, at the end
    FAILED                 the message of the last user error, if the run stopped on one
    LOCK                   the live process that owns the directory

Writes are atomic (temporary file, fsync, rename), and a ``RunDir`` opened with
``writer=False`` (every rank but the main one) writes nothing. Readers (``analysis/``)
go through the same class, so a corrupt file is one clear error wherever it is read.
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mimetic.errors import RunDirError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
GIT_DIFF = "git.diff"
INIT_DIAGNOSTICS = "init_diagnostics.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
DONE = "DONE"
FAILED = "FAILED"
LOCK = "LOCK"
LOG = "train.log"


def _disk_error(path: Path, err: OSError) -> RunDirError:
    if err.errno == errno.ENOSPC:
        why = "the disk is full"
        fix = "free space (or point paths.runs_dir at another disk) and run the same command again"
    elif err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        why = "it is not writable"
        fix = "make the directory writable or point paths.runs_dir at a writable place"
    else:
        why = str(err)
        fix = "check the path and run the same command again"
    return RunDirError(f"cannot write {path}: {why}. Nothing already written was lost; {fix}.")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, fsync, then rename over ``path``.

    A crash at any moment leaves the old file or the new one, never a torn one; a full
    disk leaves the old file and removes the partial temporary one.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _disk_error(path, err) from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def clean_record(record: dict) -> dict:
    """NaN/inf are not JSON: record them as null rather than writing an unreadable line."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def write_json_atomic(path: Path, payload: Any) -> None:
    write_bytes_atomic(path, (json.dumps(payload, indent=2, default=_jsonable) + "\n").encode())


def _corrupt(path: Path, err: Exception) -> RunDirError:
    return RunDirError(
        f"{path} is corrupt or unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"Restore it, or delete the run directory {path.parent} to run it again."
    )


@dataclass
class RunDir:
    """One run's directory. ``writer=False`` turns every write into a no-op (non-main ranks)."""

    path: Path
    writer: bool = True

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ state
    @property
    def is_done(self) -> bool:
        return self.file(DONE).exists()

    @property
    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    # ------------------------------------------------------------------ reading
    def read_json(self, name: str) -> dict | None:
        path = self.file(name)
        if not path.exists():
            return None
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise _corrupt(path, err) from None
        if not isinstance(value, dict):
            raise _corrupt(path, ValueError(f"expected a JSON object, found {type(value).__name__}"))
        return value

    def read_config(self) -> dict | None:
        path = self.file(CONFIG)
        if not path.exists():
            return None
        try:
            value = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise _corrupt(path, err) from None
        if not isinstance(value, dict):
            raise _corrupt(path, ValueError(f"expected a mapping, found {type(value).__name__}"))
        return value

    def owner_hash(self) -> str | None:
        """The config hash of the run this directory belongs to (None: not claimed yet)."""
        config = self.read_config()
        return None if config is None else (config.get("_run") or {}).get("config_hash")

    def read_summary(self) -> dict | None:
        return self.read_json(SUMMARY)

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise _corrupt(path, ValueError(f"line {number}: {err}")) from None
        return records

    # ------------------------------------------------------------------ writing
    def ensure(self) -> None:
        if not self.writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _disk_error(self.path, err) from None

    def write_json(self, name: str, payload: Any) -> None:
        if self.writer:
            write_json_atomic(self.file(name), payload)

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            write_bytes_atomic(self.file(name), text.encode())

    def write_config(self, config: dict) -> None:
        self.write_text(CONFIG, yaml.safe_dump(config, sort_keys=False))

    def mark_done(self, stamp: str) -> None:
        self.write_text(DONE, stamp + "\n")

    def mark_failed(self, message: str) -> None:
        if self.writer:
            try:
                self.write_text(FAILED, message.rstrip() + "\n")
            except RunDirError:
                pass  # reporting a failure must not hide it behind another one

    def clear_failed(self) -> None:
        if self.writer:
            self.file(FAILED).unlink(missing_ok=True)

    def metrics(self) -> MetricsFile:
        return MetricsFile(self.file(METRICS), writer=self.writer)


class MetricsFile:
    """``metrics.jsonl``: one JSON object per evaluation, appended after its checkpoint."""

    def __init__(self, path: Path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    def reset(self, history: list[dict]) -> None:
        """Rewrite the file to exactly ``history`` (the records the checkpoint vouches for)."""
        if self.writer:
            write_bytes_atomic(self.path, "".join(json.dumps(clean_record(r)) + "\n" for r in history).encode())

    def append(self, record: dict) -> None:
        if not self.writer:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(clean_record(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise _disk_error(self.path, err) from None
