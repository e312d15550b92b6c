"""`anonbench anonymize` end to end: a photo, a folder, a short video; any method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anonbench.cli import main
from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.methods.ciagan import checkpoint as ckpt_io

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.pt"
    ckpt_io.save_atomic(ckpt_io.random_generator_checkpoint(1000, 32, 8, seed=1), p)
    return p


def _photos(name: str = "Abdullah_Gul") -> list[Path]:
    return sorted((sample_root() / "images" / name).glob("*.jpg"))


def _run(*args: str) -> int:
    return main(["anonymize", *args, "--quiet", "--no-cache"])


def _report(out: Path) -> dict:
    return json.loads((out / "anonymize_report.json").read_text())


def test_photo_with_blur17_and_ciagan(tmp_path, tiny_ckpt):
    src = _photos()[0]
    out = tmp_path / "blur"
    assert _run("--method", "blur17", "--input", str(src), "--output", str(out)) == 0
    a, b = read_rgb(src), read_rgb(out / src.name)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    rep = _report(out)
    want = {"images": 1, "videos": 0, "faces": 1, "tracks": 0, "missed": 0}
    new = {"failed": 0, "truncated_videos": 0, "converted_to_8bit": 0}
    assert rep["totals"] == {**want, "frames_without_face": 0, **new}
    assert rep["failed"] == []
    out2 = tmp_path / "ciagan"
    args = ["--method", "ciagan", "--checkpoint", str(tiny_ckpt), "--input", str(src)]
    assert _run(*args, "--output", str(out2), "--identity", "17") == 0
    assert _report(out2)["inputs"][0]["identities"] == [17]
    assert _report(out2)["meta"]["identity_conditioned"] is True
    # corners (far from the face) are what the photo had, up to JPEG re-encoding
    c = read_rgb(out2 / src.name).astype(int)
    assert np.abs(c[:40, :40] - a[:40, :40].astype(int)).mean() < 3


def test_folder_mappings_and_misses(tmp_path, tiny_ckpt):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    p1, p2 = _photos()[:2]  # the same person twice
    other = _photos("Alicia_Silverstone")[0]  # clearly someone else
    for p, dst in [
        (p1, folder / "a.jpg"),
        (p2, folder / "sub" / "b.jpg"),
        (other, folder / "c.jpg"),
    ]:
        dst.write_bytes(p.read_bytes())
    blank = np.full((120, 160, 3), 200, np.uint8)
    blank[::7] = 30  # stripes, so blurring changes it
    import cv2

    cv2.imwrite(str(folder / "noface.png"), blank)
    base = ["--method", "ciagan", "--checkpoint", str(tiny_ckpt), "--input", str(folder)]
    # dlib HOG here: one face per photo (RetinaFace also finds a face in the background of b)
    base += ["--detector", "dlib-hog"]

    out = tmp_path / "src"
    assert _run(*base, "--output", str(out), "--mapping", "per-source", "--on-miss", "keep") == 0
    rep = {Path(r["input"]).name: r for r in _report(out)["inputs"]}
    assert (out / "sub" / "b.jpg").is_file() and (out / "noface.png").is_file()
    assert rep["a.jpg"]["identities"] == rep["b.jpg"]["identities"]  # same person, same fake
    assert rep["a.jpg"]["identities"] != rep["c.jpg"]["identities"]
    assert rep["noface.png"]["missed"] == 1
    assert np.array_equal(read_rgb(out / "noface.png"), blank[..., ::-1])  # kept as it was

    out_b = tmp_path / "blurred"
    assert _run(*base, "--output", str(out_b), "--on-miss", "blur") == 0
    assert not np.array_equal(read_rgb(out_b / "noface.png"), blank[..., ::-1])
    assert _run(*base, "--output", str(tmp_path / "f"), "--on-miss", "fail") == 2
    assert _run(*base, "--output", str(folder / "inside")) == 2  # never write into the input


def _synthetic_video(path: Path, frames: int = 8, lead_blank: int = 0) -> None:
    """A face photo drifting a few pixels per frame (some frames blanked: missed faces);
    lead_blank: that many faceless frames first, before any track starts."""
    import cv2

    img = cv2.cvtColor(read_rgb(_photos()[0]), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (250, 250))
    assert w.isOpened()
    for i in range(frames):
        f = np.roll(img, 2 * i, axis=1)
        if i == 4 or i < lead_blank:
            f = np.full_like(f, 128)  # the face vanishes for one frame inside the track
        w.write(f)
    w.release()


def test_frames_without_any_face_are_reported(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    _synthetic_video(video, frames=9, lead_blank=2)
    out = tmp_path / "o"
    assert _run("--method", "blur17", "--input", str(video), "--output", str(out)) == 0
    assert "video frames where no face was found" in capsys.readouterr().out
    rep = _report(out)
    r = rep["inputs"][0]
    # frames 0-1 come before the track starts: uncovered; frame 4 is inside it: missed
    assert r["frames_without_face"] == 2 and r["frames_without_face_list"] == [[0, 1]]
    assert r["missed"] == 1 and rep["totals"]["frames_without_face"] == 2


def test_short_video_any_method(tmp_path, tiny_ckpt):
    import cv2

    video = tmp_path / "clip.avi"
    _synthetic_video(video)
    for method, extra in [("blur17", []), ("ciagan", ["--checkpoint", str(tiny_ckpt)])]:
        out = tmp_path / method
        assert _run("--method", method, "--input", str(video), "--output", str(out), *extra) == 0
        cap = cv2.VideoCapture(str(out / "clip.avi.mp4"))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        assert n == 8 and size == (250, 250)
        r = _report(out)["inputs"][0]
        assert r["kind"] == "video" and r["frames"] == 8 and r["tracks"] == 1
        assert r["missed"] == 1 and r["frames_with_miss"] == 1
        assert r["frames_without_face"] == 0 and r["frames_without_face_list"] == []
        assert len(set(r["identities"].values())) == 1  # one fake identity per track
    assert (
        _run(
            "--method",
            "blur17",
            "--input",
            str(video),
            "--output",
            str(tmp_path / "x"),
            "--on-miss",
            "fail",
        )
        == 2
    )


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    src = str(_photos()[0])
    gone = tmp_path / "no_weights" / "g.pt"  # as if the package shipped no checkpoint
    monkeypatch.setattr("anonbench.methods.ciagan.anonymizer.PACKAGE_WEIGHTS", gone)
    assert _run("--method", "ciagan", "--input", src, "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert "anonbench train ciagan" in err and len(err.splitlines()) == 1
    missing = ["--method", "ciagan", "--checkpoint", str(tmp_path / "nope.pt")]
    assert _run(*missing, "--input", src, "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1
    assert (
        _run(
            "--method",
            "blur17",
            "--checkpoint",
            "x.pt",
            "--input",
            src,
            "--output",
            str(tmp_path / "o"),
        )
        == 2
    )
    assert _run("--method", "blurr17", "--input", src, "--output", str(tmp_path / "o")) == 2
    assert (
        _run(
            "--method",
            "blur17",
            "--input",
            str(tmp_path / "missing.jpg"),
            "--output",
            str(tmp_path / "o"),
        )
        == 2
    )


@pytest.mark.slow
@pytest.mark.shared
def test_default_detector_leaves_fewer_frames_without_a_face(shared_data, tmp_path):
    """Why `anonymize` defaults to RetinaFace: on the Hamilton clip dlib HOG finds no face in
    long stretches that show faces (frames 20-81 in the first 90)."""
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    uncovered = {}
    for det in ("retinaface", "dlib-hog"):
        out = tmp_path / det
        args = ["--method", "blur17", "--input", str(clip), "--output", str(out)]
        args += ["--max-frames", "90"] + (["--detector", det] if det == "dlib-hog" else [])
        assert _run(*args) == 0
        uncovered[det] = _report(out)["inputs"][0]["frames_without_face"]
    assert uncovered["retinaface"] <= 15 and uncovered["dlib-hog"] >= 40, uncovered


def _sound_clip(tmp_path: Path, audio: str) -> Path:
    """The synthetic face video with one second of a 440 Hz tone (`audio`: ffmpeg's codec)."""
    import subprocess

    from anonbench.video_audio import ffmpeg_exe

    silent, clip = tmp_path / "silent.avi", tmp_path / f"clip-{audio}.mov"
    _synthetic_video(silent, frames=10)
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(silent), "-f", "lavfi"]
    cmd += ["-i", "sine=frequency=440:duration=1", "-c:v", "copy", "-c:a", audio, str(clip)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return clip


@pytest.mark.parametrize("audio, kept", [("aac", "copied aac"), ("pcm_s16le", "re-encoded")])
def test_video_keeps_its_sound(tmp_path, audio, kept):
    """The output video carries the original's audio stream (copied, or re-encoded to AAC
    when MP4 does not take the codec); frames are anonymized as before."""
    from anonbench.video_audio import audio_codec

    clip = _sound_clip(tmp_path, audio)
    assert audio_codec(clip) is not None
    out = tmp_path / "o"
    assert _run("--method", "blur17", "--input", str(clip), "--output", str(out)) == 0
    r = _report(out)["inputs"][0]
    assert r["audio"].startswith(kept) and r["frames"] == 10
    assert audio_codec(r["output"]) == "aac"
    # a silent video stays silent
    silent = tmp_path / "silent.avi"
    out2 = tmp_path / "o2"
    assert _run("--method", "blur17", "--input", str(silent), "--output", str(out2)) == 0
    assert _report(out2)["inputs"][0]["audio"] == "none"


def test_threshold_reaches_the_detector(tmp_path, capsys):
    """--threshold sets the detector's score threshold: a threshold no face reaches leaves the
    photo without a face; a detector without a threshold is one line, exit 2."""
    photo = _photos()[0]
    out = tmp_path / "o"
    args = ["--method", "blur17", "--input", str(photo), "--output", str(out)]
    assert _run(*args, "--threshold", "0.3") == 0
    assert _report(out)["inputs"][0]["faces"] == 1
    assert _run(*args, "--threshold", "1.01", "--on-miss", "keep") == 0
    assert _report(out)["inputs"][0]["faces"] == 0
    assert _run(*args, "--detector", "dlib-hog", "--threshold", "-0.5") == 0
    with pytest.raises(SystemExit) as e:
        _run(*args, "--threshold", "nan")
    assert e.value.code == 2
    assert "not a finite number" in capsys.readouterr().err
