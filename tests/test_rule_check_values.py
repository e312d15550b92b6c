"""Rule 4 of issue 20: non-finite values fail `check` unless both sides are the same non-finite
value; a NaN or +-inf baseline follows the documented rule (nothing to regress from: NaN or
any finite run value holds, a new infinity does not); metric directions and tolerances come from the
installed protocol, run.json's copy only when the protocol is not installed (with a warning).

Enforced in one place: :func:`anonbench.check.holds` (values) and
:func:`anonbench.check.metric_specs` (specs). The cases are generated: every pair of baseline
and run values from a set of finite and non-finite numbers, in both directions, through the
function, then through the command line with and without ``--preset ci``.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.check import holds
from anonbench.cli import main

CELEBA = Path(__file__).parent / "fixtures" / "report_run" / "celeba"
INF, NAN = math.inf, math.nan
BASE_VALUES = [50.0, INF, -INF, NAN]
RUN_VALUES = [50.0, 50.5, 49.5, 60.0, 40.0, INF, -INF, NAN]


def expected(base: float, cur: float, worse: int, amount: float) -> bool:
    """The rule as the issue states it, case by case (not the implementation's arithmetic)."""
    if not math.isfinite(base):  # NaN and +-inf alike: nothing to regress from (probe W16)
        return math.isnan(cur) or math.isfinite(cur) or base == cur
    if math.isinf(cur) or math.isnan(cur):
        return False
    change = cur - base
    return abs(change) <= amount if worse == 0 else change * worse <= amount


def _value_cases() -> list[tuple[float, float, int]]:
    return list(itertools.product(BASE_VALUES, RUN_VALUES, (+1, -1, 0)))


@pytest.mark.parametrize("base, cur, worse", _value_cases())
def test_holds_follows_the_rule(base, cur, worse):
    assert holds(base, cur, worse, 1.0) is expected(base, cur, worse, 1.0)


def test_the_generator_covers_the_listed_cases():
    cases = _value_cases()
    assert len(cases) == 96
    # +-inf in the run against a finite baseline, both directions: never a pass
    for cur in (INF, -INF):
        for worse in (+1, -1, 0):
            assert not holds(50.0, cur, worse, 1e9)
    assert holds(NAN, 50.0, +1, 0.0)  # a value appearing where the baseline had none
    assert holds(NAN, NAN, +1, 0.0) and not holds(50.0, NAN, +1, 1e9)
    assert holds(INF, INF, +1, 0.0) and not holds(INF, -INF, -1, 1e9)


# -- through the command line -------------------------------------------------------------------

# (method, metric, evaluator): a lower-is-better privacy row and a higher-is-better utility row
ROWS = {
    "recall": ("ciagan", "recall_at_1", "pnca"),
    "detection": ("ciagan", "detection_rate", "retinaface"),
}


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if v == INF else "-inf" if v == -INF else str(v))


def _folder(tmp_path: Path, name: str, row: tuple[str, str, str], value: float) -> Path:
    """A copy of the celeba fixture run (without 'chance') with one row's value set."""
    d = tmp_path / name
    d.mkdir()
    shutil.copy(CELEBA / "run.json", d / "run.json")
    df = pd.read_csv(CELEBA / "results.csv", dtype=str)
    df = df[df["method"] != "chance"]
    sel = (df["method"] == row[0]) & (df["metric"] == row[1]) & (df["evaluator"] == row[2])
    assert sel.sum() == 1
    df.loc[sel, "value"] = _fmt(value)
    df.loc[sel, ["ci_low", "ci_high"]] = ""  # the preset's interval: the default (floor)
    df.to_csv(d / "results.csv", index=False)
    return d


def _cli_cases() -> list[tuple[str, float, float, bool]]:
    out = []
    for which, base, cur, preset in itertools.product(
        ROWS, [50.0, INF, -INF, NAN], [INF, -INF, NAN, 50.0], (False, True)
    ):
        out.append((which, base, cur, preset))
    return out


