"""Never replace results made from other inputs: fingerprints, stamps and the write guard.

Everything the analysis writes carries a stamp, the fingerprint of the inputs it was made
from (for a table section and its figure: the runs' keys, config hashes, summaries and
metrics; for a notebook figure: its input tensor and options). A file may be replaced
when it is new or its stamp equals the new one (regenerating from the same inputs), or
when the user says ``--overwrite``; anything else, e.g. a committed figure made from
other runs or before stamps existed, is refused before a single file is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mimetic.analysis import AnalysisError

STAMP_KEY = "mimetic-inputs"  # PNG text chunk holding the fingerprint


def fingerprint(payload: object) -> str:
    """A short, stable hash of JSON-able ``payload``."""
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def png_stamp(path: Path) -> str | None:
    """The fingerprint stored in a PNG written by ``save_figure`` (None: none, or not a PNG)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return (getattr(image, "text", None) or {}).get(STAMP_KEY)
    except (OSError, ValueError, ImportError):
        return None


def save_figure(fig, path: Path, stamp: str, dpi: int | None = None, pdf: bool = True) -> None:
    """Save a matplotlib figure as PNG with its stamp, and (``pdf``) as a vector PDF beside it.

    Each file is written atomically (a crash leaves the old one). The PNG's stamp is what
    ``decide_figure`` reads; the PDF carries the same stamp in its Keywords and no creation
    date, so regenerating from the same inputs gives the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(fig, path, format="png", dpi=dpi, metadata={STAMP_KEY: stamp})
    if pdf:
        _save_atomic(fig, path.with_suffix(".pdf"), format="pdf", dpi=dpi,
                     metadata={"Keywords": f"{STAMP_KEY}:{stamp}", "CreationDate": None})


def _save_atomic(fig, path: Path, **savefig) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, **savefig)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Decision:
    """What writing ``path`` (or the ``what`` inside it) would do: new, same inputs, overwrite or refused."""

    path: Path
    action: str
    what: str = ""  # "section proxy_digits", "figure"
    why: str = ""  # for overwrite / refused: what the existing file was made from

    @property
    def refused(self) -> bool:
        return self.action == "refused"


def decide(path: Path, new_stamp: str, old_stamp: str | None, overwrite: bool, what: str = "",
           exists: bool | None = None) -> Decision:
    """Whether something stamped ``old_stamp`` may be replaced by one made from inputs ``new_stamp``."""
    path = Path(path)
    if not (path.exists() if exists is None else exists):
        return Decision(path, "new", what)
    if old_stamp == new_stamp:
        return Decision(path, "same inputs", what)
    label = f"{path}{f' ({what})' if what else ''}"
    why = (f"{label} was made from other inputs (stamp {old_stamp}, now {new_stamp})" if old_stamp
           else f"{label} carries no stamp of the inputs it was made from (written by hand or by an older version)")
    return Decision(path, "overwrite" if overwrite else "refused", what, why)


def decide_figure(path: Path, stamp: str, overwrite: bool) -> Decision:
    return decide(path, stamp, png_stamp(path) if Path(path).exists() else None, overwrite, "figure")


def refusal(decisions: list[Decision], elsewhere: str) -> AnalysisError:
    lines = [d.why for d in decisions if d.refused]
    return AnalysisError(
        "refusing to replace results made from other inputs; nothing was written:\n  " + "\n  ".join(lines)
        + f"\nWrite elsewhere ({elsewhere}), or pass --overwrite to replace them."
    )
