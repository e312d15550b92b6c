"""Bad inputs: every one is a single clear line or a counted skip, never a traceback.

All fixtures are built here, in tmp_path: corrupt, empty, tiny, grayscale, CMYK, RGBA and
16-bit images, a PNG whose header declares a huge image, text files that are not UTF-8, a
folder with bad files run through `anonbench anonymize`, a truncated video, concurrent
merges into one results.csv; then `anonbench run` itself on the tiny LFW fixture: folders it
cannot write to, a write that fails after work started, a run that measured nothing, reruns
that skip what is complete (after an interrupt too), and two runs into one folder at once.
Then: no face and twelve faces, a 9 MP image under and over --max-pixels, a video without a
face, LFW pairs naming a missing image or malformed / miscounted, a CelebA list naming missing
images, unknown names, bad checkpoints (wrong shape, another family, truncated, a pickled
object), report / markdown paths that cannot be written, and HTML in a method label.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from anonbench.cli import main
from anonbench.data import images
from anonbench.data.images import ImageReadError, ImageTooLargeError, read_image, read_rgb
from anonbench.data.lfw import sample_root
from anonbench.errors import AnonbenchError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _restore_max_pixels(monkeypatch):
    """`anonbench anonymize --max-pixels` sets a process-wide limit; undo it after each test."""
    monkeypatch.setattr(images, "_max_pixels", images.DEFAULT_MAX_PIXELS)
    monkeypatch.setenv(images.ENV_MAX_PIXELS, str(images.DEFAULT_MAX_PIXELS))


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose IHDR declares w x h RGB but holds almost no data (a few hundred bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(PNG_SIGNATURE + body)
    return path


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(path) in msg, msg
    assert isinstance(e.value, AnonbenchError)
    return msg


# -- images ------------------------------------------------------------------------------------


def test_corrupt_and_empty_files_are_one_line(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    with pytest.raises(ImageReadError) as e:
        read_rgb(bad)
    assert "cannot decode" in _one_line(e, bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for reader in (read_rgb, read_image):
        with pytest.raises(ImageReadError) as e:
            reader(empty)
        assert "empty file (0 bytes)" in _one_line(e, empty)
    # a valid PNG cut in half: the header reads, the pixels do not
    half = tmp_path / "half.png"
    cv2.imwrite(str(half), np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    half.write_bytes(half.read_bytes()[:200])
    with pytest.raises(ImageReadError) as e:
        read_image(half)
    _one_line(e, half)


def test_tiny_grayscale_cmyk_become_rgb(tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(one)
    assert read_rgb(one).tolist() == [[[10, 20, 30]]]
    gray = tmp_path / "gray.png"
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(g, "L").save(gray)
    rgb, alpha, info = read_image(gray)
    assert rgb.shape == (3, 4, 3) and alpha is None
    assert all(np.array_equal(rgb[..., c], g) for c in range(3))
    assert info.conversions == ["grayscale -> RGB"] and np.array_equal(read_rgb(gray), rgb)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(cmyk, quality=95)  # pure red
    rgb, _, info = read_image(cmyk)
    assert rgb.shape == (8, 16, 3) and info.mode == "CMYK" and "CMYK -> RGB" in info.conversions
    assert np.abs(rgb.reshape(-1, 3).mean(0) - [255, 0, 0]).max() < 8


def test_rgba_keeps_alpha_and_16bit_keeps_the_high_byte(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    rgb, alpha, info = read_image(p)
    assert np.array_equal(rgb, rgba[..., :3]) and np.array_equal(alpha, rgba[..., 3])
    assert info.has_alpha and np.array_equal(read_rgb(p), rgba[..., :3])
    deep = rng.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    p16 = tmp_path / "deep.png"
    assert cv2.imwrite(str(p16), deep[..., ::-1])  # OpenCV writes BGR
    rgb, alpha, info = read_image(p16)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, (deep >> 8).astype(np.uint8))
    assert alpha is None and info.bits == 16 and info.conversions == ["16-bit -> 8-bit"]
    assert np.array_equal(read_rgb(p16), rgb)
    deep_a = rng.integers(0, 65536, (4, 4, 4), dtype=np.uint16)
    p16a = tmp_path / "deep_rgba.png"
    assert cv2.imwrite(str(p16a), deep_a)
    rgb, alpha, info = read_image(p16a)
    assert np.array_equal(alpha, (deep_a[..., 3] >> 8).astype(np.uint8)) and info.bits == 16


def test_pixel_limit_refuses_from_the_header_before_decoding(tmp_path, monkeypatch):
    big = _png_header_only(tmp_path / "big.png", 9000, 9000)  # 81 MP, under PIL's own limit
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 MP: PIL raises itself
    assert big.stat().st_size < 500 and bomb.stat().st_size < 500

    def no_decoding(*a, **k):
        raise AssertionError("decoded an image that is over the limit")

    with monkeypatch.context() as m:
        m.setattr(cv2, "imdecode", no_decoding)
        with pytest.raises(ImageTooLargeError) as e:
            read_rgb(big)
        msg = _one_line(e, big)
        assert "9000x9000" in msg and "81.0 megapixels" in msg and "64.0 megapixels" in msg
        with pytest.raises(ImageTooLargeError) as e:
            read_image(bomb)
        assert "400.0 megapixels" in _one_line(e, bomb)
        with pytest.raises(ImageTooLargeError, match="9000x9000"):
            read_image(big, max_pixels=1000)
    # under a higher limit the header passes and the (missing) pixels fail to decode
    with pytest.raises(ImageReadError) as e:
        read_rgb(big, max_pixels=100_000_000)
    assert not isinstance(e.value, ImageTooLargeError) and "cannot decode" in str(e.value)
    images.set_max_pixels(10)
    assert images.get_max_pixels() == 10
    assert images.os.environ[images.ENV_MAX_PIXELS] == "10"  # worker processes inherit it
    small = tmp_path / "small.png"
    Image.new("RGB", (4, 4)).save(small)
    with pytest.raises(ImageTooLargeError, match="4x4"):
        read_rgb(small)
    images.set_max_pixels(0)
    assert images.get_max_pixels() is None and read_rgb(small).shape == (4, 4, 3)


# -- text files --------------------------------------------------------------------------------


def test_pairs_file_that_is_not_utf8(tmp_path):
    from anonbench.data.lfw import read_pairs

    p = tmp_path / "pairs.txt"
    p.write_bytes(b"1 1\nAlice\t1\t2\nB\xe9atrice\t1\tCarl\t1\n")
    with pytest.raises(AnonbenchError) as e:
        read_pairs(p)
    msg = _one_line(e, p)
    assert f"{p}:3:" in msg and "not UTF-8" in msg and "e9" in msg
    ok = tmp_path / "ok.txt"  # UTF-8 with a byte-order mark and a non-ASCII name is fine
    ok.write_bytes("\ufeff1 1\nAlice\t1\t2\nBéatrice\t1\tCarl\t1\n".encode())
    assert [(x.name1, x.name2) for x in read_pairs(ok)] == [
        ("Alice", "Alice"),
        ("Béatrice", "Carl"),
    ]


def test_celeba_identity_list_that_is_not_utf8(tmp_path):
    from anonbench.data.celeba import load_celeba

    (tmp_path / "img_align_celeba").mkdir()
    ident = tmp_path / "identity_CelebA.txt"
    ident.write_bytes(b"000001.jpg 1\n000002.jpg 2\n\xff\xfe0003.jpg 3\n")
    with pytest.raises(AnonbenchError) as e:
        load_celeba(tmp_path)
    assert f"{ident}:3:" in _one_line(e, ident)
    ident.write_bytes(b"000001.jpg 1\n")
    lm = tmp_path / "list_landmarks_align_celeba.txt"
    lm.write_bytes(b"1\nlefteye_x ...\n000001.jpg 1 2 3 4 5 6 7 8 9 1\xc3\n")
    with pytest.raises(AnonbenchError, match=r"list_landmarks_align_celeba.txt:3: not UTF-8"):
        load_celeba(tmp_path)


# -- anonbench anonymize -----------------------------------------------------------------------


def _anonymize(*args: str) -> int:
    return main(["anonymize", "--quiet", "--no-cache", "--detector", "dlib-hog", *args])


def test_folder_goes_on_past_bad_files(tmp_path, capsys):
    photo = sorted((sample_root() / "images" / "Abdullah_Gul").glob("*.jpg"))[0]
    face = read_rgb(photo)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a_good.jpg").write_bytes(photo.read_bytes())
    (src / "b_corrupt.jpg").write_bytes(b"not an image at all")
    (src / "sub" / "c_empty.png").write_bytes(b"")
    _png_header_only(src / "d_huge.png", 20000, 20000)
    alpha = np.tile(np.linspace(0, 255, face.shape[1]).astype(np.uint8), (face.shape[0], 1))
    Image.fromarray(np.dstack([face, alpha]), "RGBA").save(src / "e_rgba.png")
    assert cv2.imwrite(str(src / "f_deep.png"), face[..., ::-1].astype(np.uint16) * 257)
    out = tmp_path / "out"
    assert _anonymize("--method", "blur17", "--input", str(src), "--output", str(out)) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    skipped = [ln for ln in cap.err.splitlines() if ln.startswith("anonbench: skipped:")]
    assert len(skipped) == 3
    assert any("b_corrupt.jpg" in s and "cannot decode" in s for s in skipped)
    assert any("c_empty.png" in s and "empty file" in s for s in skipped)
    assert any("d_huge.png" in s and "400.0 megapixels" in s for s in skipped)
    assert cap.err.count("16-bit channels") == 1 and "failed inputs (skipped" in cap.out
    rep = json.loads((out / "anonymize_report.json").read_text())
    assert rep["totals"]["failed"] == 3 and rep["totals"]["images"] == 3
    assert rep["totals"]["converted_to_8bit"] == 1 and rep["totals"]["faces"] == 3
    assert sorted(Path(f["input"]).name for f in rep["failed"]) == [
        "b_corrupt.jpg",
        "c_empty.png",
        "d_huge.png",
    ]
    # the good ones are written, the bad ones leave nothing behind, no temporary files
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a_good.jpg", "anonymize_report.json", "e_rgba.png", "f_deep.png"]
    rgb, a, _ = read_image(out / "e_rgba.png")
    assert np.array_equal(a, alpha) and np.abs(rgb.astype(int) - face).mean() > 0.5
    deep, _, info = read_image(out / "f_deep.png")
    assert info.bits == 8 and deep.shape == face.shape
    by_name = {Path(r["input"]).name: r for r in rep["inputs"]}
    assert by_name["e_rgba.png"]["alpha"] == "kept"
    assert by_name["f_deep.png"]["converted"] == ["16-bit -> 8-bit"]
    # --max-pixels from the command line: now the good photo (250 x 250) is too large too
    out2 = tmp_path / "out2"
    args = ["--method", "blur17", "--input", str(src / "a_good.jpg"), "--output", str(out2)]
    assert _anonymize(*args, "--max-pixels", "1000") == 1
    err = capsys.readouterr().err
    assert "250x250" in err and "1,000 pixels" in err  # it said "0.0 megapixels"
    assert json.loads((out2 / "anonymize_report.json").read_text())["totals"]["failed"] == 1


def _truncated_avi(path: Path, frames: int = 40, keep: int = 25) -> Path:
    """An MJPEG AVI of `frames` frames, cut right after frame `keep`: the header still
    declares `frames`, and the index at the end is gone."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert w.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    w.release()
    data = path.read_bytes()
    starts, i = [], data.find(b"00dc", data.find(b"movi"))  # frame chunks follow "movi"
    while i >= 0:
        starts.append(i)
        i = data.find(b"00dc", i + 4)
    assert len(starts) >= frames + 1  # one chunk per frame, then the index entries
    path.write_bytes(data[: starts[keep]])
    return path


