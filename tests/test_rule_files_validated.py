"""Rule 7 of issue 20: every file the tool reads is validated. A bad cache entry is recomputed
(never a traceback), a bad results.csv or run.json is one line (exit 2), a bad file a report
embeds or lists (example images, score files, missed lists, the examples index) is left out
with one line in the report, an animated input image is said to be flattened.

Enforced in one place each: anonbench.cache.Cache.get (with the schema its caller passes),
anonbench.results.read_results / read_run_json, anonbench.reports.runs (valid_info,
read_csv_rows) and reports.html._thumb, anonbench.data.images._header (frame count). The cases
are generated: damaged entries per cache schema, damaged contents per file.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from anonbench.cache import Cache, matches
from anonbench.cli import main

RUN = Path(__file__).parent / "fixtures" / "report_run" / "lfw"
TINY = Path(__file__).parent / "fixtures" / "lfw_tiny"

# -- cache entries --------------------------------------------------------------------------


class FakeDetector:
    name, version = "fake", "1"

    def __init__(self) -> None:
        self.calls = 0

    def detect_batch(self, images):
        from anonbench.api import FaceDetection

        self.calls += len(images)
        return [[FaceDetection((1.0, 2.0, 3.0, 4.0), 0.9)] for _ in images]


class FakeEmbedder:
    name, version, dim = "fake-emb", "1", 4

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images, boxes):
        self.calls += len(images)
        return np.full((len(images), 4), 0.5, np.float32), np.zeros(len(images), bool)


def _bad_entries(schema: dict) -> list[tuple[str, object]]:
    """(name, content): raw bytes, or a dict of arrays saved as .npz, each wrong for `schema`."""
    key = next(iter(schema))
    good = {
        k: np.zeros([2 if d is None or isinstance(d, str) else d for d in s], np.float32)
        for k, s in schema.items()
    }
    out: list[tuple[str, object]] = [
        ("empty file", b""),
        ("garbage", b"not a zip at all"),
        ("truncated zip", b"PK\x03\x04" + b"\0" * 20),
        ("no keys", {}),
        ("wrong key", {"other": np.zeros(3)}),
        ("extra key", {**good, "extra": np.zeros(1)}),
        ("missing key", {k: v for k, v in good.items() if k != key}),
        ("string array", {**good, key: np.array(["a", "b"])}),
        ("one more dim", {**good, key: good[key][None]}),
        ("scalar", {**good, key: np.array(1.0)}),
    ]
    for k, shape in schema.items():
        for i, d in enumerate(shape):
            if isinstance(d, int):  # a fixed size: one off
                bad = list(good[k].shape)
                bad[i] = d + 1
                out.append((f"{k} dim {i} = {d + 1}", {**good, k: np.zeros(bad, np.float32)}))
    named = [k for k, s in schema.items() if any(isinstance(d, str) for d in s)]
    if len(named) > 1:  # named dimensions that disagree
        k = named[0]
        arr = good[k]
        out.append((f"{k} disagrees", {**good, k: np.zeros((arr.shape[0] + 1, *arr.shape[1:]))}))
    return out


def _write_entry(cache: Cache, comp: str, version: str, digest: str, content: object) -> Path:
    p = cache._path(comp, version, digest)
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        buf = io.BytesIO()
        np.savez(buf, **content)  # type: ignore[arg-type]
        p.write_bytes(buf.getvalue())
    return p


IMG = np.zeros((8, 8, 3), np.uint8)


def _detect_case(tmp_path, content):
    from anonbench.cache import array_digest
    from anonbench.faces.cached import cached_detections

    cache, det = Cache(tmp_path), FakeDetector()
    _write_entry(cache, "detect-fake", "1", array_digest(IMG), content)
    boxes = cached_detections(cache, det, [IMG])[0]
    assert det.calls == 1 and boxes.shape == (1, 4)  # recomputed
    cached_detections(cache, det, [IMG])
    assert det.calls == 1  # and overwritten with a good entry


def _embed_case(tmp_path, content):
    from anonbench.cache import array_digest
    from anonbench.faces.cached import box_key, cached_embeddings

    cache, emb = Cache(tmp_path), FakeEmbedder()
    box = (0.0, 0.0, 8.0, 8.0)
    key = f"{array_digest(IMG)}/box{box_key(box)}"
    _write_entry(cache, "embed-fake-emb", "1", key, content)
    e, _ = cached_embeddings(cache, emb, [IMG], [box])
    assert emb.calls == 1 and e.shape == (1, 4) and np.allclose(e, 0.5)
    cached_embeddings(cache, emb, [IMG], [box])
    assert emb.calls == 1


def _analysis_case(tmp_path, content):
    from anonbench.cache import array_digest
    from anonbench.faces.analysis import FaceAnalyzer

    class Landmarker:
        name, version = "lm", "1"

        def landmarks(self, image, box):
            return np.zeros((68, 2), np.float32)

    class Det(FakeDetector):
        def detect(self, image):
            return self.detect_batch([image])[0]

    a = FaceAnalyzer.__new__(FaceAnalyzer)
    a.detector, a.landmarker, a.cache = Det(), Landmarker(), Cache(tmp_path)
    a.component, a.version = "analysis-fake-lm", "1+1"
    _write_entry(a.cache, a.component, a.version, array_digest(IMG), content)
    res = a(IMG)
    assert a.detector.calls == 1 and res.boxes.shape == (1, 4) and res.landmarks.shape == (1, 68, 2)
    a(IMG)
    assert a.detector.calls == 1


def _schemas() -> dict[str, tuple[dict, object]]:
    from anonbench.faces.analysis import ANALYSIS
    from anonbench.faces.cached import BOXES

    return {
        "detect": (BOXES, _detect_case),
        "embed": ({"embedding": (4,), "fallback": ()}, _embed_case),
        "analysis": (ANALYSIS, _analysis_case),
    }


CACHE_CASES = [
    (comp, name, content)
    for comp, (schema, _) in _schemas().items()
    for name, content in _bad_entries(schema)
]


@pytest.mark.parametrize(
    "comp, name, content", CACHE_CASES, ids=[f"{c}-{n}" for c, n, _ in CACHE_CASES]
)
def test_bad_cache_entry_is_recomputed(tmp_path, comp, name, content):
    schema, case = _schemas()[comp]
    if isinstance(content, dict):
        assert not matches(content, schema)
    case(tmp_path, content)


def test_zip_bomb_entry_is_not_inflated(tmp_path):
    """An entry declaring more than MAX_ENTRY_BYTES (100 MB of zeros in 100 kB) is not read."""
    import zipfile

    from anonbench.cache import MAX_ENTRY_BYTES

    buf, npy = io.BytesIO(), io.BytesIO()
    np.save(npy, np.zeros((MAX_ENTRY_BYTES + (36 << 20)) // 8))
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("boxes.npy", npy.getvalue())
    assert len(buf.getvalue()) < 1 << 20
    _detect_case(tmp_path, buf.getvalue())


def test_pickled_entry_is_not_loaded(tmp_path):
    cache = Cache(tmp_path)
    p = _write_entry(cache, "c", "1", "d", {"boxes": np.array([object()], dtype=object)})
    assert p.is_file() and cache.get("c", "1", "d", {"boxes": (None,)}) is None


# -- results.csv and run.json ----------------------------------------------------------------

BAD_RESULTS = {
    "empty": b"",
    "blank lines": b"\n\n\n",
    "header only, wrong": b"method,protocol\n",
    "binary": b"\x00\x01\x02garbage\xff\xfe",
    "latin-1": "métho,x\nè,1\n".encode("latin-1"),
    "utf-16": "method,protocol\n".encode("utf-16"),
    "unclosed quote": b'"method,protocol\n1,2',
    "ragged": b"a,b\n1,2,3,4\n",
    "json": b'{"method": 1}',
}
BAD_RUN_JSON = {
    "empty": b"",
    "list": b"[]",
    "null": b"null",
    "truncated": b'{"protocol": {',
    "latin-1": '{"x": "é"}'.encode("latin-1"),
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "config list": b'{"config": [1, 2]}',
    "timings string": b'{"timings_s": "x"}',
    "versions int": b'{"versions": 5}',
    "protocol string": b'{"protocol": "lfw"}',
    "bad metrics": b'{"protocol": {"name": 3, "metrics": [{"name": 5, "decimals": "x"}]}}',
    "runs int": b'{"runs": 5}',
    "dataset list": b'{"dataset": [1]}',
}


def _copy_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    return run


def _one_line_or_ok(capsys, code: int, allowed: tuple[int, ...]) -> str:
    err = capsys.readouterr().err
    assert code in allowed, err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", BAD_RESULTS)
@pytest.mark.parametrize("command", ["report", "check", "check-baseline"])
def test_bad_results_csv_is_one_line(tmp_path, capsys, name, command):
    run = _copy_run(tmp_path)
    (run / "results.csv").write_bytes(BAD_RESULTS[name])
    if command == "report":
        code = main(["report", str(run), "--html", str(tmp_path / "r.html")])
    elif command == "check":
        code = main(["check", str(run), "--baseline", str(RUN)])
    else:
        code = main(["check", str(RUN), "--baseline", str(run / "results.csv")])
    err = _one_line_or_ok(capsys, code, (2,))
    assert "results" in err


@pytest.mark.parametrize("name", BAD_RUN_JSON)
def test_bad_run_json_is_one_line_or_left_out(tmp_path, capsys, name):
    run = _copy_run(tmp_path)
    (run / "run.json").write_bytes(BAD_RUN_JSON[name])
    out = tmp_path / "r.html"
    code = main(["report", str(run), "--html", str(out), "--latex", str(tmp_path / "t.tex")])
    err = _one_line_or_ok(capsys, code, (0, 2))
    if code == 2:
        assert "run.json" in err
    else:  # a JSON object with fields of the wrong type: they are left out, said so
        assert out.is_file()
    code = main(["check", str(run), "--baseline", str(RUN)])
    _one_line_or_ok(capsys, code, (0,))  # the specs come from the installed protocol


# -- files a report embeds or lists ------------------------------------------------------------


def _png_header(w: int, h: int) -> bytes:
    """A PNG with only its header: it claims w x h pixels and holds none."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    end = b"IEND"
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + ihdr
        + struct.pack(">I", zlib.crc32(ihdr))
        + struct.pack(">I", 0)
        + end
        + struct.pack(">I", zlib.crc32(end))
    )


