"""Typed protocol options (`anonbench run --option key=value`).

A protocol declares its options once, as :class:`anonbench.api.Option` entries in its
``options`` class variable; :func:`parse_options` turns the strings of the command line into
those types, fills in the defaults and refuses unknown keys, so a typo (``detectr=...``) is an
error rather than an option silently ignored. ``anonbench ls`` lists them from the same
declaration (:func:`describe_option`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from anonbench.api import Option
from anonbench.errors import AnonbenchError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_EXPECTED = {
    bool: "one of 1/0/true/false/yes/no",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def parse_options(specs: Sequence[Option], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Checks `given` (name -> value, usually strings from the command line) against `specs`
    and returns every declared option with its typed value or default.

    `owner` names who takes the options in messages, e.g. ``"protocol celeba"``. Raises
    AnonbenchError for an unknown name (with the nearest known one) and for a value that does
    not convert to the option's type. Values that already have the option's type pass as they
    are (a bool given for a bool option, an int for a float one)."""
    by_name: dict[str, Option] = {}
    for o in specs:
        if o.name in by_name:
            raise ValueError(f"{owner}: option {o.name!r} is declared twice")
        by_name[o.name] = o
    out = {o.name: o.default for o in specs}
    for key, value in given.items():
        opt = by_name.get(key)
        if opt is None:
            raise AnonbenchError(_unknown_message(key, list(by_name), owner))
        out[key] = _check_range(opt, _convert(opt, value))
        if opt.check is not None:
            opt.check(out[key])
    return out


def _check_range(opt: Option, value: Any) -> Any:
    """An int or float value is finite and within the option's [minimum, maximum]."""
    if opt.type not in (int, float) or isinstance(value, bool) or value is None:
        return value
    import math

    low, high = opt.minimum, opt.maximum
    if not math.isfinite(value) or (low is not None and value < low):
        raise AnonbenchError(f"option {opt.name}={value}: expected {_range(opt)}")
    if high is not None and value > high:
        raise AnonbenchError(f"option {opt.name}={value}: expected {_range(opt)}")
    return value


def _range(opt: Option) -> str:
    what = _expected(opt.type)
    low, high = opt.minimum, opt.maximum
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what} >= {low:g}"
    return f"{what} <= {high:g}" if high is not None else f"a finite {what.removeprefix('a ')}"


def _unknown_message(key: str, known: list[str], owner: str) -> str:
    if not known:
        return f"unknown option {key!r} for {owner}: it takes no options"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown option {key!r} for {owner}{hint} (options: {', '.join(known)})"


def _convert(opt: Option, value: Any) -> Any:
    t = opt.type
    if not isinstance(value, str):
        # already typed (e.g. set by code, not the command line); bool is an int subclass
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t not in (bool, int, float) and isinstance(value, t):
            return value
        raise AnonbenchError(f"option {opt.name}={value!r}: expected {_expected(t)}")
    text = value.strip()
    if t is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    elif t is int:
        try:
            return int(text)
        except ValueError:
            pass
    elif t is float:
        try:
            return float(text)
        except ValueError:
            pass
    elif t is str:
        return value
    else:
        try:
            return t(text)
        except (TypeError, ValueError):
            pass
    raise AnonbenchError(f"option {opt.name}={value}: expected {_expected(t)}")


def _expected(t: type) -> str:
    return _EXPECTED.get(t, f"a {getattr(t, '__name__', t)}")


def format_default(value: Any) -> str:
    """A default as a user would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_option(opt: Option) -> str:
    """One line for `anonbench ls`: ``name (type, default D): help``."""
    tname = getattr(opt.type, "__name__", str(opt.type))
    return f"{opt.name} ({tname}, default {format_default(opt.default)}): {opt.help}"
