"""Content-addressed cache: sha256 of the input bytes + component name + version.

Entries are .npz files written atomically (temporary file in the same folder, then
os.replace), so an interrupted run never leaves a half-written entry behind, and several
worker processes, or several nodes of a Ray cluster sharing the folder over a network
filesystem, can fill the same cache. Two writers of one entry each write their own temporary
file (named after host and process) and rename it over the entry: the last rename wins, and a
reader sees one whole entry or the other, never a mix. The data is written and closed before
the rename, which is what NFS's close-to-open consistency needs for other nodes to see it whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results and caches are meant to be shared like normal files
FILE_MODE = 0o666 & ~_umask()
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


def default_cache_dir() -> Path:
    env = os.environ.get("ANONBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "anonbench"


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes: the content address of an image."""
    h = hashlib.sha256()
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# an entry holds boxes, landmarks or one embedding: kilobytes. A file declaring more is not one
MAX_ENTRY_BYTES = 64 << 20

# key -> shape: an int is that size, None any size, a name the same size wherever it appears
Schema = Mapping[str, tuple[int | str | None, ...]]


def matches(arrays: Mapping[str, np.ndarray], schema: Schema) -> bool:
    """Whether `arrays` holds exactly the keys of `schema`, each a numeric or bool array of its
    shape (named dimensions equal across keys)."""
    if set(arrays) != set(schema):
        return False
    sizes: dict[str, int] = {}
    for key, shape in schema.items():
        a = arrays[key]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf" or a.ndim != len(shape):
            return False
        for want, got in zip(shape, a.shape, strict=True):
            if isinstance(want, int) and want != got:
                return False
            if isinstance(want, str) and sizes.setdefault(want, got) != got:
                return False
    return True


class Cache:
    """Stores dicts of arrays under (component, version, content digest)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def _path(self, component: str, version: str, digest: str) -> Path:
        key = hashlib.sha256(f"{component}|{version}|{digest}".encode()).hexdigest()
        return self.root / component / key[:2] / f"{key}.npz"

    def get(
        self, component: str, version: str, digest: str, schema: Schema | None = None
    ) -> dict[str, np.ndarray] | None:
        """The entry, or None: absent, unreadable, or (with `schema`) not of the expected
        keys and shapes. Every None is recomputed by the caller and overwritten: an entry is
        never trusted, since anything can have written the file (issue 20, rule 7)."""
        if not self.enabled:
            return None
        p = self._path(component, version, digest)
        try:
            with np.load(p, allow_pickle=False) as z:
                # the sizes the zip declares, before anything is inflated: no zip bomb
                if sum(i.file_size for i in z.zip.infolist()) > MAX_ENTRY_BYTES:
                    return None
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            return None
        except Exception:  # damaged, truncated, not a zip, pickled objects: recomputed
            return None
        if schema is not None and not matches(arrays, schema):
            return None
        return arrays

    def put(self, component: str, version: str, digest: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        with atomic_open(self._path(component, version, digest)) as f:
            np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kw: Any) -> Iterator[IO[Any]]:
    """Opens a uniquely named temporary file beside path (folders created) for writing. On
    success it replaces path with mode FILE_MODE, so readers (other processes too) see the
    old or the new file, never half of one; on any error it is removed and path untouched."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # host and pid in the name: writers on other nodes never share one, and a file left by a
    # killed worker says where it came from
    fd, tmp = tempfile.mkstemp(
        dir=p.parent, prefix=f".{p.name[:80]}.{_HOST}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_stale_temps(folder: Path) -> int:
    """Removes the temporary files atomic_open left under `folder` in processes of this host
    that were killed before they could (SIGKILL, power loss); how many. Those of a running
    process, or of another host (a shared folder), are left alone."""
    from anonbench.safety import pid_alive

    n = 0
    for p in folder.rglob(".*.tmp"):
        parts = p.name.rsplit(".", 4)  # .NAME . HOST . PID . RANDOM . tmp
        if len(parts) != 5 or parts[1] != _HOST or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid != os.getpid() and not pid_alive(pid) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            n += 1
    return n


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes a text file so readers see the old or the new content, never half of it."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
