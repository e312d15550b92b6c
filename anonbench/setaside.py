"""One way for a command that rewrites an output folder (anonymize --output, produce --out)
to leave it as it was when it stops: the earlier files it replaces are moved into a hidden
aside folder (`SetAside`) and the files it adds are journaled there before they are
written. A run that stops normally puts back and removes at once; a run killed without a
chance to clean up (SIGKILL, power loss) is undone by the next one (`recover_killed`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from anonbench.safety import ContainmentError, DataRoot, pid_alive

JOURNAL = "added.jsonl"  # in the aside folder: the outputs the run creates, one JSON string a line
ASIDE = ".anonbench-aside."
# the name anonymize used before produce shared this (a killed run's folder may still be there)
_LEGACY = (".anonymize-replaced.",)


def listing(out_dir: Path) -> set[Path] | None:
    """What the output folder holds before a run (None: it does not exist)."""
    return set(out_dir.rglob("*")) if out_dir.is_dir() else None


def remove_new(out_dir: Path, before: set[Path] | None, keep: Path | None = None) -> None:
    """Removes the files and folders a stopped run created; `keep` (with what is under it)
    stays."""
    if before is None and keep is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in sorted(set(out_dir.rglob("*")) - (before or set()), reverse=True):
        if keep is not None and (p == keep or keep in p.parents):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class SetAside:
    """The earlier files a run replaces in out_dir, moved (a rename: videos are written in
    place, so a hard link would see the new bytes) into out_dir/.anonbench-aside.<pid>/ at
    the same relative path until the run ends: put back when their input fails or the run
    stops, dropped when it completes."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.aside = out_dir / f"{ASIDE}{os.getpid()}"
        self.moved: list[tuple[Path, Path]] = []
        self.added: list[Path] = []

    def move_aside(self, paths: list[Path]) -> list[tuple[Path, Path]]:
        """Moves the files (or links) at `paths` aside; returns (path, where it went) for
        each. A folder or a missing path stays where it is."""
        moved = []
        for p in paths:
            if p.is_symlink() or p.is_file():
                q = self.aside / p.relative_to(self.out_dir)
                q.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, q)
                moved.append((p, q))
        self.moved += moved
        return moved

    def note_added(self, paths: list[Path]) -> None:
        """Journals the outputs about to be created (before they are), so that a killed run's
        can be removed by the next one."""
        if not paths:
            return
        self.aside.mkdir(parents=True, exist_ok=True)
        with open(self.aside / JOURNAL, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(p.relative_to(self.out_dir).as_posix()) + "\n" for p in paths)
        self.added += paths

    def put_back(self, moved: list[tuple[Path, Path]] | None = None) -> bool:
        """Puts files moved aside back over what is there now; False if one could not be
        (it stays in self.aside, and is named on stderr)."""
        ok = True
        for p, q in reversed(moved if moved is not None else self.moved):
            try:
                if q.is_symlink() or q.exists():
                    os.replace(q, p)
            except OSError as e:
                ok = False
                print(f"anonbench: warning: {p}: not restored, kept as {q} ({e})", file=sys.stderr)
        return ok

    def drop(self) -> None:
        shutil.rmtree(self.aside, ignore_errors=True)

    def undo(self) -> None:
        """A run that stops: the files it journaled as added are removed, the ones it moved
        aside put back, and the aside folder dropped unless something could not go back."""
        for p in self.added:
            if not p.is_dir():
                p.unlink(missing_ok=True)
        if self.put_back():  # else what could not go back stays there, named on stderr
            self.drop()


def recover_killed(out_dir: Path, flag: str = "--output") -> None:
    """Undoes a run on out_dir that was killed without cleaning up (its aside folder is still
    there and its process gone): the outputs it journaled are removed and the earlier files
    it had moved aside are put back, so out_dir is as that run found it. Paths are checked
    to stay inside out_dir (rule 1); the aside folders of running processes are left alone.
    Half-written temporary files of killed processes are removed too."""
    from anonbench.cache import sweep_stale_temps

    if not out_dir.is_dir() or out_dir.is_symlink():
        return
    sweep_stale_temps(out_dir)
    inside = DataRoot(out_dir, flag)
    for prefix in (ASIDE, *_LEGACY):
        for d in sorted(out_dir.glob(f"{prefix}*")):
            pid = d.name[len(prefix) :]
            if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
                continue
            if d.is_symlink() or not d.is_dir():
                continue
            removed = _remove_journaled(inside, d / JOURNAL)
            back = _put_back_all(inside, d)
            shutil.rmtree(d, ignore_errors=True)
            print(
                f"anonbench: note: {out_dir}: undid a run that was killed (pid {pid}): {back} "
                f"earlier outputs put back, {removed} of its outputs removed",
                file=sys.stderr,
            )


def _put_back_all(inside: DataRoot, d: Path) -> int:
    """Moves every file under the aside folder `d` back to its place; how many."""
    back = 0
    for q in sorted(d.rglob("*")):
        if q == d / JOURNAL or (q.is_dir() and not q.is_symlink()):
            continue
        rel = q.relative_to(d).as_posix()
        if inside.escape(rel) is None:
            (inside.root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(q, inside.root / rel)
            back += 1
    return back


def _remove_journaled(inside: DataRoot, journal: Path) -> int:
    """Removes the files a killed run journaled as its own new outputs; how many."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    done = 0
    for line in lines:
        try:
            p = inside.path(json.loads(line), str(journal))
        except (ValueError, ContainmentError):
            continue  # a torn last line, or a path that is not its to remove
        if p.is_file() and not p.is_symlink():
            p.unlink()
            done += 1
    return done
