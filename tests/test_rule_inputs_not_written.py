"""Rule 2 (issue 20): inputs are never written.

One class of cases, generated: for every command and every output flag, an output that is,
lies inside or contains an input (data root, image folder, `folder:` outputs, anonymize's
input file or folder, a run's own files, the baseline), directly or through a link. Each is
one line, exit 2, and the tree under tmp_path is byte for byte what it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from safety_cases import FIXTURES, copy_tiny, one_error_line, snapshot

from anonbench.cli import main
from anonbench.safety import OverlapError, refuse_overlap


@pytest.fixture
def tree(tmp_path) -> Path:
    """tmp_path/lfw (data), outs/ (a folder: method), run/ (a run folder), in/ (photos)."""
    copy_tiny(tmp_path / "lfw")
    outs = tmp_path / "outs"
    shutil.copytree(tmp_path / "lfw" / "images_deepfunneled", outs)
    shutil.copytree(FIXTURES / "report_run" / "lfw", tmp_path / "run")
    (tmp_path / "in").mkdir()
    for f in sorted((FIXTURES / "identity_folders" / "id7201").iterdir())[:1]:
        shutil.copy(f, tmp_path / "in" / "photo.jpg")
    (tmp_path / "link_lfw").symlink_to(tmp_path / "lfw")
    (tmp_path / "link_in").symlink_to(tmp_path / "in")
    (tmp_path / "link_csv").symlink_to(tmp_path / "run" / "results.csv")
    return tmp_path


def _paths(t: Path, flag: str, target: str, out_flag: str = "--out") -> list[str]:
    """The output flags of a command, every one a fresh folder but `flag`, set to target."""
    paths = {out_flag: str(t / "o"), "--cache-dir": str(t / "c"), flag: str(t / target)}
    return [x for kv in paths.items() for x in kv]


def _run(t: Path, flag: str, target: str, methods: str = "blur9") -> list[str]:
    methods = methods.replace("OUTS", str(t / "outs"))
    data = ["--data", f"lfw:{t / 'lfw'}"]
    return ["run", "--methods", methods, "--protocol", "lfw", *data, *_paths(t, flag, target)]


def _produce(t: Path, flag: str, target: str) -> list[str]:
    data = ["--data", f"lfw:{t / 'lfw'}"]
    return ["produce", "--method", "blur9", *data, *_paths(t, flag, target)]


def _anonymize(t: Path, flag: str, target: str, src: str = "in") -> list[str]:
    outs = _paths(t, flag, target, "--output")
    return ["anonymize", "--method", "blur9", "--input", str(t / src), *outs]


CASES = [
    # run: the data root, its image folder, a folder: method's outputs; as --out / --cache-dir
    *[
        ("run", flag, target, "blur9")
        for flag in ("--out", "--cache-dir")
        for target in ("lfw", "lfw/runs", "lfw/images_deepfunneled/x", "link_lfw/r", ".")
    ],
    *[("run", "--out", target, "m=folder:OUTS") for target in ("outs", "outs/sub", ".")],
    # produce: the data root (the originals would be replaced)
    *[
        ("produce", flag, target, "")
        for flag in ("--out", "--cache-dir")
        for target in ("lfw", "lfw/images_deepfunneled", "link_lfw/sub", ".")
    ],
    # anonymize: a folder input, a file input (the folder holding it), through links
    *[
        ("anonymize", flag, target, src)
        for flag in ("--output", "--cache-dir")
        for target, src in (
            ("in", "in"),
            ("in/sub", "in"),
            ("in", "in/photo.jpg"),
            ("link_in", "in/photo.jpg"),
            ("link_in/x", "in"),
            (".", "in"),
        )
    ],
]


@pytest.mark.parametrize(("cmd", "flag", "target", "extra"), CASES)
def test_an_output_on_an_input_is_refused(tree, capsys, cmd, flag, target, extra):
    argv = {
        "run": lambda: _run(tree, flag, target, extra),
        "produce": lambda: _produce(tree, flag, target),
        "anonymize": lambda: _anonymize(tree, flag, target, extra),
    }[cmd]()
    before = snapshot(tree)
    assert main([*argv, "--quiet"]) == 2
    line = one_error_line(capsys)
    assert flag in line and "inputs are never written" in line
    assert snapshot(tree) == before


REPORT_CASES = [
    ("report", "--html", "run/results.csv"),
    ("report", "--latex", "run/run.json"),
    ("report", "--html", "link_csv"),
    ("report", "--latex", "run/scores/lfw/x.csv"),
    ("check", "--markdown", "run/run.json"),
    ("check", "--markdown", "run/results.csv"),
    ("check", "--markdown", "link_csv"),
    ("check", "--markdown", "base.csv"),
]


@pytest.mark.parametrize(("cmd", "flag", "target"), REPORT_CASES)
def test_reports_never_overwrite_a_runs_files(tree, capsys, cmd, flag, target):
    shutil.copy(tree / "run" / "results.csv", tree / "base.csv")
    run = str(tree / "run")
    argv = (
        ["report", run, flag, str(tree / target)]
        if cmd == "report"
        else ["check", run, "--baseline", str(tree / "base.csv"), flag, str(tree / target)]
    )
    before = snapshot(tree)
    assert main(argv) == 2
    assert "inputs are never written" in one_error_line(capsys)
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("out", "inp", "refused"),
    [
        ("a", "a", True),
        ("a/b", "a", True),
        ("a", "a/b", True),
        ("a/", "a", True),
        ("a/../a", "a", True),
        ("ab", "a", False),
        ("a", "ab", False),
        ("b/report.html", "b/results.csv", False),
        ("hard.jpg", "photo.jpg", True),  # a hard link is the same file
    ],
)
def test_overlap_is_decided_on_resolved_paths(tmp_path, out, inp, refused):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    os.link(tmp_path / "photo.jpg", tmp_path / "hard.jpg")
    args = ([("--out", tmp_path / out)], [("the input", tmp_path / inp)])
    if refused:
        with pytest.raises(OverlapError):
            refuse_overlap(*args)
    else:
        refuse_overlap(*args)
