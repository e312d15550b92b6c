"""Rule 6 (issue 20): stores are verified on read.

Generated over the ways an output store can be spoiled (a PNG truncated, flipped, emptied,
deleted, swapped for another valid image, turned into a folder; a manifest naming a file
outside the store; a store written before digests were kept), every one is produced again,
byte for byte what a clean production gives, and only that one; a damaged store manifest is
one warning line and a full production; --force produces everything again. A method whose
output vanished or changed while it was scored reports nothing (exit 1) and a rerun scores
it whole; `produce` never exports the output of an unreadable or changed original. A
`folder:` manifest of the wrong shape, or with `"missed": "false"`, is one line; an
undecodable `folder:` output is a leak, not a dropped pair.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from safety_cases import TINY, copy_tiny, one_error_line, run_tiny

import anonbench.produce as produce_mod
from anonbench.cli import main
from anonbench.data.datasets import open_dataset
from anonbench.errors import AnonbenchError
from anonbench.evaluate import Originals
from anonbench.produce import MANIFEST, open_folder_store, produce
from anonbench.registry import METHODS


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A cache with the tiny fixture's analyses and a clean blur9 store; its output bytes."""
    cache = tmp_path_factory.mktemp("warm-cache")
    store = _produce(cache)
    return cache, {k: (store.root / e["file"]).read_bytes() for k, e in _files(store).items()}


def _produce(cache: Path, force: bool = False):
    ds = open_dataset(f"lfw:{TINY}")
    analyses = Originals(str(cache), 1, True).analyze(ds.records, "analyse")
    method = METHODS.create("blur9")
    return produce(method, "blur9", ds.records, analyses, cache_dir=cache, quiet=True, force=force)


def _files(store) -> dict[str, dict]:
    return {k: e for k, e in sorted(store.entries.items()) if e.get("file")}


