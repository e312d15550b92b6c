"""The report's summary (reports/summary.py): shown first when a report holds several
protocols, with each section's first privacy and first utility/realism column copied from the
section; absent for one section. A run file's report names its command as `--config FILE`."""

from __future__ import annotations

import re
from pathlib import Path

from anonbench import runfile
from anonbench.api import MetricSpec
from anonbench.reports.summary import build_summary, headline_columns
from anonbench.reports.tables import Cell, Column, WideTable

FIXTURES = Path(__file__).parent / "fixtures"


def _spec(name: str, role: str | None, higher: bool | None = False) -> MetricSpec:
    return MetricSpec(name, higher, f"{name} described", role=role)


def _table(protocol: str, cols: list[tuple[str, str | None]], methods: list[str]) -> WideTable:
    columns = [Column(m, "ev", _spec(m, role)) for m, role in cols]
    cells = {
        (m, i): Cell(value=float(k * 10 + i), text=f"{k * 10 + i}")
        for k, m in enumerate(methods)
        for i in range(len(columns))
    }
    return WideTable(protocol, "1", "data", "test", columns, methods, cells)


def test_headlines_are_the_first_privacy_and_first_utility_or_realism_columns():
    t = _table(
        "p",
        [("n", "count"), ("fid", "realism"), ("r1", "privacy"), ("r2", "privacy")],
        ["a", "b"],
    )
    assert headline_columns(t) == [2, 1]  # privacy first, then utility/realism
    assert headline_columns(_table("q", [("x", None), ("n", "count")], ["a"])) == []


def test_summary_needs_two_sections_and_copies_their_cells():
    a = _table("lfw", [("tar", "privacy"), ("kept", "utility")], ["original", "blur17"])
    b = _table("celeba", [("r1", "privacy"), ("fid", "realism")], ["blur17", "ciagan"])
    assert build_summary([a]) is None
    s = build_summary([a, b])
    assert s is not None
    assert s.methods == ["original", "blur17", "ciagan"]
    assert [(c.table.protocol, c.column.metric) for c in s.columns] == [
        ("lfw", "tar"),
        ("lfw", "kept"),
        ("celeba", "r1"),
        ("celeba", "fid"),
    ]
    assert s.columns[2].cell("blur17") is b.cell("blur17", 0)  # the section's own cell
    assert s.columns[0].cell("ciagan") is None  # not in that section


def test_run_file_report_has_summary_first_and_its_config_command(tmp_path):
    text = f"""\
out = "{tmp_path / "run"}"
cache_dir = "{tmp_path / "cache"}"
seed = 0
workers = 1
methods = ["original", "blur17"]

[evaluators]
detectors = ["dlib-hog"]
landmarkers = ""

[protocols.lfw]
data = "lfw:{FIXTURES / "lfw_tiny"}"
folds = 1

[protocols.celeba]
data = "celeba:{FIXTURES / "celeba_small"}"
recognizers = ["dlib-resnet"]
max_per_identity = 2
pnca_epochs = 1
fid = false
kid = false
"""
    p = tmp_path / "exp.toml"
    p.write_text(text, encoding="utf-8")
    out = runfile.run_file(runfile.load(p), quiet=True)
    html = (out / "report.html").read_text()
    summary = html.find('id="summary"')
    assert summary != -1, "no summary section"
    sections = [m.start() for m in re.finditer(r'<section class="card" id="', html)]
    assert sections[0] == html.find('<section class="card" id="summary"')
    assert f"anonbench run --config {p}" in html
    assert "config.run_file" in html
    body = html[summary : sections[1]]
    assert "blur17" in body and "original" in body