def _animated(fmt: str) -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


BAD_IMAGES = {
    "header 20000x20000": (_png_header(20000, 20000), "more pixels than are safe"),
    "header 9000x9000": (_png_header(9000, 9000), "over 64,000,000"),
    "header 65535x1": (_png_header(65535, 65535), "more pixels than are safe"),
    "animated gif": (_animated("GIF"), "animated (3 frames)"),
    "animated png": (_animated("PNG"), "animated (3 frames)"),
    "animated webp": (_animated("WEBP"), "animated (3 frames)"),
    "empty": (b"", "cannot be decoded"),
    "garbage": (b"\xff\xd8\xff\xe0 not a jpeg", "cannot be decoded"),
    "truncated png": (_png_header(100, 100)[:30], "cannot be decoded"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_example_image_is_left_out_with_a_note(tmp_path, capsys, name):
    data, note = BAD_IMAGES[name]
    run = _copy_run(tmp_path)
    img = run / "examples" / "lfw" / "mask" / "00.jpg"
    img.write_bytes(data)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    _one_line_or_ok(capsys, 0, (0,))
    html = out.read_text()
    assert f"example image {img}" in html and note in html and "not shown" in html


BAD_CSV = {
    "latin-1": "key\nmé\n".encode("latin-1"),
    "binary": b"\x00\xff\xfe\x01",
    "unclosed quote": b'key\n"abc\n',
    "empty": b"",
    "no key column": b"a,b\n1,2\n",
}


@pytest.mark.parametrize("name", BAD_CSV)
@pytest.mark.parametrize(
    "which", ["scores/lfw/mask.csv", "examples/lfw/examples.csv", "missed/lfw/mask.csv"]
)
def test_bad_listed_file_is_left_out_never_a_traceback(tmp_path, capsys, name, which):
    run = _copy_run(tmp_path)
    p = run / which
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(BAD_CSV[name])
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    _one_line_or_ok(capsys, 0, (0,))
    assert out.is_file()


def test_bad_scores_lose_only_their_roc_curve(tmp_path):
    from anonbench.reports.plots import roc_from_scores

    p = tmp_path / "s.csv"
    for text in ("fold,pair,label,score\n1,1,x,0.5\n1,2,1,0.4\n1,3,0,0.2\n", "label,score\n2,1\n"):
        p.write_text(text)
        roc_from_scores(p, "m")  # no exception; unusable rows are not pairs


# -- an animated input image -------------------------------------------------------------------


@pytest.mark.slow
def test_animated_input_is_flattened_with_one_warning(tmp_path):
    """`anonymize` keeps the first frame of an animated PNG or WebP: one warning line each."""
    from PIL import Image

    face = next(TINY.rglob("*.jpg"))
    im = Image.open(face).convert("RGB")
    frames = [im, im.transpose(Image.FLIP_LEFT_RIGHT)]
    src = tmp_path / "in"
    src.mkdir()
    for name, fmt in (("a.png", "PNG"), ("b.webp", "WEBP"), ("still.png", "PNG")):
        if name == "still.png":
            im.save(src / name)
        else:
            frames[0].save(src / name, format=fmt, save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "anonbench", "anonymize", "--method", "blur17"]
    cmd += ["--input", str(src), "--output", str(out), "--quiet", "--no-cache"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "animated" in ln]
    assert len(warn) == 2 and all("only the first frame" in ln for ln in warn), r.stderr
    assert "Traceback" not in r.stderr
    rep = json.loads((out / "anonymize_report.json").read_text())
    conv = {Path(x["input"]).name: x.get("converted", []) for x in rep["inputs"]}
    assert conv["a.png"] == ["animated (2 frames) -> first frame"] and conv["still.png"] == []