def test_truncated_video_says_frames_declared_and_decoded(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _truncated_avi(src / "cut.avi")
    (src / "broken.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 100)  # no moov: won't open
    out = tmp_path / "out"
    assert _anonymize("--method", "blur17", "--input", str(src), "--output", str(out)) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert "cut.avi: 40 frames declared, 25 decoded" in cap.err
    assert any("broken.mp4" in ln for ln in cap.err.splitlines() if "skipped" in ln)
    rep = json.loads((out / "anonymize_report.json").read_text())
    (v,) = rep["inputs"]
    assert (v["frames_declared"], v["frames_decoded"], v["truncated"]) == (40, 25, True)
    assert rep["totals"]["truncated_videos"] == 1 and rep["totals"]["failed"] == 1
    written = cv2.VideoCapture(str(out / "cut.avi.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 25
    written.release()
    assert not (out / "broken.mp4").exists()


# -- results.csv ---------------------------------------------------------------------------------


def _merge_many(path: str, who: int, n: int, barrier) -> None:
    from anonbench.results import make_row, merge_and_write

    barrier.wait()
    for i in range(n):
        row = make_row(method=f"w{who}-{i}", protocol="p", metric="m", value=float(i))
        merge_and_write(path, [row])


def test_concurrent_merges_lose_no_rows(tmp_path):
    from anonbench.results import read_results

    ctx = mp.get_context("fork")  # forked children share the imports: the trials stay quick
    for trial in range(3):
        path = tmp_path / f"t{trial}" / "results.csv"
        path.parent.mkdir()
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_merge_many, args=(str(path), w, 50, barrier)) for w in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]
        df = read_results(path)
        assert len(df) == 100 and df["method"].nunique() == 100
        assert (path.parent / "results.csv.lock").is_file()


def _append_many(path: str, who: int, n: int, barrier) -> None:
    from anonbench.results import append_run_info

    barrier.wait()
    for i in range(n):
        append_run_info(path, {"run_id": f"w{who}-{i}", "status": "running"})
        append_run_info(path, {"run_id": f"w{who}-{i}", "status": "finished"})  # an update


def test_concurrent_run_json_appends_lose_no_run(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(3):
        path = tmp_path / f"t{trial}" / "run.json"
        path.parent.mkdir()
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_append_many, args=(str(path), w, 30, barrier)) for w in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]
        runs = json.loads(path.read_text())["runs"]
        assert sorted(r["run_id"] for r in runs) == sorted(
            f"w{w}-{i}" for w in (0, 1) for i in range(30)
        )
        assert {r["status"] for r in runs} == {"finished"}


# -- anonbench run: where it writes, what it keeps, what a rerun recomputes ---------------------

TINY = Path(__file__).parent / "fixtures" / "lfw_tiny"


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache holding the tiny LFW fixture's analyses and embeddings, prepared once."""
    cache = tmp_path_factory.mktemp("tiny-cache")
    out = tmp_path_factory.mktemp("tiny-warmup")
    assert _run_tiny(out, cache, "original,blur9") == 0
    return cache


def _run_tiny(out: Path, cache: Path, methods: str, *extra: str, data: Path = TINY) -> int:
    return main(
        [
            "run",
            "--methods",
            methods,
            "--protocol",
            "lfw",
            "--data",
            f"lfw:{data}",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--workers",
            "1",
            "--quiet",
            *extra,
        ]
    )


def _err_line(capsys) -> str:
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("anonbench: error:")]
    assert len(lines) == 1, cap.err
    return lines[0]


