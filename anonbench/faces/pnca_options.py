"""Options of `anonbench train identifier` (torch-free: `anonbench ls trainers` lists them);
the training is anonbench.faces.pnca.train_from_args."""

from __future__ import annotations

import argparse

from anonbench import argtypes

DEFAULT_EPOCHS = 20  # PNCAConfig.epochs


def build_parser() -> argparse.ArgumentParser:
    from anonbench.cli import OneLineParser

    p = OneLineParser(
        prog="anonbench train identifier",
        description="Train the Proxy-NCA identity network on the train identities of "
        "identity-labelled faces (the celeba protocol's seeded split). Writes pnca.pt and "
        "config.json to --out.",
    )
    p.add_argument("--data", required=True, help="celeba:PATH or folders:PATH")
    p.add_argument("--out", required=True, help="output folder (pnca.pt, config.json)")
    p.add_argument("--epochs", type=argtypes.positive_int, default=DEFAULT_EPOCHS)
    p.add_argument("--seed", type=argtypes.seed, default=0, help="split and training seed")
    p.add_argument("--test-fraction", type=argtypes.fraction, default=0.5)
    p.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda)")
    p.add_argument("--cache-dir", default=None, help="face analysis cache (default as `run`)")
    return p


def main(argv: list[str]) -> int:
    """`anonbench train identifier --data celeba:PATH --out DIR [--epochs N] [--seed S]`."""
    from anonbench.faces.pnca import train_from_args

    return train_from_args(build_parser().parse_args(argv))
