"""The Python API (anonbench.benchmark, anonbench.experiment): the README's example runs as
written on the fixture data, and `import anonbench` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import anonbench
from anonbench.errors import AnonbenchError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def _readme_example() -> str:
    """The README's Python example: the ```python block that calls anonbench.benchmark."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if ".benchmark(" in b]
    assert len(blocks) == 1, "the README has one Python example of anonbench.benchmark"
    return blocks[0]


@pytest.mark.slow  # two protocols on a fresh cache: about a minute on two idle cores
def test_the_readme_example_runs_on_the_fixtures(tmp_path, monkeypatch, capsys):
    code = _readme_example()
    # the same code, with the shared data swapped for the fixtures
    for shared, fixture in (("lfw", "lfw_tiny"), ("celeba", "celeba_small")):
        assert f"../shared/data/{shared}" in code
        code = code.replace(f"../shared/data/{shared}", str(FIXTURES / fixture))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANONBENCH_CACHE", str(tmp_path / "cache"))
    ns: dict = {}
    exec(compile(code, "README.md example", "exec"), ns)
    results = ns["results"]
    df = results.to_pandas()
    assert set(df["protocol"]) == {"lfw", "celeba"}
    assert set(df["method"]) == {"original", "blur17"}
    assert (tmp_path / "runs/api-example/report.html").is_file()
    assert "tar_far_1e-3" in capsys.readouterr().out  # the printed table
    # a finished folder reads back
    again = anonbench.Results.load(tmp_path / "runs/api-example")
    assert set(again.protocols) == {"lfw", "celeba"}
    assert len(again.to_pandas()) == len(df)


def test_mistakes_name_the_argument_before_any_work(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(AnonbenchError, match=r"protocols\.lfw\.fid: protocol lfw takes no"):
        anonbench.benchmark(["original"], {"lfw": {"fid": False}}, out=out)
    with pytest.raises(AnonbenchError, match=r"methods\[1\]\.name: unknown method 'blurr'"):
        anonbench.benchmark(["original", "blurr"], "lfw", out=out)
    with pytest.raises(AnonbenchError, match=r"seed: expected an integer"):
        anonbench.benchmark(["original"], "lfw", out=out, seed="0")
    with pytest.raises(AnonbenchError, match="data names protocols not run"):
        anonbench.benchmark(["original"], "lfw", data={"celeba": "x"}, out=out)
    assert not out.exists()


def test_import_stays_light_and_evaluate_is_still_the_module():
    code = (
        "import sys, anonbench; "
        "heavy = [m for m in ('torch', 'pandas', 'anonbench.runner') if m in sys.modules]; "
        "f = anonbench.benchmark; import anonbench.evaluate as ev; "
        "print(heavy, callable(f), type(anonbench.evaluate).__name__, "
        "'benchmark' in dir(anonbench))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "module", "True"]


def test_results_of_a_finished_folder(tmp_path):
    """Results.load reads a folder back: rows, a methods x metrics table, the report."""
    r = anonbench.Results.load(FIXTURES / "report_run" / "lfw")
    df = r.to_pandas()
    assert r.protocols == ("lfw",) and set(df["method"]) == set(r.methods)
    wide = r.table()
    assert list(wide.index) == list(r.methods)
    one = df[(df["method"] == r.methods[0]) & (df["metric"] == "tar_far_1e-3")].iloc[0]
    assert wide.loc[r.methods[0], f"tar_far_1e-3 [{one['evaluator']}]"] == one["value"]
    page = r.report(tmp_path / "r.html")
    assert page == tmp_path / "r.html" and "<h2>lfw" in page.read_text()
