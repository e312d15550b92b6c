"""`anonbench check`: the CI regression gate (exit 0 pass, 1 regression, 2 files do not match)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.check import parse_tolerances
from anonbench.cli import main
from anonbench.errors import AnonbenchError
from anonbench.registry import PROTOCOLS

RUN = Path(__file__).parent / "fixtures" / "report_run" / "lfw"
CELEBA = Path(__file__).parent / "fixtures" / "report_run" / "celeba"
TOL = "tar_far_1e-3=+0.01,accuracy=+0.02"


def _baseline(
    tmp_path: Path, src: Path = RUN, edits: dict[tuple[str, str], float] | None = None
) -> Path:
    """A copy of a fixture's results.csv, with (method, metric) -> value edits."""
    df = pd.read_csv(src / "results.csv", dtype=str)
    for (method, metric), value in (edits or {}).items():
        sel = (df["method"] == method) & (df["metric"] == metric)
        assert sel.any()
        df.loc[sel, "value"] = str(value)
    p = tmp_path / "baseline.csv"
    df.to_csv(p, index=False)
    return p


def _check(run: Path, baseline: Path, tol: str, *extra: str) -> int:
    return main(["check", str(run), "--baseline", str(baseline), "--tolerance", tol, *extra])


def test_pass_identical_and_within_tolerance(tmp_path, capsys):
    assert _check(RUN, _baseline(tmp_path), TOL) == 0
    # the run's mask TAR is 0.03: a baseline of 0.025 allows up to 0.035
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.025})
    md = tmp_path / "ci" / "summary.md"
    assert _check(RUN, base, TOL, "--markdown", str(md)) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "tar_far_1e-3" in out and "REGRESSED" not in out
    text = md.read_text()
    assert text.startswith("## ✅") and "| status |" in text


def test_improvement_beyond_tolerance_passes(tmp_path):
    # the run is far better (lower TAR) than this baseline: never a failure
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.5})
    assert _check(RUN, base, TOL) == 0


def test_regression_exits_1(tmp_path, capsys):
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.0})
    md = tmp_path / "summary.md"
    assert _check(RUN, base, TOL, "--markdown", str(md)) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "FAIL: 1 of" in out
    assert "❌ **regressed**" in md.read_text()


def test_higher_is_better_regression(tmp_path):
    # ciagan's detection rates in the run: dlib-hog 99.9, retinaface 99.5; baseline 100 for both
    base = _baseline(tmp_path, src=CELEBA, edits={("ciagan", "detection_rate"): 100.0})
    assert _check(CELEBA, base, "detection_rate=-0.3") == 1  # retinaface fell by 0.5
    assert _check(CELEBA, base, "detection_rate=-0.5") == 0  # exactly at the tolerance holds
    # dlib-hog with the given -0.3; retinaface keeps its default (-1 in the fixture's run.json)
    assert _check(CELEBA, base, "detection_rate[dlib-hog]=-0.3") == 0
    # a rise of a higher-is-better metric is never a regression
    base = _baseline(tmp_path, src=CELEBA, edits={("ciagan", "detection_rate"): 50.0})
    assert _check(CELEBA, base, "detection_rate=-0.1") == 0


@pytest.mark.parametrize(
    "edit, tol, message",
    [
        ("version", TOL, "protocol version"),
        ("drop_method", TOL, "no row for method=mask"),
        ("dataset", TOL, "run datasets: lfw-sample"),
        (None, "recall_at_1=+0.5", "baseline does not have"),
        (None, "tar_far_1e-3=-0.01", "worse direction is +"),
        (None, "detection_rate=-0.5,tar_far_1e-3=+0.01", "baseline does not have"),
        (None, "tar_far=+0.01", "did you mean 'tar_far_1e-3'"),
        (None, "tar_far_1e-3:+0.01", "cannot parse"),
        ("not_results", TOL, "not an anonbench results file"),
    ],
)
def test_mismatch_exits_2_with_one_line(tmp_path, capsys, edit, tol, message):
    base = _baseline(tmp_path)
    df = pd.read_csv(base, dtype=str)
    if edit == "version":
        df["protocol_version"] = "2"
    elif edit == "drop_method":
        # the baseline has a method the run lacks; write it under a new name in the run
        run = tmp_path / "run"
        run.mkdir()
        cur = df.copy()
        cur.loc[cur["method"] == "mask", "method"] = "mask2"
        cur.to_csv(run / "results.csv", index=False)
        assert _check(run, base, tol) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        return
    elif edit == "dataset":
        df["dataset"] = "lfw"
    elif edit == "not_results":
        base.write_text("a,b\n1,2\n")
    if edit in ("version", "dataset"):
        df.to_csv(base, index=False)
    assert _check(RUN, base, tol) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("anonbench: error:")


def test_missing_baseline_file_exits_2(tmp_path, capsys):
    md = tmp_path / "summary.md"
    assert _check(RUN, tmp_path / "nope.csv", TOL, "--markdown", str(md)) == 2
    assert "no results file" in capsys.readouterr().err
    assert "files do not match" in md.read_text()  # the CI page says why


def test_tolerance_sign_rules():
    dirs = {"recall_at_1": False, "detection_rate": True, "faces_missed": None}
    t = {x.metric: x for x in parse_tolerances("recall_at_1=0.5,detection_rate=0.5", dirs)}
    assert t["recall_at_1"].worse == +1 and t["detection_rate"].worse == -1
    (c,) = parse_tolerances("faces_missed=+3", dirs)
    assert c.worse == +1 and c.amount == 3
    (c,) = parse_tolerances("faces_missed=3", dirs)
    assert c.worse == 0  # no direction, no sign: a change either way counts
    with pytest.raises(AnonbenchError, match="higher-is-better"):
        parse_tolerances("detection_rate=+0.5", dirs)
    with pytest.raises(AnonbenchError, match="given twice"):
        parse_tolerances("fid=1,fid=2", dirs)


