"""Fails CI when one-fold LFW results leave their expected ranges (see README, 'CI checks').

Absolute sanity beside the regression gate (`anonbench check --baseline
.ci/baseline_lfw_fold1.csv --preset ci`): the gate only compares with a baseline, so these
ranges keep a baseline regenerated from a broken recognizer or a no-op anonymizer from passing.
"""

import sys

import pandas as pd

# (method, metric) -> (low, high). Wide enough for threshold noise on 600 pairs, narrow enough
# to catch a broken recognizer (original near chance) or a no-op anonymizer.
# Measured on fold 1 (in-sample thresholds), protocol version 2 (.ci/baseline_lfw_fold1.csv):
# original 0.970 TAR / 0.987 accuracy / 99.4% face kept, blur17 0.920 / 0.973 / 92.6%.
RANGES = {
    ("original", "accuracy"): (0.97, 1.0),
    ("original", "tar_far_1e-3"): (0.90, 1.0),
    ("blur17", "accuracy"): (0.90, 0.99),
    ("blur17", "tar_far_1e-3"): (0.60, 0.97),
    ("original", "faces_missed"): (0, 20),
    # the recognizer's own detector must find the real faces (a broken detector would not)
    ("original", "face_kept"): (95.0, 100.0),
}

df = pd.read_csv(sys.argv[1])
bad = []
for (method, metric), (lo, hi) in RANGES.items():
    sel = df[(df.method == method) & (df.metric == metric)]
    if len(sel) != 1:
        bad.append(f"{method} {metric}: missing")
        continue
    v = float(sel.value.iloc[0])
    status = "ok" if lo <= v <= hi else "OUT OF RANGE"
    print(f"{method:10s} {metric:14s} {v:.4f}  expected [{lo}, {hi}]  {status}")
    if status != "ok":
        bad.append(f"{method} {metric}={v}")


def value(method: str, metric: str) -> float:
    sel = df[(df.method == method) & (df.metric == metric)]
    return float(sel.value.iloc[0]) if len(sel) == 1 else float("nan")


# blur must cost the attacker something: a no-op anonymizer would match the original
gap = value("original", "tar_far_1e-3") - value("blur17", "tar_far_1e-3")
print(f"TAR gap original - blur17: {gap:.4f}  expected >= 0.02")
if not gap >= 0.02:
    bad.append(f"blur17 TAR gap {gap}")
if (df.dataset != "lfw").any():
    bad.append("dataset label is not 'lfw'")
if bad:
    print("LFW range check failed:", "; ".join(bad))
    sys.exit(1)
print("LFW range check passed")
