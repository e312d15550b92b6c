"""`anonbench anonymize` against a hostile --output, input folder, cache or checkpoint (the
probe's W1-W5, W7, W8, W27): bad input is one `anonbench: error:` line, exit 2, before any
work; a file anonbench did not write is never overwritten; a failed run leaves --output as
it was; an input is never dropped without a word."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safety_cases import TINY, snapshot

from anonbench.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PHOTOS = TINY / "images_deepfunneled" / "Abel_Pacheco"


def _anonymize(*args: str) -> int:
    return main(["anonymize", "--detector", "dlib-hog", "--quiet", "--no-cache", *args])


def _inputs(tmp_path: Path, blank: bool = False) -> Path:
    """Two face photos (and, with `blank`, a faceless m.png: --on-miss fail stops there)."""
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg")):
        shutil.copy(p, src / p.name)
    if blank:
        Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "m.png")
    return src


def _one_error(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("anonbench: error: ") and "Traceback" not in err
    return line


def test_user_files_in_output_are_never_overwritten(tmp_path, capsys):
    """W1: a file of the user's where an output goes, or a report anonbench did not write,
    is one line before any work; nothing in --output changes."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "Abel_Pacheco_0001.jpg").write_text("my precious")
    (out / "notes.txt").write_text("mine too")
    before = snapshot(out)
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    line = _one_error(capsys.readouterr().err)
    assert "Abel_Pacheco_0001.jpg: not written by anonbench" in line and "--output" in line
    assert snapshot(out) == before
    for report in ("mine", "[1, 2]", '{"method": "x"}'):  # foreign: not anonbench's shape
        (out / "anonymize_report.json").write_text(report)
        before = snapshot(out)
        assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
        line = _one_error(capsys.readouterr().err)
        assert "anonymize_report.json (and 1 more): not written by anonbench" in line
        assert snapshot(out) == before
    # a symlink named like an output is the user's too: neither it nor its target is touched
    (out / "anonymize_report.json").unlink()
    (out / "Abel_Pacheco_0001.jpg").unlink()
    (tmp_path / "elsewhere.jpg").write_text("target")
    (out / "Abel_Pacheco_0002.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    assert "Abel_Pacheco_0002.jpg: not written" in _one_error(capsys.readouterr().err)
    assert (out / "Abel_Pacheco_0002.jpg").is_symlink()
    assert (tmp_path / "elsewhere.jpg").read_text() == "target"


def test_rerun_into_its_own_output_replaces_its_own_files(tmp_path, capsys):
    """Case 11: anonbench's own earlier outputs (listed in its report) are replaced by a
    rerun with another method, an older report without `written` included; what the user
    put beside them stays."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out)]
    assert _anonymize("--method", "blur9", *argv) == 0
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert rep["written"] == ["Abel_Pacheco_0001.jpg", "Abel_Pacheco_0002.jpg"]
    (out / "notes.txt").write_text("mine")
    first = (out / "Abel_Pacheco_0001.jpg").read_bytes()
    assert _anonymize("--method", "blur17", *argv) == 0
    assert (out / "Abel_Pacheco_0001.jpg").read_bytes() != first
    assert (out / "notes.txt").read_text() == "mine"
    # a report from before `written`: the outputs its inputs list are anonbench's
    del rep["written"]
    (out / "anonymize_report.json").write_text(json.dumps(rep))
    assert _anonymize("--method", "blur9", *argv) == 0
    assert json.loads((out / "anonymize_report.json").read_text())["method"] == "blur9"
    # a later run on part of the input still knows the rest of the folder is anonbench's
    one = ["--input", str(src / "Abel_Pacheco_0001.jpg"), "--output", str(out)]
    assert _anonymize("--method", "blur17", *one) == 0
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert rep["written"] == ["Abel_Pacheco_0001.jpg", "Abel_Pacheco_0002.jpg"]
    assert _anonymize("--method", "blur9", *argv) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_failed_rerun_leaves_the_output_as_it_was(tmp_path, capsys):
    """W2: --on-miss fail stops a rerun after it replaced an earlier output: every file in
    --output is back as it was (and a user's file there was refused before any work)."""
    src = _inputs(tmp_path, blank=True)
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out)]
    assert _anonymize("--method", "blur9", *argv) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert _anonymize("--method", "blur17", "--on-miss", "fail", *argv) == 2
    assert "m.png: no face detected" in _one_error(capsys.readouterr().err)
    assert snapshot(out) == before  # blur17 had replaced the two photos: put back
    shutil.rmtree(out)
    out.mkdir()
    (out / "Abel_Pacheco_0001.jpg").write_text("mine")
    assert _anonymize("--method", "blur9", "--on-miss", "fail", *argv) == 2
    assert "not written by anonbench" in _one_error(capsys.readouterr().err)
    assert (out / "Abel_Pacheco_0001.jpg").read_text() == "mine"


