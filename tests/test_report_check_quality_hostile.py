"""`anonbench report`, `check`, `quality` and the CLI entry against the hostile-user probe's
cases (W12, W14-W18, W22-W26): no user file overwritten, no value silently dropped or shown as
a measurement it is not, no partial run shown as complete, one line and exit 2 for bad input,
and an unwritable stdout said in one line."""

from __future__ import annotations

import errno
import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from anonbench.check import holds
from anonbench.cli import build_parser, main

FIX = Path(__file__).parent / "fixtures"
LFW = FIX / "report_run" / "lfw"
TAR = ("original", "tar_far_1e-3")


def _err_line(capsys) -> str:
    """The one stderr line of a refused command (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("anonbench: error: ")
    return lines[0]


def _copy(tmp_path: Path, name: str = "run") -> Path:
    """A copy of the LFW fixture run folder."""
    d = tmp_path / name
    shutil.copytree(LFW, d)
    return d


def _set(folder: Path, method: str, metric: str, **cells: str) -> Path:
    """Sets cells of one method's metric rows in folder/results.csv (kept as text)."""
    df = pd.read_csv(folder / "results.csv", dtype=str, keep_default_na=False)
    sel = (df["method"] == method) & (df["metric"] == metric)
    assert sel.sum() >= 1
    for col, v in cells.items():
        df.loc[sel, col] = v
    df.to_csv(folder / "results.csv", index=False)
    return folder


# -- W12: report and check --markdown never overwrite a user's file ------------------------------


@pytest.mark.parametrize("flag, name", [("--html", "mypage.html"), ("--latex", "thesis.tex")])
def test_report_never_overwrites_a_users_file(tmp_path, capsys, flag, name):
    target = tmp_path / name
    target.write_text("my own work\n")
    assert main(["report", str(LFW), flag, str(target)]) == 2
    line = _err_line(capsys)
    assert f"{flag} {target}" in line and "never overwritten" in line
    assert target.read_text() == "my own work\n"


def test_report_regenerates_its_own_outputs(tmp_path, capsys):
    html, tex = tmp_path / "r.html", tmp_path / "t.tex"
    empty = tmp_path / "empty.html"
    empty.touch()  # nothing to lose
    for _ in range(2):
        assert main(["report", str(LFW), "--html", str(html), "--latex", str(tex)]) == 0
    assert main(["report", str(LFW), "--html", str(empty)]) == 0
    assert "<title>anonbench report" in empty.read_text()


def test_check_markdown_never_overwrites_a_users_file(tmp_path, capsys):
    md = tmp_path / "summary.md"
    md.write_text("my notes\n")
    assert main(["check", str(LFW), "--baseline", str(LFW), "--markdown", str(md)]) == 2
    assert "--markdown" in _err_line(capsys)
    assert md.read_text() == "my notes\n"
    # its own summaries (a pass, the error page of files that do not match) are rewritten
    own = tmp_path / "own.md"
    no_base = tmp_path / "no.csv"
    assert main(["check", str(LFW), "--baseline", str(no_base), "--markdown", str(own)]) == 2
    assert own.read_text().startswith("## ⚠️ anonbench check:")
    assert main(["check", str(LFW), "--baseline", str(LFW), "--markdown", str(own)]) == 0
    assert main(["check", str(LFW), "--baseline", str(LFW), "--markdown", str(own)]) == 0
    assert own.read_text().startswith("## ✅ anonbench check: pass")


# -- W14: report values that are not numbers, or infinite ---------------------------------------


def test_report_refuses_a_value_that_is_not_a_number(tmp_path, capsys):
    run = _set(_copy(tmp_path), "original", "faces_missed", value="banana")
    out = tmp_path / "r.tex"
    assert main(["report", str(run), "--latex", str(out)]) == 2
    line = _err_line(capsys)
    assert str(run / "results.csv") in line and "row " in line and "'banana'" in line
    assert "metric=faces_missed" in line
    assert not out.exists()