def test_unwritable_out_and_cache_fail_before_any_work(tmp_path, capsys, evaluated):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = tmp_path / "cache"
    # root ignores chmod: a regular file where a folder is expected stops root too
    assert _run_tiny(blocker / "out", cache, "blur9") == 2
    assert "--out" in (line := _err_line(capsys)) and f"{blocker} is a file" in line
    assert _run_tiny(blocker, cache, "blur9") == 2
    assert "not a folder" in _err_line(capsys)
    out = tmp_path / "out"
    assert _run_tiny(out, blocker / "cache", "blur9") == 2
    assert "--cache-dir" in _err_line(capsys)
    assert not out.exists() and not cache.exists() and evaluated == []
    # what an earlier run left that a merge at the end could not read or replace
    out.mkdir()
    (out / "results.csv").mkdir()
    assert _run_tiny(out, cache, "blur9") == 2
    assert "results.csv is not a file" in _err_line(capsys)
    (out / "results.csv").rmdir()
    (out / "run.json").write_text("{ half a run.json")
    assert _run_tiny(out, cache, "blur9") == 2
    assert "run.json: not valid JSON" in _err_line(capsys)
    assert (out / "run.json").read_text() == "{ half a run.json"  # left for its owner
    (out / "run.json").unlink()
    (out / "results.csv").write_text("name,age\nx,1\n")
    assert _run_tiny(out, cache, "blur9") == 2
    assert "not an anonbench results file" in _err_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"] and evaluated == []
    # a user's own run.json or report.html: refused, not rewritten (both were overwritten)
    (out / "results.csv").unlink()
    (out / "run.json").write_text('{"my": "notes"}')
    assert _run_tiny(out, cache, "blur9") == 2
    assert "not an anonbench run.json" in _err_line(capsys)
    (out / "run.json").unlink()
    (out / "report.html").write_text("<html><title>My page</title></html>")
    assert _run_tiny(out, cache, "blur9") == 2
    assert "not an anonbench report" in _err_line(capsys)
    assert (out / "report.html").read_text() == "<html><title>My page</title></html>"
    assert evaluated == []


