"""`run` and `produce` against a hostile user (the probe's W6, W7, W9, W10, W11, W19, W20, W21):
bad input is one `anonbench: error:` line, exit 2, before any work; a file anonbench did not
write is never overwritten; reruns into anonbench's own folders keep working; a `folder:`
method with no usable output fails rather than scoring the originals under its name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from safety_cases import TINY, one_error_line, run_tiny, snapshot

import anonbench.produce as produce_mod
from anonbench.cli import main
from anonbench.errors import AnonbenchError
from anonbench.safety import refuse_broken_link

KEY = "Abel_Pacheco/Abel_Pacheco_0001.jpg"
PNG = "Abel_Pacheco/Abel_Pacheco_0001.png"


def _produce(out: Path, cache: Path, *extra: str) -> int:
    argv = ["produce", "--method", "blur9", "--data", f"lfw:{TINY}", "--out", str(out)]
    return main([*argv, "--cache-dir", str(cache), "--workers", "1", "--quiet", *extra])


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A cache holding the tiny fixture's analyses and a blur9 store, a run folder of
    original and blur9 made with it, and a produce folder of blur9 made with it."""
    base = tmp_path_factory.mktemp("warm")
    cache, run, exported = base / "cache", base / "run", base / "exported"
    assert run_tiny(TINY, run, cache, "original,blur9") == 0
    assert _produce(exported, cache) == 0
    return cache, run, exported


# -- W7: a dangling symlink as the output folder ------------------------------------------


