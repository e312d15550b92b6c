"""Options of `anonbench train ciagan`: its training config and command line. Free of torch, so
`anonbench ls trainers` lists them without importing the trainer (train.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from anonbench import argtypes as at
from anonbench.errors import AnonbenchError
from anonbench.methods import gan_options as common
from anonbench.methods.gan_options import GanTrainConfig

# the recipe v1 values of the recipe fields: what a checkpoint without them was trained with
LEGACY_RECIPE: dict[str, Any] = {
    "target_sampling": "official",
    "identity_init": "default",
    "identity_lr_scale": 1.0,
    "range_weight": 0.0,
    "identity_eval": False,
}


@dataclass
class TrainConfig(GanTrainConfig):
    """CIAGAN's training config: the core's fields (data, schedule, device, checkpoints) with
    CIAGAN's defaults, and its own."""

    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-4
    critic_iters: int = 5
    identity_iters: int = 1
    identity_weight: float = 1.0
    margin: float = 3.0  # contrastive margin (official)
    # training recipe v2 (issue 10; MODEL_CARD.md "Training recipe v2"); LEGACY_RECIPE below
    # gives v1 (the official code's), which made the shipped checkpoint
    target_sampling: str = "different"  # generator targets: "different" from the source's
    # identity always, or "official" (half of the pairs the source's own identity)
    identity_init: str = "kaiming"  # the identity branch's FC layers: "kaiming" (LeakyReLU
    # gain, zero bias) or "default" (PyTorch's, which leaves the one-hot ~1% of the code)
    identity_lr_scale: float = 1.0  # identity net's lr during GAN training, times lr (0: frozen)
    # tried, not part of v2 (MODEL_CARD.md): off by default
    range_weight: float = 0.0  # weight of the penalty on generated pixels outside [0, 1]
    identity_eval: bool = False  # the identity net judges the generator in eval mode
    identity_pretrain: str = "pnca"  # the paper; "none" = the official code
    pnca_epochs: float = 5.0
    proxy_lr: float = 1e-2
    gen_width: int = 32
    critic_width: int = 64
    id_width: int = 64
    embed_dim: int = 0  # 0: the number of identities (official)


# --preset cpu: the recipe chosen by the learning curves in benchmarks/results/cpu_recipes.md
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(
        common.cpu_runtime_defaults(),
        img_size=64,
        gen_width=16,
        critic_width=32,
        id_width=32,
        critic_iters=1,
        epochs=100000,
    ),
}


# -- the command --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="anonbench train ciagan",
        description="Train CIAGAN (generator, critic, identity network) on identity-labelled "
        "faces. Writes last.pt, losses.csv, samples/epoch_NNNN.png and config.json to --out.",
    )
    common.add_common_arguments(p, d)
    p.add_argument("--identity-pretrain", choices=["pnca", "none"], default=d.identity_pretrain)
    p.add_argument("--pnca-epochs", type=at.non_negative_number, default=d.pnca_epochs)
    p.add_argument("--critic-iters", type=at.positive_int, default=d.critic_iters)
    p.add_argument("--identity-weight", type=at.non_negative_number, default=d.identity_weight)
    p.add_argument(
        "--target-sampling",
        choices=["different", "official"],
        default=d.target_sampling,
        help="generator targets: always another identity than the source's (recipe v2), or "
        "the official pairs (half the source's own identity, recipe v1)",
    )
    p.add_argument(
        "--identity-init",
        choices=["kaiming", "default"],
        default=d.identity_init,
        help="init of the identity branch's FC layers: kaiming (recipe v2) or PyTorch's "
        "default (v1, which hides the one-hot)",
    )
    p.add_argument(
        "--identity-lr-scale",
        type=at.non_negative_number,
        default=d.identity_lr_scale,
        help="identity net's lr during GAN training = lr x this (0: frozen after Proxy-NCA)",
    )
    p.add_argument(
        "--range-weight",
        type=at.non_negative_number,
        default=d.range_weight,
        help="weight of a penalty on generated pixels outside [0, 1] (tried, not in v2: 0)",
    )
    p.add_argument(
        "--identity-eval",
        type=int,
        choices=[0, 1],
        default=int(d.identity_eval),
        help="1: the identity net judges the generator in eval mode (running BatchNorm "
        "statistics; tried, not in v2); 0: in train mode, with the fake batch's statistics",
    )
    p.add_argument(
        "--recipe",
        choices=["v2", "v1"],
        default="v2",
        help="v1: the recipe of the shipped checkpoint (official sampling, default init, "
        "identity lr 1x, no range penalty, identity net in train mode); overrides the five "
        "flags above",
    )
    p.add_argument(
        "--img-size", type=at.positive_int, default=d.img_size, help="128 (paper); 4*2^k"
    )
    p.add_argument("--gen-width", type=at.positive_int, default=d.gen_width)
    p.add_argument("--critic-width", type=at.positive_int, default=d.critic_width)
    p.add_argument("--id-width", type=at.positive_int, default=d.id_width)
    p.add_argument(
        "--embed-dim", type=at.non_negative_int, default=d.embed_dim, help="0: number of identities"
    )
    return p


def _recipe_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "recipe", "v2") == "v1":
        return dict(LEGACY_RECIPE)
    return {k: type(v)(getattr(args, k)) for k, v in LEGACY_RECIPE.items()}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        **common.common_config(args),
        critic_iters=args.critic_iters,
        identity_weight=args.identity_weight,
        **_recipe_from_args(args),
        identity_pretrain=args.identity_pretrain,
        pnca_epochs=args.pnca_epochs,
        img_size=args.img_size,
        gen_width=args.gen_width,
        critic_width=args.critic_width,
        id_width=args.id_width,
        embed_dim=args.embed_dim,
    )


def validate(cfg: TrainConfig) -> None:
    # pairs of the same and of different identities
    common.validate_common(cfg, min_batch=2)
    if cfg.critic_iters < 1:
        raise AnonbenchError("--critic-iters must be >= 1")
    if cfg.target_sampling not in ("different", "official"):
        raise AnonbenchError("--target-sampling must be 'different' or 'official'")
    if cfg.identity_init not in ("kaiming", "default"):
        raise AnonbenchError("--identity-init must be 'kaiming' or 'default'")
    if cfg.identity_lr_scale < 0:
        raise AnonbenchError("--identity-lr-scale must be >= 0")


def main(argv: list[str]) -> int:
    """Entry point of `anonbench train ciagan` (registered in anonbench.registry.TRAINERS)."""
    from anonbench.methods.ciagan.train import FAMILY

    return common.run_command(FAMILY, build_parser(), argv, config_from_args, PRESETS)
