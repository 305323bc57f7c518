"""What a reported number means: its direction (higher or lower is better), digits and unit.

Accuracy and perplexity tables share every line of code; only the ``MetricSpec`` differs.
A comparison's metric comes from its runs' ``summary.json`` (``primary_metric`` and
``higher_is_better``, written by the task), falling back to ``test_acc`` for older runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mimetic.analysis import AnalysisError

DEFAULT_METRIC = "test_acc"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``MetricSpec("test_ppl", higher_is_better=False)``."""

    name: str
    higher_is_better: bool
    digits: int = 2
    unit: str = ""  # printed in headers: "%" for accuracies
    label: str = ""  # "test acc"; default: the name with spaces
    gap_unit: str = ""  # unit of a difference: "pp" (percentage points) for accuracies

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def header(self, prefix: str = "", suffix: str = "") -> str:
        """``final test acc (%)``: a column header with the unit."""
        text = " ".join(part for part in (prefix, self.title, suffix) if part)
        return f"{text} ({self.unit})" if self.unit else text

    def gap_header(self, prefix: str = "") -> str:
        text = " ".join(part for part in (prefix, self.title, "gap") if part)
        unit = self.gap_unit or self.unit
        return f"{text} ({unit})" if unit else text

    def format(self, mean: float, std: float = float("nan"), signed: bool = False) -> str:
        """``52.07 ± 0.65``; ``–`` for a missing value; a sign for gaps."""
        if mean is None or math.isnan(mean):
            return "–"
        head = f"{mean:{'+' if signed else ''}.{self.digits}f}"
        return head if std is None or math.isnan(std) else f"{head} ± {std:.{self.digits}f}"

    def is_ahead(self, diff: float) -> bool:
        """Whether ``a − b = diff`` means a did better than b (for perplexity: a lower one)."""
        return diff > 0 if self.higher_is_better else diff < 0

    def best(self, values: Iterable[float | None]) -> float:
        """The best of ``values`` in this metric's direction (missing values ignored)."""
        finite = [v for v in values if v is not None and not math.isnan(v)]
        if not finite:
            return float("nan")
        return max(finite) if self.higher_is_better else min(finite)


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add (or replace) a metric: a new task registers its own next to its code."""
    _REGISTRY[spec.name] = spec
    return spec


for _spec in (
    MetricSpec("test_acc", True, 2, "%", "test acc", "pp"),
    MetricSpec("val_acc", True, 2, "%", "val acc", "pp"),
    MetricSpec("train_acc", True, 2, "%", "train acc", "pp"),
    MetricSpec("test_loss", False, 4, "", "test loss"),
    MetricSpec("val_loss", False, 4, "", "val loss"),
    MetricSpec("train_loss", False, 4, "", "train loss"),
    MetricSpec("test_ppl", False, 2, "", "test perplexity"),
    MetricSpec("val_ppl", False, 2, "", "val perplexity"),
    MetricSpec("test_word_ppl", False, 2, "", "test word-level perplexity"),
    MetricSpec("test_ppl_at_best_val", False, 2, "", "test perplexity at the best val evaluation"),
    MetricSpec("test_acc_at_best_val", True, 2, "%", "test acc at the best val evaluation", "pp"),
):
    register_metric(_spec)


def metric_spec(name: str, higher_is_better: bool | None = None) -> MetricSpec:
    """The registered spec of ``name``; an unregistered name needs its direction.

    A direction that contradicts the registry is an error rather than a silent choice:
    the "seeds ahead" count and every best value depend on it.
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        if higher_is_better is None:
            raise AnalysisError(
                f"unknown metric {name!r}: known ones are {', '.join(sorted(_REGISTRY))}; "
                "a run's summary.json can name another one with primary_metric and higher_is_better"
            )
        return MetricSpec(name, bool(higher_is_better))
    if higher_is_better is not None and bool(higher_is_better) != spec.higher_is_better:
        raise AnalysisError(
            f"metric {name!r}: summary.json says higher_is_better={bool(higher_is_better)}, but {name} is "
            f"registered as {spec.direction} (mimetic.analysis.metrics); fix the task that wrote the summary"
        )
    return spec
