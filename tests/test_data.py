from __future__ import annotations

import numpy as np
import pytest

from anonbench.data.celeba import load_celeba
from anonbench.data.folders import load_identity_folders
from anonbench.data.images import ImageReadError, read_rgb
from anonbench.data.lfw import open_lfw, read_pairs
from anonbench.errors import AnonbenchError


def test_lfw_view2_pairs_and_paths(fixtures):
    ds = open_lfw(fixtures / "lfw_tiny")
    pairs = ds.pairs()
    assert ds.label == "lfw"
    assert [(p.fold, p.index, p.label) for p in pairs] == [
        (0, 0, 1),
        (0, 1, 0),
        (1, 0, 1),
        (1, 1, 0),
    ]
    assert pairs[0].name1 == pairs[0].name2 == "Abdullah_Gul" and (
        pairs[0].num1,
        pairs[0].num2,
    ) == (1, 6)
    for p in pairs:
        img = read_rgb(ds.image_path(p.name1, p.num1))
        assert img.shape == (250, 250, 3) and img.dtype == np.uint8


def test_lfw_view1_format(tmp_path):
    f = tmp_path / "pairsDevTest.txt"
    f.write_text("2\nA\t1\t2\nB\t1\t3\nA\t1\tB\t2\nC\t1\tD\t1\n")
    pairs = read_pairs(f)
    assert [p.label for p in pairs] == [1, 1, 0, 0] and {p.fold for p in pairs} == {0}


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("x y\n", "header"),
        ("1 1\nA\t1\t2\n", "promises"),
        ("1 1\nA\t1\nA\t1\tB\t2\n", "matched pair"),
        ("1 1\nA\t1\t2\nA\t1\tB\n", "mismatched pair"),
        ("1 1\nA\tone\t2\nA\t1\tB\t2\n", "matched pair"),
    ],
)
def test_malformed_pairs_give_one_clear_error(tmp_path, text, match):
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(AnonbenchError, match=match) as e:
        read_pairs(f)
    assert "\n" not in str(e.value)


def test_lfw_missing_root_and_embedded_sample(tmp_path):
    with pytest.raises(AnonbenchError, match="not found"):
        open_lfw(tmp_path / "nope")
    with pytest.raises(AnonbenchError, match=r"no pairs\.txt"):
        open_lfw(tmp_path)
    sample = open_lfw(None)
    assert sample.label == "lfw-sample"
    pairs = sample.pairs()
    assert len(pairs) == 200 and sum(p.label for p in pairs) == 100
    assert {p.fold for p in pairs} == {0, 1}
    assert all(sample.image_path(p.name2, p.num2).is_file() for p in pairs)


def test_celeba_loader_tolerates_subsets(fixtures):
    ds = load_celeba(fixtures / "celeba_tiny")
    assert len(ds.records) == 4 and ds.missing_files == ["999999.jpg"]
    assert ds.identities() == ["7201", "7202"]
    with_lm = [r for r in ds.records if r.landmarks5 is not None]
    assert len(with_lm) == 3 and with_lm[0].landmarks5.shape == (5, 2)
    assert {r.split for r in ds.records} <= {"train", "val", "test"}
    img = read_rgb(ds.records[0].path)
    assert img.shape == (218, 178, 3)


def test_celeba_errors(tmp_path, fixtures):
    with pytest.raises(AnonbenchError, match="img_align_celeba"):
        load_celeba(tmp_path)
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(AnonbenchError, match="identity_CelebA"):
        load_celeba(tmp_path)
    (tmp_path / "identity_CelebA.txt").write_text("1.jpg 1 extra\n")
    with pytest.raises(AnonbenchError, match="expected 2 fields"):
        load_celeba(tmp_path)


def test_identity_folders(fixtures, tmp_path):
    recs = load_identity_folders(fixtures / "identity_folders")
    assert [r.identity for r in recs] == ["id7201", "id7201", "id7202", "id7202"]
    assert recs[0].key == "id7201/001085.jpg"
    with pytest.raises(AnonbenchError):
        load_identity_folders(tmp_path)


def test_identity_folders_leave_out_hidden_files(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "1.jpg").write_bytes(b"x")
    (tmp_path / "alice" / "._1.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS metadata
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "2.jpg").write_bytes(b"x")
    assert [r.key for r in load_identity_folders(tmp_path)] == ["alice/1.jpg"]


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="cannot decode"):
        read_rgb(bad)
    with pytest.raises(ImageReadError, match="not found"):
        read_rgb(tmp_path / "missing.jpg")
