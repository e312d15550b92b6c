"""Options of `anonbench train cyclegan` (torch-free: `anonbench ls trainers` lists them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from anonbench import argtypes as at
from anonbench.errors import AnonbenchError
from anonbench.methods import gan_options as common
from anonbench.methods.gan_options import BaselineTrainConfig


@dataclass
class CycleGANConfig(BaselineTrainConfig):
    """CycleGAN with the reference's defaults: ResNet-9-block generators and PatchGAN
    discriminators with instance norm, LSGAN, cycle weight 10 both ways, identity loss
    0.5 x 10 where a generator's input and output channels match, image pools of 50."""

    lambda_cycle: float = 10.0  # lambda_A = lambda_B
    lambda_identity: float = 0.5  # times lambda_cycle; used only for the 3 -> 3 variant
    pool_size: int = 50


# --preset cpu: see benchmarks/results/cpu_recipes.md for the measurements behind it
PRESETS: dict[str, dict[str, Any]] = common.baseline_presets(epochs=10)


def build_parser() -> argparse.ArgumentParser:
    d = CycleGANConfig()
    p = argparse.ArgumentParser(
        prog="anonbench train cyclegan",
        description="Train a CycleGAN between landmark drawings (or landmarks + masked face) "
        "and faces (ResNet-9 generators, PatchGANs, LSGAN, cycle 10, image pools of 50, Adam "
        "2e-4, lr decay over the second half), unpaired as in the reference. Writes last.pt "
        "(usable as --checkpoint), losses.csv, samples/ and config.json to --out.",
    )
    common.add_baseline_arguments(p, d)
    p.add_argument(
        "--lambda-cycle", type=at.non_negative_number, default=d.lambda_cycle, help="cycle weight"
    )
    p.add_argument(
        "--lambda-identity",
        type=at.non_negative_number,
        default=d.lambda_identity,
        help="identity-loss weight relative to --lambda-cycle (only where input and output "
        "channels match: the landmarks variant; 0 for masked)",
    )
    p.add_argument(
        "--pool-size", type=at.non_negative_int, default=d.pool_size, help="fake-image pool size"
    )
    return p


def config_from_args(args: argparse.Namespace) -> CycleGANConfig:
    cfg = CycleGANConfig(
        **common.baseline_config(args),
        lambda_cycle=args.lambda_cycle,
        lambda_identity=args.lambda_identity,
        pool_size=args.pool_size,
    )
    if cfg.pool_size < 0:
        raise AnonbenchError("--pool-size must be >= 0")
    return cfg


def main(argv: list[str]) -> int:
    """Entry point of `anonbench train cyclegan` (registered in anonbench.registry.TRAINERS)."""
    from anonbench.methods.cyclegan.train import FAMILY

    return common.run_command(FAMILY, build_parser(), argv, config_from_args, PRESETS)
