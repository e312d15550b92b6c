"""Rule 1 (issue 20): every path built from data stays inside its root, links resolved.

One class of cases, generated: every hostile name (absolute, `..`, drive, backslash, NUL,
empty or `.` components) and every link leaving the root, in every place data names a path:
LFW pairs.txt, identity_CelebA.txt, identity folders, `folder:` outputs, the output store's
manifest, produce's --out. Each is one line naming file:line (where there is one), exit 2,
and nothing written.
"""

from __future__ import annotations

import os
import shutil

import pytest
from safety_cases import FIXTURES, HOSTILE_NAMES, copy_tiny, one_error_line, run_tiny, snapshot

from anonbench.cli import main
from anonbench.data.datasets import open_dataset
from anonbench.errors import AnonbenchError
from anonbench.safety import ContainmentError, DataRoot, plain_relative

CELEBA = FIXTURES / "celeba_tiny"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_name_is_refused_by_the_one_check(tmp_path, name):
    assert plain_relative(name) is not None
    with pytest.raises(ContainmentError) as e:
        DataRoot(tmp_path).path(name, "index.txt:7")
    msg = str(e.value)
    assert msg.startswith("index.txt:7: ") and len(msg.splitlines()) == 1


@pytest.mark.parametrize("name", ["a.jpg", "a/b.jpg", "Ünïcode/名前.png", "x y.jpg", "..a.jpg"])
def test_plain_names_pass(tmp_path, name):
    assert DataRoot(tmp_path).path(name, "f:1") == tmp_path / name


@pytest.mark.parametrize("kind", ["file", "folder", "chain", "dangling"])
def test_links_leaving_the_root_are_refused(tmp_path, kind):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    if kind == "file":
        (root / "a.jpg").symlink_to(outside / "secret.jpg")
        name = "a.jpg"
    elif kind == "folder":
        (root / "d").symlink_to(outside)
        name = "d/secret.jpg"
    elif kind == "chain":  # a link to a link inside the root that leaves it
        (root / "hop").symlink_to(outside)
        (root / "d").symlink_to(root / "hop")
        name = "d/secret.jpg"
    else:
        (root / "a.jpg").symlink_to(outside / "gone.jpg")
        name = "a.jpg"
    with pytest.raises(ContainmentError, match="resolves to"):
        DataRoot(root).path(name, "f:1")
    # a link that stays inside, and a root that is itself a link, are fine
    (root / "in.jpg").symlink_to(root / "z.jpg")
    assert DataRoot(root).path("in.jpg", "f:1") == root / "in.jpg"
    (tmp_path / "alias").symlink_to(root)
    assert DataRoot(tmp_path / "alias").path("z/y.jpg", "f:1")


# -- every place data names a path --------------------------------------------------------------

LFW_NAMES = ["..", ".", "../../x", "/etc", "a/b", "a\\b", "C:\\x"]


@pytest.mark.parametrize("name", LFW_NAMES)
def test_lfw_pairs_name(tmp_path, name):
    data = copy_tiny(tmp_path / "lfw")
    lines = (data / "pairs.txt").read_text().splitlines()
    lines[3] = f"{name}\t1\t2"  # the second matched pair
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnonbenchError) as e:
        open_dataset(f"lfw:{data}")
    assert str(e.value).startswith(f"{data / 'pairs.txt'}:4: ")


@pytest.mark.parametrize("link", ["folder", "file"])
def test_lfw_link_leaving_the_image_folder(tmp_path, link):
    data = copy_tiny(tmp_path / "lfw")
    outside = tmp_path / "private"
    outside.mkdir()
    person = data / "images_deepfunneled" / "Abel_Pacheco"
    for f in person.iterdir():
        shutil.copy(f, outside / f.name)
    shutil.rmtree(person)
    if link == "folder":
        person.symlink_to(outside)
    else:
        person.mkdir()
        for f in outside.iterdir():
            (person / f.name).symlink_to(f)
    with pytest.raises(ContainmentError) as e:
        open_dataset(f"lfw:{data}")
    assert f"{data / 'pairs.txt'}:4: " in str(e.value) and "Abel_Pacheco" in str(e.value)


CELEBA_NAMES = [n for n in HOSTILE_NAMES if n and " " not in n and "\0" not in n] + [
    "sub/../../../x.jpg"
]


