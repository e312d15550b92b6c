"""`anonbench produce --method M --data SPEC --out DIR`: the production stage on its own.

Anonymizes every image of the dataset with one method and writes the outputs as lossless PNGs
at the dataset's relative paths (suffix .png), plus manifest.json (per image: faces found,
whether the method missed them, boxes, the region each face may change, the pixels that did
change, timings). The folder can be shared, inspected, and scored later with
`anonbench run --methods NAME=folder:DIR`, which gives the numbers of running the method.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "produce"
HELP = "anonymize a dataset with one method into a folder of outputs + manifest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anonbench.cli import add_analysis_argument, add_data_arguments

    parser.add_argument("--method", required=True, help="method name (anonbench ls methods)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", help="model checkpoint (methods that take one)")
    parser.add_argument(
        "--force", action="store_true", help="regenerate every output, even those stored"
    )
    add_data_arguments(parser)
    add_analysis_argument(parser)


def _checked_inputs(args: argparse.Namespace) -> tuple[Any, Any, Path, str, str, str]:
    """The method spec, dataset, output folder, cache folder, device and analysis version,
    every flag checked before any work (one line on a bad one)."""
    from anonbench.cache import default_cache_dir
    from anonbench.data.datasets import open_dataset
    from anonbench.errors import AnonbenchError
    from anonbench.produce import check_export_out, export_targets
    from anonbench.runner import (
        check_analysis_detector,
        check_writable_dir,
        data_inputs,
        parse_method,
        resolve_device,
    )
    from anonbench.safety import refuse_overlap

    spec = parse_method(args.method)
    if spec.folder is not None:
        raise AnonbenchError("produce runs a method; folder: outputs are already produced")
    if args.workers is not None and args.workers < 1:
        raise AnonbenchError(f"--workers must be >= 1, got {args.workers}")
    if args.batch_size < 1:
        raise AnonbenchError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    analysis = check_analysis_detector(args.analysis_detector)
    # a plain path: identity folders; KIND:PATH for LFW or CelebA layouts
    ds = open_dataset(args.data, "lfw" if args.data is None else "folders")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AnonbenchError(f"--out {out} exists and is not a folder")
    cache_dir = str(args.cache_dir or default_cache_dir())
    # rule 2, before any work: the originals are never written
    refuse_overlap([("--out", out), ("--cache-dir", cache_dir)], data_inputs(ds))
    # both writable (a dangling link, a file in the way): one line naming the flag
    check_writable_dir(out, "--out")
    check_writable_dir(cache_dir, "--cache-dir")
    targets = export_targets(ds.records, out)  # rule 1: no output lands outside --out (links)
    check_export_out(out, targets)  # a user's files there are never overwritten
    return spec, ds, out, cache_dir, device, analysis


def run(args: argparse.Namespace) -> int:
    from anonbench.api import Resources
    from anonbench.evaluate import Originals
    from anonbench.log import note, warn
    from anonbench.produce import export_store, produce
    from anonbench.runner import build_method, remove_if_empty, torch_threads

    spec, ds, out, cache_dir, device, analysis = _checked_inputs(args)
    resources = Resources(
        device=device,
        batch_size=args.batch_size,
        workers=args.workers or 1,
        cache_dir=cache_dir,
        quiet=args.quiet,
        compile=args.compile,
        analysis_detector=args.analysis_detector,
    )
    checkpoints = {args.method: args.checkpoint} if args.checkpoint else {}
    method = build_method(spec, resources, checkpoints)
    if method.meta.note:
        note(f"{spec.label}: {method.meta.note}")
    torch_threads(max(1, args.workers or 1))  # when torch is first imported: classic needs none
    originals = Originals(cache_dir, args.workers or 1, args.quiet, detector=args.analysis_detector)
    analyses = originals.analyze(ds.records, f"analyse {ds.label}")
    bad = originals.errors(ds.records)
    for _, e in sorted(bad.items()):
        warn(f"{e} (skipped)")
    store = produce(
        method,
        spec.label,
        ds.records,
        analyses,
        cache_dir=cache_dir,
        batch_size=args.batch_size,
        quiet=args.quiet,
        force=args.force,
        analysis=analysis,
    )
    created = not out.exists()
    try:
        export_store(store, ds.records, out)  # a failed export removes the files it added
    except BaseException:
        if created:  # and the folders it made for them
            remove_if_empty(out)
        raise
    entries = [store.entries[r.key] for r in ds.records if r.key in store.entries]
    missed = sum(bool(e.get("missed")) for e in entries)
    print(
        f"{spec.label} on {ds.label}: {len(entries)} images written to {out} "
        f"({missed} without a detected face, written unchanged; {len(bad)} unreadable)"
    )
    print(f"manifest: {out / 'manifest.json'}")
    return 0
