"""The registered `cyclegan` (landmark drawing -> face, the paper's baseline) and
`cyclegan-masked` (CIAGAN's input: landmarks ⊕ masked face) methods: the landmarks -> face
generator (G_A) of a CycleGAN; see anonbench.methods.gan_common for the input, the paste-back
and the checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from anonbench.methods import gan_common
from anonbench.methods.cyclegan.model import ResnetGenerator

FAMILY = "cyclegan"


def generator(
    in_ch: int, out_ch: int = 3, ngf: int = 64, norm: str = "instance"
) -> ResnetGenerator:
    """`resnet_9blocks` (the reference's CycleGAN generator)."""
    return ResnetGenerator(in_ch, out_ch, ngf, 9, norm)


def random_checkpoint(variant: str = "landmarks", ngf: int = 64, seed: int = 0) -> dict[str, Any]:
    """A checkpoint with N(0, 0.02)-initialised weights: for tests of the plumbing (its faces
    are noise)."""
    return gan_common.random_checkpoint(
        FAMILY, generator, "instance", "resnet_9blocks", variant, ngf, seed
    )


class CycleGAN(gan_common.GanBaseline):
    """CycleGAN (Zhu et al., ICCV 2017) landmarks -> face baseline, pasted into the CIAGAN
    mask. variant: "landmarks" (the paper's baseline) or "masked" (landmarks ⊕ masked face);
    checkpoint: a CycleGAN checkpoint holding the landmarks -> face generator; default: the
    CPU-trained landmarks one shipped in the package (weights/MODEL_CARD.md; the masked variant
    ships none)."""

    name = "cyclegan"
    family = FAMILY
    package_weights: ClassVar[dict[str, Path]] = {
        "landmarks": Path(__file__).parent / "weights" / "cyclegan_generator.pt"
    }
    paper = (
        "Zhu, Park, Isola, Efros: CycleGAN, ICCV 2017 (a baseline of Maximov et al., CIAGAN, "
        "CVPR 2020, Table 4)"
    )

    @classmethod
    def build(cls, ckpt: dict[str, Any], source: str) -> torch.nn.Module:
        return gan_common.build_generator(ckpt, source, FAMILY, generator)