def test_failed_validation_after_mkdir_leaves_no_empty_folder(tmp_path, capsys, monkeypatch):
    from anonbench.protocols.lfw import LFWVerification

    def refuse(self, ctx):
        Path(ctx.out_dir, "scores", "lfw").mkdir(parents=True)  # folders, no file yet
        raise AnonbenchError("the data cannot be used (a validation in prepare)")

    monkeypatch.setattr(LFWVerification, "prepare", refuse)
    out = tmp_path / "new" / "out"
    assert _run_tiny(out, tmp_path / "c", "blur9") == 2
    assert "validation in prepare" in _err_line(capsys)
    assert not out.exists()
    # a folder that was there before the run stays, with what it held
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert _run_tiny(out, tmp_path / "c", "blur9") == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_write_failure_after_work_keeps_what_is_done(tmp_path, tiny_cache, capsys, evaluated):
    from anonbench.results import read_results

    out = tmp_path / "out"
    # blur9's scores file cannot be written (a folder stands in its place): a real OS error
    (out / "scores" / "lfw" / "blur9.csv").mkdir(parents=True)
    assert _run_tiny(out, tiny_cache, "original,blur9") == 1
    line = _err_line(capsys)
    assert "evaluating blur9" in line and "Is a directory" in line and "(original)" in line
    df = read_results(out)
    assert set(df["method"]) == {"original"} and len(df) == 8  # lfw's rows of one method
    info = json.loads((out / "run.json").read_text())
    assert info["status"].startswith("failed") and list(info["methods"]) == ["original"]
    # once the obstacle is gone, a rerun computes only what is missing
    (out / "scores" / "lfw" / "blur9.csv").rmdir()
    evaluated.clear()
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated == ["blur9"]
    assert "skipped original (rows complete" in capsys.readouterr().out
    assert set(read_results(out)["method"]) == {"original", "blur9"}


def test_full_disk_while_writing_results_keeps_results_csv_whole(
    tmp_path, tiny_cache, capsys, monkeypatch
):
    from anonbench import results
    from anonbench.results import read_results

    real = results.atomic_write_text
    writes = []

    def full_disk(path, text):
        if Path(path).name == "results.csv":
            writes.append(path)
            if len(writes) == 2:  # the second method's merge
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(results, "atomic_write_text", full_disk)
    out = tmp_path / "out"
    assert _run_tiny(out, tiny_cache, "original,pixelate8") == 1
    line = _err_line(capsys)
    assert "No space left on device" in line and "writing the results of pixelate8" in line
    df = read_results(out)
    assert set(df["method"]) == {"original"} and len(df) == 8 and df["value"].notna().any()


def test_run_that_measured_nothing_exits_non_zero(tmp_path, tiny_cache, capsys, evaluated):
    data = tmp_path / "lfw"
    shutil.copytree(TINY, data)
    for f in data.rglob("*.jpg"):
        f.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert _run_tiny(out, tiny_cache, "blur9", data=data) == 2
    line = _err_line(capsys)
    assert "nothing measured" in line and "--allow-empty" in line and "6/7" in line
    df = pd_read(out / "results.csv")  # the counts are kept
    assert df.query("metric == 'unreadable_images'")["value"].item() == 6
    assert _run_tiny(out, tiny_cache, "blur9", "--allow-empty", data=data) == 0
    # a rerun does not skip a method that measured nothing: it fails again, it is not hidden
    assert _run_tiny(out, tiny_cache, "blur9", data=data) == 2
    assert "nothing measured" in _err_line(capsys) and evaluated == ["blur9"] * 3
    # one readable pair is enough to measure something
    shutil.copy(TINY / "pairs.txt", data / "pairs.txt")
    for f in TINY.rglob("*.jpg"):
        shutil.copy(f, data / f.relative_to(TINY))
    assert _run_tiny(out, tiny_cache, "blur9", data=data) == 0


