"""The paper's numbers (results/paper_numbers.yaml) and where in our tables they belong.

Each entry keeps its provenance (``source``) and says which comparisons it applies to
(``applies_to``: experiment / dataset / model / a config key), so a table prints the
paper's number beside the measured one, with the source as a footnote, and a blank where
the paper gives nothing for that setup. The schema is described at the top of the YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mimetic.analysis import AnalysisError
from mimetic.analysis.metrics import DEFAULT_METRIC

_TEXT_KEYS = {"source", "gain", "init", "baseline", "note"}


def _as_tuple(value) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else (str(value),)


@dataclass(frozen=True)
class PaperNumber:
    """One entry: the paper's final values per init and/or its words on the gain, with the source."""

    key: str
    source: str
    applies_to: dict[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: tuple[str, ...] = (DEFAULT_METRIC,)
    values: dict[str, float] = field(default_factory=dict)
    gain: str | None = None
    init: str | None = None
    baseline: str = "default"

    def applies(self, lookup: Callable[[str], str | None], metric: str) -> bool:
        """Whether every ``applies_to`` key matches (``lookup(key)``: the runs' common value)."""
        if not self.applies_to or metric not in self.metrics:
            return False
        return all(lookup(key) in wanted for key, wanted in self.applies_to.items())

    def describe(self) -> str:
        parts = [", ".join(f"{init} {value:g}" for init, value in self.values.items())] if self.values else []
        if self.gain:
            parts.append(f"{self.init or 'any init'} vs {self.baseline}: \"{self.gain}\"")
        return "; ".join(parts)


def parse_entry(key: str, entry: object, where: str) -> PaperNumber:
    if not isinstance(entry, dict):
        raise AnalysisError(f"{where}: entry {key!r} must be a mapping (source, applies_to, ...)")
    if not entry.get("source"):
        raise AnalysisError(f"{where}: entry {key!r} has no source; every paper number needs its provenance")
    applies_to = entry.get("applies_to") or {}
    if not isinstance(applies_to, dict):
        raise AnalysisError(f"{where}: {key}.applies_to must be a mapping like {{dataset: cifar10, model: vit_tiny}}")
    values, unknown = {}, []
    for name, value in entry.items():
        if name in _TEXT_KEYS or name in ("applies_to", "metric"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[str(name)] = float(value)
        else:
            unknown.append(str(name))
    if unknown:
        raise AnalysisError(
            f"{where}: entry {key!r} has {', '.join(unknown)}, which is neither a known key "
            f"({', '.join(sorted(_TEXT_KEYS | {'applies_to', 'metric'}))}) nor an init with a number"
        )
    return PaperNumber(
        key=key,
        source=str(entry["source"]),
        applies_to={str(k): _as_tuple(v) for k, v in applies_to.items()},
        metrics=_as_tuple(entry.get("metric", DEFAULT_METRIC)),
        values=values,
        gain=None if entry.get("gain") is None else str(entry["gain"]),
        init=None if entry.get("init") is None else str(entry["init"]),
        baseline=str(entry.get("baseline", "default")),
    )


def load_paper_numbers(path: Path | str) -> list[PaperNumber]:
    """Every entry of the YAML (an error naming the file and entry when one is malformed)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path} does not exist (pass --paper-numbers PATH)") from None
    except (OSError, yaml.YAMLError) as err:
        raise AnalysisError(f"{path} is not readable YAML ({type(err).__name__}: {err})") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: expected a mapping of entries, found {type(data).__name__}")
    return [parse_entry(str(key), entry, str(path)) for key, entry in data.items()]


class PaperColumn:
    """The paper numbers of one comparison, as table cells with footnote markers ``[p1]``."""

    def __init__(self, numbers: list[PaperNumber], lookup: Callable[[str], str | None], metric: str,
                 digits: int = 2, where: str = "results/paper_numbers.yaml", check: bool = True):
        # check=False: numbers a table's spec names itself (paper: [keys]); only their metric must match
        self.numbers = [n for n in numbers if (n.applies(lookup, metric) if check else metric in n.metrics)]
        self.digits = digits
        self.where = where
        self._markers: dict[str, str] = {}

    def _mark(self, number: PaperNumber) -> str:
        return self._markers.setdefault(number.key, f"[p{len(self._markers) + 1}]")

    def value(self, init: str) -> str:
        return " · ".join(f"{n.values[init]:.{self.digits}f} {self._mark(n)}" for n in self.numbers if init in n.values)

    def gap(self, init: str, baseline: str) -> str:
        cells = []
        for n in self.numbers:
            if init in n.values and baseline in n.values:
                cells.append(f"{n.values[init] - n.values[baseline]:+.{self.digits}f} {self._mark(n)}")
            if n.gain and n.baseline == baseline and n.init in (None, init):
                cells.append(f"{n.gain} {self._mark(n)}")
        return " · ".join(cells)

    def footnotes(self) -> list[str]:
        """One line per number that applies (those printed in the tables first): what it is and its source."""
        for number in self.numbers:
            self._mark(number)
        by_key = {n.key: n for n in self.numbers}
        return [f"{mark} {by_key[key].describe()} — source: {by_key[key].source} (`{key}` in {self.where})"
                for key, mark in self._markers.items()]
