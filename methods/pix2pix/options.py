"""Options of `anonbench train pix2pix` (torch-free: `anonbench ls trainers` lists them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from anonbench import argtypes as at
from anonbench.methods import gan_options as common
from anonbench.methods.gan_options import BaselineTrainConfig


@dataclass
class Pix2PixConfig(BaselineTrainConfig):
    """pix2pix with the reference's defaults: unet_128 + 70 x 70 PatchGAN on input ⊕ output,
    vanilla GAN loss + lambda_l1 x L1."""

    lambda_l1: float = 100.0


# --preset cpu: see benchmarks/results/cpu_recipes.md for the measurements behind it
PRESETS: dict[str, dict[str, Any]] = common.baseline_presets(epochs=40)


def build_parser() -> argparse.ArgumentParser:
    d = Pix2PixConfig()
    p = argparse.ArgumentParser(
        prog="anonbench train pix2pix",
        description="Train a pix2pix landmarks -> face generator (unet_128, PatchGAN, "
        "GAN + 100 L1, Adam 2e-4, lr decay over the second half) on CIAGAN's face views. "
        "Writes last.pt (usable as --checkpoint), losses.csv, samples/ and config.json to --out.",
    )
    common.add_baseline_arguments(p, d)
    p.add_argument(
        "--lambda-l1",
        type=at.non_negative_number,
        default=d.lambda_l1,
        help="weight of the L1 loss",
    )
    return p


def config_from_args(args: argparse.Namespace) -> Pix2PixConfig:
    return Pix2PixConfig(**common.baseline_config(args), lambda_l1=args.lambda_l1)


def main(argv: list[str]) -> int:
    """Entry point of `anonbench train pix2pix` (registered in anonbench.registry.TRAINERS)."""
    from anonbench.methods.pix2pix.train import FAMILY

    return common.run_command(FAMILY, build_parser(), argv, config_from_args, PRESETS)
