"""The one set-aside mechanism anonymize and produce share (anonbench/setaside.py)."""

from __future__ import annotations

import os

from anonbench.setaside import SetAside, recover_killed

DEAD = 2**22 + 12345  # above Linux's default pid_max: no such process


def test_put_back_restores_in_reverse_and_drop_removes_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"old")
    s = SetAside(tmp_path)
    moved = s.move_aside([tmp_path / "a" / "x.png", tmp_path / "missing.png", tmp_path / "a"])
    assert [p for p, _ in moved] == [tmp_path / "a" / "x.png"]  # a folder stays
    (tmp_path / "a" / "x.png").write_bytes(b"new")
    assert s.put_back() and (tmp_path / "a" / "x.png").read_bytes() == b"old"
    s.drop()
    assert not s.aside.exists()


def test_recovery_stays_inside_and_takes_the_legacy_name(tmp_path, capsys):
    """A killed run's journal may be torn or hostile: a path outside the folder is never
    removed; the aside folder anonymize used before (.anonymize-replaced.<pid>) is
    recovered too."""
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "keep.png"
    outside.write_bytes(b"user")
    d = out / f".anonymize-replaced.{DEAD}"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "old.png").write_bytes(b"old")
    (out / "new.png").write_bytes(b"new")
    (d / "added.jsonl").write_text('"new.png"\n"../keep.png"\n"/etc/passwd"\n"tor')
    recover_killed(out)
    assert outside.read_bytes() == b"user" and not (out / "new.png").exists()
    assert (out / "sub" / "old.png").read_bytes() == b"old" and not d.exists()
    assert "1 earlier outputs put back, 1 of its outputs removed" in capsys.readouterr().err


def test_a_linked_aside_folder_is_not_followed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "added.jsonl").write_text('"x.png"\n')
    (out / "x.png").write_bytes(b"user")
    os.symlink(elsewhere, out / f".anonbench-aside.{DEAD}")
    recover_killed(out)
    assert (out / "x.png").read_bytes() == b"user" and (elsewhere / "added.jsonl").exists()


def test_temporary_files_of_killed_writers_are_swept(tmp_path):
    """atomic_open's temp files (.NAME.HOST.PID.RANDOM.tmp) of a killed process on this host
    are removed; a running writer's, another host's and a user's look-alike stay."""
    from anonbench.cache import _HOST, atomic_open

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = out / "sub" / f".x.png.{_HOST}.{DEAD}.ab_c9.tmp"
    live = out / f".x.png.{_HOST}.{os.getppid()}.q1.tmp"
    other = out / f".x.png.otherhost.{DEAD}.q2.tmp"
    mine = out / ".notes.tmp"
    for p in (dead, live, other, mine):
        p.write_bytes(b"x")
    with atomic_open(out / "real.png") as f:  # the naming this sweep relies on
        f.write(b"png")
        (tmp,) = out.glob(".real.png.*.tmp")
        assert tmp.name.rsplit(".", 4)[1:3] == [_HOST, str(os.getpid())]
    recover_killed(out)
    assert not dead.exists() and live.exists() and other.exists() and mine.exists()
