"""Rule 5 of issue 20: one escaping function per format (anonbench.escape: tex_escape,
md_escape, html_escape) for everything entering a report from data or paths, newlines included.

The cases are generated: every payload (LaTeX commands, Markdown links and headings, HTML tags,
entities) after every kind of line break, first through each function (the output is one line
and no special character is left unescaped), then through the commands that write each format:
`report --latex` with hostile method labels, dataset names and run folder paths (a newline used
to end the `%` comment and make `\\input{...}` live), `check --markdown` (paths, labels, the
files-do-not-match page) and `report --html`.
"""

from __future__ import annotations

import csv
import itertools
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.escape import html_escape, md_escape, one_line, tex_escape

FIXTURES = Path(__file__).parent / "fixtures" / "report_run"
BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029", "\t", "\0"]
PAYLOADS = [
    r"\input{/etc/passwd}",
    r"\write18{touch pwned}",
    r"^^5cinput{x}",
    "%\\immediate\\write18{id}",
    "# heading",
    "- item",
    "| a | b |",
    "[link](javascript:alert(1))",
    "![img](http://x/y.png)",
    "`code`",
    "*bold* _em_ ~~del~~",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "&lt;entity&gt; &#60;",
    "<http://autolink>",
]
TEXTS = [f"run{b}{p}" for b, p in itertools.product(BREAKS, PAYLOADS)]


def _lines(s: str) -> int:
    return len(s.splitlines()) if s else 1


@pytest.mark.parametrize("text", TEXTS, ids=lambda s: repr(s)[:50])
def test_every_function_keeps_text_on_one_line(text):
    for f in (one_line, tex_escape, md_escape, html_escape):
        out = str(f(text))
        assert _lines(out) == 1 and "\n" not in out and "\r" not in out, (f.__name__, out)


_TEX_ESCAPES = re.compile(
    r"\\(?:textbackslash|textasciitilde|textasciicircum|textless|textgreater)\{\}|\\[&%$#_{}]"
)


@pytest.mark.parametrize("text", TEXTS, ids=lambda s: repr(s)[:50])
def test_tex_escape_leaves_no_special_character(text):
    rest = _TEX_ESCAPES.sub("", tex_escape(text))
    assert not set(rest) & set("\\{}%$#&^~_<>"), rest


_MD_ESCAPES = re.compile(r"\\[\\`*\[\]|~_]|&(?:amp|lt|gt);")


@pytest.mark.parametrize("text", TEXTS, ids=lambda s: repr(s)[:50])
def test_md_escape_leaves_no_markup(text):
    rest = _MD_ESCAPES.sub("", md_escape(text))
    assert not set(rest) & set("\\`*[]|~<>&"), rest


_HTML_ESCAPES = re.compile(r"&(?:amp|lt|gt|#34|#39|quot);")


@pytest.mark.parametrize("text", TEXTS, ids=lambda s: repr(s)[:50])
def test_html_escape_leaves_no_markup(text):
    rest = _HTML_ESCAPES.sub("", str(html_escape(text)))
    assert not set(rest) & set("<>&\"'"), rest


def test_ordinary_names_read_as_before():
    for name in ("blur17", "recall_at_1", "lfw-sample", "tar_far_1e-3", "runs/lfw1"):
        assert md_escape(name) == name and str(html_escape(name)) == name
    assert tex_escape("recall_at_1") == r"recall\_at\_1"


# -- through the commands ----------------------------------------------------------------------

HOSTILE = [f"m{b}{p}" for b, p in itertools.product(["\n", "\r", "\u2028"], PAYLOADS[:8])]


def _hostile_run(root: Path, name: str, label: str, dataset: str = "") -> Path:
    """A copy of the lfw fixture run in a folder named `name`, 'mask' relabelled `label`."""
    run = root / name
    run.mkdir(parents=True)
    shutil.copy(FIXTURES / "lfw" / "run.json", run / "run.json")
    df = pd.read_csv(FIXTURES / "lfw" / "results.csv", dtype=str)
    df.loc[df["method"] == "mask", "method"] = label
    if dataset:
        df["dataset"] = dataset
    # every text cell quoted: pandas leaves a "\r" unquoted, which reads back as a line break
    # (rows cut in two, columns shifted), a malformed file that `report` refuses
    df.to_csv(run / "results.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    return run


def _no_live_tex(tex: str) -> None:
    for line in tex.splitlines():
        s = line.strip()
        assert not re.match(r"\\(input|write18|immediate|include)\b", s), line
    assert "\\input{" not in tex and "\\write18{" not in tex and "^^5c" not in tex


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_latex_report_from_hostile_labels_datasets_and_paths(tmp_path, i):
    text = HOSTILE[i]
    run = _hostile_run(tmp_path, f"run{text.replace('/', '_')}", text, dataset=f"d{text}")
    out = tmp_path / "t.tex"
    assert main(["report", str(run), "--latex", str(out)]) == 0
    tex = out.read_text()
    _no_live_tex(tex)
    # every line is one the writer made: a comment, a table line, or blank
    for line in tex.splitlines():
        s = line.strip()
        assert not s or s.startswith(("%", "\\", "&", "Method", "{")) or " & " in s, line


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_check_markdown_from_hostile_labels_and_paths(tmp_path, i):
    text = HOSTILE[i]
    run = _hostile_run(tmp_path, f"run{text.replace('/', '_')}", text)
    md = tmp_path / "summary.md"
    code = main(["check", str(run), "--baseline", str(run / "results.csv"), "--markdown", str(md)])
    assert code == 0
    _assert_safe_markdown(md.read_text(), text)


def _assert_safe_markdown(md: str, text: str) -> None:
    lines = md.splitlines()
    headings = [ln for ln in lines if ln.startswith("#")]
    assert len(headings) == 1, headings  # the page's own title only
    body = md.replace("<code>", "").replace("</code>", "")
    assert "<" not in body, body
    rest = _MD_ESCAPES.sub("", body)
    assert "[" not in rest and "`" not in rest
    for ln in lines:  # a table row is the writer's: it starts and ends with a pipe
        if ln.startswith("|"):
            assert ln.endswith("|")


def test_check_markdown_when_files_do_not_match(tmp_path):
    for i, text in enumerate(HOSTILE):
        md = tmp_path / f"s{i}.md"
        base = tmp_path / f"missing{text.replace('/', '_')}.csv"
        code = main(
            ["check", str(FIXTURES / "lfw"), "--baseline", str(base), "--markdown", str(md)]
        )
        assert code == 2
        _assert_safe_markdown(md.read_text(), text)


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_html_report_from_hostile_labels_and_paths(tmp_path, i):
    text = HOSTILE[i]
    run = _hostile_run(tmp_path, f"run{text.replace('/', '_')}", text, dataset=f"d{text}")
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    html = out.read_text()
    for p in PAYLOADS:
        if "<" in p or '"' in p:
            assert p not in html
    assert "<script" not in html
    assert all(m.startswith('<img src="data:') for m in re.findall(r"<img[^>]{0,20}", html))


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_check_terminal_output_keeps_labels_on_one_line(tmp_path, capsys, i):
    """Not a report format, but a CI log: a label cannot forge a line such as a PASS."""
    run = _hostile_run(tmp_path, "run", HOSTILE[i] + "\nPASS: all 1 checked values")
    assert main(["check", str(run), "--baseline", str(run / "results.csv")]) == 0
    out = capsys.readouterr().out
    assert sum(ln.startswith("PASS") for ln in out.splitlines()) == 1
