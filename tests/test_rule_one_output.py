"""Rule 3 (issue 20): one output per input.

Outputs are named after their input's relative path (`produce`, the output store, exports:
suffix .png; `anonymize`: the same name). Two inputs that would share an output name, compared
case-insensitively, are refused before any work, with one line naming both: generated over
suffixes, letter case and Unicode case folding, in identity folders, CelebA lists, LFW pairs,
and anonymize's input folders (whose videos become NAME.mp4, BMPs with alpha NAME.png).
Names that differ are accepted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safety_cases import FIXTURES, copy_tiny, one_error_line, snapshot

from anonbench.cli import main
from anonbench.data.datasets import open_dataset
from anonbench.safety import CollisionError, refuse_collisions

COLLIDING = [
    ("a.jpg", "a.png"),
    ("x.JPG", "x.jpg"),
    ("X.jpg", "x.jpg"),
    ("a.jpeg", "A.PNG"),
    ("p.webp", "p.bmp"),
    ("Ärger.jpg", "ärger.png"),
    ("Straße.jpg", "STRASSE.jpg"),
    ("ΣΊΣΥΦΟΣ.jpg", "σίσυφος.jpg"),
]
DISTINCT = [("a.jpg", "b.jpg"), ("a.jpg", "a.jpg.png"), ("a1.jpg", "a2.png"), ("é.jpg", "e.jpg")]


def _folders(root: Path, names: tuple[str, ...], identity: str = "id1") -> Path:
    (root / identity).mkdir(parents=True, exist_ok=True)
    for n in names:
        (root / identity / n).write_bytes(b"not decoded here")
    (root / "id2").mkdir(exist_ok=True)
    (root / "id2" / "other.jpg").write_bytes(b"x")
    return root


@pytest.mark.parametrize("names", COLLIDING)
def test_identity_folders_with_one_output_for_two_inputs(tmp_path, names):
    root = _folders(tmp_path / "data", names)
    with pytest.raises(CollisionError) as e:
        open_dataset(f"folders:{root}")
    msg = str(e.value)
    assert all(f"id1/{n}" in msg for n in names) and len(msg.splitlines()) == 1


@pytest.mark.parametrize("names", DISTINCT)
def test_distinct_names_are_accepted(tmp_path, names):
    root = _folders(tmp_path / "data", names)
    assert len(open_dataset(f"folders:{root}").records) == 3


def test_identity_folder_names_collide_too(tmp_path):
    root = _folders(tmp_path / "data", ("a.jpg",), "Person")
    _folders(root, ("a.png",), "person")
    with pytest.raises(CollisionError, match=r"Person/a\.jpg"):
        open_dataset(f"folders:{root}")


@pytest.mark.parametrize("names", COLLIDING[:4])
def test_celeba_list_naming_two_files_with_one_output(tmp_path, names):
    data = tmp_path / "celeba"
    shutil.copytree(FIXTURES / "celeba_tiny", data)
    ident = data / "identity_CelebA.txt"
    text = ident.read_text()
    for n in names:
        (data / "img_align_celeba" / n).write_bytes(b"x")
        text += f"{n} 5\n"
    ident.write_text(text)
    with pytest.raises(CollisionError, match="img_align_celeba/"):
        open_dataset(f"celeba:{data}")


def test_lfw_names_differing_in_case(tmp_path):
    data = copy_tiny(tmp_path / "lfw")
    img = data / "images_deepfunneled"
    shutil.copytree(img / "Abel_Pacheco", img / "abel_pacheco")
    for f in (img / "abel_pacheco").iterdir():
        f.rename(f.with_name(f.name.lower()))
    lines = (data / "pairs.txt").read_text().splitlines()
    lines[2] = "abel_pacheco\t1\tAbdul_Rahman\t1"
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(CollisionError, match=r"abel_pacheco/abel_pacheco_0001\.jpg"):
        open_dataset(f"lfw:{data}")


@pytest.mark.parametrize("pairs", [[("a", "x.png"), ("b", "X.PNG")], [("k", "o"), ("k2", "o")]])
def test_the_one_check(pairs):
    with pytest.raises(CollisionError):
        refuse_collisions(pairs, "here")
    refuse_collisions([("a", "x.png"), ("a", "x.png"), ("b", "y.png")], "here")


@pytest.mark.parametrize("cmd", ["produce", "run"])
def test_commands_refuse_before_any_work(tmp_path, capsys, cmd):
    root = _folders(tmp_path / "data", ("x.JPG", "x.jpg"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = {
        "produce": ["produce", "--method", "blur9"],
        "run": ["run", "--methods", "blur9", "--protocol", "celeba"],
    }[cmd]
    before = snapshot(tmp_path)
    paths = ["--data", f"folders:{root}", "--out", str(out), "--cache-dir", str(cache)]
    assert main([*argv, *paths, "--quiet"]) == 2
    assert "would both be written to" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_anonymize_refuses_names_equal_but_for_case(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo = sorted((FIXTURES / "identity_folders" / "id7201").iterdir())[0]
    shutil.copy(photo, src / "x.JPG")
    shutil.copy(photo, src / "x.jpg")
    before = snapshot(tmp_path)
    argv = ["anonymize", "--method", "blur9", "--input", str(src), "--output", str(tmp_path / "o")]
    assert main([*argv, "--no-cache", "--quiet"]) == 2
    assert "'x.JPG' and 'x.jpg'" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("names", "refused"),
    [
        (("v.avi", "v.avi.mp4"), True),  # a video not in MP4 is written as NAME.mp4
        (("p.bmp", "p.bmp.png"), True),  # a BMP with alpha is written as NAME.png
        (("v.mp4", "v.avi"), False),
        (("p.jpg", "p.jpg.png"), False),  # a JPEG has no alpha: written under its own name
    ],
)
def test_anonymize_output_names_that_a_suffix_makes_equal(tmp_path, capsys, names, refused):
    from anonbench.commands.anonymize import _output_names

    outputs = [o for n in names for o in _output_names(n)]
    assert (len({o.casefold() for o in outputs}) < len(outputs)) == refused
    if refused:
        with pytest.raises(CollisionError):
            refuse_collisions([(n, o) for n in names for o in _output_names(n)], "x")
