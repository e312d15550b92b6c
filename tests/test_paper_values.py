"""The paper's published numbers: one data file, checked against the paper text and the
registries, and shown in the report for every protocol of the paper run file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.reports import paper

PAPER_TEXT = Path(__file__).resolve().parents[1].parent / "shared/paper/ciagan_cvpr2020.txt"
FIX = Path(__file__).parent / "fixtures" / "report_run"


def test_the_data_file_is_the_one_source_and_ships_with_the_package():
    assert paper.DATA_FILE.is_file() and paper.DATA_FILE.suffix == ".toml"
    toml = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert '"anonbench.reports" = ["published/*.toml"]' in toml.read_text()
    tables = {v.table for v in paper.paper_values()}
    assert {"Table 1", "Table 2", "Table 3", "Table 4", "Section 4.4 (text)"} <= tables


def test_every_value_names_known_methods_metrics_protocols_and_evaluators():
    from anonbench import registry
    from anonbench.metrics.catalog import CATALOG

    methods = set(registry.METHODS.names())
    protocols = set(registry.PROTOCOLS.names())
    evaluators = {n for r in (registry.DETECTORS, registry.EMBEDDERS) for n in r.names()}
    for v in paper.paper_values():
        assert v.method is None or v.method in methods, v
        assert v.protocol in protocols and v.metric in CATALOG, v
        assert v.evaluator is None or v.evaluator in evaluators, v
        assert v.source.startswith(v.table) and "lines" in v.source, v
    for s in paper.statements_for("faceswap"):
        assert s.protocol in protocols and s.text and "lines" in s.source


def _numbers(text: str) -> set[float]:
    return {float(x) for x in re.findall(r"\d+\.\d+|\d+", text)}


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="../shared/paper is not on this machine")
def test_every_value_is_printed_at_the_lines_it_cites():
    # an independent reading: each number must appear among the numbers of its cited lines
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    for v in paper.paper_values():
        m = re.search(r"lines (\d+)-(\d+)", v.source)
        assert m, v
        cited = "\n".join(lines[int(m[1]) - 1 : int(m[2])])
        found = _numbers(cited)
        assert v.value in found, (v.table, v.row, v.value)
        assert v.std is None or v.std in found, (v.table, v.row, v.std)
        if v.table.startswith("Table"):  # a table's row label is printed beside its numbers
            assert v.row.split(" (")[0].split(" [")[0] in cited, (v.table, v.row)


def _run_folder(tmp_path: Path, protocol: str) -> Path:
    """The celeba report fixture, relabelled as another protocol of the paper run."""
    d = tmp_path / protocol
    shutil.copytree(FIX / "celeba", d)
    df = pd.read_csv(d / "results.csv")
    df["protocol"] = protocol
    df.to_csv(d / "results.csv", index=False)
    info = json.loads((d / "run.json").read_text())
    info["protocol"]["name"] = protocol
    (d / "run.json").write_text(json.dumps(info))
    return d


def test_report_shows_table_1_sources_and_the_faceswap_statement(tmp_path):
    from anonbench.reports.html import write_report

    out = tmp_path / "report.html"
    write_report([FIX / "celeba", _run_folder(tmp_path, "faceswap")], out)
    html = out.read_text(encoding="utf-8")
    # Table 1's ciagan row beside Table 2's, each published table with its source lines
    assert "paper, Table 1" in html and "paper, Table 2" in html and "paper, Table 4" in html
    assert "Source: Table 2, section 4.4" in html and "lines 582-594 of the paper text" in html
    # faceswap has no published number: the paper's statement and its source instead
    assert "Published: no number for this protocol" in html
    assert "random guesser" in html and "lines 659-673" in html


@pytest.mark.parametrize("only", [None, ("original", "ciagan")])
def test_fid_figure_uses_the_baseline_table_not_table_1(only, tmp_path, monkeypatch):
    """Table 1 repeats CIAGAN's FID rounded (2.1); the figure takes Table 4's 2.08, also for
    a run whose only paper method is ciagan (Table 1 and Table 4 then tie on our methods)."""
    from anonbench.reports import html as html_mod
    from anonbench.reports import plots
    from anonbench.reports.runs import load_runs
    from anonbench.reports.tables import build_tables

    seen, captions = {}, []

    def fake_png(ours, paper_vals, colors):
        seen.update(paper_vals)
        return b"png"

    monkeypatch.setattr(plots, "fid_png", fake_png)
    run = FIX / "celeba"
    if only:
        run = tmp_path / "celeba"
        shutil.copytree(FIX / "celeba", run)
        df = pd.read_csv(run / "results.csv")
        df[df["method"].isin(only)].to_csv(run / "results.csv", index=False)
    t = next(t for t in build_tables(load_runs([run])) if t.protocol == "celeba")
    fig = html_mod._fid_figure(t, {m: "#000" for m in t.methods})
    captions.append(fig.caption)
    table4 = {
        p.method: p.value
        for p in paper.for_protocol("celeba")
        if p.table == "Table 4" and p.metric == "fid"
    }
    assert seen and all(v == table4[m] for m, v in seen.items())
    assert "ciagan" in seen and "Table 4" in captions[0]