def test_an_infinite_value_is_shown_as_non_finite_and_warned(tmp_path, capsys):
    run = _set(_copy(tmp_path), *TAR, value="inf", std="0.0")
    _set(run, "original", "accuracy", value="nan")
    # a -inf of a lower-is-better metric is no "best" value
    _set(run, "mask", "tar_far_1e-3", value="-inf")
    tex = tmp_path / "t.tex"
    assert main(["report", str(run), "--latex", str(tex)]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 1 and "2 infinite value(s)" in warned[0]
    assert "original tar_far_1e-3[dlib-resnet]=inf" in warned[0]
    row = next(ln for ln in tex.read_text().splitlines() if "textit{original}" in ln)
    cells = [c.strip() for c in row.strip().removesuffix("\\\\").split("&")]
    assert cells[1] == "inf (non-finite)"  # no "± 0.000": not a measurement
    assert cells[2] == "--"  # NaN stays "not measured"
    mask = next(ln for ln in tex.read_text().splitlines() if ln.strip().startswith("mask"))
    assert "-inf (non-finite)" in mask and "textbf{-inf" not in mask


# -- W15: a run that did not finish ---------------------------------------------------------------


def _with_status(tmp_path: Path, status: str) -> Path:
    run = _copy(tmp_path)
    info = json.loads((run / "run.json").read_text())
    info["status"] = status
    info["config"]["methods"] = [*info["config"]["methods"], "blur9", "mine=folder:/x"]
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_report_of_an_interrupted_run_says_so(tmp_path, capsys):
    run = _with_status(tmp_path, "interrupted")
    html, tex = tmp_path / "r.html", tmp_path / "t.tex"
    assert main(["report", str(run), "--html", str(html), "--latex", str(tex)]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "did not finish" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert "'interrupted'" in warned[0] and warned[0].endswith("with no rows: blur9, mine")
    page = html.read_text()
    assert "did not finish" in page and "interrupted" in page
    assert "% WARNING: " in tex.read_text() and "interrupted" in tex.read_text()


def test_report_of_a_finished_run_has_no_status_warning(tmp_path, capsys):
    run = _with_status(tmp_path, "finished")
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    assert "did not finish" not in capsys.readouterr().err
    assert "did not finish" not in (tmp_path / "r.html").read_text()


# -- W16: a NaN and an infinite baseline value are treated alike --------------------------------


@pytest.mark.parametrize("value", ["nan", "", "inf", "-inf"])
def test_a_non_finite_baseline_value_is_not_compared(tmp_path, capsys, value):
    base = _set(_copy(tmp_path, "base"), *TAR, value=value)
    code = main(["check", str(LFW), "--baseline", str(base)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "REGRESSED" not in out
    assert any(ln.startswith("not compared  original") for ln in out.splitlines())
    assert "(1 more not compared: baseline NaN, blank or infinite)" in out


def test_a_non_finite_baseline_fails_only_on_a_new_infinity():
    inf, nan = math.inf, math.nan
    for base in (nan, inf, -inf):
        assert holds(base, 0.5, +1, 0.0) and holds(base, nan, -1, 0.0)
    assert holds(inf, inf, +1, 0.0) and not holds(inf, -inf, +1, 1e9)
    assert not holds(nan, inf, +1, 1e9)


# -- W17: an impossible baseline interval does not widen a ci tolerance --------------------------


def test_an_interval_wider_than_the_unit_is_refused(tmp_path, capsys):
    run = _set(_copy(tmp_path), *TAR, value="0.99")
    base = _set(_copy(tmp_path, "base"), *TAR, std="1e300")
    tol = ["--tolerance", "tar_far_1e-3=+2ci"]
    assert main(["check", str(run), "--baseline", str(base), *tol]) == 2
    line = _err_line(capsys)
    assert line.startswith(f"anonbench: error: baseline {base / 'results.csv'}: row ")
    assert "method=original metric=tar_far_1e-3" in line and "impossible for a fraction" in line


def test_a_ci_wider_than_the_unit_is_refused_under_the_preset(tmp_path, capsys):
    """The preset scales every headline metric's interval: a CI of [-1e300, 1e300] on a
    detection rate (percent) would let the run's rate fall to 0."""
    run, base = tmp_path / "run", tmp_path / "base"
    for d in (run, base):
        shutil.copytree(FIX / "report_run" / "celeba", d)
        df = pd.read_csv(d / "results.csv", dtype=str, keep_default_na=False)
        df[df["method"] != "chance"].to_csv(d / "results.csv", index=False)
    assert main(["check", str(run), "--baseline", str(base), "--preset", "ci"]) == 0
    _set(run, "ciagan", "detection_rate", value="0")
    _set(base, "ciagan", "detection_rate", ci_low="-1e300", ci_high="1e300")
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(base), "--preset", "ci"]) == 2
    line = _err_line(capsys)
    assert "method=ciagan metric=detection_rate" in line and "impossible for a percent" in line


def test_a_possible_or_unused_interval_is_not_refused(tmp_path, capsys):
    run = _set(_copy(tmp_path), *TAR, value="0.99")
    huge = _set(_copy(tmp_path, "huge"), *TAR, std="1e300")
    # a fixed tolerance never reads the interval: the rise of 0.03 regresses
    assert main(["check", str(run), "--baseline", str(huge)]) == 1
    wide = _set(_copy(tmp_path, "wide"), *TAR, std="0.6")  # possible for a fraction
    tol = ["--tolerance", "tar_far_1e-3=+1ci"]
    assert main(["check", str(run), "--baseline", str(wide), *tol]) == 0
    assert "Traceback" not in capsys.readouterr().err


# -- W18: --markdown on the baseline names the baseline ----------------------------------------


def test_markdown_on_the_baseline_file_names_the_baseline(tmp_path, capsys):
    base = tmp_path / "base.csv"
    shutil.copy(LFW / "results.csv", base)
    before = base.read_bytes()
    assert main(["check", str(LFW), "--baseline", str(base), "--markdown", str(base)]) == 2
    line = _err_line(capsys)
    assert f"is the --baseline file {base}" in line and "run's own" not in line
    assert base.read_bytes() == before


# -- W22-W25: quality ---------------------------------------------------------------------------


@pytest.fixture
def no_scoring(monkeypatch):
    """anonbench.quality.score recorded, never run: (method, ckpt, root, out) of each call."""
    import anonbench.quality as q

    calls: list[tuple] = []

    def score(method, ckpt, root, out, *rest):
        calls.append((method, ckpt, root, out))
        return q.QualityResult(checkpoint=ckpt or "(shipped weights)")

    monkeypatch.setattr(q, "score", score)
    return calls


def test_quality_rank_on_a_malformed_file(tmp_path, capsys):
    (tmp_path / "quality.csv").write_text("garbage,,\n1,2\n")
    assert main(["quality", "--rank", str(tmp_path)]) == 2
    line = _err_line(capsys)
    assert str(tmp_path / "quality.csv") in line and "missing columns checkpoint" in line
    from anonbench.quality import COLUMNS

    rows = [",".join(COLUMNS), "a.pt,1,,0.1,0.2,abc,,,,,,,"]
    (tmp_path / "quality.csv").write_text("\n".join(rows) + "\n")
    assert main(["quality", "--rank", str(tmp_path)]) == 2
    assert "line 2: det_retinaface 'abc' is not a number" in _err_line(capsys)
    rows[1] = "a.pt,1,,0.1,0.2,50,,,,,,,"
    (tmp_path / "quality.csv").write_text("\n".join(rows) + "\n")
    assert main(["quality", "--rank", str(tmp_path)]) == 0
    assert "| a.pt | 1 |" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["ciagan", "blur9"])
def test_quality_data_root_missing_or_a_file(tmp_path, capsys, no_scoring, method):
    missing = tmp_path / "nodata"
    assert main(["quality", "--method", method, "--data-root", str(missing)]) == 2
    assert _err_line(capsys) == f"anonbench: error: --data-root {missing}: not found"
    afile = tmp_path / "f"
    afile.write_text("x")
    assert main(["quality", "--method", method, "--data-root", str(afile)]) == 2
    assert "not a folder" in _err_line(capsys)
    assert no_scoring == []


@pytest.mark.parametrize("where", ["", "img_align_celeba"])
def test_quality_log_to_in_the_data_root_is_refused(tmp_path, capsys, no_scoring, where):
    data = tmp_path / "data"
    shutil.copytree(FIX / "celeba_tiny", data)
    before = sorted(p.name for p in data.rglob("*"))
    log = data / where if where else data
    argv = ["quality", "--method", "blur9", "--data-root", str(data), "--log-to", str(log)]
    assert main([*argv, "--out", str(tmp_path / "q")]) == 2
    line = _err_line(capsys)
    assert line.startswith(f"anonbench: error: --log-to {log} ")
    assert f"the data root {data}: inputs are never written" in line
    assert sorted(p.name for p in data.rglob("*")) == before
    assert no_scoring == []


def test_quality_out_default_is_the_one_the_help_names(tmp_path, capsys, monkeypatch, no_scoring):
    from anonbench.commands.quality import DEFAULT_OUT

    with pytest.raises(SystemExit):
        build_parser().parse_args(["quality", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "QUALITY_DIR" not in help_text and f"default: ./{DEFAULT_OUT}," in help_text
    monkeypatch.chdir(tmp_path)
    data = FIX / "celeba_tiny"
    assert main(["quality", "--method", "blur9", "--data-root", str(data)]) == 0
    assert no_scoring[0][3] == Path(DEFAULT_OUT) / "blur9-shipped"


# -- W26: stdout that cannot be written -----------------------------------------------------------


class _Unwritable:
    """A stdout whose writes fail like a full disk (or a closed pipe)."""

    def __init__(self, error: type[OSError] = OSError) -> None:
        self.error = error

    def write(self, text: str) -> int:
        raise self.error(errno.ENOSPC if self.error is OSError else errno.EPIPE, "gone")

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("argv", [["ls", "methods"], ["check", str(LFW), "--baseline", str(LFW)]])
def test_an_unwritable_stdout_is_one_line(capsys, monkeypatch, argv):
    monkeypatch.setattr(sys, "stdout", _Unwritable())
    assert main(argv) == 1
    assert _err_line(capsys) == "anonbench: error: cannot write output: gone"
    assert isinstance(sys.stdout, _Unwritable)  # main put it back


def test_a_closed_pipe_is_left_to_the_console_entry(monkeypatch):
    """`anonbench ls | head -1`: console_main's quiet exit 1 needs the BrokenPipeError."""
    monkeypatch.setattr(sys, "stdout", _Unwritable(BrokenPipeError))
    with pytest.raises(BrokenPipeError):
        main(["ls", "methods"])


def test_stdout_on_a_full_disk_from_the_console(tmp_path):
    import subprocess

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "anonbench", "ls", "methods"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert p.returncode == 1
    assert p.stderr == "anonbench: error: cannot write output: No space left on device\n"
