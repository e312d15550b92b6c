"""The hostile-input test (issue 20): a tree of crafted index files, manifests, labels,
outputs and run folders, run through every command (run, produce, anonymize, report, check).

For each case, every file under the tree is listed and hashed before and after: nothing
outside the folders the case allows (its --out / --output / --cache-dir / report file) is
created, changed or removed; no traceback; the exit code is the documented one (0 success,
1 a failure after work started or a regression, 2 bad input, one line).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from safety_cases import FIXTURES, TINY, snapshot

from anonbench.cli import main

CELEBA = FIXTURES / "celeba_tiny"
KEY = "Abel_Pacheco/Abel_Pacheco_0001.jpg"


def _lfw(t: Path, name: str, line4: str | None = None) -> Path:
    d = t / name
    shutil.copytree(TINY, d)
    if line4 is not None:
        lines = (d / "pairs.txt").read_text().splitlines()
        lines[3] = line4
        (d / "pairs.txt").write_text("\n".join(lines) + "\n")
    return d


def _celeba(t: Path, name: str, extra: str) -> Path:
    d = t / name
    shutil.copytree(CELEBA, d)
    ident = d / "identity_CelebA.txt"
    ident.write_text(ident.read_text() + extra)
    return d


def _outs(t: Path, name: str, manifest: object | None = None) -> Path:
    d = t / name
    shutil.copytree(TINY / "images_deepfunneled", d)
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (d / "manifest.json").write_text(text)
    return d


def build_tree(t: Path) -> None:
    """Everything a case reads; `victim/` is what an escape would read or overwrite."""
    victim = t / "victim"
    victim.mkdir()
    face = TINY / "images_deepfunneled" / KEY
    shutil.copy(face, victim / "victim_0001.jpg")
    (victim / "notes.txt").write_text("private")
    _lfw(t, "lfw")
    _lfw(t, "lfw_traverse", "../../../victim\t1\t1")
    _lfw(t, "lfw_abs", f"{victim}\t1\t1")
    link = _lfw(t, "lfw_link")
    shutil.rmtree(link / "images_deepfunneled" / "Abel_Pacheco")
    shutil.copytree(TINY / "images_deepfunneled" / "Abel_Pacheco", victim / "Abel_Pacheco")
    (link / "images_deepfunneled" / "Abel_Pacheco").symlink_to(victim / "Abel_Pacheco")
    _celeba(t, "celeba_traverse", "../../victim/victim_0001.jpg 5\n")
    _celeba(t, "celeba_abs", f"{victim / 'victim_0001.jpg'} 5\n")
    fl = t / "folders_link"
    shutil.copytree(FIXTURES / "identity_folders", fl)
    (fl / "id9").symlink_to(victim)
    fc = t / "folders_collide"
    shutil.copytree(FIXTURES / "identity_folders", fc)
    first = sorted((fc / "id7201").iterdir())[0]
    shutil.copy(first, fc / "id7201" / "x.JPG")
    shutil.copy(first, fc / "id7201" / "x.jpg")
    ol = _outs(t, "outs_link")
    (ol / "Abel_Pacheco" / "Abel_Pacheco_0001.png").symlink_to(victim / "victim_0001.jpg")
    _outs(t, "outs_shape", "[]")
    _outs(t, "outs_missed_str", {"images": {KEY: {"missed": "false"}}})
    ok = _outs(t, "outs_hostile_keys", {"images": {"../../../victim/x": {}, "/etc/passwd": {}}})
    (ok / KEY).write_bytes(b"\x89PNG not an image")
    export = t / "export_link"
    export.mkdir()
    (export / "Abel_Pacheco").symlink_to(victim)
    photos = t / "photos"
    photos.mkdir()
    shutil.copy(face, photos / "photo.jpg")
    pc = t / "photos_collide"
    pc.mkdir()
    shutil.copy(face, pc / "x.JPG")
    shutil.copy(face, pc / "x.jpg")
    (t / "a_file").write_text("not a folder")
    shutil.copytree(FIXTURES / "report_run" / "lfw", t / "run")
    inf = t / "run_inf"
    shutil.copytree(t / "run", inf)
    text = (inf / "results.csv").read_text().splitlines()
    head = text[0].split(",")
    row = text[1].split(",")
    row[head.index("value")] = "inf"
    (inf / "results.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    for name, data in (("run_empty", b""), ("run_bytes", b"method,value\n\xff\xfe\n")):
        (t / name).mkdir()
        (t / name / "results.csv").write_bytes(data)
    bomb = t / "run_bomb"  # an example image whose header claims 20000 x 20000 pixels
    shutil.copytree(t / "run", bomb)
    _png_header_only(bomb / "examples" / "lfw" / "blur17" / "00.jpg", 20000, 20000)
    shutil.copytree(t / "run", t / INJECTED)


INJECTED = "run\n\\input{/etc/passwd}\n\\write18{touch pwned}"


def _png_header_only(path: Path, w: int, h: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _no_live_latex(t: Path) -> None:
    """Nothing from a path became a live LaTeX line (part B's rule 5)."""
    for line in (t / "t.tex").read_text().splitlines():
        assert not line.lstrip().startswith(("\\input", "\\write18")), line


@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    code: int
    allowed: tuple[str, ...] = ()  # folders / files under the tree the case may write
    post: Callable[[Path], None] | None = None  # a further check of what it wrote


def _run(data: str, methods: str = "blur9", protocol: str = "lfw", out: str = "o"):
    def argv(t: Path) -> list[str]:
        ms = ",".join(m.replace("T/", f"{t}/") for m in methods.split(","))
        paths = ["--out", str(t / out), "--cache-dir", str(t / "cache")]
        spec = data.replace("T/", f"{t}/")
        return ["run", "--methods", ms, "--protocol", protocol, "--data", spec, *paths]

    return argv


def _produce(data: str, out: str = "o"):
    def argv(t: Path) -> list[str]:
        spec = data.replace("T/", f"{t}/")
        paths = ["--out", str(t / out), "--cache-dir", str(t / "cache")]
        return ["produce", "--method", "blur9", "--data", spec, *paths]

    return argv


def _anonymize(src: str, out: str = "o"):
    def argv(t: Path) -> list[str]:
        io = ["--input", str(t / src), "--output", str(t / out)]
        return ["anonymize", "--method", "blur9", *io, "--no-cache"]

    return argv


def _cmd(*parts: str):
    return lambda t: [p.replace("T/", f"{t}/") for p in parts]


CASES = [
    # run: crafted index files, links, collisions, folder: outputs, labels, --out on the data
    Case("run-pairs-traversal", _run("lfw:T/lfw_traverse"), 2),
    Case("run-pairs-absolute", _run("lfw:T/lfw_abs"), 2),
    Case("run-lfw-linked-person", _run("lfw:T/lfw_link"), 2),
    Case("run-celeba-traversal", _run("celeba:T/celeba_traverse", protocol="celeba"), 2),
    Case("run-celeba-absolute", _run("celeba:T/celeba_abs", protocol="celeba"), 2),
    Case("run-folders-linked", _run("folders:T/folders_link", protocol="celeba"), 2),
    Case("run-folders-collide", _run("folders:T/folders_collide", protocol="celeba"), 2),
    Case("run-folder-output-link", _run("lfw:T/lfw", "m=folder:T/outs_link"), 2),
    Case("run-folder-manifest-shape", _run("lfw:T/lfw", "m=folder:T/outs_shape"), 2),
    Case("run-folder-missed-string", _run("lfw:T/lfw", "m=folder:T/outs_missed_str"), 2),
    Case("run-label-dotdot", _run("lfw:T/lfw", "..=folder:T/outs_shape"), 2),
    Case("run-label-slash", _run("lfw:T/lfw", "a/b=folder:T/outs_shape"), 2),
    Case("run-out-on-data", _run("lfw:T/lfw", out="lfw"), 2),
    Case("run-out-in-outputs", _run("lfw:T/lfw", "m=folder:T/outs_shape", out="outs_shape/r"), 2),
    Case("run-out-is-a-file", _run("lfw:T/lfw", out="a_file"), 2),
    Case(
        "run-hostile-keys-undecodable-output",
        _run("lfw:T/lfw", "m=folder:T/outs_hostile_keys"),
        0,
        ("o", "cache"),
    ),
    # produce
    Case("produce-pairs-traversal", _produce("lfw:T/lfw_traverse"), 2),
    Case("produce-collide", _produce("folders:T/folders_collide"), 2),
    Case("produce-out-on-data", _produce("lfw:T/lfw", out="lfw"), 2),
    Case("produce-out-on-images", _produce("lfw:T/lfw", out="lfw/images_deepfunneled"), 2),
    Case("produce-out-with-link", _produce("lfw:T/lfw", out="export_link"), 2),
    # anonymize
    Case("anonymize-file-into-its-folder", _anonymize("photos/photo.jpg", "photos"), 2),
    Case("anonymize-into-the-input", _anonymize("photos", "photos/sub"), 2),
    Case("anonymize-output-a-file", _anonymize("photos", "a_file"), 2),
    Case("anonymize-names-collide", _anonymize("photos_collide"), 2),
    Case("anonymize-ok", _anonymize("photos"), 0, ("o",)),
    # report and check
    Case("report-over-results", _cmd("report", "T/run", "--html", "T/run/results.csv"), 2),
    Case("report-over-run-json", _cmd("report", "T/run", "--latex", "T/run/run.json"), 2),
    Case("report-empty-results", _cmd("report", "T/run_empty", "--html", "T/r.html"), 2),
    Case("report-not-utf8", _cmd("report", "T/run_bytes", "--html", "T/r.html"), 2),
    Case("report-ok", _cmd("report", "T/run", "--html", "T/r.html"), 0, ("r.html",)),
    # part B's cases that work already: a decompression bomb, LaTeX from a path, options
    Case("report-bomb-example", _cmd("report", "T/run_bomb", "--html", "T/r.html"), 0, ("r.html",)),
    Case(
        "report-latex-from-a-path",
        _cmd("report", f"T/{INJECTED}", "--latex", "T/t.tex"),
        0,
        ("t.tex",),
        _no_live_latex,
    ),
    Case("run-max-pixels-negative", lambda t: [*_run("lfw:T/lfw")(t), "--max-pixels", "-1"], 2),
    Case("run-seed-negative", lambda t: [*_run("lfw:T/lfw")(t), "--seed", "-1"], 2),
    Case("anonymize-seed-negative", lambda t: [*_anonymize("photos")(t), "--seed", "-1"], 2),
    Case(
        "check-markdown-over-run-json",
        _cmd("check", "T/run", "--baseline", "T/run", "--markdown", "T/run/run.json"),
        2,
    ),
    Case("check-inf", _cmd("check", "T/run_inf", "--baseline", "T/run"), 1),
    Case(
        "check-ok",
        _cmd("check", "T/run", "--baseline", "T/run", "--markdown", "T/s.md"),
        0,
        ("s.md",),
    ),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    t = tmp_path_factory.mktemp("hostile")
    build_tree(t)
    return t


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(tree, capsys, case):
    argv = case.argv(tree)
    before = snapshot(tree)
    try:
        code = main([*argv, "--quiet"] if argv[0] in ("run", "produce", "anonymize") else argv)
    except SystemExit as e:  # argparse refuses an option value: its usage line, exit 2
        code = e.code
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err, cap.err
    assert code == case.code, cap.err
    if code == 2:
        errors = [ln for ln in cap.err.splitlines() if ": error:" in ln]
        assert len(errors) == 1, cap.err
    if case.post is not None:
        case.post(tree)
    after = snapshot(tree)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    outside = sorted(p for p in changed if not any(_under(p, a) for a in case.allowed))
    assert outside == [], f"{case.name} wrote outside {case.allowed}: {outside[:5]}"
    for p in case.allowed:  # what a case may write is its own: gone before the next one
        target = tree / p
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _under(p: str, allowed: str) -> bool:
    return p == allowed or p.startswith(allowed + "/")


def test_a_stopped_anonymize_leaves_nothing_half_written(tmp_path, capsys):
    """--on-miss fail stops a folder at a photo without a face: the photos done before it
    are removed with the folder the run created; a folder that was there keeps its files."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TINY / "images_deepfunneled" / KEY, src / "a.jpg")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(src / "b_blank.png")
    argv = ["anonymize", "--method", "blur9", "--input", str(src), "--no-cache", "--quiet"]
    fail = ["--on-miss", "fail", "--detector", "dlib-hog"]
    out = tmp_path / "out"
    assert main([*argv, "--output", str(out), *fail]) == 2
    assert not out.exists() and "Traceback" not in capsys.readouterr().err
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert main([*argv, "--output", str(out), *fail]) == 2
    assert sorted(p.name for p in out.rglob("*")) == ["mine.txt"]
