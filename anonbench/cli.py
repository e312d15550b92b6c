"""Command line: anonbench ls | run. `main(argv)` returns the exit code (callable from tests).

Exit codes: 0 success, 1 unexpected failure (an OS error such as a full disk after work has
started: one line), 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from anonbench import argtypes
from anonbench.errors import AnonbenchError


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one line on stderr (exit 2), like every other input error;
    `--help` still shows the usage."""

    def error(self, message: str) -> Any:
        cmd = self.prog.removeprefix("anonbench").strip()  # the subcommand, if any
        self.exit(2, f"anonbench: error: {f'{cmd}: ' if cmd else ''}{message}\n")


def _parse_checkpoints(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise AnonbenchError(f"--checkpoint expects METHOD=PATH, got {it!r}")
        out[name] = path
    return out


def _parse_options(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise AnonbenchError(f"--option expects KEY=VALUE, got {it!r}")
        out[key.strip()] = value.strip()
    return out


def _cmd_ls(args: argparse.Namespace) -> int:
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


def _cmd_run(args: argparse.Namespace) -> int:
    from anonbench.runner import RunConfig, run

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = _parse_options(args.option)
    # --folds / --pairs are LFW options with flags of their own; a protocol that does not
    # declare them rejects them like any unknown option
    for flag, key, value in (("--folds", "folds", args.folds), ("--pairs", "pairs", args.pairs)):
        if value is None:
            continue
        from anonbench.registry import PROTOCOLS

        proto = PROTOCOLS.entry(args.protocol).factory
        if key not in {o.name for o in getattr(proto, "options", ())}:
            raise AnonbenchError(f"{flag} does not apply to protocol {args.protocol}")
        options[key] = str(value)
    cfg = RunConfig(
        methods=methods,
        protocol=args.protocol,
        data=args.data,
        out=args.out,
        embedder=args.embedder,
        workers=args.workers,
        seed=args.seed,
        cache_dir=args.cache_dir,
        checkpoints=_parse_checkpoints(args.checkpoint),
        options=options,
        device=args.device,
        batch_size=args.batch_size,
        quiet=args.quiet,
        compile=args.compile,
        force=args.force,
        allow_empty=args.allow_empty,
        executor=args.executor,
        ray_address=args.ray_address,
        max_retries=args.max_retries,
    )
    if not args.no_cache:
        run(cfg)
        return 0
    import shutil
    import tempfile

    cfg.cache_dir = tempfile.mkdtemp(prefix="anonbench-nocache-")
    try:
        run(cfg)
    finally:  # rule 10: the temporary cache goes however the run ends
        shutil.rmtree(cfg.cache_dir, ignore_errors=True)
    return 0


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data KIND:PATH (with --data-root as an alias), --device, --batch-size, --workers."""
    p.add_argument(
        "--data",
        "--data-root",
        dest="data",
        help="dataset: lfw:DIR, celeba:DIR, folders:DIR, or a plain DIR (the protocol's "
        "default kind); omitted: the embedded LFW sample (lfw-sample)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for methods and evaluators: auto, cpu, cuda, cuda:N (default cpu)",
    )
    p.add_argument(
        "--batch-size",
        type=argtypes.positive_int,
        default=32,
        help="images per batched torch call (default 32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator of methods that take it (ciagan; CUDA only)",
    )
    p.add_argument(
        "--workers",
        type=argtypes.workers,
        default=None,
        help="worker processes, at most the core count (default min(2, cores))",
    )
    p.add_argument(
        "--cache-dir", help="cache folder (default $ANONBENCH_CACHE or ~/.cache/anonbench)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--max-pixels",
        type=argtypes.max_pixels,
        default=None,
        help="refuse images declaring more pixels than this, before decoding "
        "(default 64e6; 0 = no limit)",
    )


def build_parser() -> argparse.ArgumentParser:
    from anonbench import __version__

    p = OneLineParser(prog="anonbench", description="Benchmark face anonymizers.")
    p.add_argument("--version", action="version", version=f"anonbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser(
        "ls",
        help="list methods, protocols (with their options), detectors, landmarkers, embedders "
        "and trainers",
    )
    ls.add_argument(
        "kind",
        nargs="?",
        help="methods | protocols | detectors | landmarkers | embedders | trainers "
        "(trainers: with their options)",
    )
    ls.add_argument("-v", "--verbose", action="store_true", help="also every trainer's options")
    ls.set_defaults(func=_cmd_ls)

    r = sub.add_parser("run", help="run methods through a protocol")
    r.add_argument(
        "--methods",
        required=True,
        help="comma-separated: method names (anonbench ls), folder:DIR or LABEL=folder:DIR "
        "(pre-computed outputs at the dataset's relative paths)",
    )
    r.add_argument("--protocol", required=True, help="protocol name, e.g. lfw")
    r.add_argument("--out", help="output folder (default runs/<protocol>-<data>)")
    r.add_argument(
        "--embedder",
        default="dlib-resnet",
        help="lfw: recognizer used as the attacker (default dlib-resnet; anonbench ls embedders)",
    )
    add_data_arguments(r)
    r.add_argument(
        "--folds", type=argtypes.positive_int, help="use only the first K folds (quick checks)"
    )
    r.add_argument("--pairs", help="LFW pairs file name in the data root (default pairs.txt)")
    r.add_argument(
        "--seed",
        type=argtypes.seed,
        default=0,
        help="split / bootstrap / training seed (>= 0; default 0)",
    )
    r.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="protocol option, e.g. celeba: detectors=dlib-hog,retinaface "
        "recognizers=pnca,dlib-resnet identifier=PATH max_per_identity=10 fid=0",
    )
    r.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="METHOD=PATH",
        help="weights a method loads instead of its shipped ones (repeatable), e.g. "
        "ciagan=DIR/last.pt; pix2pix and cyclegan ship none and need one",
    )
    r.add_argument("--no-cache", action="store_true", help="use a fresh temporary cache")
    r.add_argument(
        "--force",
        action="store_true",
        help="recompute every method, even those whose rows in --out are complete and whose "
        "inputs are unchanged (skipped otherwise)",
    )
    r.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 even when no metric could be computed (every image unreadable, no face)",
    )
    r.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where shards run: local (process pool, default) or ray (tasks and actors on a "
        "local Ray instance of --workers CPUs, or the cluster at --ray-address; needs "
        "pip install -e '.[ray]')",
    )
    r.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (e.g. HEAD:6379 after `ray start --head`); --cache-dir "
        "and --out must then be on a filesystem every node shares",
    )
    r.add_argument(
        "--max-retries",
        type=argtypes.non_negative_int,
        default=3,
        help="ray: times a shard whose worker died is retried before the run stops (default 3)",
    )
    r.set_defaults(func=_cmd_run)

    for mod in _command_modules():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    return p


def _command_modules() -> list:
    """The modules of anonbench.commands, each one subcommand (see its package docstring)."""
    import importlib
    import pkgutil

    import anonbench.commands as pkg

    mods = [
        importlib.import_module(f"{pkg.__name__}.{m.name}")
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_")
    ]
    return sorted(mods, key=lambda m: m.NAME)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "max_pixels", None) is not None:
        from anonbench.data.images import set_max_pixels

        set_max_pixels(args.max_pixels or None)
    if getattr(args, "workers", 1) is None:
        from anonbench.runner import default_workers

        args.workers = default_workers()
    from anonbench.safety import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # rule 10: `kill` ends any command like Ctrl-C
            return int(args.func(args) or 0)
    except AnonbenchError as e:
        print(f"anonbench: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))  # 1 for an OS error after work started
    except KeyboardInterrupt:
        print("anonbench: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # `anonbench ls | head`: the reader left. No traceback, but no success either (the
        # output was cut short: exit 1, as the Python docs advise); devnull keeps the
        # interpreter's final flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
