"""Golden results: results.csv must not change under refactors of the evaluation layer.

Each case runs `anonbench run` with every option given explicitly and compares the numeric
columns of results.csv (value, std, ci_low, ci_high, n) and its set of rows, keyed by method,
metric and evaluator, with the golden CSV under tests/fixtures/golden/. Provenance columns
(created_at, git_sha, anonbench_version) and notes are not compared.

Values are deterministic on one machine; the tolerance is 1e-9 relative. Goldens are written
only by hand: ``ANONBENCH_REGEN_GOLDEN=1 python -m pytest -m "slow or not slow"
tests/test_golden_results.py`` (then review the diff). The LFW sample and the celeba case with
FID/KID take minutes on a CPU, hence `slow`; celeba without FID takes seconds.

Not covered here: the CI fold (../shared LFW fold 1, 600 pairs) takes well over 3 minutes; it
keeps its own baseline, .ci/baseline_lfw_fold1.csv, checked by .ci/run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
CELEBA_SMALL = Path(__file__).parent / "fixtures" / "celeba_small"
KEY = ["method", "protocol", "protocol_version", "dataset", "split", "metric", "evaluator"]
NUMERIC = ["value", "std", "ci_low", "ci_high", "n"]
REL = 1e-9
ABS = 1e-12  # a value of exactly 0 (or a float-noise FID near it) compared with 0
# FID's matrix square root on 6-12 CPU images moves with the BLAS thread count and the machine
# (measured: -0.000146013 at 1 thread, -0.000145625 at 2; 51.5805 varied in the 7th digit)
FID_REL, FID_ABS = 1e-5, 1e-4

COMMON = "--workers 1 --device cpu --batch-size 32 --seed 0 --quiet"
CELEBA = (
    f"--methods original,blur17 --protocol celeba --data-root {CELEBA_SMALL}"
    " --option detectors=dlib-hog --option recognizers=dlib-resnet --option landmarkers=dlib-68"
    " --option identifier= --option test_fraction=0.5 --option max_per_identity=2"
    " --option pnca_epochs=1 --option reversal=none"
)
CASES = {
    # the embedded LFW sample (the default data of the lfw protocol)
    "lfw_sample": "--methods original,blur17 --protocol lfw"
    " --option folds=0 --option pairs=pairs.txt --option reversal=none",
    # celeba_small (6 identities x 3 images), every protocol option explicit; FID/KID off
    "celeba_small": CELEBA + " --option fid=0 --option kid=0",
    # the same with FID and KID (Inception-v3 on CPU: minutes)
    "celeba_small_fid": CELEBA + " --option fid=1 --option kid=1",
}
SLOW = {"lfw_sample", "celeba_small_fid"}


def _table(path: Path) -> pd.DataFrame:
    """The compared columns of a results.csv, one row per key, sorted."""
    df = pd.read_csv(path, dtype={"protocol_version": str})
    assert not df.duplicated(KEY).any(), df[df.duplicated(KEY, keep=False)][KEY]
    return df[KEY + NUMERIC].sort_values(KEY).reset_index(drop=True)


def _same(a: float, b: float, metric: str = "") -> bool:
    """Equal within the golden tolerance; NaN equals NaN (an empty interval stays empty)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if metric == "fid":
        return math.isclose(a, b, rel_tol=FID_REL, abs_tol=FID_ABS)
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


def _differences(got: pd.DataFrame, want: pd.DataFrame) -> list[str]:
    """One line per row added, removed or with a numeric column out of tolerance."""
    g = {tuple(r[KEY]): r for _, r in got.iterrows()}
    w = {tuple(r[KEY]): r for _, r in want.iterrows()}
    out = [f"row added: {k}" for k in sorted(set(g) - set(w))]
    out += [f"row removed: {k}" for k in sorted(set(w) - set(g))]
    for k in sorted(set(g) & set(w)):
        for col in NUMERIC:
            a, b = float(g[k][col]), float(w[k][col])
            if not _same(a, b, str(k[KEY.index("metric")])):
                out.append(f"{k} {col}: {a!r} != golden {b!r}")
    return out


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in CASES]
)
def test_results_match_golden(case, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    argv = f"run {CASES[case]} {COMMON} --out {out} --cache-dir {tmp_path / 'cache'}"
    assert main(argv.split()) == 0
    got = _table(out / "results.csv")
    golden = GOLDEN / f"{case}.csv"
    if os.environ.get("ANONBENCH_REGEN_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        got.to_csv(golden, index=False, float_format="%.17g")
        pytest.skip(f"golden written: {golden}")
    assert golden.is_file(), f"no golden {golden}; ANONBENCH_REGEN_GOLDEN=1 writes it"
    diffs = _differences(got, _table(golden))
    assert not diffs, "\n".join(diffs)


def test_differences_reads_nan_and_tolerance():
    """The comparison itself: NaN == NaN, 1e-9 relative passes, 1e-6 does not, rows count."""
    row = dict.fromkeys(KEY, "x") | {"value": 1.0, "std": math.nan, "ci_low": 0.5}
    row |= {"ci_high": 1.5, "n": 6}
    want = pd.DataFrame([row])
    assert _differences(pd.DataFrame([row | {"value": 1.0 + 1e-10}]), want) == []
    assert len(_differences(pd.DataFrame([row | {"value": 1.0 + 1e-6}]), want)) == 1
    assert len(_differences(pd.DataFrame([row | {"std": 0.0}]), want)) == 1
    assert _differences(pd.DataFrame([row | {"metric": "y"}]), want) == [
        "row added: ('x', 'x', 'x', 'x', 'x', 'y', 'x')",
        "row removed: ('x', 'x', 'x', 'x', 'x', 'x', 'x')",
    ]
