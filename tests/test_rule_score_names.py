"""Rule 9 of issue 20: score files use one collision-free naming function
(anonbench.scores.score_file_name), which the writers (the lfw protocol) and the report use.

Labels ``x y`` and ``x_y`` no longer share a file (the old name replaced every special character
by ``_``), and a label with special characters keeps its ROC plot (the report used to look for
the raw label). The cases are generated: many labels (spaces, punctuation, case variants,
accents, emoji, long ones), checked pairwise for collisions (also case-insensitively), as file
names on this disk, and through the report; then one real run with colliding labels.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.scores import MAX_NAME, artifact_name, score_file, score_file_name

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "lfw_tiny"
LFW_RUN = FIXTURES / "report_run" / "lfw"

STEMS = ["x", "blur17", "dp2", "ciagan"]
JOINS = [" ", "_", "-", ".", "=", "+", "~", "%", "^", "%20", "^x", ":", ";", ",", "'", '"', "&"]
EXTRA = [
    "X y",
    "x Y",
    "X_Y",
    "a\tb",
    "a\nb",
    "é",
    "É",
    "e\u0301",  # e + combining accent: another label than "é"
    "Ü ✓",
    "🙂",
    "<script>",
    "$(rm -rf ~)",
    "..x",
    "a" * 300,
    "a" * 299 + "b",
    "%41",
    "^a",
    "A",
    "a",
]


def labels() -> list[str]:
    """Every stem joined to "y" by every separator, and the extra labels."""
    out = [f"{s}{j}y" for s, j in itertools.product(STEMS, JOINS)]
    return list(dict.fromkeys([*out, *STEMS, *EXTRA]))


LABELS = labels()


def test_no_two_labels_share_a_file_even_case_insensitively():
    names = [score_file_name(lab) for lab in LABELS]
    assert len(LABELS) > 80
    assert len(set(names)) == len(LABELS)
    assert len({n.casefold() for n in names}) == len(LABELS)
    assert score_file_name("x y") != score_file_name("x_y")


@pytest.mark.parametrize("label", LABELS, ids=lambda s: repr(s)[:40])
def test_name_is_one_plain_file_on_this_disk(tmp_path, label):
    name = score_file_name(label)
    assert name.endswith(".csv") and name.isascii() and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\0" not in name
    assert len(name) <= MAX_NAME + len(".csv")
    p = score_file(tmp_path, "lfw", label)
    assert p.parent == tmp_path / "scores" / "lfw" and p.name == name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("fold,pair,label,score\n")
    assert p.is_file()


def test_plain_labels_keep_their_name():
    """Existing run folders of ordinary labels are read as before."""
    for label in ("original", "blur17", "mask", "pixelate8", "dp2", "ciagan-v2", "a_b"):
        assert score_file_name(label) == f"{label}.csv"


def test_the_report_finds_the_scores_of_every_label(tmp_path):
    """A run folder whose methods carry generated labels: the report reads each one's scores
    (the ROC plot), through the same naming function."""
    from anonbench.reports.html import render_html
    from anonbench.reports.plots import roc_from_scores
    from anonbench.reports.runs import load_runs

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LFW_RUN / "run.json", run / "run.json")
    df = pd.read_csv(LFW_RUN / "results.csv", dtype=str)
    rows = df[df["method"] == "blur17"]
    chosen = [lab for lab in LABELS if "\n" not in lab and "\t" not in lab][:40]
    pd.concat([rows.assign(method=lab) for lab in chosen]).to_csv(run / "results.csv", index=False)
    src = (LFW_RUN / "scores" / "lfw" / "blur17.csv").read_text()
    for lab in chosen:
        p = score_file(run, "lfw", lab)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src)
    bundle = load_runs([run])
    files = bundle.scores_files("lfw", "lfw-sample")
    assert set(files) == set(chosen)
    assert all(roc_from_scores(files[lab], lab) is not None for lab in chosen)
    assert "ROC (verification)" in render_html([run])


RUN_LABELS = ("x y", "x_y", "Ü ✓", "A", "a")  # "A"/"a" shared a missed file on macOS


@pytest.fixture(scope="module")
def colliding_run(tmp_path_factory) -> Path:
    """One real lfw run of three folder: methods whose labels collided or lost their plot."""
    root = tmp_path_factory.mktemp("names")
    cache, outputs = root / "cache", root / "blur"
    common = ["--cache-dir", str(cache), "--workers", "1", "--quiet"]
    data = ["--data", f"lfw:{TINY}"]
    assert main(["produce", "--method", "blur9", *data, "--out", str(outputs), *common]) == 0
    methods = ",".join(f"{lab}=folder:{outputs}" for lab in RUN_LABELS)
    run = root / "run"
    argv = ["run", "--methods", methods, "--protocol", "lfw", *data, "--out", str(run)]
    assert main([*argv, *common]) == 0
    return run


@pytest.mark.slow
def test_a_run_writes_one_scores_file_per_label(colliding_run):
    files = sorted(p.name for p in (colliding_run / "scores" / "lfw").iterdir())
    assert files == sorted(score_file_name(x) for x in RUN_LABELS)
    html = (colliding_run / "report.html").read_text()
    assert "ROC (verification)" in html


@pytest.mark.slow
def test_missed_lists_and_example_folders_are_one_per_label_and_read_back(colliding_run):
    from anonbench.reports.runs import load_runs

    missed = sorted(p.name for p in (colliding_run / "missed" / "lfw").iterdir())
    assert missed == sorted(f"{artifact_name(x)}.csv" for x in RUN_LABELS)
    edir = colliding_run / "examples" / "lfw"
    assert sorted(p.name for p in edir.iterdir() if p.is_dir()) == sorted(
        artifact_name(x) for x in RUN_LABELS
    )
    bundle = load_runs([colliding_run])
    assert set(bundle.missed_files("lfw")) == set(RUN_LABELS)
    (grid,) = bundle.example_sets("lfw", str(bundle.runs[0].results["dataset"].iloc[0]))
    assert set(grid.images) == set(RUN_LABELS)
    assert all(all(p is not None for p in grid.images[x]) for x in RUN_LABELS)


def test_artifact_names_are_distinct_case_insensitively_and_plain_labels_keep_theirs():
    labels = ["A", "a", "x y", "x_y", "blur17", "Ü ✓", "m:1", "m_1"]
    names = [artifact_name(x).lower() for x in labels]
    assert len(set(names)) == len(labels)
    assert artifact_name("blur17") == "blur17" and "/" not in "".join(names)


def test_an_older_runs_raw_label_names_are_read_but_never_another_labels(tmp_path):
    """A run written before artifact names kept missed/<protocol>/<label>.csv; reports still
    read those, except where the raw name is another label's artifact name ("^x" is X's)."""
    from anonbench.reports.runs import load_runs

    run = tmp_path / "run"
    shutil.copytree(LFW_RUN, run)
    rows = pd.read_csv(run / "results.csv")
    labels = ["X", "^x", "old label"]
    pd.concat([rows.assign(method=lab) for lab in labels]).to_csv(run / "results.csv", index=False)
    missed = run / "missed" / "lfw"
    shutil.rmtree(missed, ignore_errors=True)
    missed.mkdir(parents=True)
    (missed / f"{artifact_name('X')}.csv").write_text("key\nfrom_X\n")  # X's, named "^x.csv"
    (missed / "old label.csv").write_text("key\nold\n")  # an older run's raw-label name
    files = load_runs([run]).missed_files("lfw")
    assert files["X"].name == "^x.csv"
    assert "^x" not in files  # its raw name is X's file: not read as "^x"'s
    assert files["old label"].name == "old label.csv"
