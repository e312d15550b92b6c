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
    # the installed lfw protocol: tar_far_1e-3 +0.01 and accuracy +0.01, counts with none
    # (the fixture's run.json says accuracy +0.02: the files checked never set the gate)
    assert _check_default(RUN, _baseline(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "held: accuracy (default +0.01), tar_far_1e-3 (default +0.01)" in out
    assert "not checked: embedder_no_face (count, no direction), faces_missed (count, " in out
    assert "+0.01 (default)" in out  # the allowed column says where the tolerance came from
    # the run's mask TAR is 0.03: a baseline of 0.015 allows 0.025 -> regression
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.015})
    md = tmp_path / "summary.md"
    assert _check_default(RUN, base, "--markdown", str(md)) == 1
    out = capsys.readouterr().out
    assert "regressed: tar_far_1e-3 (1 of 3 values beyond default +0.01)" in out
    assert "held: accuracy (default +0.01)" in out
    assert "- not checked: embedder_no_face (count, no direction)" in md.read_text()
    # a baseline of 0.025 is within the default
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.025})
    assert _check_default(RUN, base) == 0


def test_given_tolerance_overrides_per_metric_and_the_rest_keep_their_default(tmp_path, capsys):
    base = _baseline(tmp_path, edits={("mask", "tar_far_1e-3"): 0.015})
    assert _check(RUN, base, "tar_far_1e-3=+0.02") == 0  # yours replaces the default +0.01
    out = capsys.readouterr().out
    assert "held: accuracy (default +0.01), tar_far_1e-3 (given +0.02)" in out
    # accuracy is not named: its default still holds it (mask's accuracy is 0.48 in the run)
    base = _baseline(tmp_path, edits={("mask", "accuracy"): 0.45})
    assert _check(RUN, base, "tar_far_1e-3=+0.02") == 1
    assert "regressed: accuracy (1 of 3 values beyond default +0.01)" in capsys.readouterr().out
    assert _check(RUN, base, "tar_far_1e-3=+0.02,accuracy=+0.05") == 0


def test_installed_defaults_and_a_given_tolerance_per_evaluator(tmp_path, capsys):
    base = _baseline(tmp_path, src=CELEBA)
    assert _check_default(CELEBA, base) == 0
    out = capsys.readouterr().out
    # the installed celeba protocol gives fid a default (the fixture's run.json has none)
    assert "held: detection_rate (default -1), fid (default +2), recall_at_1 (default +1)" in out
    # a given tolerance on one evaluator: the metric's other evaluators keep the default
    assert _check(CELEBA, base, "detection_rate[dlib-hog]=-0.3") == 0
    out = capsys.readouterr().out
    assert "detection_rate (given -0.3, default -1)" in out


def _not_installed(tmp_path: Path, src: Path = RUN, name: str = "plugin") -> Path:
    """A copy of a run folder whose protocol is renamed to one not installed here: its
    MetricSpecs can only come from run.json."""
    run = tmp_path / "run"
    shutil.copytree(src, run)
    df = pd.read_csv(run / "results.csv", dtype=str)
    df["protocol"] = name
    df.to_csv(run / "results.csv", index=False)
    info = json.loads((run / "run.json").read_text())
    info["protocol"]["name"] = name
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_metric_without_default_is_named_with_why_when_not_installed(tmp_path, capsys):
    run = _not_installed(tmp_path, CELEBA)
    assert _check_default(run, run / "results.csv") == 0
    out = capsys.readouterr().out
    assert "not checked: fid (no default tolerance)" in out
    assert "held: detection_rate (default -1), recall_at_1 (default +1)" in out
    assert "warning: protocol 'plugin' is not installed here: the direction and tolerance" in out


def test_nothing_to_check_is_an_error(tmp_path, capsys):
    run = _not_installed(tmp_path)
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


