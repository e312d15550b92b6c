"""The path rules every command follows (DESIGN.md, "Safety rules"), each enforced here, once:

1. Containment (`DataRoot.path`, `check_tree`): a path built from data (names in pairs.txt,
   file names in identity_CelebA.txt, record keys, the files an output store's manifest
   names, `folder:` outputs, export targets) is a plain relative path, and once resolved
   (symlinks too) it stays inside its root. Otherwise a ContainmentError naming file:line,
   raised before anything is written. (Method labels, which name files too, are checked
   where they are parsed: anonbench.runner.parse_method.)
2. Inputs are never written (`refuse_overlap`): an output path is not, does not contain and
   does not lie inside an input (originals, data roots, `folder:` outputs, `anonymize`'s
   input, a run's own files for reports), after resolving links.
3. One output per input (`refuse_collisions`): two inputs never share an output name, compared
   case-insensitively (`a.jpg` / `a.png` both become `a.png`; `x.JPG` / `x.jpg` are one file on
   a case-insensitive disk).

And for every output file a command replaces (`file_head`, `is_html_report`): only one anonbench
wrote, recognised by its first bytes, never a file of the user's.

And for every output folder (`refuse_broken_link`): neither it nor a folder above it is a
symlink to nothing, which creating it would meet as a bare FileExistsError.

And rule 10's signal part (`sigterm_as_interrupt`): SIGTERM ends any command as Ctrl-C does,
so what a command cleans up or records on an interrupt it does on `kill` too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from anonbench.errors import AnonbenchError

_DRIVE = re.compile(r"^[A-Za-z]:")


class ContainmentError(AnonbenchError):
    """A path built from data is not a plain relative path, or resolves outside its root."""


class OverlapError(AnonbenchError):
    """An output path is, contains or lies inside an input."""


class CollisionError(AnonbenchError):
    """Two inputs would be written to one output."""


def _real(p: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(p))))


def plain_relative(name: object) -> str | None:
    """Why `name` is not a plain relative path (None when it is): a string, not empty, not
    absolute (nor a drive or a backslash path), without NUL, '.' , '..' or empty components."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a path"
    if not name:
        return "is empty"
    if "\0" in name:
        return "holds a NUL byte"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path"
    if "\\" in name:
        return "holds a backslash"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out with '..'"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' component"
    return None


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs (set-aside files of a dead one are stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


HEAD_BYTES = 4096


def file_head(path: Path, label: str) -> bytes | None:
    """The first HEAD_BYTES of a regular file, to tell anonbench's own outputs from a user's
    before replacing one; None when `path` is not a regular file (nothing there, a folder,
    /dev/stdout: not replaced, so not looked at). Unreadable: one line naming `label`."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            return f.read(HEAD_BYTES)
    except OSError as e:
        raise AnonbenchError(f"{label}: cannot be read ({e.strerror or e})") from None


def is_html_report(head: bytes) -> bool:
    """The start of an HTML report anonbench wrote (its <title>)."""
    return b"<title>anonbench report" in head


class DataRoot:
    """A folder that paths built from data must stay inside (rule 1). The root itself may be
    a link; every folder below it is resolved once (cached) and the file itself only when it
    is a link, so checking 200,000 CelebA names costs about one lstat each."""

    def __init__(self, root: str | os.PathLike[str], what: str = "the data root") -> None:
        self.root = Path(root)
        self.real = _real(root)
        self.what = what
        self._dirs: dict[str, str] = {}

    def path(self, rel: object, where: str) -> Path:
        """root/rel, once checked; `where` names the source (`file:line`) in the error."""
        why = plain_relative(rel)
        if why is None:
            assert isinstance(rel, str)
            real = self.escape(rel)
            if real is not None:
                why = f"resolves to {real}"
        if why is not None:
            raise ContainmentError(
                f"{where}: the path {rel!r} {why}, outside {self.what} {self.root}; "
                "nothing was written"
            )
        return self.root / str(rel)

    def escape(self, rel: str) -> str | None:
        """Where root/rel leads when links take it outside the root; None when it stays in.
        Only links are followed: `rel` is taken as names, whatever characters they hold."""
        real = self._resolve(rel)
        return None if _inside(real, self.real) else real

    def _resolve(self, rel: str) -> str:
        head, _, leaf = rel.rpartition("/")
        parent = self._dirs.get(head)
        if parent is None:
            parent = _real(os.path.join(self.real, head)) if head else self.real
            self._dirs[head] = parent
        full = os.path.join(parent, leaf)
        return _real(full) if os.path.islink(full) else full


def check_tree(root: str | os.PathLike[str], what: str) -> None:
    """Rule 1 for a whole folder (a `folder:` method's outputs): no link under it resolves
    outside it. Links are the only way out of a walk that does not follow them."""
    inside = DataRoot(root, what)
    for d, dirs, files in os.walk(inside.real):
        for n in dirs + files:
            full = os.path.join(d, n)
            if os.path.islink(full):
                inside.path(os.path.relpath(full, inside.real).replace(os.sep, "/"), full)


def _relation(out: str, inp: str) -> str | None:
    if out == inp:
        return "is"
    if _inside(out, inp):
        return "lies inside"
    if _inside(inp, out):
        return "contains"
    return None


def refuse_overlap(
    outputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
) -> None:
    """Rule 2: every (flag, path) of `outputs` neither is, contains nor lies inside any
    (what, path) of `inputs`, links resolved (hard links to one file count as the same).
    One OverlapError line otherwise, before any work. None paths are left out."""
    ins = [(what, p, _real(p)) for what, p in inputs if p is not None]
    for flag, o in outputs:
        if o is None:
            continue
        ro = _real(o)
        for what, p, rp in ins:
            rel = _relation(ro, rp)
            if rel is None and os.path.exists(ro) and os.path.exists(rp):
                try:
                    rel = "is" if os.path.samefile(ro, rp) else None
                except OSError:
                    rel = None
            if rel is not None:
                raise OverlapError(
                    f"{flag} {o} {rel} {what} {p}: inputs are never written; choose another path"
                )


def refuse_broken_link(flag: str, path: str | os.PathLike[str]) -> None:
    """Before any work: `path` (an output folder or file, given as `flag`) and the folders
    above it are not dangling symlinks; mkdir(parents=True) would fail on one with a bare
    FileExistsError. One AnonbenchError line naming the flag and the link's target."""
    given = Path(os.path.expanduser(os.fspath(path)))
    for p in (given, *given.parents):
        if os.path.islink(p) and not os.path.exists(p):
            try:
                target = os.readlink(p)
            except OSError:  # vanished since: report it as dangling all the same
                target = "?"
            where = "" if p == given else f"{p} is "
            raise AnonbenchError(
                f"{flag} {path}: {where}a broken symlink (-> {target}); remove the link or "
                "point it at a folder"
            )


def run_files(path: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """A run folder's own files (a run folder, or a file in one): results.csv, run.json and
    the folders of scores, examples and missed lists; what reports must never overwrite."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    own = [folder / n for n in ("results.csv", "run.json", "scores", "examples", "missed")]
    if not p.is_dir():
        own.append(p)
    return [("the run's own file", f) for f in own]


def refuse_collisions(pairs: Iterable[tuple[str, str]], where: str) -> None:
    """Rule 3: (input name, output name) pairs; two inputs with one output name, compared
    case-insensitively, are one CollisionError line naming both, before any work."""
    seen: dict[str, str] = {}
    for src, out in pairs:
        k = out.casefold()
        other = seen.setdefault(k, src)
        if other != src:
            raise CollisionError(
                f"{where}: {other!r} and {src!r} would both be written to {out!r} (output "
                "names are compared case-insensitively); rename one of them"
            )


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Rule 10: SIGTERM (a scheduler stopping a job, `kill`) ends a run like Ctrl-C does:
    run.json records "interrupted", what finished is kept. Main thread only."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
