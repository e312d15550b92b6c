"""The numeric options of every command, validated once, at parse time (issue 20, rule 8).

Each function here is an argparse ``type=``: it turns the text of one option into its value or
raises ``argparse.ArgumentTypeError``, which the CLI prints as one line (exit 2) before any
work. Every command that takes an option uses the same function for it, so ``--workers``,
``--seed`` or ``--max-pixels`` mean the same thing, with the same limits, everywhere.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # numpy's legacy seeds and torch's manual_seed take at most 32 bits


def _number(text: str) -> float:
    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _integer(text: str) -> int:
    """An integer, also written as an integral number in exponent form ("64e6")."""
    s = str(text).strip()
    try:
        return int(s)
    except ValueError:
        pass
    v = _number(s)
    if not v.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(v)


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A type function: a whole number in [minimum, maximum]."""

    def parse(text: str) -> int:
        v = _integer(text)
        if v < minimum or (maximum is not None and v > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{upper}, got {text}")
        return v

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def number(minimum: float) -> Callable[[str], float]:
    """A type function: a finite number >= minimum."""

    def parse(text: str) -> float:
        v = _number(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return v

    parse.__name__ = "number"
    return parse


def positive_number(text: str) -> float:
    """A finite number > 0 (a learning rate, a crop share)."""
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


positive_int = integer(1)
non_negative_int = integer(0)
non_negative_number = number(0.0)
seed = integer(0, SEED_MAX)


def fraction(text: str) -> float:
    """A share: a finite number from 0 to 1."""
    v = _number(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return v


def cap_workers(n: int, flag: str = "--workers") -> int:
    """`n` capped at the core count (os.cpu_count()), with a one-line warning when capped:
    more processes than cores only add memory and switching."""
    cores = os.cpu_count() or 1
    if n > cores:
        print(f"warning: {flag} {n} > {cores} cores: using {cores}", file=sys.stderr)
        return cores
    return n


def workers(text: str) -> int:
    """Worker processes: a whole number >= 1, capped at the core count."""
    return cap_workers(positive_int(text))


def max_pixels(text: str) -> int:
    """A pixel limit: a whole number >= 1 (exponent form allowed: 64e6), or 0 for no limit."""
    v = _integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number (0: no limit), got {text}"
        )
    return v


def detector(text: str) -> str:
    """A registered face detector's name (`anonbench ls detectors`); a typo is one line with a
    suggestion. Looking the name up imports no detector."""
    import difflib

    from anonbench.registry import DETECTORS

    name = str(text).strip()
    if name not in DETECTORS:
        close = difflib.get_close_matches(name, DETECTORS.names(), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentTypeError(
            f"unknown detector {name!r}{hint} (known: {', '.join(DETECTORS.names())})"
        )
    return name