@pytest.mark.parametrize("name", CELEBA_NAMES)
def test_celeba_identity_file_name(tmp_path, name):
    data = tmp_path / "celeba"
    shutil.copytree(CELEBA, data)
    ident = data / "identity_CelebA.txt"
    ident.write_text(ident.read_text() + f"{name} 99\n")
    n = len(ident.read_text().splitlines())
    with pytest.raises(AnonbenchError) as e:
        open_dataset(f"celeba:{data}")
    assert str(e.value).startswith(f"{ident}:{n}: ") and len(str(e.value).splitlines()) == 1


def test_celeba_link_leaving_the_image_folder(tmp_path):
    data = tmp_path / "celeba"
    shutil.copytree(CELEBA, data)
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((data / "img_align_celeba").iterdir()), secret)
    (data / "img_align_celeba" / "000999.jpg").symlink_to(secret)
    ident = data / "identity_CelebA.txt"
    ident.write_text(ident.read_text() + "000999.jpg 7\n")
    with pytest.raises(ContainmentError, match=r"identity_CelebA.txt:\d+: .*000999.jpg"):
        open_dataset(f"celeba:{data}")


def test_identity_folders_link_leaving_the_root(tmp_path):
    data = tmp_path / "ids"
    shutil.copytree(FIXTURES / "identity_folders", data)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(next((data / "id7201").iterdir()), other / "p.jpg")
    (data / "id9").symlink_to(other)
    with pytest.raises(ContainmentError, match="id9"):
        open_dataset(f"folders:{data}")


def test_folder_method_output_linked_outside(tmp_path, capsys):
    """A `folder:` output that is a link out of its folder is refused before any work."""
    outputs = tmp_path / "outs" / "Abel_Pacheco"
    outputs.mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not read")
    (outputs / "Abel_Pacheco_0001.png").symlink_to(secret)
    data = copy_tiny(tmp_path / "lfw")
    cache, out = tmp_path / "c", tmp_path / "run"
    before = snapshot(tmp_path)
    assert run_tiny(data, out, cache, f"m=folder:{tmp_path / 'outs'}") == 2
    assert "outside the outputs of 'm'" in one_error_line(capsys)
    assert snapshot(tmp_path) == before  # refused before any work: not even the cache


def test_export_into_a_linked_folder_of_out_is_refused(tmp_path, capsys):
    """produce --out holding a link to elsewhere where an output would go: nothing written."""
    data = copy_tiny(tmp_path / "lfw")
    out, elsewhere = tmp_path / "export", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "Abel_Pacheco").symlink_to(elsewhere)
    argv = ["produce", "--method", "blur9", "--data", f"lfw:{data}", "--out", str(out)]
    assert main([*argv, "--cache-dir", str(tmp_path / "c"), "--quiet", "--workers", "1"]) == 2
    assert "resolves to" in one_error_line(capsys)
    assert list(elsewhere.iterdir()) == [] and sorted(os.listdir(out)) == ["Abel_Pacheco"]


@pytest.mark.parametrize(
    "file",
    ["../../../../outside.png", "/tmp/anonbench-outside.png", "Other/Other_0001.png", None],
)
def test_store_manifest_file_outside_its_name_is_not_read(tmp_path, file):
    """The output store's manifest names each output; a name that is not the one its key
    constructs (outside the store, another record's) is never read: produced again."""
    from anonbench.produce import OutputStore, _stored_output_ok

    e = {"file": file, "faces": 1, "sha256": "0" * 64}
    assert not _stored_output_ok(tmp_path, "A/A_0001.jpg", e)
    store = OutputStore("m", tmp_path, {"A/A_0001.jpg": e})
    from anonbench.data.records import ImageRecord

    rec = ImageRecord("A/A_0001.jpg", tmp_path / "A.jpg", "A")
    assert store.verify([rec]) == ([] if file is None else [str(tmp_path / file)])


def test_the_run_writes_nothing_on_a_hostile_pairs_file(tmp_path, capsys):
    data = copy_tiny(tmp_path / "lfw")
    lines = (data / "pairs.txt").read_text().splitlines()
    lines[2] = "../../../../tmp\t1\tAbdul_Rahman\t1"
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    before = snapshot(tmp_path)
    assert run_tiny(data, tmp_path / "out", tmp_path / "cache") == 2
    line = one_error_line(capsys)
    assert f"{data / 'pairs.txt'}:3:" in line and "nothing was written" in line
    assert snapshot(tmp_path) == before
