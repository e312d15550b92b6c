"""`anonbench report` against hostile inputs: infinite values (plots leave them out, the table
shows them), one path for two outputs, outputs onto another run folder's own files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.reports import plots

FIX = Path(__file__).parent / "fixtures" / "report_run"
LFW, CELEBA = FIX / "lfw", FIX / "celeba"


def _run_with(tmp_path: Path, src: Path, method: str, metric: str, value: str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(src, run)
    df = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    sel = (df["method"] == method) & (df["metric"] == metric)
    assert sel.sum() >= 1
    df.loc[sel, "value"] = value
    df.to_csv(run / "results.csv", index=False)
    return run


# -- 4. non-finite values: left out of the plots, shown in the table -----------------------------


@pytest.mark.parametrize(
    "src, method, metric, value",
    [
        (LFW, "original", "tar_far_1e-3", "inf"),  # the scatter's y
        (LFW, "mask", "embedder_no_face", "-inf"),  # the scatter's (derived) x
        (CELEBA, "chance", "recall_at_1", "inf"),  # the scatter's chance line
        (CELEBA, "ciagan", "fid", "inf"),  # the FID bars
    ],
)
def test_report_with_an_infinite_value_renders(tmp_path, capsys, src, method, metric, value):
    run = _run_with(tmp_path, src, method, metric, value)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "left out of the plots" in ln]
    assert len(lines) == 1
    assert lines[0].startswith("warning: 1 non-finite values were left out of the plots")
    # and one line for the table, which shows it as non-finite (hostile-input probe W14)
    table = [ln for ln in err.splitlines() if "shown as non-finite in the tables" in ln]
    assert len(table) == 1 and f"={value}" in table[0]
    html = out.read_text()
    assert f">{value} (non-finite)" in html  # the table shows it, marked as no measurement
    assert "image/png" in html  # the figures are still drawn


def test_scatter_png_leaves_out_non_finite_points():
    inf = float("inf")
    pts = [
        plots.Point("a", "r", 50.0, 0.5, y_lo=-inf, y_hi=inf),
        plots.Point("b", "r", inf, 0.2),
        plots.Point("c", "r", 80.0, -inf),
    ]
    png = plots.scatter_png(pts, {}, "x", "y", chance={"r": inf})
    assert png.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no finite point"):
        plots.scatter_png(pts[1:], {}, "x", "y")


# -- 5. outputs never overwrite each other or a run's files --------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["same", "dots", "hardlink", "symlink"])
def test_html_and_latex_on_one_file_are_refused(tmp_path, capsys, how):
    html = tmp_path / "r.out"
    latex = {"same": html, "dots": tmp_path / "x" / ".." / "r.out"}.get(how)
    if latex is None:
        html.write_text("keep")
        latex = tmp_path / "other.out"
        if how == "hardlink":
            latex.hardlink_to(html)
        else:
            latex.symlink_to(html)
    before = _snapshot(tmp_path)
    assert main(["report", str(LFW), "--html", str(html), "--latex", str(latex)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "are the same file" in err
    assert _snapshot(tmp_path) == before  # nothing written


@pytest.mark.parametrize(
    "flag, target",
    [
        ("--html", "other/results.csv"),
        ("--latex", "other/run.json"),
        ("--html", "elsewhere/Results.CSV"),
        ("--latex", "other/scores/lfw/x.tex"),
        ("--html", "other/examples/r.html"),
    ],
)
def test_outputs_never_replace_another_runs_files(tmp_path, capsys, flag, target):
    other = tmp_path / "other"  # a run folder not given to the command
    shutil.copytree(LFW, other)
    (tmp_path / "elsewhere").mkdir()
    before = _snapshot(tmp_path)
    assert main(["report", str(CELEBA), flag, str(tmp_path / target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "inputs are never written" in err
    assert _snapshot(tmp_path) == before


def test_check_markdown_never_replaces_another_runs_files(tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(LFW, other)
    before = _snapshot(other)
    md = other / "results.csv"
    assert main(["check", str(LFW), "--baseline", str(LFW), "--markdown", str(md)]) == 2
    assert "inputs are never written" in capsys.readouterr().err
    assert _snapshot(other) == before


def test_a_report_beside_a_runs_files_is_still_allowed(tmp_path):
    """`anonbench run` writes RUN/report.html itself: a report there is no run file."""
    other = tmp_path / "other"
    shutil.copytree(LFW, other)
    assert main(["report", str(other), "--html", str(other / "report.html")]) == 0
    assert main(["report", str(CELEBA), "--latex", str(other / "tables.tex")]) == 0


def test_a_truncated_results_csv_is_said(tmp_path, capsys):
    """A results.csv cut mid-row was read without a word (pandas fills the tail with NaN)."""
    from anonbench.results import read_results

    src = Path(__file__).parent / "fixtures" / "report_run" / "lfw" / "results.csv"
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(src, run / "results.csv")
    read_results(run)
    assert "truncated" not in capsys.readouterr().err  # a whole file: nothing said
    raw = src.read_bytes()
    last = raw.rstrip(b"\n").rsplit(b"\n", 1)[1]
    (run / "results.csv").write_bytes(raw[: len(raw) - len(last) // 2 - 1])
    read_results(run)
    assert "ends mid-line: the file may be truncated" in capsys.readouterr().err
    cut = raw.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n" + last.split(b",")[0] + b",lfw\n"
    (run / "results.csv").write_bytes(cut)
    read_results(run)
    assert "incomplete (no method/protocol/metric/evaluator/n)" in capsys.readouterr().err
