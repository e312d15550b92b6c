"""Reports rendered from the fixture run folders (tests/fixtures/report_run/{lfw,celeba}).

lfw: a real `anonbench run` of original, blur17, mask on the embedded sample (scores, 2 example
faces). celeba: hand-written rows in the shape of the CelebA protocol (detection rate and
Recall@1 per evaluator with bootstrap intervals, a chance row, FID), including a method whose
name is markup, which must come out escaped.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anonbench.cli import main

FIX = Path(__file__).parent / "fixtures" / "report_run"
LFW, CELEBA = FIX / "lfw", FIX / "celeba"
EVIL = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> str:
    from anonbench.reports.html import write_report

    out = tmp_path_factory.mktemp("rep") / "report.html"
    assert write_report([LFW, CELEBA], out) == out
    return out.read_text(encoding="utf-8")


def _images(html: str, mime: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(rf'src="data:{re.escape(mime)};base64,([A-Za-z0-9+/=]+)"', html)
    ]


def test_markup_in_names_is_escaped(html):
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_self_contained(html):
    # every resource is inline, and the CSP forbids fetching anything
    srcs = re.findall(r'(?:src|href)="([^"#]*)"', html)
    assert srcs and all(s.startswith("data:") for s in srcs), srcs
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html


def test_tables(html):
    assert html.count('<table class="res"') >= 2
    # both protocols, headers with arrows, evaluators named
    for s in ["TAR@FAR=1e-3", "Accuracy", "Detection (%)", "Recall@1 (%)", "FID", "retinaface"]:
        assert s in html
    assert 'TAR@FAR=1e-3 <span class="arrow">↓</span>' in html
    assert 'Detection (%) <span class="arrow">↑</span>' in html
    # intervals: std over folds for LFW, bootstrap intervals for CelebA; counts as value/n
    assert "± 0.030" in html and "[98.7, 100.0]" in html and "187/187" in html
    # best per column: mask has the lowest TAR, ciagan the highest detection rate
    assert re.search(r'<td class="best"[^>]*>0\.030', html)
    assert re.search(r'<td class="best"[^>]*>99\.9', html)
    # the reference row is never "best" even though its detection rate is 100
    assert not re.search(r'<td class="best"[^>]*>100\.0', html)


def test_sample_is_flagged(html):
    assert 'id="sample-banner"' in html and "lfw-sample" in html
    assert "sample, not the full protocol" in html and "full dataset" in html
    assert "(SAMPLE DATA)" in html  # even the window title says so


def test_plots_are_png_images(html):
    from PIL import Image

    pngs = _images(html, "image/png")
    # lfw: scatter + ROC; celeba: scatter + FID
    assert len(pngs) == 4
    for b in pngs:
        im = Image.open(io.BytesIO(b))
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    assert "ROC (verification)" in html and "Privacy vs utility" in html and "FID." in html


def test_example_grid(html):
    from PIL import Image

    jpgs = _images(html, "image/jpeg")
    assert len(jpgs) == 6  # 2 faces x (original, blur17, mask)
    for b in jpgs:
        assert Image.open(io.BytesIO(b)).format == "JPEG"
    grid = html[html.index("Example faces") :]
    # original is the first row, the faces are named
    assert grid.index(">original<") < grid.index(">blur17<") < grid.index(">mask<")
    assert "Abdullah_Gul" in grid and "Kate_Lee" in grid


def test_paper_numbers_with_evaluators(html):
    # Table 3 (LFW, FaceNet) beside our dlib-resnet TAR, labelled as another model
    assert "paper, Table 3" in html and "FaceNet (VGGFace2)" in html and "0.986 ± 0.010" in html
    assert "Different evaluators: ours used dlib-resnet" in html
    assert "Gafni et al. [7] (paper only)" in html
    # Table 2: the paper's Dlib HOG / PNCA are the same models as ours; SSH is not
    assert "paper, Table 2" in html and 'Dlib HOG<span class="badge same">same model' in html
    assert 'SSH<span class="badge diff">other model' in html
    # Table 4 FID
    assert "paper, Table 4" in html and "510.83" in html


def test_missed_faces_and_metadata(html):
    assert "Faces missed by each anonymizer" in html
    assert "000123.jpg, 004567.jpg" in html  # from missed/celeba/pixelate8.csv
    assert "0123456789abcdef0123456789abcdef01234567" in html  # git sha
    assert "torch 2.14.1" in html and "(embedded sample set)" in html and "/data/celeba" in html
    assert "ciagan: feedbeeffeed" in html  # checkpoint sha, shortened


def test_latex():
    from anonbench.reports.latex import render_latex

    tex = render_latex([LFW, CELEBA])
    assert tex.count(r"\toprule") == 2 and tex.count(r"\bottomrule") == 2
    assert r"\midrule" in tex and r"\cmidrule(lr){2-3}" in tex
    assert r"\textbf{0.030}" in tex  # mask: best TAR
    assert r"\textbf{99.9}" in tex and r"\textbf{100.0}" not in tex  # original is no contender
    assert r"TAR@FAR=$10^{-3}$ $\downarrow$" in tex and r"Detection (\%) $\uparrow$" in tex
    assert r"\multicolumn{2}{c}{Recall@1 (\%) $\downarrow$}" in tex
    assert r"{\scriptsize$\pm$0.030}" in tex and r"{\scriptsize[98.7, 100.0]}" in tex
    assert r"\textless{}script\textgreater{}" in tex and "<script" not in tex
    assert "embedded sample, not the full protocol" in tex
    # counts have no better direction: not in the paper tables
    assert "Faces missed" not in tex and "faces\\_missed" not in tex
    body = tex.replace(r"\{", "").replace(r"\}", "")
    assert body.count("{") == body.count("}")
    # every row of every tabular has as many cells as the column spec
    for spec, body in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, re.S):
        rows = [ln for ln in body.splitlines() if ln.rstrip().endswith("\\\\")]
        assert len(rows) >= 3
        for ln in rows:
            if "multicolumn" not in ln:
                assert ln.count("&") == len(spec) - 1, ln

    plain = render_latex([LFW], intervals=False)
    assert r"\pm" not in plain.split(r"\toprule")[1] and r"\textbf{0.030} &" in plain


def test_report_command(tmp_path, capsys):
    h, t = tmp_path / "out" / "r.html", tmp_path / "t.tex"
    assert main(["report", str(LFW), str(CELEBA), "--html", str(h), "--latex", str(t)]) == 0
    assert h.stat().st_size > 10_000 and r"\toprule" in t.read_text()
    assert main(["report", str(LFW)]) == 2
    assert "--html" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing"), "--html", str(h)]) == 2


def test_write_run_report_never_fails_a_run(tmp_path, capsys):
    from anonbench.reports.html import write_run_report

    run = tmp_path / "run"
    shutil.copytree(LFW, run)
    assert write_run_report(run) == run / "report.html"
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert write_run_report(tmp_path / "empty") is None
    assert "warning: report.html not written" in capsys.readouterr().err


def test_reruns_merge_and_later_folder_wins(tmp_path):
    import pandas as pd

    from anonbench.reports.runs import load_runs

    second = tmp_path / "second"
    shutil.copytree(LFW, second)
    df = pd.read_csv(second / "results.csv")
    df.loc[df["method"] == "mask", "value"] = 0.5
    df.to_csv(second / "results.csv", index=False)
    b = load_runs([LFW, second])
    v = b.results.query("method == 'mask' and metric == 'tar_far_1e-3'")["value"]
    assert v.tolist() == [0.5] and b.warnings


def test_roc_from_scores():
    import numpy as np

    from anonbench.reports.plots import roc_from_scores

    c = roc_from_scores(LFW / "scores" / "lfw" / "original.csv", "original")
    assert c is not None and c.n_pos == 100 and c.n_neg == 100
    assert c.far[0] == 0 and c.far[-1] == 1 and c.tar[-1] == 1
    assert np.all(np.diff(c.far) >= 0) and np.all(np.diff(c.tar) >= 0)


def test_commands_stay_light():
    code = (
        "import sys, anonbench.cli as c; c.build_parser(); "
        "heavy = [m for m in ('matplotlib', 'pandas', 'numpy', 'jinja2', 'PIL') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ties_are_not_best_and_shared_notes_are_one_line(tmp_path):
    import pandas as pd

    from anonbench.reports.runs import load_runs
    from anonbench.reports.tables import build_tables

    run = tmp_path / "celeba"
    shutil.copytree(CELEBA, run)
    df = pd.read_csv(run / "results.csv")
    methods = ["original", "blur17", "pixelate8"]
    extra = df[(df["metric"] == "fid") & df["method"].isin(methods)].copy()
    extra["metric"], extra["evaluator"], extra["value"] = "chance", "pnca", 0.67
    df = pd.concat([df, extra], ignore_index=True)
    df["note"] = df["note"].astype(object)
    df.loc[df["metric"] == "fid", "note"] = "N=1000 < 2048"
    df.loc[df["method"] == "blur17", "note"] = "N=1000 < 2048; a caveat"  # joined notes
    df.to_csv(run / "results.csv", index=False)
    (t,) = build_tables(load_runs([run]))
    i = next(k for k, c in enumerate(t.columns) if c.metric == "chance")
    tied = [c for m in t.methods if (c := t.cell(m, i)) is not None]
    assert len(tied) >= 2 and not any(c.best for c in tied)  # all equal: nothing is best
    j = next(k for k, c in enumerate(t.columns) if c.metric == "fid")
    assert any(t.cell(m, j).best for m in t.methods if t.cell(m, j) is not None)
    fid_notes = [n for n in t.notes if "N=1000 < 2048" in n]
    assert len(fid_notes) == 1 and "blur17" in fid_notes[0] and "pixelate8" in fid_notes[0]
    assert [n for n in t.notes if "a caveat" in n] == ["blur17: a caveat"]


def _specs_of(run: Path):
    import json

    from anonbench.display import spec_from_dict

    info = json.loads((run / "run.json").read_text())
    return [spec_from_dict(d) for d in info["protocol"]["metrics"]]


def test_console_table_reads_the_metric_specs():
    import dataclasses

    import pandas as pd

    from anonbench.display import format_table

    df = pd.read_csv(LFW / "results.csv")
    specs = _specs_of(LFW)  # tar/accuracy: 3 decimals; the others: counts
    text = format_table(df, specs)
    lines = text.splitlines()
    # a two-line header (label, evaluator), then one line per method
    assert "TAR@FAR=1e-3" in lines[1] and "dlib-resnet" in lines[2]
    assert [ln.split()[0] for ln in lines[3:6]] == ["original", "blur17", "mask"]
    assert "0.030 ± 0.030" in lines[5] and "0.960 ± 0.020" in lines[3]
    # counts as value/n below the table, only those above zero (unreadable 0/337 is not)
    assert "Recognizer: no face [dlib-resnet]: original 1/187, blur17 14/187, mask 187/187" in text
    assert "Faces missed [dlib-resnet]" in text and "Unreadable" not in text
    # decimals and labels follow the spec, nothing else
    tar = next(s for s in specs if s.name == "tar_far_1e-3")
    other = [dataclasses.replace(tar, decimals=1, label="TAR"), *specs[1:]]
    text = format_table(df, other)
    assert "0.0 ± 0.0" in text and "TAR " in text.splitlines()[1] and "0.030" not in text
    # the older call: metric names shown as counts, no specs
    old = format_table(df, counts={"faces_missed", "embedder_no_face", "unreadable_images"})
    assert "14/187" in old and "tar_far_1e-3" in old
    assert format_table(df.iloc[0:0], specs) == "(no results)"


def test_console_table_stays_narrow_with_many_evaluators():
    """The celeba defaults (3 detectors, 3 recognizers, 2 landmarkers, FID, KID): one line per
    method within the console width, intervals left to results.csv, short names explained."""
    import pandas as pd

    from anonbench.display import CONSOLE_WIDTH, format_table
    from anonbench.protocols.celeba import CelebAProtocol

    cols = [("detection_rate", e) for e in ("dlib-hog", "retinaface", "mtcnn")]
    cols += [("recall_at_1", e) for e in ("dlib-resnet", "pnca", "chance")]
    cols += [
        (m, e)
        for m in ("landmark_nme", "pose_error", "expression_change")
        for e in ("dlib-68", "mediapipe")
    ]
    cols += [("fid", "inception-v3"), ("kid", "inception-v3"), ("faces_missed", "dlib-hog")]
    rows = [
        {"method": m, "metric": metric, "evaluator": ev, "value": 12.345, "ci_low": 10.0}
        | {"ci_high": 14.0, "n": 9, "protocol": "celeba", "protocol_version": 2}
        | {"dataset": "celeba_small"}
        for m in ("original", "blur17", "pixelate16")
        for metric, ev in cols
    ]
    text = format_table(pd.DataFrame(rows), CelebAProtocol.metrics)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= CONSOLE_WIDTH
    assert [ln.split()[0] for ln in lines[3:6]] == ["original", "blur17", "pixelate16"]
    assert "intervals: results.csv" in lines[0] and "resnet = dlib-resnet" in text
    assert "faces missed [dlib-hog]: original 12, blur17 12" in text


def _edit_specs(run: Path, **fields_by_metric: dict) -> None:
    import json

    p = run / "run.json"
    info = json.loads(p.read_text())
    for m in info["protocol"]["metrics"]:
        m.update(fields_by_metric.get(m["name"], {}))
    p.write_text(json.dumps(info))


def test_report_takes_label_and_decimals_from_run_json_but_never_the_direction(tmp_path):
    """run.json may say how a metric is shown; which way is better is the installed
    protocol's (issue 20, rule 4: a file cannot flip it)."""
    from anonbench.reports.latex import render_latex
    from anonbench.reports.runs import load_runs
    from anonbench.reports.tables import build_tables

    run = tmp_path / "lfw"
    shutil.copytree(LFW, run)
    # a (made-up) spec: TAR higher-is-better, labelled and shown differently
    _edit_specs(run, **{"tar_far_1e-3": {"higher_is_better": True, "label": "T1", "decimals": 2}})
    (t,) = build_tables(load_runs([run]))
    i = t.column_index("tar_far_1e-3")[0]
    col = t.columns[i]
    assert col.label == "T1" and col.arrow == "↓"
    assert t.cell("mask", i).text == "0.03" and t.cell("mask", i).interval == "± 0.03"
    # best follows the installed direction: mask (0.03) beats blur17 (0.88)
    assert t.cell("mask", i).best and not t.cell("blur17", i).best
    tex = render_latex([run])
    assert r"T1 $\downarrow$" in tex and r"\textbf{0.03}" in tex


