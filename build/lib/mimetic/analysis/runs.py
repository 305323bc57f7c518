"""Collect finished runs from their directories (the source of truth for every table)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Run:
    path: Path
    summary: dict
    metrics: list[dict]
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    @property
    def experiment(self) -> str | None:
        return self.summary.get("experiment")

    @property
    def init(self) -> str:
        return self.summary["init"]

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def overrides(self) -> list[str]:
        return list(self.config.get("_run", {}).get("overrides") or [])

    def curve(self, key: str = "test_acc") -> list[float]:
        return [r[key] for r in self.metrics]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def load_run(path: Path) -> Run | None:
    """A finished run (``DONE`` present), or None for unfinished / foreign directories."""
    path = Path(path)
    if not (path / "DONE").exists() or not (path / "summary.json").exists():
        return None
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").exists() else {}
    return Run(path, _read_json(path / "summary.json"), metrics, config or {}, _read_json(path / "environment.json"))


def collect_runs(roots: list[Path] | Path) -> list[Run]:
    """Every finished run below ``roots`` (searched recursively for ``summary.json``)."""
    roots = [roots] if isinstance(roots, (str, Path)) else roots
    runs = []
    for root in roots:
        for summary in sorted(Path(root).rglob("summary.json")):
            run = load_run(summary.parent)
            if run is not None:
                runs.append(run)
    return runs
