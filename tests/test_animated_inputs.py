"""run and produce read the first frame of an animated input (GIF, APNG, WebP, multi-page
TIFF), like anonymize; they say so in one warning line when the dataset is opened, instead
of flattening silently. Only formats that can animate are opened, header only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anonbench.data.datasets import open_dataset
from anonbench.data.images import declared_frames


def _frames(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(n)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def _save(path, n: int) -> None:
    first, *rest = _frames(n)
    kw = {"save_all": True, "append_images": rest} if rest else {}
    first.save(path, **kw)


@pytest.mark.parametrize(("name", "n"), [("a.gif", 3), ("a.png", 2), ("a.webp", 4), ("a.tif", 2)])
def test_declared_frames_reads_the_header(tmp_path, name, n):
    _save(tmp_path / name, n)
    assert declared_frames(tmp_path / name) == n
    _save(tmp_path / f"one_{name}", 1)
    assert declared_frames(tmp_path / f"one_{name}") == 1


def test_a_dataset_with_animated_images_warns_once(tmp_path, capsys):
    for person in ("ann", "bob"):
        (tmp_path / person).mkdir()
        _save(tmp_path / person / "1.png", 1)
        _save(tmp_path / person / "2.jpg", 1)
    _save(tmp_path / "ann" / "3.png", 5)  # APNG (datasets take .jpg .jpeg .png .bmp .webp)
    _save(tmp_path / "bob" / "3.webp", 2)
    open_dataset(f"folders:{tmp_path}")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "2 animated image(s)" in err[0] and "5 frames" in err[0] and "1 more" in err[0]
    assert "first frame" in err[0]


def test_a_jpeg_dataset_opens_no_image(tmp_path, capsys, monkeypatch):
    for person in ("ann", "bob"):
        (tmp_path / person).mkdir()
        for i in range(2):
            _save(tmp_path / person / f"{i}.jpg", 1)

    def no_open(*a, **k):
        raise AssertionError("a header was read for a JPEG")

    monkeypatch.setattr(Image, "open", no_open)
    open_dataset(f"folders:{tmp_path}")
    assert capsys.readouterr().err == ""