def test_a_failed_rerun_puts_back_a_video_written_in_place(tmp_path, capsys):
    """A video is written in place (not replaced by a rename): its earlier output is still
    there, byte for byte, after a rerun that stops at a later input."""
    import cv2

    src = _inputs(tmp_path, blank=True)
    face = cv2.imread(str(sorted(PHOTOS.glob("*.jpg"))[0]))
    w = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (250, 250))
    for i in range(4):
        w.write(np.roll(face, 2 * i, axis=1))
    w.release()
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out)]
    assert _anonymize("--method", "blur9", *argv) == 0
    before = snapshot(out)
    assert _anonymize("--method", "blur17", "--on-miss", "fail", *argv) == 2  # at m.png
    assert "m.png: no face detected" in _one_error(capsys.readouterr().err)
    assert snapshot(out) == before and (out / "clip.avi.mp4").is_file()


def test_a_failed_input_keeps_the_earlier_output(tmp_path, capsys):
    """An input that fails in a rerun gets its earlier output back, not a half-written or
    missing one, and the report still counts that file as anonbench's."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out)]
    assert _anonymize("--method", "blur9", *argv) == 0
    earlier = (out / "Abel_Pacheco_0002.jpg").read_bytes()
    (src / "Abel_Pacheco_0002.jpg").write_bytes(b"no longer an image")
    assert _anonymize("--method", "blur17", *argv) == 1
    assert "Abel_Pacheco_0002.jpg" in capsys.readouterr().err
    assert (out / "Abel_Pacheco_0002.jpg").read_bytes() == earlier
    assert sorted(p.name for p in out.iterdir()) == [
        "Abel_Pacheco_0001.jpg",
        "Abel_Pacheco_0002.jpg",
        "anonymize_report.json",
    ]
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert "Abel_Pacheco_0002.jpg" in rep["written"]


def test_broken_links_fail_and_linked_folders_are_listed(tmp_path, capsys):
    """W3: a dangling .jpg link fails like an unreadable image; a linked subfolder is not
    followed, and says so; both are in the report, and the exit code is 1."""
    src = _inputs(tmp_path)
    (src / "dangling.jpg").symlink_to(tmp_path / "nowhere" / "x.jpg")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sorted(PHOTOS.glob("*.jpg"))[0], other / "o.jpg")
    (src / "linkdir").symlink_to(other)
    out = tmp_path / "out"
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    skipped = [ln for ln in cap.err.splitlines() if ln.startswith("anonbench: skipped:")]
    assert any("dangling.jpg" in s and "broken symlink" in s for s in skipped)
    assert any("linkdir" in s and "not followed" in s for s in skipped)
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert [Path(f["input"]).name for f in rep["failed"]] == ["dangling.jpg"]
    assert [Path(s["input"]).name for s in rep["skipped"]] == ["linkdir"]
    assert rep["totals"]["failed"] == 1
    assert rep["totals"]["images"] == 2 and not (out / "linkdir").exists()


def test_identity_for_a_method_without_identities(tmp_path, capsys):
    """W4: --identity is refused for blur9 as --device is, before any work."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    argv = ["--method", "blur9", "--input", str(src), "--output", str(out)]
    assert _anonymize(*argv, "--identity", "3") == 2
    assert "takes no --identity" in _one_error(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "under-a-file", "proc"])
def test_unusable_cache_dir_is_one_line(tmp_path, capsys, kind):
    """W5: a --cache-dir that is a file or cannot be made is named, up front; it did make
    every input "fail" with a raw OSError."""
    src = _inputs(tmp_path)
    (tmp_path / "cachefile").write_text("hi")
    cache = {
        "file": tmp_path / "cachefile",
        "under-a-file": tmp_path / "cachefile" / "sub",
        "proc": Path("/proc/anonbench-nope"),
    }[kind]
    out = tmp_path / "out"
    argv = ["anonymize", "--method", "blur9", "--input", str(src), "--output", str(out)]
    assert main([*argv, "--quiet", "--cache-dir", str(cache)]) == 2
    assert f"--cache-dir {cache}" in _one_error(capsys.readouterr().err)
    assert not out.exists()


def test_output_a_broken_symlink(tmp_path, capsys):
    """W7: --output a dangling link is one line naming it (the check lives in
    anonbench.runner.check_writable_dir)."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    assert "broken symlink" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "nowhere").exists()


def test_report_path_a_folder_is_refused_up_front(tmp_path, capsys):
    """W8: a folder where anonymize_report.json goes is one line before any work (it was a
    traceback after every output was written)."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    (out / "anonymize_report.json").mkdir(parents=True)
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    assert "anonymize_report.json is a folder" in _one_error(capsys.readouterr().err)
    assert [p.name for p in out.iterdir()] == ["anonymize_report.json"]