@pytest.mark.parametrize("which, base, cur, preset", _cli_cases())
def test_check_exit_code_on_non_finite_values(tmp_path, capsys, which, base, cur, preset):
    row = ROWS[which]
    run = _folder(tmp_path, "run", row, cur)
    baseline = _folder(tmp_path, "base", row, base)
    extra = ["--preset", "ci"] if preset else []
    code = main(["check", str(run), "--baseline", str(baseline / "results.csv"), *extra])
    out, err = capsys.readouterr()
    worse = -1 if which == "detection" else +1
    want = 0 if expected(base, cur, worse, 1.0) else 1
    assert code == want, (out, err)
    assert "Traceback" not in err
    if want == 1:
        assert "REGRESSED" in out


# -- where directions and tolerances come from --------------------------------------------------


def _edit_run_json(folder: Path, metric: str, **fields: object) -> None:
    info = json.loads((folder / "run.json").read_text())
    for m in info["protocol"]["metrics"]:
        if m["name"] == metric:
            m.update(fields)
    (folder / "run.json").write_text(json.dumps(info))


SPEC_EDITS = [
    {"higher_is_better": True},  # flips recall_at_1: a rise would read as a gain
    {"tolerance": 1000.0},  # widens the gate
    {"higher_is_better": None, "unit": "count"},  # makes it a count, unchecked
    {"higher_is_better": True, "tolerance": 1000.0},
]


@pytest.mark.parametrize("where", ["run", "baseline", "both"])
@pytest.mark.parametrize("edit", SPEC_EDITS, ids=lambda e: ",".join(e))
def test_run_json_cannot_turn_a_regression_into_a_pass(tmp_path, capsys, where, edit):
    row = ROWS["recall"]
    run = _folder(tmp_path, "run", row, 60.0)  # recall_at_1 (lower is better) rises by 10
    baseline = _folder(tmp_path, "base", row, 50.0)
    for folder in {"run": [run], "baseline": [baseline], "both": [run, baseline]}[where]:
        _edit_run_json(folder, "recall_at_1", **edit)
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "regressed: recall_at_1 (1 of" in out and "beyond default +1)" in out
    assert "warning" not in out  # the protocol is installed: run.json is not read for specs


def test_not_installed_protocol_uses_run_json_with_a_warning(tmp_path, capsys):
    row = ROWS["recall"]
    run = _folder(tmp_path, "run", row, 60.0)
    baseline = _folder(tmp_path, "base", row, 50.0)
    for folder in (run, baseline):
        df = pd.read_csv(folder / "results.csv", dtype=str)
        df["protocol"] = "plugin-celeba"
        df.to_csv(folder / "results.csv", index=False)
        info = json.loads((folder / "run.json").read_text())
        info["protocol"]["name"] = "plugin-celeba"
        (folder / "run.json").write_text(json.dumps(info))
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "warning: protocol 'plugin-celeba' is not installed here" in out
    assert "come from run.json" in out
    # the run's run.json is then what declares it: flipped there, the rise reads as a gain
    _edit_run_json(run, "recall_at_1", higher_is_better=True)
    assert main(["check", str(run), "--baseline", str(baseline)]) == 0
    assert "warning: protocol 'plugin-celeba'" in capsys.readouterr().out


@pytest.mark.parametrize("installed", [True, False])
def test_reports_read_directions_the_same_way(tmp_path, installed):
    """The reports (best value, arrows) take MetricSpecs from the same place as `check`."""
    from anonbench.reports.runs import load_runs

    run = _folder(tmp_path, "run", ROWS["recall"], 50.0)
    proto = "celeba" if installed else "plugin-celeba"
    if not installed:
        df = pd.read_csv(run / "results.csv", dtype=str)
        df["protocol"] = proto
        df.to_csv(run / "results.csv", index=False)
        info = json.loads((run / "run.json").read_text())
        info["protocol"]["name"] = proto
        (run / "run.json").write_text(json.dumps(info))
    _edit_run_json(run, "recall_at_1", higher_is_better=True)
    bundle = load_runs([run])
    assert bundle.spec(proto, "recall_at_1").higher_is_better is (not installed)
    warned = [w for w in bundle.warnings if "come from run.json" in w]
    assert bool(warned) is (not installed)