def pd_read(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _drop_rows(results_csv: Path, method: str) -> None:
    import pandas as pd

    df = pd.read_csv(results_csv)
    df[df["method"] != method].to_csv(results_csv, index=False)


def test_rerun_recomputes_only_what_is_missing_or_changed(tmp_path, tiny_cache, capsys, evaluated):
    out = tmp_path / "out"
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated == ["original", "blur9"]
    capsys.readouterr()
    # an interrupt after original: blur9's rows are missing
    _drop_rows(out / "results.csv", "blur9")
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated[2:] == ["blur9"]
    printed = capsys.readouterr().out
    assert "skipped original (rows complete, inputs unchanged; --force recomputes)" in printed
    assert "skipped blur9" not in printed
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated[3:] == []
    # one row missing is incomplete too
    df = pd_read(out / "results.csv")
    drop = (df["method"] == "original") & (df["metric"] == "accuracy")
    df[~drop].to_csv(out / "results.csv", index=False)
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated[3:] == ["original"]
    # changed inputs (the seed; the protocol options) and --force recompute
    assert _run_tiny(out, tiny_cache, "original,blur9", "--seed", "1") == 0
    assert evaluated[4:] == ["original", "blur9"]
    assert _run_tiny(out, tiny_cache, "blur9", "--seed", "1", "--folds", "1") == 0
    assert evaluated[6:] == ["blur9"]
    assert _run_tiny(out, tiny_cache, "blur9", "--seed", "1", "--folds", "1", "--force") == 0
    assert evaluated[7:] == ["blur9"]
    info = json.loads((out / "run.json").read_text())
    assert len(info["runs"]) == 7 and info["runs"][-1]["run_id"] == info["run_id"]
    assert all(r["status"] == "finished" for r in info["runs"])
    assert info["runs"][1]["methods"]["original"]["skipped"] is True
    digests = {r["methods"]["blur9"]["input_digest"] for r in info["runs"]}
    assert len(digests) == 3  # seed 0; seed 1; seed 1 with one fold


def test_interrupted_run_resumes_with_what_is_missing(
    tmp_path, tiny_cache, capsys, monkeypatch, evaluated
):
    from anonbench.protocols.lfw import LFWVerification

    counting = LFWVerification.evaluate

    def interrupt_blur9(self, method, store, ctx):
        if method.name == "blur9":
            raise KeyboardInterrupt
        return counting(self, method, store, ctx)

    monkeypatch.setattr(LFWVerification, "evaluate", interrupt_blur9)
    out = tmp_path / "out"
    assert _run_tiny(out, tiny_cache, "original,blur9") == 130
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and list(info["methods"]) == ["original"]
    assert set(pd_read(out / "results.csv")["method"]) == {"original"}
    monkeypatch.setattr(LFWVerification, "evaluate", counting)
    evaluated.clear()
    capsys.readouterr()
    assert _run_tiny(out, tiny_cache, "original,blur9") == 0
    assert evaluated == ["blur9"] and "skipped original" in capsys.readouterr().out
    assert set(pd_read(out / "results.csv")["method"]) == {"original", "blur9"}


@pytest.mark.slow
def test_two_run_processes_into_one_folder(tmp_path, tiny_cache):
    from anonbench.results import read_results

    def cmd(methods: str, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "anonbench",
            "run",
            "--methods",
            methods,
            "--protocol",
            "lfw",
            "--data",
            f"lfw:{TINY}",
            "--out",
            str(out),
            "--cache-dir",
            str(tiny_cache),
            "--workers",
            "1",
            "--quiet",
        ]

    for trial in range(2):
        out = tmp_path / f"t{trial}"
        procs = [
            subprocess.Popen(cmd(m, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for m in ("original,blur9", "pixelate8,mask")
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e.decode()[-2000:] for _, e in outs]
        df = read_results(out)
        assert df.groupby("method").size().to_dict() == dict.fromkeys(
            ["blur9", "mask", "original", "pixelate8"],
            8,  # lfw's rows per method (auc, eer too)
        )
        info = json.loads((out / "run.json").read_text())
        assert len(info["runs"]) == 2 and {r["status"] for r in info["runs"]} == {"finished"}
        ran = sorted(m for r in info["runs"] for m in r["methods"])
        assert ran == ["blur9", "mask", "original", "pixelate8"]


# -- run.json: old single-object format and the list of runs -----------------------------------


def test_run_json_list_and_old_format(tmp_path):
    from anonbench.display import run_metric_specs
    from anonbench.results import append_run_info, run_entries

    fixture = Path(__file__).parent / "fixtures" / "report_run" / "lfw" / "run.json"
    old = json.loads(fixture.read_text())
    assert "runs" not in old and run_entries(old) == [old]
    p = tmp_path / "run.json"
    shutil.copy(fixture, p)

    def spec_tol(entry_tol: float) -> dict:
        e = json.loads(json.dumps(old))
        e.pop("run_id", None)
        for m in e["protocol"]["metrics"]:
            if m["name"] == "tar_far_1e-3":
                m["tolerance"] = entry_tol
        return e

    new = {**spec_tol(0.125), "run_id": "b"}
    append_run_info(p, new)
    info = json.loads(p.read_text())
    assert len(info["runs"]) == 2 and info["runs"][0] == old and info["run_id"] == "b"
    assert run_metric_specs("lfw", [info])["tar_far_1e-3"].tolerance == 0.125
    # an update of a run replaces its entry and makes it the latest
    append_run_info(p, {**spec_tol(0.25), "run_id": "c"})
    append_run_info(p, {**spec_tol(0.5), "run_id": "b"})
    info = json.loads(p.read_text())
    assert [r.get("run_id") for r in info["runs"]] == [None, "c", "b"]
    assert run_metric_specs("lfw", [info])["tar_far_1e-3"].tolerance == 0.5
    # the old format still reads as one run; its spec is the fixture's
    assert run_metric_specs("lfw", [old])["tar_far_1e-3"].tolerance == 0.01


def test_check_and_reports_read_every_run_of_a_run_json_list(tmp_path, capsys):
    """A folder holding a celeba run, then an lfw run: the celeba specs come from the older
    entry of the list, the lfw ones from the latest. The protocols are renamed to ones not
    installed here: `check` reads run.json's specs only then (issue 20, rule 4)."""
    import pandas as pd

    from anonbench.reports.runs import load_runs
    from anonbench.results import append_run_info

    fx = Path(__file__).parent / "fixtures" / "report_run"
    run = tmp_path / "run"
    run.mkdir()
    both = [pd.read_csv(fx / p / "results.csv", dtype=str) for p in ("celeba", "lfw")]
    both = [df.assign(protocol="x-" + df["protocol"]) for df in both]
    pd.concat(both).to_csv(run / "results.csv", index=False)
    celeba = json.loads((fx / "celeba" / "run.json").read_text())
    celeba["protocol"]["name"] = "x-celeba"
    for m in celeba["protocol"]["metrics"]:
        if m["name"] == "detection_rate":
            m["tolerance"] = 0.75
    (run / "run.json").write_text(json.dumps(celeba))  # the old single-object format
    lfw = json.loads((fx / "lfw" / "run.json").read_text())
    lfw["protocol"]["name"] = "x-lfw"
    for m in lfw["protocol"]["metrics"]:
        if m["name"] == "tar_far_1e-3":
            m["tolerance"] = 0.125
    append_run_info(run / "run.json", {**lfw, "run_id": "new"})
    assert len(json.loads((run / "run.json").read_text())["runs"]) == 2
    bundle = load_runs([run])
    assert bundle.spec("x-lfw", "tar_far_1e-3").tolerance == 0.125
    assert bundle.spec("x-celeba", "detection_rate").tolerance == 0.75
    assert main(["check", str(run), "--baseline", str(run / "results.csv")]) == 0
    out = capsys.readouterr().out
    assert "tar_far_1e-3 (default +0.125)" in out and "detection_rate (default -0.75)" in out


# -- faces: none, many; a large image under the guard --------------------------------------------


def _face() -> tuple[Path, np.ndarray]:
    photo = sorted((sample_root() / "images" / "Abdullah_Gul").glob("*.jpg"))[0]
    return photo, read_rgb(photo)


def test_no_face_and_twelve_faces(tmp_path, capsys):
    _, face = _face()
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (200, 160), (128, 128, 128)).save(src / "empty_wall.png")
    grid = np.vstack([np.hstack([face] * 4)] * 3)  # 3 rows x 4 columns of one face
    Image.fromarray(grid).save(src / "crowd.png")
    out = tmp_path / "out"
    assert _anonymize("--method", "blur17", "--input", str(src), "--output", str(out)) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert "anonymized 12 face(s) in 2 image(s)" in cap.out and "missed: 1" in cap.out
    rep = json.loads((out / "anonymize_report.json").read_text())
    by_name = {Path(r["input"]).name: r for r in rep["inputs"]}
    assert (by_name["empty_wall.png"]["faces"], by_name["empty_wall.png"]["missed"]) == (0, 1)
    assert by_name["crowd.png"]["faces"] == 12 and len(by_name["crowd.png"]["identities"]) == 12
    assert rep["totals"]["missed"] == 1 and rep["totals"]["failed"] == 0
    assert read_rgb(out / "crowd.png").shape == grid.shape


def test_real_large_image_under_the_guard_and_refused_over_it(tmp_path, capsys):
    big = tmp_path / "big.jpg"
    ramp = np.linspace(0, 255, 3000).astype(np.uint8)
    Image.fromarray(np.dstack([np.tile(ramp, (3000, 1))] * 3)).save(big, quality=80)
    assert read_rgb(big).shape == (3000, 3000, 3)  # 9 MP: under the 64 MP default
    out = tmp_path / "out"
    args = ["--method", "blur17", "--input", str(big), "--output", str(out)]
    assert _anonymize(*args, "--max-pixels", "1000000") == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    (line,) = [ln for ln in cap.err.splitlines() if ln.startswith("anonbench: skipped:")]
    assert str(big) in line and "3000x3000" in line and "9.0 megapixels" in line
    assert json.loads((out / "anonymize_report.json").read_text())["totals"]["failed"] == 1
    assert not (out / "big.jpg").exists()


def test_video_with_no_face_is_handled_and_reported(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    w = cv2.VideoWriter(str(src / "grey.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert w.isOpened()
    for k in range(6):
        w.write(np.full((48, 64, 3), 100 + k, np.uint8))
    w.release()
    out = tmp_path / "out"
    assert _anonymize("--method", "blur17", "--input", str(src), "--output", str(out)) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert "0 image(s) and 1 video(s)" in cap.out
    rep = json.loads((out / "anonymize_report.json").read_text())
    (v,) = rep["inputs"]
    assert (v["frames_declared"], v["frames_decoded"], v["truncated"]) == (6, 6, False)
    assert rep["totals"]["faces"] == 0 and rep["totals"]["failed"] == 0
    assert rep["totals"]["frames_without_face"] == 6 and "frames where no face" in cap.out
    written = cv2.VideoCapture(str(out / "grey.avi.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    written.release()


# -- run: LFW pairs, CelebA lists, names, checkpoints --------------------------------------------


def _lfw_copy(tmp_path: Path) -> Path:
    data = tmp_path / "lfw"
    shutil.copytree(TINY, data)
    return data


def test_lfw_missing_image_is_counted_and_its_pairs_left_out(tmp_path, tiny_cache, capsys):
    data = _lfw_copy(tmp_path)
    gone = data / "images_deepfunneled" / "Abdullah_Gul" / "Abdullah_Gul_0006.jpg"
    gone.unlink()  # named in one matched pair of fold 1
    out = tmp_path / "out"
    assert _run_tiny(out, tiny_cache, "blur9", data=data) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert f"image not found: {gone} (its pairs are left out)" in cap.out + cap.err
    df = pd_read(out / "results.csv")
    assert df.query("metric == 'unreadable_images'")["value"].item() == 1
    assert df.query("metric == 'accuracy'")["n"].item() == 3  # 4 pairs, 1 left out
    assert "unreadable" in (out / "report.html").read_text()


def test_lfw_missing_image_that_empties_a_fold_of_mismatched_pairs(tmp_path, tiny_cache, capsys):
    data = _lfw_copy(tmp_path)
    (data / "images_deepfunneled" / "Abdel_Madi_Shabneh" / "Abdel_Madi_Shabneh_0001.jpg").unlink()
    assert _run_tiny(tmp_path / "out", tiny_cache, "blur9", data=data) in (0, 2)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    # TAR and accuracy are n/a with the reason; the run keeps its other rows
    import pandas as pd

    df = pd.read_csv(tmp_path / "out" / "results.csv")
    tar = df.query("metric == 'tar_far_1e-3'")
    assert tar["value"].isna().all() and "no mismatched pairs" in tar["note"].item()


@pytest.mark.parametrize(
    "line2, where",
    [
        ("Abdullah_Gul\t1", ":2:"),  # two fields
        ("Abdullah_Gul\tone\t6", ":2:"),  # not a number
        (None, ":1:"),  # the line is gone: the header promises 4 pair lines, 3 are left
    ],
    ids=["malformed", "not-a-number", "wrong-count"],
)
def test_bad_pairs_file_is_one_file_line_error(tmp_path, capsys, line2, where, evaluated):
    data = _lfw_copy(tmp_path)
    lines = (TINY / "pairs.txt").read_text().splitlines()
    lines[1:2] = [] if line2 is None else [line2]
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert _run_tiny(out, tmp_path / "cache", "blur9", data=data) == 2
    assert f"{data / 'pairs.txt'}{where}" in _err_line(capsys)
    assert not out.exists() and evaluated == []


def test_celeba_missing_images_counted_on_console_and_in_run_json(tmp_path, capsys):
    celeba = Path(__file__).parent / "fixtures" / "celeba_tiny"
    assert "999999.jpg" in (celeba / "identity_CelebA.txt").read_text()
    assert not (celeba / "img_align_celeba" / "999999.jpg").exists()
    out = tmp_path / "out"
    args = ["run", "--methods", "blur9", "--protocol", "celeba", "--data", f"celeba:{celeba}"]
    args += ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    opts = ["detectors=dlib-hog", "recognizers=dlib-resnet", "fid=false"]
    assert main([*args, "--quiet", *[x for o in opts for x in ("--option", o)]]) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert "warning: 1 files listed in celeba_tiny are missing" in cap.err
    assert json.loads((out / "run.json").read_text())["dataset"]["missing_files"] == 1
    assert (out / "report.html").is_file()


def test_celeba_missing_images_count_in_the_html_report(tmp_path):
    import re

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "report_run" / "celeba", run)
    info = json.loads((run / "run.json").read_text())
    info.setdefault("dataset", {})["missing_files"] = 7
    (run / "run.json").write_text(json.dumps(info))
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert re.search(r"7 (files|images)[^<]*missing|missing[^<]*\b7\b", html)


@pytest.mark.parametrize(
    "flag, bad, suggestion",
    [
        ("--methods", "blurr9", "did you mean 'blur9'"),
        ("--protocol", "lfww", "did you mean 'lfw'"),
        ("--embedder", "dlib-resnett", "did you mean 'dlib-resnet'"),
    ],
)
def test_unknown_names_are_one_line_with_a_suggestion(tmp_path, capsys, flag, bad, suggestion):
    args = {"--methods": "blur9", "--protocol": "lfw", "--embedder": "dlib-resnet", flag: bad}
    out = tmp_path / "out"
    argv = ["run", "--data", f"lfw:{TINY}", "--out", str(out), "--cache-dir", str(tmp_path)]
    argv += [x for kv in args.items() for x in kv] + ["--workers", "1", "--quiet"]
    assert main(argv) == 2
    line = _err_line(capsys)
    assert bad in line and suggestion in line and not out.exists()


def _touch(path: str) -> None:
    Path(path).write_text("unpickled")


class NotWeights:
    """A pickled object that would run code when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_bad_checkpoints_given_to_run_are_one_line(tmp_path, capsys, evaluated):
    import torch

    from anonbench.methods.ciagan import checkpoint as ckpt_io
    from anonbench.methods.pix2pix.anonymizer import random_checkpoint

    good = ckpt_io.random_generator_checkpoint(4, 32, 8)
    shape = ckpt_io.random_generator_checkpoint(4, 32, 16)
    shape["config"] = good["config"]  # the header says width 8, the weights are width 16
    ckpt_io.save_atomic(shape, tmp_path / "shape.pt")
    from anonbench.methods import gan_common

    gan_common.save_checkpoint(random_checkpoint("landmarks", ngf=8), tmp_path / "p2p.pt")
    ckpt_io.save_atomic(good, tmp_path / "good.pt")
    raw = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    marker = tmp_path / "marker"
    torch.save(NotWeights(marker), tmp_path / "pickled.pt")
    cases = {
        "shape.pt": "does not fit",
        "p2p.pt": "not an anonbench CIAGAN checkpoint",
        "cut.pt": "cannot read CIAGAN checkpoint",
        "pickled.pt": "cannot read CIAGAN checkpoint",
    }
    out = tmp_path / "out"
    for name, want in cases.items():
        ck = f"ciagan={tmp_path / name}"
        assert _run_tiny(out, tmp_path / "cache", "ciagan", "--checkpoint", ck) == 2, name
        line = _err_line(capsys)
        assert want in line and name in line, line
    assert not marker.exists() and not out.exists() and evaluated == []


# -- report and check: output paths, HTML in names ------------------------------------------------

REPORT_RUN = Path(__file__).parent / "fixtures" / "report_run" / "lfw"


def test_report_and_markdown_paths_not_writable_fail_before_any_work(tmp_path, capsys, monkeypatch):
    import anonbench.check as check_mod

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for flag in ("--html", "--latex"):
        for target in (blocker / "r.out", blocker / "sub" / "r.out", tmp_path):
            assert main(["report", str(REPORT_RUN), flag, str(target)]) == 2
            line = _err_line(capsys)
            assert flag in line and str(target) in line
    assert blocker.read_text() == "not a folder"

    def no_work(*a, **k):
        raise AssertionError("compared before checking --markdown")

    monkeypatch.setattr(check_mod, "run_check", no_work)
    base = ["check", str(REPORT_RUN), "--baseline", str(REPORT_RUN / "results.csv")]
    for target in (blocker / "s.md", tmp_path):
        assert main([*base, "--markdown", str(target)]) == 2
        assert "--markdown" in _err_line(capsys)


def test_html_in_a_method_label_is_escaped(tmp_path, tiny_cache, capsys):
    label = "<script>alert(1)"
    out = tmp_path / "out"
    folder = TINY / "images_deepfunneled"
    assert _run_tiny(out, tiny_cache, f"{label}=folder:{folder}") == 0
    html = (out / "report.html").read_text()
    assert label not in html and "&lt;script&gt;alert(1)" in html
    assert main(["report", str(out), "--html", str(tmp_path / "again.html")]) == 0
    again = (tmp_path / "again.html").read_text()
    assert label not in again and "&lt;script&gt;alert(1)" in again


def test_report_path_on_a_read_only_mount(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("no read-only tmpfs mount here (needs root and CAP_SYS_ADMIN)")
    try:
        assert main(["report", str(REPORT_RUN), "--html", str(ro / "r.html")]) == 2
        assert f"--html {ro / 'r.html'}: {ro} is not writable" in _err_line(capsys)
        base = ["check", str(REPORT_RUN), "--baseline", str(REPORT_RUN / "results.csv")]
        assert main([*base, "--markdown", str(ro / "sub" / "s.md")]) == 2
        assert "--markdown" in _err_line(capsys)
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_an_empty_out_is_refused_not_the_default_folder(capsys):
    """`--out ""` (an unset variable in a script) silently wrote to runs/<protocol>-<data>."""
    assert main(["run", "--methods", "original", "--protocol", "lfw", "--out", ""]) == 2
    assert "--out: an empty path" in capsys.readouterr().err


@pytest.mark.parametrize("label", ["NA", "null", "None", "nan"])
def test_a_label_pandas_reads_as_missing_is_refused(tmp_path, capsys, label):
    """It came back from results.csv as NaN (a false "truncated" warning, colliding keys)."""
    folder = tmp_path / label
    folder.mkdir()
    assert main(["run", "--methods", f"folder:{folder}", "--protocol", "lfw"]) == 2
    assert "reads back from results.csv as a missing value" in capsys.readouterr().err


@pytest.mark.parametrize("label", ["a\rb", "tab\there", "line\nbreak"])
def test_a_label_with_a_control_character_is_refused(capsys, label):
    """A carriage return is left unquoted in results.csv and cut its row in two on reading."""
    assert main(["run", "--methods", f"{label}=folder:x", "--protocol", "lfw"]) == 2
    err = capsys.readouterr().err
    assert "holds a control character" in err and "Traceback" not in err
