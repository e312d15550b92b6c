"""Acceptance of the CI gate (`anonbench check --preset ci`) on real runs of the embedded LFW
sample: the runs go through `anonbench run` exactly as a user's CI job does, two folds, one
worker, one cache for the module (originals are analysed once).

The baselines these tests compare against are committed in tests/fixtures/baselines/, written
by the same `anonbench run` (results.csv copied). When a deliberate change moves the numbers,
regenerate them with ``ANONBENCH_REGEN_BASELINES=1 python -m pytest tests/test_ci_check.py``
(the tests that compare then skip) and commit the diff.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main

BASELINES = Path(__file__).parent / "fixtures" / "baselines"
CIAGAN = BASELINES / "lfw_sample_folds2_ciagan.csv"  # the shipped checkpoint
BLUR17 = BASELINES / "lfw_sample_folds2_blur17.csv"
REGEN = os.environ.get("ANONBENCH_REGEN_BASELINES") == "1"


@pytest.fixture(scope="module")
def run_lfw(tmp_path_factory) -> Callable[..., Path]:
    """run_lfw(name, methods, *flags) -> the run folder; each name runs once per module."""
    import torch

    root = tmp_path_factory.mktemp("ci_check")
    done: dict[str, Path] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared; results do not depend on it

    def run(name: str, methods: str, *flags: str) -> Path:
        if name not in done:
            out = root / name
            argv = ["run", "--methods", methods, "--protocol", "lfw", "--folds", "2"]
            argv += ["--quiet", "--workers", "1", "--cache-dir", str(root / "cache")]
            assert main([*argv, "--out", str(out), *flags]) == 0
            done[name] = out
        return done[name]

    yield run
    torch.set_num_threads(threads)


def _check(run: Path, baseline: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()  # the run's own console output is not the gate's
    code = main(["check", str(run), "--baseline", str(baseline), "--preset", "ci", *extra])
    out, err = capsys.readouterr()
    return code, out + err


def _regenerate(run: Path, baseline: Path) -> None:
    BASELINES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "results.csv", baseline)
    pytest.skip(f"regenerated {baseline.name}")


def _summary(out: str, prefix: str) -> str:
    lines = [x for x in out.splitlines() if x.startswith(prefix)]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.slow
def test_shipped_checkpoint_passes_its_own_baseline(run_lfw, capsys):
    run = run_lfw("ciagan_shipped", "ciagan")
    if REGEN:
        _regenerate(run, CIAGAN)
    code, out = _check(run, CIAGAN, capsys)
    assert code == 0, out
    held = _summary(out, "held: ")
    for metric in ("tar_far_1e-3 [privacy]", "accuracy [privacy]", "face_kept [utility]"):
        assert metric in held
    # the baseline is this checkpoint's: same weights, and the numbers have not drifted
    base, cur = pd.read_csv(CIAGAN), pd.read_csv(run / "results.csv")
    assert set(base["checkpoint_sha256"]) == set(cur["checkpoint_sha256"])
    merged = base.merge(cur, on=["method", "metric", "evaluator"], suffixes=("_b", "_r"))
    assert len(merged) == len(base) == len(cur)
    drift = merged[(merged["value_b"] - merged["value_r"]).abs() > 1e-9]
    assert drift.empty, (
        "the shipped checkpoint's numbers moved; if that is intended, regenerate the baselines "
        f"(see this file's docstring):\n{drift[['metric', 'value_b', 'value_r']]}"
    )


@pytest.mark.slow
def test_random_weights_checkpoint_fails_on_utility(run_lfw, tmp_path, capsys):
    from anonbench.methods.ciagan.checkpoint import random_generator_checkpoint, save_atomic

    if REGEN:
        pytest.skip("regenerating baselines")
    ck = tmp_path / "random.pt"
    save_atomic(random_generator_checkpoint(10, 32, 8), ck)
    run = run_lfw("ciagan_random", "ciagan", "--checkpoint", f"ciagan={ck}")
    md = tmp_path / "summary.md"
    code, out = _check(run, CIAGAN, capsys, "--markdown", str(md))
    assert code == 1, out
    regressed = _summary(out, "regressed: ")
    assert regressed.startswith("regressed: face_kept [utility] (1 of 1 values beyond preset")
    assert ": ciagan)" in regressed
    # garbage faces lose the face (utility); against the v2 checkpoint's TAR of 0 on these
    # 200 pairs they may also count as a privacy regression: only utility is asserted
    assert "❌ **regressed** | ciagan | lfw | lfw-sample | face_kept" in md.read_text()


@pytest.mark.slow
def test_blur17_passes_and_mask_mapped_to_blur17_fails_on_utility(run_lfw, capsys):
    blur = run_lfw("blur17", "blur17")
    if REGEN:
        _regenerate(blur, BLUR17)
    code, out = _check(blur, BLUR17, capsys)
    assert code == 0, out
    assert "face_kept [utility]" in _summary(out, "held: ")

    mask = run_lfw("mask", "mask")
    # without the mapping the preset refuses a method it has no baseline for
    code, out = _check(mask, BLUR17, capsys)
    assert code == 2 and "method(s) mask have no baseline rows" in out
    code, out = _check(mask, BLUR17, capsys, "--as", "mask=blur17")
    assert code == 1, out
    regressed = _summary(out, "regressed: ")
    assert regressed.startswith("regressed: face_kept [utility] (1 of 1 values beyond preset")
    assert regressed.endswith(": mask (as blur17))")
    # a black box hides identity better than blur: privacy holds, utility does not
    held = _summary(out, "held: ")
    assert "tar_far_1e-3 [privacy]" in held and "accuracy [privacy]" in held
    assert "method mapping (--as): mask against baseline blur17" in out