def test_refuse_broken_link_names_the_flag_and_target(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(AnonbenchError) as e:
        refuse_broken_link("--output", link)
    assert str(e.value).startswith(f"--output {link}: a broken symlink (-> {tmp_path}/nowhere)")
    with pytest.raises(AnonbenchError) as e:  # a link above the folder
        refuse_broken_link("--out", link / "sub")
    assert f"{link} is a broken symlink" in str(e.value)
    refuse_broken_link("--out", tmp_path / "new" / "folder")  # not there yet: fine
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(AnonbenchError, match="a broken symlink"):
        refuse_broken_link("--out", tmp_path / "loop")


@pytest.mark.parametrize("command", ["run", "produce"])
@pytest.mark.parametrize("below", [False, True])
def test_a_dangling_out_link_is_one_line(tmp_path, capsys, command, below):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    out = link / "sub" if below else link
    cache = tmp_path / "cache"
    rc = run_tiny(TINY, out, cache) if command == "run" else _produce(out, cache)
    assert rc == 2
    line = one_error_line(capsys)
    assert f"--out {out}: " in line and f"broken symlink (-> {tmp_path / 'nowhere'})" in line
    assert not (tmp_path / "nowhere").exists() and not cache.exists()


# -- W6: produce with an unusable --cache-dir --------------------------------------------


@pytest.mark.parametrize("where", ["file", "below-file", "dangling"])
def test_produce_unusable_cache_dir_is_one_line_before_work(tmp_path, capsys, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = {"file": blocker, "below-file": blocker / "c", "dangling": tmp_path / "link"}[where]
    if where == "dangling":
        cache.symlink_to(tmp_path / "nowhere")
    out = tmp_path / "out"
    assert _produce(out, cache) == 2
    assert f"--cache-dir {cache}: " in one_error_line(capsys)
    assert not out.exists() and blocker.read_text() == "not a folder"


# -- W9 and W11: produce --out holding what anonbench did not write ------------------------


def test_produce_manifest_path_a_folder_is_one_line_before_work(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "manifest.json").mkdir(parents=True)
    before = snapshot(out)
    assert _produce(out, tmp_path / "cache") == 2
    assert "manifest.json is not a file" in one_error_line(capsys)
    assert snapshot(out) == before and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("case", ["foreign-manifest", "output-without-manifest", "manifest-only"])
def test_produce_refuses_an_out_of_a_users_files(tmp_path, capsys, case):
    out = tmp_path / "out"
    (out / "Abel_Pacheco").mkdir(parents=True)
    if case != "manifest-only":
        (out / PNG).write_text("mine")
    if case != "output-without-manifest":
        (out / "manifest.json").write_text('{"my": "notes"}')
    before = snapshot(out)
    assert _produce(out, tmp_path / "cache") == 2
    line = one_error_line(capsys)
    if case == "output-without-manifest":
        assert f"{out / PNG}: not written by anonbench" in line
    else:
        assert "manifest.json: not an anonbench manifest" in line
    assert snapshot(out) == before and not (tmp_path / "cache").exists()


def test_produce_reruns_into_its_own_folder(tmp_path, warm):
    cache, _, exported = warm
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    (out / PNG).write_bytes(b"changed since")  # its own file: rewritten
    assert _produce(out, cache) == 0
    assert (out / PNG).read_bytes() == (exported / PNG).read_bytes()
    assert snapshot(out) == snapshot(exported)


def test_a_failed_export_leaves_no_outputs_without_a_manifest(tmp_path, warm, capsys, monkeypatch):
    def full_disk(*a, **k):
        raise AnonbenchError("the disk is full")

    monkeypatch.setattr(produce_mod, "_write_manifest", full_disk)
    out = tmp_path / "new" / "out"
    assert _produce(out, warm[0]) == 2
    assert "the disk is full" in one_error_line(capsys)
    assert not out.exists()


def test_a_failed_rerun_puts_the_earlier_export_back(tmp_path, warm, capsys, monkeypatch):
    """A rerun into produce's own folder (here with pixelate8) that fails after replacing
    some outputs leaves the folder as the earlier export left it: replaced files put back,
    nothing set aside left over; the manifest still describes every file."""
    cache, _, exported = warm
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    write = produce_mod._export_one
    calls = []

    def fails_at_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise AnonbenchError("the disk is full")
        return write(*a, **k)

    monkeypatch.setattr(produce_mod, "_export_one", fails_at_the_second)
    argv = ["produce", "--method", "pixelate8", "--data", f"lfw:{TINY}", "--out", str(out)]
    assert main([*argv, "--cache-dir", str(cache), "--workers", "1", "--quiet"]) == 2
    assert "the disk is full" in one_error_line(capsys)
    assert len(calls) == 2 and snapshot(out) == before


# -- W10: run --out holding scores/, examples/, missed/ files anonbench did not write ------


@pytest.mark.parametrize(
    "rel",
    [
        "scores/lfw/blur9.csv",
        "examples/lfw/examples.csv",
        "examples/lfw/blur9/00.jpg",
        "missed/lfw/blur9.csv",
        "scores/lfw/blur9/extra.csv",
    ],
)
def test_run_refuses_a_users_files_where_it_writes(tmp_path, capsys, evaluated, rel):
    out = tmp_path / "out"
    (out / rel).parent.mkdir(parents=True)
    (out / rel).write_text("mine")
    (out / "scores" / "lfw").mkdir(parents=True, exist_ok=True)
    (out / "scores" / "lfw" / "other.csv").write_text("not written by this run: no matter")
    before = snapshot(out)
    assert run_tiny(TINY, out, tmp_path / "cache", "original,blur9") == 2
    line = one_error_line(capsys)
    assert f"{out / rel}: not written by anonbench" in line and "choose another --out" in line
    assert snapshot(out) == before and evaluated == []


def test_run_reruns_into_its_own_folder(tmp_path, warm, capsys, evaluated):
    cache, run, _ = warm
    out = tmp_path / "out"
    shutil.copytree(run, out)
    assert run_tiny(TINY, out, cache, "original,blur9") == 0
    assert evaluated == [] and "skipped blur9" in capsys.readouterr().out
    assert run_tiny(TINY, out, cache, "original,blur9", "--force") == 0
    assert evaluated == ["original", "blur9"]


def test_a_method_stopped_before_its_rows_leaves_none_of_its_files(
    tmp_path, warm, capsys, monkeypatch
):
    """The first method stopped after its scoring wrote files, before run.json: its files
    go, so the rerun does not find files it would take for a user's."""
    from anonbench.ledger import Ledger

    def stop(self, label, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(Ledger, "commit", stop)
    out = tmp_path / "out"
    assert run_tiny(TINY, out, warm[0], "blur9") == 130
    assert not out.exists()  # its scores, examples and missed list went, then the folders
    monkeypatch.undo()
    capsys.readouterr()
    assert run_tiny(TINY, out, warm[0], "blur9") == 0
    assert (out / "scores" / "lfw" / "blur9.csv").is_file()


# -- W19: a folder: method with no usable output -----------------------------------------


def test_an_empty_output_folder_is_one_line_before_work(tmp_path, capsys, evaluated):
    empty = tmp_path / "emptyd"
    (empty / "Abel_Pacheco").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    assert run_tiny(TINY, out, tmp_path / "cache", f"original,mine=folder:{empty}") == 2
    line = one_error_line(capsys)
    assert "folder method 'mine'" in line and str(empty) in line
    assert evaluated == [] and not out.exists()


def test_a_folder_of_undecodable_outputs_fails_naming_it(tmp_path, warm, capsys, evaluated):
    folder = tmp_path / "outs"
    for src in (TINY / "images_deepfunneled").rglob("*.jpg"):
        dst = folder / src.relative_to(TINY / "images_deepfunneled").with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(b"")
    out = tmp_path / "out"
    assert run_tiny(TINY, out, warm[0], f"original,mine=folder:{folder}") == 2
    line = one_error_line(capsys)
    assert f"folder method 'mine': no usable output in {folder}" in line
    assert "4 undecodable" in line
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["method"]) == {"original"}  # none of mine's, the earlier method's kept
    assert not (out / "scores" / "lfw" / "mine.csv").exists()
    assert evaluated == ["original"]


# -- W20 and W21: settings and options that conflict or cannot be ------------------------


def test_a_run_file_device_is_checked_when_loaded(tmp_path, capsys):
    p = tmp_path / "run.toml"
    p.write_text(f'methods = ["original"]\ndevice = "tpu"\n[protocols.lfw]\ndata = "{TINY}"\n')
    assert main(["run", "--config", str(p), "--print-config"]) == 2
    line = one_error_line(capsys)
    assert line == (
        f"anonbench: error: {p}: device (line 2): expected auto, cpu, cuda or cuda:N, got 'tpu'"
    )
    p.write_text(f'methods = ["original"]\ndevice = "cuda:0"\n[protocols.lfw]\ndata = "{TINY}"\n')
    argv = ["run", "--config", str(p), "--print-config", "--device", "tpu"]
    assert main(argv) == 2
    assert "--device 'tpu': expected auto, cpu, cuda or cuda:N" in one_error_line(capsys)
    assert main(argv[:-2]) == 0 and 'device = "cuda:0"' in capsys.readouterr().out


@pytest.mark.parametrize("config", [False, True])
def test_option_folds_and_folds_that_disagree_are_refused(tmp_path, capsys, monkeypatch, config):
    from anonbench import runfile, runner

    ran: list[dict] = []
    monkeypatch.setattr(runner, "run", lambda cfg: ran.append(cfg.options))
    monkeypatch.setattr(runfile, "run_file", lambda rf, **k: ran.append(rf.protocols[0].options))
    argv = ["run", "--methods", "original", "--protocol", "lfw", "--data", str(TINY)]
    if config:
        p = tmp_path / "run.toml"
        p.write_text(f'methods = ["original"]\n[protocols.lfw]\ndata = "{TINY}"\n')
        argv = ["run", "--config", str(p)]
    for option in ("folds=1", "lfw.folds=1"):
        assert main([*argv, "--option", option, "--folds", "2"]) == 2
        assert f"--folds 2 and --option {option} disagree" in one_error_line(capsys)
    assert ran == []
    assert main([*argv, "--option", "folds=02", "--folds", "2"]) == 0  # they agree
    assert str(ran[0]["folds"]) == "2"


def test_the_folds_conflict_check_reads_values_as_given():
    from anonbench.runfile import refuse_option_conflicts

    refuse_option_conflicts({"folds": 2, "option": ["reversal=all", "folds= 2"]})
    refuse_option_conflicts({"pairs": "p.txt", "option": ["lfw.pairs=p.txt"]})
    with pytest.raises(AnonbenchError, match=r"--pairs p\.txt and --option pairs=q\.txt"):
        refuse_option_conflicts({"pairs": "p.txt", "option": ["pairs=q.txt"]})
    with pytest.raises(AnonbenchError, match="disagree"):
        refuse_option_conflicts({"folds": 2, "option": ["folds=two"]})


def test_an_optional_folder_method_with_no_image_is_unavailable(tmp_path):
    from anonbench import runfile

    empty = tmp_path / "emptyd"
    empty.mkdir()
    p = tmp_path / "run.toml"
    p.write_text(
        f'methods = ["original", {{ label = "mine", folder = "{empty}", optional = true }}]\n'
        f'[protocols.lfw]\ndata = "{TINY}"\n'
    )
    why = runfile.check_available(runfile.load(p))
    assert list(why) == ["mine"] and "no image file" in why["mine"]