def _check_default(run: Path, baseline: Path, *extra: str) -> int:
    """`anonbench check` without --tolerance: the MetricSpecs' default tolerances."""
    return main(["check", str(run), "--baseline", str(baseline), *extra])


def test_without_tolerance_headline_metrics_use_their_default(tmp_path, capsys):
    # the lfw fixture's run.json: tar_far_1e-3 +0.01 and accuracy +0.02, counts with none
    assert _check_default(RUN, _baseline(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "held: accuracy (default +0.02), tar_far_1e-3 (default +0.01)" in out
    assert "not checked: embedder_no_face (count, no direction), faces_missed (count, " in out
    assert "+0.01 (default)" in out  # the allowed column says where the tolerance came from
    # the run's mask TAR is 0.03: a baseline of 0.015 allows 0.025 -> regression
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.015})
    md = tmp_path / "summary.md"
    assert _check_default(RUN, base, "--markdown", str(md)) == 1
    out = capsys.readouterr().out
    assert "regressed: tar_far_1e-3 (1 of 3 values beyond default +0.01)" in out
    assert "held: accuracy (default +0.02)" in out
    assert "- not checked: embedder_no_face (count, no direction)" in md.read_text()
    # a baseline of 0.025 is within the default
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.025})
    assert _check_default(RUN, base) == 0


def test_given_tolerance_overrides_per_metric_and_the_rest_keep_their_default(tmp_path, capsys):
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.015})
    assert _check(RUN, base, "tar_far_1e-3=+0.02") == 0  # yours replaces the default +0.01
    out = capsys.readouterr().out
    assert "held: accuracy (default +0.02), tar_far_1e-3 (given +0.02)" in out
    # accuracy is not named: its default still holds it (mask's accuracy is 0.48 in the run)
    base = _baseline(tmp_path, edits={("mask", "accuracy"): 0.45})
    assert _check(RUN, base, "tar_far_1e-3=+0.02") == 1
    assert "regressed: accuracy (1 of 3 values beyond default +0.02)" in capsys.readouterr().out
    assert _check(RUN, base, "tar_far_1e-3=+0.02,accuracy=+0.05") == 0


def test_metric_without_default_is_named_with_why(tmp_path, capsys):
    base = _baseline(tmp_path, src=CELEBA)
    assert _check_default(CELEBA, base) == 0
    out = capsys.readouterr().out
    assert "not checked: fid (no default tolerance)" in out
    assert "held: detection_rate (default -1), recall_at_1 (default +1)" in out
    # a given tolerance on one evaluator: the metric's other evaluators keep the default
    assert _check(CELEBA, base, "detection_rate[dlib-hog]=-0.3") == 0
    out = capsys.readouterr().out
    assert "detection_rate (given -0.3, default -1)" in out


def test_nothing_to_check_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info = json.loads((run / "run.json").read_text())
    for m in info["protocol"]["metrics"]:
        m["tolerance"] = None
    (run / "run.json").write_text(json.dumps(info))
    assert _check_default(run, run / "results.csv") == 2
    err = capsys.readouterr().err
    assert "nothing to check" in err and "accuracy (no default tolerance)" in err
    assert len(err.strip().splitlines()) == 1
    assert _check(run, run / "results.csv", "accuracy=+0.01") == 0  # given ones still work


def _expected_allowed(spec) -> str:
    sign = {True: "-", False: "+", None: "±"}[spec.higher_is_better]
    return f"default {sign}{spec.tolerance:g}"


@pytest.mark.parametrize("run_json", ["absent", "old"])
def test_defaults_fall_back_to_the_registered_protocol(tmp_path, capsys, run_json):
    """A run folder without run.json, or with one written before MetricSpec had tolerances:
    the registered lfw protocol's MetricSpecs give the defaults (nothing else does)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(RUN / "results.csv", run / "results.csv")
    if run_json == "old":
        info = json.loads((RUN / "run.json").read_text())
        info["protocol"]["metrics"] = [
            {k: m[k] for k in ("name", "higher_is_better", "description")}
            for m in info["protocol"]["metrics"]
        ]
        (run / "run.json").write_text(json.dumps(info))
    specs = {m.name: m for m in PROTOCOLS.entry("lfw").factory.metrics}
    present = set(pd.read_csv(run / "results.csv")["metric"])
    headline = {n: s for n, s in specs.items() if n in present and s.tolerance is not None}
    code = _check_default(run, run / "results.csv")
    out, err = capsys.readouterr()
    if not headline:  # the protocol declares no default yet: nothing to check, said so
        assert code == 2 and "nothing to check" in err
        return
    assert code == 0
    for name, spec in headline.items():
        assert f"{name} ({_expected_allowed(spec)})" in out
    for name in sorted(present - set(headline)):
        assert name in out.split("not checked:")[1]


def test_run_json_wins_over_the_registered_protocol(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info = json.loads((run / "run.json").read_text())
    for m in info["protocol"]["metrics"]:
        if m["name"] == "tar_far_1e-3":
            m["tolerance"] = 0.125
    (run / "run.json").write_text(json.dumps(info))
    assert _check_default(run, run / "results.csv") == 0
    assert "tar_far_1e-3 (default +0.125)" in capsys.readouterr().out
