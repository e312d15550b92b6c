"""Rule 10 (issue 20): run.json entries of different protocols never mix; SIGTERM is handled
like SIGINT; temporary caches are removed.

Generated: a skipped rerun after entries of another protocol, another version, or with
details of the wrong shape keeps its own protocol's details; SIGTERM while preparing,
producing or scoring leaves run.json "interrupted" with what finished kept, and the handler
that was there before; `--no-cache` leaves no temporary cache after success, failure or an
interrupt; SIGTERM stops anonymize as Ctrl-C does.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
from safety_cases import TINY, run_tiny

from anonbench.results import append_run_info


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("warm")
    assert run_tiny(TINY, tmp_path_factory.mktemp("warmup"), cache, "original,blur9") == 0
    return cache


OTHER_ENTRIES = [
    {"name": "celeba", "version": "3", "details": {"identities": 99}},
    {"name": "lfw", "version": "0-old", "details": {"pairs_file": "other.txt"}},
    {"name": "lfw", "version": "SAME", "details": []},
    {"name": "lfw", "version": "SAME", "details": "x"},
    {"name": "lfw", "version": "SAME"},
    "not an object",
]


@pytest.mark.parametrize("proto", OTHER_ENTRIES)
def test_a_skipped_rerun_keeps_its_own_protocols_details(tmp_path, warm, capsys, proto):
    out = tmp_path / "out"
    assert run_tiny(TINY, out, warm) == 0
    first = json.loads((out / "run.json").read_text())
    mine = first["protocol"]["details"]
    assert mine  # the lfw protocol records details (pairs file, folds, ...)
    if isinstance(proto, dict) and proto.get("version") == "SAME":
        proto = {**proto, "version": first["protocol"]["version"]}
    append_run_info(out / "run.json", {"run_id": "other", "status": "finished", "protocol": proto})
    capsys.readouterr()
    assert run_tiny(TINY, out, warm) == 0
    assert "skipped blur9" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["protocol"]["name"] == "lfw" and info["protocol"]["details"] == mine


@pytest.mark.parametrize("when", ["prepare", "produce", "evaluate"])
def test_sigterm_ends_a_run_like_ctrl_c(tmp_path, warm, capsys, monkeypatch, when):
    import anonbench.produce as produce_mod
    from anonbench.protocols.lfw import LFWVerification

    def term() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    real_eval, real_produce = LFWVerification.evaluate, produce_mod.produce

    def evaluate(self, method, store, ctx):
        if when == "evaluate" and method.name == "blur9":
            term()
        return real_eval(self, method, store, ctx)

    def produce(method, label, *a, **k):
        if when == "produce" and label == "blur9":
            term()
        return real_produce(method, label, *a, **k)

    monkeypatch.setattr(LFWVerification, "evaluate", evaluate)
    monkeypatch.setattr(produce_mod, "produce", produce)
    if when == "prepare":
        monkeypatch.setattr(LFWVerification, "prepare", lambda self, ctx: term())
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    assert run_tiny(TINY, out, warm, "original,blur9") == 130
    assert signal.getsignal(signal.SIGTERM) is before
    assert "interrupted" in capsys.readouterr().err
    if when == "prepare":  # nothing finished: nothing recorded, nothing left
        assert not out.exists()
        return
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and list(info["methods"]) == ["original"]


@pytest.mark.parametrize("end", ["success", "failure", "interrupt"])
def test_no_cache_removes_its_temporary_cache(tmp_path, warm, monkeypatch, end):
    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(*a, **k):
        made.append(real(dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    if end == "interrupt":
        from anonbench.protocols.lfw import LFWVerification

        def stop(self, ctx):
            raise KeyboardInterrupt

        monkeypatch.setattr(LFWVerification, "prepare", stop)
    methods = "no-such-method" if end == "failure" else "blur9"
    code = run_tiny(TINY, tmp_path / "out", warm, methods, "--no-cache")
    assert code == {"success": 0, "failure": 2, "interrupt": 130}[end]
    assert made and not any(Path(m).exists() for m in made)


def test_sigterm_stops_anonymize_like_ctrl_c(tmp_path, capsys, monkeypatch):
    """The handler is the CLI's, for every command: a stopped anonymize removes the folder
    it created."""
    import shutil

    import anonbench.commands.anonymize as anon

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(
            TINY / "images_deepfunneled" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg", src / name
        )
    real = anon.process_photo

    def photo(method, path, dst, *a):
        if path.name == "b.jpg":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(method, path, dst, *a)

    monkeypatch.setattr(anon, "process_photo", photo)
    out = tmp_path / "out"
    argv = ["anonymize", "--method", "blur9", "--input", str(src), "--output", str(out)]
    from anonbench.cli import main

    assert main([*argv, "--no-cache", "--quiet", "--detector", "dlib-hog"]) == 130
    assert "interrupted" in capsys.readouterr().err and not out.exists()
