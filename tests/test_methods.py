"""One test over every registered method: shape kept, no NaN, outside-mask pixels untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anonbench.anonymize import anonymize_image
from anonbench.api import Anonymizer, FaceBatch, MethodMeta, region_mask
from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.faces.analysis import FaceAnalysis
from anonbench.faces.mask import ciagan_mask
from anonbench.registry import METHODS


def _batch() -> FaceBatch:
    """Three real LFW faces with their dlib landmarks and CIAGAN masks."""
    from anonbench.faces.analysis import FaceAnalyzer

    imgs, lms, masks, boxes = [], [], [], []
    analyzer = FaceAnalyzer()
    for p in sorted((sample_root() / "images").glob("*/*.jpg"))[:3]:
        img = read_rgb(p)
        a = analyzer(img)
        imgs.append(img)
        lms.append(a.landmarks[0])
        masks.append(ciagan_mask(a.landmarks[0], *img.shape[:2]))
        boxes.append(a.boxes[0])
    return FaceBatch(
        images=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255,
        landmarks=torch.from_numpy(np.stack(lms)),
        masks=torch.from_numpy(np.stack(masks)).unsqueeze(1),
        boxes=torch.from_numpy(np.stack(boxes)),
        keys=[f"k{i}" for i in range(len(imgs))],
    )


def _create(name: str, tmp_path):
    """Methods that need weights get a small random checkpoint (the contract, not quality)."""
    if name == "ciagan":
        from anonbench.methods.ciagan.checkpoint import random_generator_checkpoint, save_atomic

        path = tmp_path / "ciagan.pt"
        save_atomic(random_generator_checkpoint(10, 32, 8), path)
        return METHODS.create(name, checkpoint=str(path))
    if name in ("pix2pix", "pix2pix-masked", "cyclegan", "cyclegan-masked"):
        import importlib

        from anonbench.methods.gan_common import save_checkpoint

        family, _, variant = name.partition("-")
        mod = importlib.import_module(f"anonbench.methods.{family}.anonymizer")
        path = tmp_path / f"{name}.pt"
        save_checkpoint(mod.random_checkpoint(variant or "landmarks", ngf=8), path)
        return METHODS.create(name, checkpoint=str(path))
    return METHODS.create(name)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_keeps_outside_mask_pixels(name, tmp_path):
    batch = _batch()
    out = _create(name, tmp_path).anonymize(batch)
    assert out.shape == batch.images.shape
    assert not torch.isnan(out).any()
    assert out.min() >= 0 and out.max() <= 1
    method = _create(name, tmp_path)
    # the region the method declares (mask, box or whole image) is what it may change
    outside = region_mask(batch, method.meta.region).expand_as(out) == 0
    assert torch.equal(out[outside], batch.images[outside])
    inside = batch.masks.expand_as(out) > 0
    if name != "original":  # every real anonymizer changes the face
        assert (out[inside] - batch.images[inside]).abs().mean() > 0.01


def test_nan_from_a_generator_cannot_leak_outside_the_mask():
    from anonbench.api import Anonymizer

    class Broken(Anonymizer):
        def _generate(self, batch, *, targets, generator):
            return torch.full_like(batch.images, float("nan"))

    batch = _batch()
    out = Broken().anonymize(batch)
    outside = batch.masks.expand_as(out) == 0
    assert torch.equal(out[outside], batch.images[outside])


def test_pixelate_grid_cells_and_mask_black():
    batch = _batch()
    out = METHODS.create("pixelate8").anonymize(batch)[0, 0].numpy()
    m = batch.masks[0, 0].numpy() > 0
    ys, xs = np.nonzero(m)
    region = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    inside = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert len(np.unique(region[inside])) <= 64  # at most an 8x8 grid of colours
    black = METHODS.create("mask").anonymize(batch)
    assert float(black[batch.masks.expand_as(black) > 0].abs().max()) == 0.0


def test_blur_uses_opencv_default_sigma():
    import cv2

    batch = _batch()
    out = METHODS.create("blur9").anonymize(batch)
    img = batch.images[0].permute(1, 2, 0).numpy()
    ref = cv2.GaussianBlur(img, (9, 9), 0, borderType=cv2.BORDER_REFLECT_101)
    m = batch.masks[0, 0].numpy() > 0
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy()[m], ref[m], atol=1e-6)


def test_anonymize_image_without_faces_is_unchanged():
    img = read_rgb(sorted((sample_root() / "images").glob("*/*.jpg"))[0])
    empty = FaceAnalysis(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 68, 2), np.float32)
    )
    assert np.array_equal(anonymize_image(METHODS.create("mask"), img, empty, "k"), img)


@pytest.mark.parametrize("region", ["mask", "box", "image"])
def test_declared_region_bounds_what_a_method_changes(region):
    """A method that writes everywhere is cut back to the region it declares."""

    class Everywhere(Anonymizer):
        meta = MethodMeta(region=region)

        def _generate(self, batch, *, targets, generator):
            return torch.zeros_like(batch.images)

    batch = _batch()
    out = Everywhere().anonymize(batch)
    changed = (out != batch.images).any(1, keepdim=True)
    allowed = region_mask(batch, region) > 0
    assert not (changed & ~allowed).any()
    if region == "box":  # the box covers more than the mask, and the box is filled
        assert changed.sum() > (batch.masks > 0).sum()
        b = batch.boxes[0].round().int().tolist()
        assert torch.all(out[0, :, b[1] + 1 : b[3] - 1, b[0] + 1 : b[2] - 1] == 0)
    if region == "image":
        assert torch.all(out == 0)
