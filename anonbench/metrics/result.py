"""MetricResult: one scored value of one metric and evaluator, before the runner stamps
provenance (method, protocol, dataset, seed, ...) and writes it as a results.csv row.

Built by constructors, not by hand:
- `from_values`: the mean of per-item values with the identity-clustered percentile
  bootstrap interval (anonbench.metrics.retrieval.bootstrap_ci; `groups` = identities);
- `count`: k out of n (a diagnostic such as faces_missed), no interval;
- `unavailable`: NaN with the reason in the note (an evaluator whose weights are missing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anonbench.metrics.retrieval import bootstrap_ci


@dataclass(frozen=True)
class MetricResult:
    """One row's numbers: value over n items, an optional std and (low, high) interval."""

    metric: str
    evaluator: str
    value: float
    n: int
    std: float | None = None
    ci: tuple[float, float] | None = None
    note: str | None = None

    @classmethod
    def from_values(
        cls,
        metric: str,
        evaluator: str,
        values: Sequence[float] | np.ndarray,
        groups: Sequence[str] | None = None,
        *,
        seed: int = 0,
        note: str | None = None,
    ) -> MetricResult:
        """The mean of per-item `values` and its 95% bootstrap interval, whole `groups`
        (identities) resampled when given; no values: NaN with a NaN interval, n = 0."""
        v = np.asarray(values, np.float64)
        lo, hi = bootstrap_ci(v, groups=groups, seed=seed)
        mean = float(v.mean()) if len(v) else math.nan
        return cls(metric, evaluator, mean, len(v), ci=(lo, hi), note=note or None)

    @classmethod
    def count(
        cls, metric: str, evaluator: str, k: int, n: int, note: str | None = None
    ) -> MetricResult:
        """k items out of n (a count row: no interval)."""
        return cls(metric, evaluator, float(k), int(n), note=note or None)

    @classmethod
    def unavailable(cls, metric: str, evaluator: str, why: str) -> MetricResult:
        """A metric an evaluator could not give (weights not on disk, ...): NaN, n = 0."""
        return cls(metric, evaluator, math.nan, 0, note=f"unavailable: {why}")

    def to_row(self) -> dict[str, Any]:
        """The results.csv fields this result owns (metric, evaluator, value, n, note, and
        std / ci_low / ci_high when present), as the protocols' row dicts hold them."""
        row: dict[str, Any] = {
            "metric": self.metric,
            "evaluator": self.evaluator,
            "value": self.value,
            "n": self.n,
        }
        if self.std is not None:
            row["std"] = self.std
        if self.ci is not None:
            row["ci_low"], row["ci_high"] = self.ci
        row["note"] = self.note
        return row
