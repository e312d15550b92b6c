"""The registered `pix2pix` (landmark drawing -> face, the paper's baseline) and
`pix2pix-masked` (CIAGAN's input: landmarks ⊕ masked face) methods; see
anonbench.methods.gan_common for the input, the paste-back and the checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from anonbench.methods import gan_common
from anonbench.methods.pix2pix.model import UnetGenerator

FAMILY = "pix2pix"


def generator(in_ch: int, out_ch: int = 3, ngf: int = 64, norm: str = "batch") -> UnetGenerator:
    """`unet_128` with dropout 0.5 (the reference's pix2pix generator)."""
    return UnetGenerator(in_ch, out_ch, 7, ngf, norm, dropout=True)


def random_checkpoint(variant: str = "landmarks", ngf: int = 64, seed: int = 0) -> dict[str, Any]:
    """A checkpoint with N(0, 0.02)-initialised weights: for tests of the plumbing (its faces
    are noise)."""
    return gan_common.random_checkpoint(FAMILY, generator, "batch", "unet_128", variant, ngf, seed)


class Pix2Pix(gan_common.GanBaseline):
    """pix2pix (Isola et al., CVPR 2017) landmarks -> face baseline, pasted into the CIAGAN
    mask. variant: "landmarks" (the paper's baseline) or "masked" (landmarks ⊕ masked face);
    checkpoint: a pix2pix generator checkpoint; default: the CPU-trained landmarks one shipped
    in the package (weights/MODEL_CARD.md; the masked variant ships none)."""

    name = "pix2pix"
    family = FAMILY
    package_weights: ClassVar[dict[str, Path]] = {
        "landmarks": Path(__file__).parent / "weights" / "pix2pix_generator.pt"
    }
    paper = (
        "Isola, Zhu, Zhou, Efros: pix2pix, CVPR 2017 (a baseline of Maximov et al., CIAGAN, "
        "CVPR 2020, Table 4)"
    )

    @classmethod
    def build(cls, ckpt: dict[str, Any], source: str) -> torch.nn.Module:
        return gan_common.build_generator(ckpt, source, FAMILY, generator)
