"""What `anonymize` does so that a run that stops leaves --output as it was: the outputs of an
earlier run that it replaces are moved aside (`Undo`) and the outputs it adds are journaled
there, so that a run killed without a chance to clean up (SIGKILL, power loss) is undone by
the next one (`recover_killed`); a run that stops normally puts back and removes at once
(`remove_new`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from anonbench.safety import ContainmentError, DataRoot, pid_alive

JOURNAL = "added.jsonl"  # in the aside folder: the outputs the run creates, one JSON string a line
ASIDE = ".anonymize-replaced."


def listing(out_dir: Path) -> set[Path] | None:
    """What the output folder holds before a run (None: it does not exist)."""
    return set(out_dir.rglob("*")) if out_dir.is_dir() else None


def remove_new(out_dir: Path, before: set[Path] | None, keep: Path | None = None) -> None:
    """Removes the files and folders a stopped run created; `keep` (with what is under it)
    stays."""
    import shutil

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


class Undo:
    """The outputs of an earlier run that this run replaces, moved aside in out_dir (a
    rename: videos are written in place, so a hard link would see the new bytes) until the
    run ends: put back when their input fails or the run stops, dropped when it completes."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.aside = out_dir / f"{ASIDE}{os.getpid()}"
        self.moved: list[tuple[Path, Path]] = []

    def move_aside(self, paths: list[Path]) -> list[tuple[Path, Path]]:
        """Moves the files at `paths` aside; returns (path, where it went) for each."""
        moved = []
        for p in paths:
            if p.is_file():  # check_output refused links; a folder only fails its input
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

    def put_back(self, moved: list[tuple[Path, Path]] | None = None) -> bool:
        """Puts files moved aside back over what is there now; False if one could not be
        (then it stays in self.aside)."""
        ok = True
        for p, q in moved if moved is not None else self.moved:
            try:
                if q.exists():
                    os.replace(q, p)
            except OSError:
                ok = False
        return ok

    def drop(self) -> None:
        import shutil

        shutil.rmtree(self.aside, ignore_errors=True)


def recover_killed(out_dir: Path) -> None:
    """Undoes a run on out_dir that was killed without cleaning up (its aside folder is still
    there and its process gone): the outputs it journaled are removed and the earlier outputs
    it had moved aside are put back, so out_dir is as that run found it, matching the report
    left there. Paths are checked to stay inside out_dir (rule 1)."""
    import shutil

    if not out_dir.is_dir():
        return
    inside = DataRoot(out_dir, "--output")
    for d in sorted(out_dir.glob(f"{ASIDE}*")):
        pid = d.name[len(ASIDE) :]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        if d.is_symlink() or not d.is_dir():
            continue
        removed = sum(_remove_journaled(inside, d / JOURNAL))
        back = 0
        for q in sorted(d.rglob("*")):
            if q.is_file() and not q.is_symlink() and q != d / JOURNAL:
                rel = q.relative_to(d).as_posix()
                if inside.escape(rel) is None:
                    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(q, out_dir / rel)
                    back += 1
        shutil.rmtree(d, ignore_errors=True)
        print(
            f"anonbench: note: {out_dir}: undid a run that was killed (pid {pid}): {back} "
            f"earlier outputs put back, {removed} of its outputs removed",
            file=sys.stderr,
        )


def _remove_journaled(inside: DataRoot, journal: Path) -> list[bool]:
    """Removes the files a killed run journaled as its own new outputs; one bool each."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    done = []
    for line in lines:
        try:
            p = inside.path(json.loads(line), str(journal))
        except (ValueError, ContainmentError):
            continue  # a torn last line, or a path that is not its to remove
        if p.is_file() and not p.is_symlink():
            p.unlink()
            done.append(True)
    return done
