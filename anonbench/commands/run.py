"""`anonbench run --methods M1,M2 --protocol P`: methods x one protocol (anonbench.runner)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from anonbench import argtypes
from anonbench.errors import AnonbenchError

NAME = "run"
HELP = "run methods through a protocol"


def add_arguments(p: argparse.ArgumentParser) -> None:
    _what_and_where(p)
    _how(p)
    _where_shards_run(p)
    # None = not given, so a run file's value stands; DEFAULTS fill them for a plain run
    p.set_defaults(**{k: None for k in DEFAULTS})


# the defaults of the flags a run file may set (shown in --help as before)
DEFAULTS = {
    "seed": 0,
    "device": "cpu",
    "batch_size": 32,
    "executor": "local",
    "max_retries": 3,
    "analysis_detector": "dlib-hog",
}


def _what_and_where(p: argparse.ArgumentParser) -> None:
    from anonbench.cli import add_analysis_argument, add_data_arguments

    p.add_argument(
        "--config",
        metavar="FILE",
        help="a run file (TOML, e.g. configs/quick.toml): methods, several protocols with "
        "their data and options, evaluators, resources, seed, one output folder; the flags "
        "given override it (README: run files)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved run file (every option explicit) and run nothing",
    )
    p.add_argument(
        "--methods",
        help="comma-separated: method names (anonbench ls), folder:DIR or LABEL=folder:DIR "
        "(pre-computed outputs at the dataset's relative paths); required without --config",
    )
    p.add_argument(
        "--protocol",
        help="protocol name, e.g. lfw; required without --config (with it: the entries to run)",
    )
    p.add_argument("--out", help="output folder (default runs/<protocol>-<data>)")
    p.add_argument(
        "--embedder",
        default=None,
        help="lfw: recognizer used as the attacker (default dlib-resnet; anonbench ls embedders)",
    )
    add_data_arguments(p)
    add_analysis_argument(p)
    p.add_argument(
        "--folds", type=argtypes.positive_int, help="use only the first K folds (quick checks)"
    )
    p.add_argument("--pairs", help="LFW pairs file name in the data root (default pairs.txt)")
    p.add_argument(
        "--seed",
        type=argtypes.seed,
        default=0,
        help="split / bootstrap / training seed (>= 0; default 0)",
    )


def _how(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="[PROTOCOL.]KEY=VALUE",
        help="protocol option, e.g. celeba: detectors=dlib-hog,retinaface "
        "recognizers=pnca,dlib-resnet identifier=PATH max_per_identity=10 fid=0",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="METHOD=PATH",
        help="weights a method loads instead of its shipped ones (repeatable), e.g. "
        "ciagan=DIR/last.pt; the *-masked variants ship none and need one",
    )
    p.add_argument("--no-cache", action="store_true", help="use a fresh temporary cache")
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute every method, even those whose rows in --out are complete and whose "
        "inputs are unchanged (skipped otherwise)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 even when no metric could be computed (every image unreadable, no face)",
    )


def _where_shards_run(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where shards run: local (process pool, default) or ray (tasks and actors on a "
        "local Ray instance of --workers CPUs, or the cluster at --ray-address; needs "
        "pip install -e '.[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (e.g. HEAD:6379 after `ray start --head`); --cache-dir "
        "and --out must then be on a filesystem every node shares",
    )
    p.add_argument(
        "--max-retries",
        type=argtypes.non_negative_int,
        default=3,
        help="ray: times a shard whose worker died is retried before the run stops (default 3)",
    )


def _parse_checkpoints(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise AnonbenchError(f"--checkpoint expects METHOD=PATH, got {it!r}")
        out[name] = path
    return out


def _parse_options(items: Sequence[str], protocol: str) -> dict[str, str]:
    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise AnonbenchError(f"--option expects KEY=VALUE, got {it!r}")
        entry, dot, name = key.strip().rpartition(".")
        if dot and entry == protocol:  # --option lfw.folds=1: this run's protocol named
            key = name
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from anonbench import runner

    if args.config or args.print_config:
        from anonbench.runfile import command

        return command(vars(args))
    if not args.methods or not args.protocol:
        raise AnonbenchError("run needs --methods and --protocol, or --config FILE")
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    from anonbench.runfile import refuse_option_conflicts

    refuse_option_conflicts(vars(args))  # --option folds=1 --folds 2: neither silently wins
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = _parse_options(args.option, args.protocol)
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
    cfg = runner.RunConfig(
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
        analysis_detector=args.analysis_detector,
    )
    if not args.no_cache:
        runner.run(cfg)
        return 0
    import shutil
    import tempfile

    cfg.cache_dir = tempfile.mkdtemp(prefix="anonbench-nocache-")
    try:
        runner.run(cfg)
    finally:  # rule 10: the temporary cache goes however the run ends
        shutil.rmtree(cfg.cache_dir, ignore_errors=True)
    return 0