@pytest.mark.parametrize("method", ["ciagan", "pix2pix"])
def test_checkpoint_a_text_file_or_a_folder(tmp_path, capsys, method):
    """W27: a text file is "not a torch checkpoint" (it was ": 101"); a folder is "a
    folder, not a checkpoint file" (it was "not found"), as `anonbench quality` says."""
    src = _inputs(tmp_path)
    (tmp_path / "text.pt").write_text("hello\n")
    (tmp_path / "dir.pt").mkdir()
    argv = ["--method", method, "--input", str(src), "--output", str(tmp_path / "o")]
    assert _anonymize(*argv, "--checkpoint", str(tmp_path / "text.pt")) == 2
    line = _one_error(capsys.readouterr().err)
    assert "not a torch checkpoint" in line and not line.endswith(": 101")
    assert _anonymize(*argv, "--checkpoint", str(tmp_path / "dir.pt")) == 2
    assert "a folder, not a checkpoint file" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_a_linked_subfolder_of_output_cannot_send_outputs_outside(tmp_path, capsys):
    """out/sub -> elsewhere: the input's sub/ photos would have been written outside
    --output; refused before any work, nothing written on either side of the link."""
    src = tmp_path / "in"
    shutil.copytree(PHOTOS, src / "sub")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    line = _one_error(capsys.readouterr().err)
    assert "a link out of --output" in line and str(elsewhere) in line
    assert not list(elsewhere.iterdir()) and [p.name for p in out.iterdir()] == ["sub"]


def test_an_unlistable_subfolder_is_listed_not_dropped(tmp_path, capsys, monkeypatch):
    """A subfolder the user cannot list (permissions; simulated, as root reads everything)
    was passed over in silence: now it is in the report's `skipped`, with why."""
    import os

    src = _inputs(tmp_path)
    (src / "locked").mkdir()
    shutil.copy(sorted(PHOTOS.glob("*.jpg"))[0], src / "locked" / "x.jpg")
    real_scandir = os.scandir

    def scandir(path=".", *a, **k):
        if not isinstance(path, int) and Path(os.fspath(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    _anonymize("--method", "blur9", "--input", str(src), "--output", str(out))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    rep = json.loads((out / "anonymize_report.json").read_text())
    (s,) = rep["skipped"]
    assert Path(s["input"]).name == "locked" and "cannot be listed" in s["reason"]
    assert any("locked" in ln for ln in cap.err.splitlines() if "skipped" in ln)
    assert rep["totals"]["images"] == 2


def test_odd_but_legal_folder_names_are_not_links(tmp_path, capsys):
    """A subfolder named `a\\b` or `C:x` is legal on Linux and no link: its photos are
    anonymized like any other (the escape check follows links only, it does not judge names)."""
    src = tmp_path / "in"
    for sub in ("a\\b", "C:x"):
        shutil.copytree(PHOTOS, src / sub)
    out = tmp_path / "out"
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 0
    assert "Traceback" not in capsys.readouterr().err
    for sub in ("a\\b", "C:x"):
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(
            p.name for p in PHOTOS.glob("*.jpg")
        )


def test_the_refusal_names_the_link_not_the_folder_below_it(tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(PHOTOS, src / "sub" / "deeper")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    (elsewhere / "deeper").mkdir(parents=True)
    (out / "sub").symlink_to(elsewhere)
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 2
    line = _one_error(capsys.readouterr().err)
    assert f"error: {out / 'sub'}: a link out of --output {out} (-> {elsewhere})" in line


KILLED_RUN = """
import os, sys
import anonbench.commands.anonymize as a
real, seen = a.process_photo, []
def dies_at_the_third(*args, **kw):
    seen.append(1)
    if len(seen) == 3:
        os._exit(9)  # no cleanup at all, as SIGKILL or a power loss
    return real(*args, **kw)
a.process_photo = dies_at_the_third
from anonbench.cli import main
main(["anonymize", "--detector", "dlib-hog", "--quiet", "--no-cache", "--method", "pixelate8",
      "--input", sys.argv[1], "--output", sys.argv[2]])
"""


def test_a_killed_rerun_is_undone_by_the_next_run(tmp_path, capsys):
    """A rerun killed mid-way (no except, no finally) left earlier outputs replaced and new
    ones that no report lists, so the next run refused its own outputs as the user's. Now
    the next run first undoes the killed one (journal of added outputs, earlier outputs put
    back from the aside folder), then works: nothing of the user's refused or lost."""
    import subprocess
    import sys

    src = _inputs(tmp_path)  # two photos
    out = tmp_path / "out"
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 0
    before = snapshot(out)
    for i in range(2):  # two new inputs: the killed run writes the first of them
        shutil.copy(sorted(PHOTOS.glob("*.jpg"))[i], src / f"new{i}.jpg")
    r = subprocess.run([sys.executable, "-c", KILLED_RUN, str(src), str(out)], check=False)
    assert r.returncode == 9
    assert snapshot(out, skip=(".anonbench-aside.",)) != before  # a half-done state
    capsys.readouterr()
    assert _anonymize("--method", "blur9", "--input", str(src), "--output", str(out)) == 0
    err = capsys.readouterr().err
    assert "undid a run that was killed" in err and "Traceback" not in err
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert rep["totals"]["images"] == 4 and not rep["failed"]
    assert not list(out.glob(".anonbench-aside.*"))