@pytest.mark.parametrize("run_json", ["absent", "old"])
def test_report_falls_back_to_the_registered_protocol(tmp_path, run_json):
    """No run.json, or one from before MetricSpec had labels: the registered lfw protocol's
    MetricSpecs give what is missing (a run.json display field that is there still wins; a
    direction never does: issue 20, rule 4)."""
    from anonbench.registry import PROTOCOLS
    from anonbench.reports.runs import load_runs
    from anonbench.reports.tables import build_tables

    run = tmp_path / "lfw"
    shutil.copytree(LFW, run)
    if run_json == "absent":
        (run / "run.json").unlink()
    else:  # only the fields run.json had at first; a direction that differs, on purpose
        import json

        info = json.loads((run / "run.json").read_text())
        info["protocol"]["metrics"] = [
            {"name": "accuracy", "higher_is_better": True, "description": "old words"}
        ]
        (run / "run.json").write_text(json.dumps(info))
    registered = {m.name: m for m in PROTOCOLS.entry("lfw").factory.metrics}
    (t,) = build_tables(load_runs([run]))
    for col in t.columns:
        reg = registered[col.metric]
        assert col.label == reg.display
        c = t.cell("mask", t.column_index(col.metric)[0])
        if col.is_count:
            assert "/" in c.text
        else:
            assert len(c.text.split(".")[1]) == reg.decimals
        assert col.higher_is_better == reg.higher_is_better
        if run_json == "old" and col.metric == "accuracy":
            assert col.description == "old words"
        else:
            assert col.description == reg.description
