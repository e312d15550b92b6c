"""`anonbench train <what> [options]`: runs a registered trainer (anonbench ls trainers)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model: anonbench train <what> [options]  (what: see `anonbench ls trainers`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", help="trainer name, e.g. ciagan or identifier")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the trainer's own options")


def run(args: argparse.Namespace) -> int:
    from anonbench.registry import TRAINERS

    main = TRAINERS.entry(args.what).factory
    assert main is not None
    return int(main(list(args.options)) or 0)
