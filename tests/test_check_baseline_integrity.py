"""`anonbench check` against hostile results files: baselines with no usable value, duplicate
keys, impossible values (each a one-line error or a visible non-pass, never a quiet PASS)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.check import CheckResult, CheckRow, _nothing_compared, summary_lines
from anonbench.cli import main

LFW = Path(__file__).parent / "fixtures" / "report_run" / "lfw"
TAR = ("original", "tar_far_1e-3")


def _copy(tmp_path: Path, name: str) -> Path:
    """A copy of the LFW fixture run's results.csv and run.json."""
    d = tmp_path / name
    d.mkdir()
    for f in ("results.csv", "run.json"):
        shutil.copy(LFW / f, d / f)
    return d


def _edit(folder: Path, edit) -> Path:
    df = pd.read_csv(folder / "results.csv", dtype=str, keep_default_na=False)
    edit(df).to_csv(folder / "results.csv", index=False)
    return folder


def _row(df: pd.DataFrame, method: str, metric: str) -> pd.Series:
    return (df["method"] == method) & (df["metric"] == metric)


def _set(method: str, metric: str, value: str):
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[_row(df, method, metric), "value"] = value
        return df

    return edit


def _check(run: Path, base: Path, capsys) -> tuple[int, str, str]:
    code = main(["check", str(run), "--baseline", str(base)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# -- 1. a baseline with no usable value gates nothing: never a PASS -----------------------------


@pytest.mark.parametrize("value", ["", "nan", "inf", "-inf"])
def test_all_unusable_baseline_values_are_an_error(tmp_path, capsys, value):
    run = _copy(tmp_path, "run")
    base = _edit(_copy(tmp_path, "base"), lambda df: df.assign(value=value))
    code, out, err = _check(run, base, capsys)
    assert code == 2 and "PASS" not in out, (out, err)
    line = err.strip()
    assert "\n" not in line and line.startswith("anonbench: error: baseline ")
    assert "results.csv" in line and "no value to compare" in line
    assert "row 1: method=original metric=tar_far_1e-3" in line


def test_the_example_row_is_the_checked_key_not_a_namesake():
    """The row number names the checked row, not an earlier row of the same method, metric
    and evaluator in another protocol, dataset or split of the baseline."""
    nan = float("nan")
    row = CheckRow("m", "lfw", "d", "s", "tar_far_1e-3", "e", nan, 0.5, "+0.01", True, nan)
    row.baseline_method = "m"
    namesake = {"method": "m", "protocol": "lfw", "dataset": "other", "split": "s"}
    checked = {**namesake, "dataset": "d"}
    base = pd.DataFrame(
        [{**r, "metric": "tar_far_1e-3", "evaluator": "e"} for r in (namesake, checked)]
    )
    line = _nothing_compared(CheckResult(rows=[row]), base, Path("base/results.csv"))
    assert "(e.g. row 2: method=m metric=tar_far_1e-3" in line, line


def test_one_nan_baseline_value_is_not_counted_as_within_tolerance(tmp_path, capsys):
    run = _copy(tmp_path, "run")
    base = _edit(_copy(tmp_path, "base"), _set(*TAR, ""))
    code, out, _ = _check(run, base, capsys)
    assert code == 0
    n = len(out.split("------\n", 1)[1].split("\n\n")[0].splitlines())  # table rows
    assert f"PASS: all {n - 1} checked values within tolerance (1 more not compared" in out
    assert any(ln.startswith("not compared  original") for ln in out.splitlines())


def test_a_result_with_only_uncompared_rows_is_not_ok():
    """Through the Python API too: no compared row is no pass, and says so."""
    nan = float("nan")
    row = CheckRow("m", "lfw", "d", "s", "tar_far_1e-3", "e", nan, 0.5, "+0.01", True, nan)
    row.compared = False  # set apart: the old CheckRow takes no such argument
    res = CheckResult(rows=[row])
    assert not res.ok and res.exit_code == 1
    assert "within tolerance" not in summary_lines(res)[0]


# -- 2. duplicate keys ---------------------------------------------------------------------------


def _duplicate(method: str, metric: str, value: str, *, first: bool):
    """Adds a copy of a row with `value`, just before (first) or just after the original."""

    def edit(df: pd.DataFrame) -> pd.DataFrame:
        sel = _row(df, method, metric)
        extra = df[sel].assign(value=value)
        i = df.index[sel][0]
        if first:
            return pd.concat([df.loc[: i - 1], extra, df.loc[i:]], ignore_index=True)
        return pd.concat([df.loc[:i], extra, df.loc[i + 1 :]], ignore_index=True)

    return edit


@pytest.mark.parametrize("where", ["run", "base"])
@pytest.mark.parametrize("first", [True, False])
def test_duplicate_keys_with_different_values_are_an_error(tmp_path, capsys, where, first):
    run, base = _copy(tmp_path, "run"), _copy(tmp_path, "base")
    # a bad row beside the good one: the good one must not hide it, in either order
    _edit(run if where == "run" else base, _duplicate(*TAR, "0.0", first=first))
    code, out, err = _check(run, base, capsys)
    assert code == 2 and "PASS" not in out, (out, err)
    line = err.strip()
    assert "\n" not in line and str(tmp_path / where / "results.csv") in line
    assert "method=original protocol=lfw" in line and "metric=tar_far_1e-3" in line
    assert "same key" in line


def test_identical_duplicate_rows_are_kept_once(tmp_path, capsys):
    run, base = _copy(tmp_path, "run"), _copy(tmp_path, "base")
    _edit(run, _duplicate(*TAR, "0.96", first=False))  # the same row twice (value 0.96 as is)
    code, out, _ = _check(run, base, capsys)
    clean, clean_out, _ = _check(base, base, capsys)
    assert code == clean == 0
    verdict = [ln for ln in out.splitlines() if ln.startswith("PASS")]
    assert verdict == [ln for ln in clean_out.splitlines() if ln.startswith("PASS")]


# -- 3. impossible values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, value, valid",
    [
        ("tar_far_1e-3", "-0.5", "[0, 1]"),
        ("accuracy", "1.5", "[0, 1]"),
        ("faces_missed", "-1", ">= 0"),
    ],
)
def test_impossible_run_values_are_an_error(tmp_path, capsys, metric, value, valid):
    run = _edit(_copy(tmp_path, "run"), _set("original", metric, value))
    code, out, err = _check(run, _copy(tmp_path, "base"), capsys)
    assert code == 2 and "PASS" not in out, (out, err)
    line = err.strip()
    assert "\n" not in line and str(tmp_path / "run" / "results.csv") in line
    assert f"method=original metric={metric}" in line and f"valid: {valid}" in line


def test_impossible_percent_in_the_run(tmp_path, capsys):
    celeba = LFW.parent / "celeba"
    run, base = tmp_path / "run", tmp_path / "base"
    shutil.copytree(celeba, run)
    shutil.copytree(celeba, base)
    _edit(run, _set("ciagan", "detection_rate", "101"))
    code, out, err = _check(run, base, capsys)
    assert code == 2 and "PASS" not in out
    assert "method=ciagan metric=detection_rate" in err and "valid: [0, 100]" in err


def test_impossible_baseline_values_are_not_refused(tmp_path, capsys):
    """Only the run is held to the range: a hand-made baseline may sit past a bound (a
    what-if gate); a run's TAR of 0.96 against a baseline of 1.5 is then simply a gain."""
    base = _edit(_copy(tmp_path, "base"), _set(*TAR, "1.5"))
    code, _, _ = _check(_copy(tmp_path, "run"), base, capsys)
    assert code == 0