def test_installed_protocol_wins_over_run_json(tmp_path, capsys):
    """run.json cannot widen its own gate: the installed lfw protocol's tolerance holds; for a
    protocol not installed here, run.json's copy is used, with a warning."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info = json.loads((run / "run.json").read_text())
    for m in info["protocol"]["metrics"]:
        if m["name"] == "tar_far_1e-3":
            m["tolerance"] = 0.125
    (run / "run.json").write_text(json.dumps(info))
    assert _check_default(run, run / "results.csv") == 0
    out = capsys.readouterr().out
    assert "tar_far_1e-3 (default +0.01)" in out and "warning" not in out
    plugin = _not_installed(tmp_path / "p", run)
    assert _check_default(plugin, plugin / "results.csv") == 0
    out = capsys.readouterr().out
    assert "tar_far_1e-3 (default +0.125)" in out
    assert "warning: protocol 'plugin' is not installed here" in out


# ---- noise-aware tolerances, --preset ci, --as (issue 15) ----


def _table(tmp_path: Path, src: Path, edits: dict, name: str = "baseline.csv", drop=()) -> Path:
    """A copy of a fixture's results.csv with (method, metric, evaluator|None, column) -> value
    edits, and the methods in `drop` removed."""
    df = pd.read_csv(src / "results.csv", dtype=str)
    for (method, metric, ev, col), value in edits.items():
        sel = (df["method"] == method) & (df["metric"] == metric)
        if ev is not None:
            sel &= df["evaluator"] == ev
        assert sel.any()
        df.loc[sel, col] = "" if value is None else str(value)
    df = df[~df["method"].isin(drop)]
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _run_folder(tmp_path: Path, src: Path, edits: dict, drop=()) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(src / "run.json", run / "run.json")
    _table(run, src, edits, name="results.csv", drop=drop)
    return run


RETINA = ("ciagan", "detection_rate", "retinaface")


def test_ci_tolerance_is_a_multiple_of_the_baseline_interval(tmp_path, capsys):
    # run: ciagan retinaface detection 99.5; baseline 102.5 with CI [100, 105] (half-width 2.5)
    base = _table(
        tmp_path,
        CELEBA,
        {(*RETINA, "value"): 102.5, (*RETINA, "ci_low"): 100, (*RETINA, "ci_high"): 105},
    )
    assert _check(CELEBA, base, "detection_rate[retinaface]=-1ci") == 1  # -3 beyond 2.5
    assert "-2.5 (1ci)" in capsys.readouterr().out
    assert _check(CELEBA, base, "detection_rate[retinaface]=-2ci") == 0  # 5 allowed
    out = capsys.readouterr().out
    assert "-5 (2ci)" in out
    assert "detection_rate (default -1, given -2x baseline interval, at least -1)" in out
    # the sign rule holds for interval multiples too
    assert _check(CELEBA, base, "detection_rate=+2ci") == 2
    assert "write detection_rate=-2ci" in capsys.readouterr().err


def test_ci_tolerance_never_uses_the_runs_interval_and_floors_at_the_default(tmp_path, capsys):
    # a noisy run (CI [0, 100]) against a baseline with a zero-width interval: the run's own
    # interval does not loosen the gate; the floor is the MetricSpec default (1 here)
    run = _run_folder(tmp_path, CELEBA, {(*RETINA, "ci_low"): 0, (*RETINA, "ci_high"): 100})
    base = _table(
        tmp_path,
        CELEBA,
        {(*RETINA, "value"): 101, (*RETINA, "ci_low"): 101, (*RETINA, "ci_high"): 101},
    )
    assert _check(run, base, "detection_rate=-2ci") == 1  # 99.5 - 101 = -1.5 beyond the floor
    assert "-1 (floor, 2ci=0)" in capsys.readouterr().out
    base = _table(tmp_path, CELEBA, {(*RETINA, "value"): 100.5})
    assert _check(run, base, "detection_rate=-2ci") == 0  # -1.0: exactly the floor holds
    # no interval in the baseline row at all: the floor too, said so
    base = _table(
        tmp_path,
        CELEBA,
        {(*RETINA, "value"): 101, (*RETINA, "ci_low"): None, (*RETINA, "ci_high"): None},
    )
    assert _check(run, base, "detection_rate=-2ci") == 1
    assert "(floor, no interval)" in capsys.readouterr().out


def test_ci_tolerance_uses_the_fold_std_of_lfw_rows(tmp_path, capsys):
    # the run's mask TAR is 0.03; baseline 0.0 with fold std 0.02 (floor: the default 0.01)
    edits = {
        ("mask", "tar_far_1e-3", None, "value"): 0.0,
        ("mask", "tar_far_1e-3", None, "std"): 0.02,
    }
    base = _table(tmp_path, RUN, edits)
    assert _check(RUN, base, "tar_far_1e-3=+1ci") == 1  # +0.03 beyond 0.02
    assert _check(RUN, base, "tar_far_1e-3=+2ci") == 0  # 0.04 allowed
    assert "+0.04 (2ci)" in capsys.readouterr().out


def test_preset_ci_holds_privacy_and_utility_and_names_their_roles(tmp_path, capsys):
    run = _run_folder(tmp_path, CELEBA, {}, drop=["chance"])
    base = _table(tmp_path, CELEBA, {}, drop=["chance"])
    assert _check_default(run, base, "--preset", "ci") == 0
    out = capsys.readouterr().out
    assert "preset ci: privacy and utility held together" in out
    assert "detection_rate [utility] (preset -1x baseline interval, at least -1)" in out
    assert "recall_at_1 [privacy] (preset +1x baseline interval, at least +1)" in out
    # ciagan's retinaface detection fell by 1.5 from a baseline with CI half-width 0.75: the
    # floor (the default 1) is the allowed change, and the utility metric regresses
    base = _table(tmp_path, CELEBA, {(*RETINA, "value"): 101}, drop=["chance"])
    assert _check_default(run, base, "--preset", "ci") == 1
    out = capsys.readouterr().out
    assert "regressed: detection_rate [utility] (1 of 10 values beyond preset" in out
    assert ": ciagan)" in out and "recall_at_1 [privacy] (preset" in out.split("held:")[1]
    # without the preset, the same files: the default tolerances, current behaviour
    assert _check_default(run, base) == 1
    assert "regressed: detection_rate (1 of 10 values beyond default -1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case, message",
    [
        ("chance", "chance: no utility metric"),  # only recall_at_1 for 'chance'
        ("lfw_v1", "mask: no utility metric"),  # the old lfw fixture has no face_kept
        ("extra_method", "method(s) pixelate8 have no baseline rows"),
    ],
)
def test_preset_ci_refuses_what_it_cannot_hold(tmp_path, capsys, case, message):
    if case == "lfw_v1":
        run, base = RUN, _baseline(tmp_path)
    elif case == "chance":
        run, base = CELEBA, _table(tmp_path, CELEBA, {})
    else:
        run, base = CELEBA, _table(tmp_path, CELEBA, {}, drop=["pixelate8"])
    assert _check_default(run, base, "--preset", "ci") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    if case == "chance":
        assert "utility: detection_rate," in err  # what would count (fid is realism)


def test_method_mapping_compares_a_run_method_to_another_baseline_method(tmp_path, capsys):
    base = _table(
        tmp_path,
        CELEBA,
        {},
        drop=["original", "pixelate8", "ciagan", "chance", '<script>alert("x")</script>'],
    )
    # pixelate8 against blur17's rows: detection 0 vs 68.4 (dlib-hog) -> a utility regression;
    # blur17 is still compared under its own name
    assert _check_default(CELEBA, base, "--as", "pixelate8=blur17") == 1
    out = capsys.readouterr().out
    assert "REGRESSED  pixelate8 (as blur17)" in out
    assert "method mapping (--as): pixelate8 against baseline blur17" in out
    assert (
        "regressed: detection_rate (2 of 4 values beyond default -1: pixelate8 (as blur17))" in out
    )
    assert "pass       blur17 " in out
    # a run method identical to its baseline passes through the mapping
    assert _check_default(CELEBA, base, "--as", "blur17=blur17") == 0


@pytest.mark.parametrize(
    "mapping, message",
    [
        ("nope=blur17", "the run has no method 'nope'"),
        ("pixelate8=blur7", "no method 'blur7' (did you mean 'blur17'?)"),
        ("ciagan=blur17", "the baseline has rows of 'ciagan' itself"),
        ("pixelate8", "cannot parse 'pixelate8'"),
        ("pixelate8=blur17,pixelate8=ciagan", "mapped twice"),
    ],
)
def test_method_mapping_errors_exit_2(tmp_path, capsys, mapping, message):
    base = _table(tmp_path, CELEBA, {}, drop=["pixelate8"])
    assert _check_default(CELEBA, base, "--as", mapping) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_every_headline_metric_has_a_role():
    from anonbench.check import role

    for name in PROTOCOLS.names():
        for spec in PROTOCOLS.entry(name).factory.metrics:
            if spec.tolerance is not None:
                assert role(spec) in ("privacy", "utility", "realism"), (name, spec.name)
    lfw = {m.name: role(m) for m in PROTOCOLS.entry("lfw").factory.metrics}
    assert lfw["tar_far_1e-3"] == lfw["accuracy"] == "privacy" and lfw["face_kept"] == "utility"
    celeba = {m.name: role(m) for m in PROTOCOLS.entry("celeba").factory.metrics}
    assert celeba["fid"] == "realism" and celeba["detection_rate"] == "utility"
    assert celeba["faces_missed"] is None