@pytest.fixture
def cache(tmp_path, warm) -> Path:
    shutil.copytree(warm[0], tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture
def produced(monkeypatch) -> list[str]:
    """The keys anonymized, in order."""
    keys: list[str] = []
    real = produce_mod._produce_chunk

    def counting(method, root, chunk, analyses, targets):
        keys.extend(r.key for r, _ in chunk)
        return real(method, root, chunk, analyses, targets)

    monkeypatch.setattr(produce_mod, "_produce_chunk", counting)
    return keys


def _store_root(cache: Path) -> Path:
    """The blur9 store (a run of `original` has one too)."""
    (root,) = [
        d
        for d in (cache / "outputs").iterdir()
        if json.loads((d / MANIFEST).read_text()).get("method") == "blur9"
    ]
    return root


def _manifest(cache: Path) -> dict:
    return json.loads((_store_root(cache) / MANIFEST).read_text())


DAMAGE = ["truncate", "flip", "empty", "delete", "swap", "folder", "outside", "old-damaged"]


def _spoil(cache: Path, how: str, among: set[str] | None = None) -> str:
    root = _store_root(cache)
    m = _manifest(cache)
    keys = [k for k, e in sorted(m["images"].items()) if e["file"]]
    key, other = [k for k in keys if among is None or k in among][:2]
    f = root / m["images"][key]["file"]
    data = f.read_bytes()
    if how == "truncate":
        f.write_bytes(data[: len(data) // 3])
    elif how == "flip":
        f.write_bytes(data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "delete":
        f.unlink()
    elif how == "swap":  # another valid image: decodes, but is not this record's output
        shutil.copy(root / m["images"][other]["file"], f)
    elif how == "folder":
        f.unlink()
        f.mkdir()
    elif how in ("outside", "old-damaged"):
        if how == "outside":
            m["images"][key]["file"] = "../../../outside.png"
        else:  # a store written before digests were kept, with a damaged output
            del m["images"][key]["sha256"]
            f.write_bytes(data[:100])
        (root / MANIFEST).write_text(json.dumps(m))
    return key


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_output_is_produced_again(cache, warm, produced, how):
    key = _spoil(cache, how)
    store = _produce(cache)
    assert produced == [key]  # that one only
    assert {k: (store.root / e["file"]).read_bytes() for k, e in _files(store).items()} == warm[1]
    assert store.verify(list(open_dataset(f"lfw:{TINY}").records)) == []
    assert not (cache.parent / "outside.png").exists()


def test_a_store_without_digests_is_checked_by_decoding_and_kept(cache, produced):
    root = _store_root(cache)
    m = _manifest(cache)
    for e in m["images"].values():
        e.pop("sha256", None)
    (root / MANIFEST).write_text(json.dumps(m))
    _produce(cache)
    assert produced == []
    assert all(e["sha256"] for e in _manifest(cache)["images"].values() if e["file"])


BAD_MANIFESTS = [
    b"not json",
    b"[]",
    b'{"images": []}',
    b'{"images": "x"}',
    b'{"images": null}',
    b'"just a string"',
    b"\xff\xfe\x00garbage",
]


@pytest.mark.parametrize("text", BAD_MANIFESTS)
def test_a_damaged_store_manifest_is_one_warning_and_a_new_production(
    cache, warm, produced, capsys, text
):
    root = _store_root(cache)
    (root / MANIFEST).write_bytes(text)
    store = _produce(cache)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if "damaged output-store manifest" in ln] == [
        ln for ln in err.splitlines() if ln.strip()
    ] and len(err.splitlines()) == 1
    assert sorted(produced) == sorted(store.entries)
    assert {k: (root / e["file"]).read_bytes() for k, e in _files(store).items()} == warm[1]


@pytest.mark.parametrize("entry", [3, "x", None, [], {"file": 7}, {"file": "Other/x.png"}])
def test_a_damaged_store_entry_is_produced_again(cache, produced, entry):
    root = _store_root(cache)
    m = _manifest(cache)
    key = sorted(k for k, e in m["images"].items() if e["file"])[0]
    m["images"][key] = entry
    (root / MANIFEST).write_text(json.dumps(m))
    _produce(cache)
    assert produced == [key]


def test_force_produces_the_whole_store_again(cache, produced):
    store = _produce(cache, force=True)
    assert sorted(produced) == sorted(store.entries)


# -- a method is complete only if every output was scored --------------------------------------


@pytest.mark.parametrize("how", ["delete", "swap"])
def test_an_output_that_vanishes_while_scored_reports_nothing(
    tmp_path, cache, warm, capsys, monkeypatch, how
):
    from anonbench.protocols.lfw import LFWVerification

    real = LFWVerification.evaluate

    def spoil_then_score(self, method, store, ctx):
        _spoil(Path(ctx.cache_dir), how, set(store.entries))  # an output it scores
        return real(self, method, store, ctx)

    clean = tmp_path / "clean"
    assert run_tiny(TINY, clean, cache, "original,blur9") == 0
    monkeypatch.setattr(LFWVerification, "evaluate", spoil_then_score)
    out = tmp_path / "out"
    capsys.readouterr()
    assert run_tiny(TINY, out, cache, "blur9") == 1
    assert "vanished or changed while it was scored" in one_error_line(capsys)
    # no numbers, and none of the files its scoring wrote (scores, examples, missed list);
    # the protocol's examples.csv index, shared by every method, may stay
    left = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert left in ([], ["examples/lfw/examples.csv"])
    monkeypatch.setattr(LFWVerification, "evaluate", real)
    assert run_tiny(TINY, out, cache, "blur9") == 0  # not skipped: scored whole
    assert "skipped blur9" not in capsys.readouterr().out
    got = pd.read_csv(out / "results.csv")
    want = pd.read_csv(clean / "results.csv")
    want = want[want["method"] == "blur9"]
    assert got["value"].tolist() == want["value"].tolist()
    assert got["n"].tolist() == want["n"].tolist()


# -- produce never exports the output of an unreadable or changed original ---------------------


def _produce_cmd(data: Path, out: Path, cache: Path) -> int:
    argv = ["produce", "--method", "blur9", "--data", f"lfw:{data}", "--out", str(out)]
    return main([*argv, "--cache-dir", str(cache), "--quiet", "--workers", "1"])


@pytest.mark.parametrize("how", ["unreadable", "changed"])
def test_produce_exports_only_current_originals(tmp_path, cache, capsys, how):
    data = copy_tiny(tmp_path / "lfw")
    out = tmp_path / "export"
    assert _produce_cmd(data, out, cache) == 0
    key = "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    png = out / "Abel_Pacheco" / "Abel_Pacheco_0001.png"
    old = png.read_bytes()
    src = data / "images_deepfunneled" / key
    if how == "unreadable":
        src.write_bytes(src.read_bytes()[:300])
    else:
        shutil.copy(data / "images_deepfunneled" / "Abdul_Rahman" / "Abdul_Rahman_0001.jpg", src)
    assert _produce_cmd(data, out, cache) == 0
    assert "Traceback" not in capsys.readouterr().err
    images = json.loads((out / MANIFEST).read_text())["images"]
    if how == "unreadable":
        assert key not in images and not png.exists()
    else:
        from anonbench.cache import file_sha256

        assert images[key]["source_sha256"] == file_sha256(src) and png.read_bytes() != old
    # the earlier export's replaced files, set aside during the rerun, are gone after it
    assert not list(out.glob(".anonbench-aside.*"))


DEAD = 2**22 + 12345  # above Linux's default pid_max: no such process


def test_an_export_undoes_a_killed_rerun(tmp_path, cache, capsys):
    """An export killed mid-way (no chance to clean up) left an earlier output moved aside
    and a new one journaled; the next export puts the first back and removes the second
    before it works (then rewrites both). The aside folder of a process still running is
    left alone."""
    data = copy_tiny(tmp_path / "lfw")
    out = tmp_path / "export"
    assert _produce_cmd(data, out, cache) == 0
    png = out / "Abel_Pacheco" / "Abel_Pacheco_0001.png"
    want = png.read_bytes()
    stale = out / f".anonbench-aside.{DEAD}"
    (stale / "Abel_Pacheco").mkdir(parents=True)
    os.replace(png, stale / "Abel_Pacheco" / png.name)
    (out / "new.png").write_bytes(b"half")
    (stale / "added.jsonl").write_text('"new.png"\n"Abel_Pacheco/gone.png"\n"../../x')
    running = out / f".anonbench-aside.{os.getppid()}"
    running.mkdir()
    capsys.readouterr()
    assert _produce_cmd(data, out, cache) == 0
    assert "undid a run that was killed" in capsys.readouterr().err
    assert not stale.exists() and running.is_dir()
    assert not (out / "new.png").exists() and png.read_bytes() == want


def test_a_first_export_killed_is_not_taken_for_a_users_files(tmp_path, cache, capsys):
    """A first export killed before its manifest was written left PNGs where outputs go and
    no manifest; they were refused as a user's files. Its journal says they are its own."""
    data = copy_tiny(tmp_path / "lfw")
    out = tmp_path / "export"
    assert _produce_cmd(data, out, cache) == 0
    (out / MANIFEST).unlink()
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    stale = out / f".anonbench-aside.{DEAD}"
    stale.mkdir()
    (stale / "added.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pngs))
    capsys.readouterr()
    assert _produce_cmd(data, out, cache) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(json.loads((out / MANIFEST).read_text())["images"]) and not stale.exists()


def test_a_users_file_without_a_journal_is_still_refused(tmp_path, cache, capsys):
    """The recovery only removes what a journal names: a user's PNG where an output goes
    (no manifest, no aside folder) is refused as before, and kept."""
    data = copy_tiny(tmp_path / "lfw")
    out = tmp_path / "export" / "Abel_Pacheco"
    out.mkdir(parents=True)
    (out / "Abel_Pacheco_0001.png").write_bytes(b"mine")
    capsys.readouterr()
    assert _produce_cmd(data, out.parent, cache) == 2
    assert (out / "Abel_Pacheco_0001.png").read_bytes() == b"mine"
    assert "not written by anonbench" in one_error_line(capsys)


def test_export_removes_outputs_of_records_gone_from_the_data(tmp_path, cache):
    """An earlier export's output of a record no longer in the data (here: exported again
    with one record fewer) is removed: every file left is one its manifest describes."""
    from anonbench.data.datasets import open_dataset
    from anonbench.evaluate import Originals
    from anonbench.methods.classic import GaussianBlur
    from anonbench.produce import export_store, produce

    records = open_dataset(str(copy_tiny(tmp_path / "lfw")), "lfw").records
    analyses = Originals(str(cache), quiet=True).analyze(records, "analyse")
    store = produce(GaussianBlur(9), "blur9", records, analyses, cache_dir=cache, quiet=True)
    out = export_store(store, records, tmp_path / "export")
    first = out / Path(records[0].key).with_suffix(".png")
    assert first.is_file()
    export_store(store, records[1:], out)
    images = json.loads((out / MANIFEST).read_text())["images"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert records[0].key not in images and not first.exists()
    assert files == {MANIFEST} | {Path(k).with_suffix(".png").as_posix() for k in images}


# -- folder: outputs --------------------------------------------------------------------------

KEY = "Abel_Pacheco/Abel_Pacheco_0001.jpg"
BAD_FOLDER_MANIFESTS = [
    "[]",
    '{"images": []}',
    '{"images": "all"}',
    "{not json",
    json.dumps({"images": {KEY: 3}}),
    json.dumps({"images": {KEY: {"missed": "false"}}}),
    json.dumps({"images": {KEY: {"missed": "true"}}}),
    json.dumps({"images": {KEY: {"missed": 0}}}),
    json.dumps({"images": {KEY: {"missed": None}}}),
    json.dumps({"images": {KEY: {"faces": "2"}}}),
    json.dumps({"images": {KEY: {"faces": True}}}),
]


@pytest.mark.parametrize("text", BAD_FOLDER_MANIFESTS)
def test_folder_manifest_of_the_wrong_shape_is_one_line(tmp_path, text):
    folder = tmp_path / "outs"
    shutil.copytree(TINY / "images_deepfunneled", folder)
    (folder / MANIFEST).write_text(text)
    records = open_dataset(f"lfw:{TINY}").records
    with pytest.raises(AnonbenchError) as e:
        open_folder_store("m", folder, records)
    assert str(folder / MANIFEST) in str(e.value) and len(str(e.value).splitlines()) == 1


def test_folder_manifest_missed_false_string_fails_the_run_in_one_line(tmp_path, capsys):
    folder = tmp_path / "outs"
    shutil.copytree(TINY / "images_deepfunneled", folder)
    (folder / MANIFEST).write_text(json.dumps({"images": {KEY: {"missed": "false"}}}))
    assert run_tiny(TINY, tmp_path / "o", tmp_path / "c", f"m=folder:{folder}") == 2
    assert "not true or false" in one_error_line(capsys)


@pytest.mark.parametrize("how", ["truncate", "garbage", "empty"])
def test_an_undecodable_folder_output_is_a_leak_not_a_dropped_pair(tmp_path, warm, capsys, how):
    folder = tmp_path / "outs"
    shutil.copytree(TINY / "images_deepfunneled", folder)
    f = folder / KEY
    f.write_bytes({"truncate": f.read_bytes()[:300], "garbage": b"\x89PNG nope", "empty": b""}[how])
    out = tmp_path / "o"
    assert run_tiny(TINY, out, warm[0], f"m=folder:{folder}") == 0
    assert "1 undecodable" in capsys.readouterr().err
    res = pd.read_csv(out / "results.csv").set_index("metric")
    assert res.loc["tar_far_1e-3", "n"] == 4
    # counted as unreadable (not 0), and said to be scored as its original
    assert res.loc["unreadable_images", "value"] == 1
    assert "scored as the originals" in res.loc["unreadable_images", "note"]
    assert res.loc["faces_missed", "value"] > 0
    missed = (out / "missed" / "lfw" / "m.csv").read_text().split()
    assert KEY in missed
