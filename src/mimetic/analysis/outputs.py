"""Never replace results made from other inputs, nor measured results with less evidence (``decide``).

Everything the analysis writes carries a stamp, the fingerprint of its inputs, and, where runs made it, its
evidence (runs, seeds). A result is replaced when new or made from the same inputs; one resting on more runs or
seeds than the new one is kept (a fresh clone has no runs) unless ``--replace-with-less``; any other only with
``--overwrite``, refused (before a single file is written) otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mimetic.analysis import AnalysisError

STAMP_KEY = "mimetic-inputs"  # PNG text chunk holding the fingerprint
EVIDENCE_KEY = "mimetic-evidence"  # PNG text chunk: "runs 9, seeds 3"
_EVIDENCE = re.compile(r"runs (\d+), seeds (\d+)")


def evidence_text(evidence: dict) -> str:
    return f"runs {evidence['runs']}, seeds {evidence['seeds']}"


def parse_evidence(text: str | None) -> dict | None:
    found = _EVIDENCE.search(text or "")
    return {"runs": int(found.group(1)), "seeds": int(found.group(2))} if found else None


def fewer(new: dict | None, old: dict | None) -> str | None:
    """Why ``new`` rests on less than ``old`` (fewer runs or seeds), or None."""
    if new is None or not old:
        return None
    if new["runs"] < old["runs"] or new["seeds"] < old["seeds"]:
        return f"{evidence_text(new)} now; {evidence_text(old)} before"
    return None


def fingerprint(payload: object) -> str:
    """A short, stable hash of JSON-able ``payload``."""
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _png_text(path: Path, key: str) -> str | None:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return (getattr(image, "text", None) or {}).get(key)
    except (OSError, ValueError, ImportError):
        return None


def png_stamp(path: Path) -> str | None:
    """The fingerprint stored in a PNG written by ``save_figure`` (None: none, or not a PNG)."""
    return _png_text(path, STAMP_KEY)


def png_evidence(path: Path) -> dict | None:
    """The runs and seeds a PNG was drawn from (None: not recorded, e.g. drawn before evidence was)."""
    return parse_evidence(_png_text(path, EVIDENCE_KEY))


_EVIDENCE_NOW: contextvars.ContextVar[dict | None] = contextvars.ContextVar("figure_evidence", default=None)


@contextlib.contextmanager
def figure_evidence(evidence: dict | None):
    """Figures saved inside record ``evidence`` (for drawing functions that do not take it themselves)."""
    token = _EVIDENCE_NOW.set(evidence)
    try:
        yield
    finally:
        _EVIDENCE_NOW.reset(token)


def save_figure(fig, path: Path, stamp: str, dpi: int | None = None, pdf: bool = True,
                evidence: dict | None = None) -> None:
    """Save a matplotlib figure as PNG with its stamp (and evidence), and (``pdf``) as a vector PDF beside it.

    Each file is written atomically (a crash leaves the old one). The PNG's stamp is what
    ``decide_figure`` reads; the PDF carries the same stamp in its Keywords and no creation
    date, so regenerating from the same inputs gives the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    evidence = evidence or _EVIDENCE_NOW.get()
    metadata = {STAMP_KEY: stamp, **({EVIDENCE_KEY: evidence_text(evidence)} if evidence else {})}
    _save_atomic(fig, path, format="png", dpi=dpi, metadata=metadata)
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
    """What writing ``path`` (or the ``what`` inside it) would do: new, same inputs, kept (the old one rests on
    more evidence), less (replaced with less, as asked), overwrite or refused."""

    path: Path
    action: str
    what: str = ""  # "section proxy_digits", "figure"
    why: str = ""  # for kept / less / overwrite / refused: what the existing result rests on

    @property
    def refused(self) -> bool:
        return self.action == "refused"

    @property
    def writes(self) -> bool:
        return self.action in ("new", "same inputs", "less", "overwrite")

    def kept_line(self) -> str:
        label = f"{self.what} in {self.path}" if self.what and self.what != "figure" else str(self.path)
        return f"kept {label}: the new one would rest on less ({self.why}); --replace-with-less replaces it"


def decide(path: Path, new_stamp: str, old_stamp: str | None, overwrite: bool, what: str = "",
           exists: bool | None = None, evidence: dict | None = None, old_evidence: dict | None = None,
           replace_with_less: bool = False) -> Decision:
    """Whether something stamped ``old_stamp`` (resting on ``old_evidence``) may be replaced by one made from
    inputs ``new_stamp`` (resting on ``evidence``)."""
    path = Path(path)
    if not (path.exists() if exists is None else exists):
        return Decision(path, "new", what)
    if old_stamp == new_stamp:
        return Decision(path, "same inputs", what)
    less = fewer(evidence, old_evidence)
    if less:
        return Decision(path, "less" if replace_with_less else "kept", what, less)
    label = f"{path}{f' ({what})' if what else ''}"
    why = (f"{label} was made from other inputs (stamp {old_stamp}, now {new_stamp})" if old_stamp
           else f"{label} carries no stamp of the inputs it was made from (written by hand or by an older version)")
    return Decision(path, "overwrite" if overwrite or replace_with_less else "refused", what, why)


def decide_figure(path: Path, stamp: str, overwrite: bool, evidence: dict | None = None,
                  replace_with_less: bool = False) -> Decision:
    exists = Path(path).exists()
    return decide(path, stamp, png_stamp(path) if exists else None, overwrite, "figure", exists, evidence,
                  png_evidence(path) if exists else None, replace_with_less)


def refusal(decisions: list[Decision], elsewhere: str) -> AnalysisError:
    lines = [d.why for d in decisions if d.refused]
    return AnalysisError(
        "refusing to replace results made from other inputs; nothing was written:\n  " + "\n  ".join(lines)
        + f"\nWrite elsewhere ({elsewhere}), or pass --overwrite to replace them."
    )
