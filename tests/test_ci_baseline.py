"""The CI gate's baseline (.ci/baseline_lfw_fold1.csv) covers every LFW metric it can check:
`anonbench check` compares only the rows the baseline has, so a metric the protocol reports
but the baseline lacks is silently left out of the gate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anonbench.registry import PROTOCOLS

BASELINE = Path(__file__).resolve().parents[1] / ".ci" / "baseline_lfw_fold1.csv"


def test_every_checkable_lfw_metric_has_baseline_rows_for_each_method():
    base = pd.read_csv(BASELINE, dtype={"protocol_version": str})
    proto = PROTOCOLS.entry("lfw").factory
    assert set(base.protocol_version) == {proto.version}
    checkable = {s.name for s in proto.metrics if s.tolerance is not None}
    for method, rows in base.groupby("method"):
        missing = checkable - set(rows.metric)
        assert not missing, f"{BASELINE.name}: {method} has no rows for {sorted(missing)}"
