"""Shared by the rule tests of issue 20 (tests/test_rule_*.py, tests/test_hostile_inputs.py):
tree snapshots, hostile names, and the tiny LFW fixture copied where a test may spoil it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from anonbench.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "lfw_tiny"

# names that must never become a path outside their root (rule 1)
HOSTILE_NAMES = [
    "/etc/passwd",
    "../outside.jpg",
    "../../outside.jpg",
    "a/../../outside.jpg",
    "..",
    ".",
    "./x.jpg",
    "a//b.jpg",
    "a\\..\\..\\x.jpg",
    "C:/Windows/x.jpg",
    "\\\\server\\share\\x.jpg",
    "x\0.jpg",
    "",
    "../" * 12 + "tmp/x.jpg",
]


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path -> sha256 (files), 'dir' (folders) or 'link:TARGET', under root;
    paths starting with one of `skip` are left out."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(skip):
            continue
        if p.is_symlink():
            out[rel] = f"link:{p.readlink()}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def copy_tiny(dst: Path) -> Path:
    """A writable copy of the tiny LFW fixture (6 images, 4 pairs)."""
    shutil.copytree(TINY, dst)
    return dst


def run_tiny(data: Path, out: Path, cache: Path, methods: str = "blur9", *extra: str) -> int:
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


def one_error_line(capsys) -> str:
    """The single `anonbench: error:` line on stderr, and no traceback anywhere."""
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out, cap.err
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("anonbench: error:")]
    assert len(lines) == 1, cap.err
    return lines[0]
