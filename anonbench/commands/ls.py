"""`anonbench ls [KIND] [-v]`: the registered plug-ins, with a protocol's options and (with
-v or `ls trainers`) a trainer's. Listing imports no torch: built-ins are declared in
anonbench.registry.BUILTINS, and resolving a protocol or trainer imports only its light module.
"""

from __future__ import annotations

import argparse
from typing import Any

from anonbench.errors import AnonbenchError

NAME = "ls"
HELP = (
    "list methods, protocols (with their options), detectors, landmarkers, embedders and trainers"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        nargs="?",
        help="methods | protocols | detectors | landmarkers | embedders | trainers "
        "(trainers: with their options)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also every trainer's options")


def run(args: argparse.Namespace) -> int:
    from anonbench import registry
    from anonbench.options import describe_option

    kinds = {kind: reg for kind, (reg, _group) in registry.KINDS.items()}
    if args.kind:
        if args.kind not in kinds:
            raise AnonbenchError(f"unknown kind {args.kind!r} (one of: {', '.join(kinds)})")
        kinds = {args.kind: kinds[args.kind]}
    for kind, reg in kinds.items():
        print(
            f"{kind}:"
            if kind != "trainers" or args.verbose or args.kind
            else f"{kind}: (their options: anonbench ls trainers)"
        )
        entries = list(reg.describe())
        width = max((len(n) for n, _ in entries), default=0)
        for name, desc in entries:
            print(f"  {name:<{width}}  {desc}")
            if reg is registry.TRAINERS and (args.verbose or args.kind == "trainers"):
                _print_trainer_options(reg, name)
            if reg is not registry.PROTOCOLS:
                continue
            # a protocol's typed options (--option name=value), from its class: resolving it
            # imports the protocol module, which imports nothing heavy at module level
            try:
                options = getattr(reg.entry(name).factory, "options", ())
            except Exception as e:  # a broken plug-in must not hide the rest of the listing
                print(f"    (options not available: {type(e).__name__}: {e})")
                continue
            for opt in options:
                print(f"    --option {describe_option(opt)}")
    return 0


def _print_trainer_options(reg: Any, name: str) -> None:
    """A trainer's options, from the `build_parser()` beside its entry point (if it has one):
    resolving it imports the trainer's option module, which imports no torch."""
    import importlib

    try:
        main = reg.entry(name).factory
        build = getattr(importlib.import_module(main.__module__), "build_parser", None)
        parser = build() if build is not None else None
    except Exception as e:  # a broken plug-in must not hide the rest of the listing
        print(f"    (options not available: {type(e).__name__}: {e})")
        return
    if parser is None:
        return
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = max(action.option_strings, key=len)
        if action.required:
            what = "required"
        elif action.default is None or action.default is False or action.default == "":
            what = ""
        elif isinstance(action.default, (list, tuple)):
            what = "default " + " ".join(str(v) for v in action.default)
        else:
            what = f"default {action.default}"
        choices = f" {{{','.join(map(str, action.choices))}}}" if action.choices else ""
        helptext = (action.help or "").split(". ")[0]
        head = f"{flag}{choices}" + (f" ({what})" if what else "")
        print(f"    {head}: {helptext}" if helptext else f"    {head}")
