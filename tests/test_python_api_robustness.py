"""The Python API against hostile arguments: a report never overwrites a run's own files, and
every wrong argument is one AnonbenchError line naming it, before any work, never a raw
TypeError (anonbench.experiment)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import anonbench
from anonbench import runfile
from anonbench.errors import AnonbenchError

FIXTURES = Path(__file__).parent / "fixtures"
LFW = f"lfw:{FIXTURES / 'lfw_tiny'}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny run (about ten seconds)."""
    tmp = tmp_path_factory.mktemp("api_run")
    results = anonbench.benchmark(
        ["original", "blur9"],
        {"lfw": {"folds": 1}},
        data=LFW,
        out=tmp / "run",
        workers=1,
        cache_dir=str(tmp / "cache"),
    )
    assert results.methods == ("original", "blur9")
    return results.out


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(f.relative_to(run)): f.read_bytes() for f in run.rglob("*") if f.is_file()}


@pytest.mark.parametrize(
    ("target", "match"),
    [
        # the CLI's wording (anonbench.commands.report, anonbench.safety)
        ("run.json", "run's own file"),
        ("results.csv", "run's own file"),
        ("scores/lfw/original.csv", "run's own file"),
        (".", "is a folder, not a file"),
        ("scores", "is a folder, not a file"),
    ],
)
def test_report_never_overwrites_the_run(run_copy: Path, target: str, match: str) -> None:
    assert (run_copy / target).exists()
    before = _snapshot(run_copy)
    with pytest.raises(AnonbenchError, match=match) as e:
        anonbench.Results.load(run_copy).report(run_copy / target)
    assert "\n" not in str(e.value) and str(e.value).startswith("Results.report: path")
    assert _snapshot(run_copy) == before
    # the run still reads back: nothing was lost
    assert len(anonbench.Results.load(run_copy).to_pandas()) > 0


def test_report_elsewhere_and_by_default(run_copy: Path, tmp_path: Path) -> None:
    # as `anonbench report --html`: a missing parent folder is made
    page = anonbench.Results.load(run_copy).report(tmp_path / "new" / "r.html")
    assert page.is_file() and "<h2>lfw" in page.read_text(encoding="utf-8")
    (run_copy / "report.html").unlink()
    # loaded from its results.csv, the run is its folder: report.html goes beside it
    r = anonbench.Results.load(run_copy / "results.csv")
    assert r.out == run_copy and r.report() == run_copy / "report.html"
    with pytest.raises(AnonbenchError, match=r"Results.report: path \.: is a folder"):
        r.report("")  # not the default: no file name at all
    with pytest.raises(AnonbenchError, match=r"Results.report: path: expected a path"):
        r.report(3)  # type: ignore[arg-type]
    with pytest.raises(AnonbenchError, match=r"Results.load: out: expected a path"):
        anonbench.Results.load(None)  # type: ignore[arg-type]


BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"methods": None}, r"methods: expected a name, a comma-separated string or a list, got None"),
    ({"methods": 3}, r"methods: expected .* got int \(3\)"),
    ({"methods": ["original", None]}, r"methods\[1\]: expected a name or a dict, got None"),
    ({"methods": " , "}, r"methods: no method given"),
    ({"protocols": None}, r"protocols: expected a name, a list of names or a dict"),
    (
        {"protocols": {"lfw": None}},
        r"protocols\.lfw: expected a table of options \(dict\), got None",
    ),
    ({"protocols": ["lfw", 3]}, r"protocols\[1\]: expected a protocol name, got int \(3\)"),
    ({"protocols": []}, r"protocols: no protocol given"),
    ({"data": 3}, r"data: expected a path \(str or pathlib.Path\), got int \(3\)"),
    ({"data": {"lfw": None}}, r"data\.lfw: expected a path"),
    ({"evaluators": {"embedder": None}}, r"evaluators\.embedder: expected a name or a list"),
    ({"evaluators": {"embedder": 3}}, r"evaluators\.embedder: .* got int \(3\)"),
    ({"evaluators": {"detectors": ["dlib-hog", 3]}}, r"evaluators\.detectors: expected"),
    ({"evaluators": ["dlib-hog"]}, r"evaluators: expected a dict"),
    ({"out": 3}, r"out: expected a path \(str or pathlib.Path\), got int \(3\)"),
    ({"out": ""}, r"out: an empty path; give a folder \(None: the default\)"),
    ({"out": " "}, r"out: an empty path"),
    # the run file's own check (when it has one) or the API's: --seed's range either way
    ({"seed": 2**32}, r"seed: expected an integer (>= 0 and )?<= 4294967295, got 4294967296"),
    ({"seed": -1}, r"seed: expected an integer >= 0"),
    ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
    ({"workers": 0}, r"workers: expected an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("change", "match"), BAD_ARGUMENTS)
def test_a_wrong_argument_is_one_line_naming_it(
    tmp_path: Path, change: dict[str, Any], match: str
) -> None:
    kw: dict[str, Any] = {
        "methods": ["original", "blur9"],
        "protocols": {"lfw": {"folds": 1}},
        "data": LFW,
        "out": tmp_path / "never",
        "workers": 1,
        **change,
    }
    with pytest.raises(AnonbenchError, match=r"^benchmark\(\): " + match) as e:
        anonbench.benchmark(**kw)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "never").exists()  # before any work


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[runfile.RunFile]:
    """The run files benchmark() would run; nothing runs."""
    seen: list[runfile.RunFile] = []

    def fake_run_file(rf: runfile.RunFile, **kw: Any) -> Path:
        seen.append(rf)
        return tmp_path

    monkeypatch.setattr(runfile, "run_file", fake_run_file)
    return seen


def test_a_string_of_methods_is_what_methods_takes(planned: list[runfile.RunFile]) -> None:
    r = anonbench.benchmark("original", "lfw", data=LFW, out="x")
    assert [m.label for m in planned[-1].methods] == ["original"] and r.methods == ("original",)
    r = anonbench.benchmark(" original,blur9 ,", "lfw", data=LFW, out="x")
    assert r.methods == ("original", "blur9")
    # --protocol A,B too
    anonbench.benchmark(["original"], "lfw, celeba", out="x")
    assert [p.key for p in planned[-1].protocols] == ["lfw", "celeba"]


def test_none_settings_are_the_defaults(planned: list[runfile.RunFile]) -> None:
    anonbench.benchmark(["original"], ["lfw", "celeba"], workers=None, seed=None)
    assert planned[-1].settings["out"] == "runs/lfw+celeba"
    assert planned[-1].settings["workers"] is None and planned[-1].settings["seed"] == 0


def test_run_config_checks_the_seed_range_and_its_arguments(tmp_path: Path) -> None:
    f = tmp_path / "big.toml"
    f.write_text(
        f'out = "{tmp_path / "never"}"\nseed = {2**32}\nmethods = ["original"]\n'
        f'[protocols.lfw]\ndata = "{LFW}"\nfolds = 1\n',
        encoding="utf-8",
    )
    with pytest.raises(AnonbenchError, match=r"big\.toml: seed.*<= 4294967295, got 4294967296"):
        anonbench.run_config(f)
    with pytest.raises(AnonbenchError, match=r"^run_config: out: an empty path"):
        anonbench.run_config(f, out="")
    with pytest.raises(AnonbenchError, match=r"^run_config: path: expected a path"):
        anonbench.run_config(None)  # type: ignore[arg-type]
    assert not (tmp_path / "never").exists()


def test_load_refuses_a_file_other_than_results_csv(tmp_path):
    """Results.load(FILE) kept only FILE's folder and later read <folder>/results.csv: another
    file's methods with the folder's numbers."""
    import anonbench
    from anonbench.errors import AnonbenchError

    other = tmp_path / "baseline.csv"
    other.write_text("method,protocol\n")
    with pytest.raises(AnonbenchError, match=r"give a run folder or its results\.csv"):
        anonbench.Results.load(other)
