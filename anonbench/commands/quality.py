"""`anonbench quality`: scores a generator checkpoint (CIAGAN, pix2pix, CycleGAN) on the
acceptance metrics of the learned anonymizers, or ranks the checkpoints a training folder's
quality.csv has seen (anonbench.quality)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "quality"
HELP = (
    "score a GAN checkpoint: identity effect, detection, Recall@1, KID/FID on the celeba "
    "N=443 subset: anonbench quality --method ciagan --checkpoint FILE --data-root DIR"
)


DEFAULT_OUT = "quality"  # --out not given: relative to the current folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anonbench import argtypes

    parser.add_argument("--method", default="ciagan", help="ciagan, pix2pix, cyclegan, ...")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="checkpoint to score (repeatable; a training folder's last.pt or snapshots/"
        "step_N.pt; none: the shipped weights)",
    )
    parser.add_argument("--data-root", help="aligned CelebA folder (img_align_celeba + lists)")
    parser.add_argument(
        "--out",
        help="folder of the celeba runs, one <checkpoint name>/run in it per checkpoint "
        f"(default: ./{DEFAULT_OUT}, in the current folder)",
    )
    parser.add_argument(
        "--log-to",
        metavar="TRAINING_DIR",
        help="append the rows to TRAINING_DIR/quality.csv (default: the checkpoint's training "
        "folder, when it has a status.json)",
    )
    parser.add_argument(
        "--rank",
        metavar="TRAINING_DIR",
        help="only print TRAINING_DIR/quality.csv ranked (identity effect, detection, KID)",
    )
    parser.add_argument(
        "--heldout", type=argtypes.positive_int, default=24, help="held-out identities (24)"
    )
    parser.add_argument(
        "--workers", type=argtypes.workers, default=1, help="processes, at most the cores (1)"
    )
    parser.add_argument("--cache-dir", help="face analysis cache (default $ANONBENCH_CACHE)")


def _training_dir(ckpt: Path) -> Path | None:
    for d in (ckpt.parent, ckpt.parent.parent):
        if (d / "status.json").is_file():
            return d
    return None


def _checked_inputs(args: argparse.Namespace) -> list[Path | None]:
    """The data root, every checkpoint and the folder each one's quality.csv goes to, checked
    before any scoring (a bad --log-to failed after 15 minutes of it); returns those folders."""
    from anonbench.errors import AnonbenchError
    from anonbench.runner import check_writable_dir
    from anonbench.safety import refuse_overlap

    root = Path(args.data_root)
    # every method reads it first thing (ciagan's identity probe before the run's own checks)
    if not root.exists():
        raise AnonbenchError(f"--data-root {root}: not found")
    if not root.is_dir():
        raise AnonbenchError(f"--data-root {root}: not a folder")
    logs: list[Path | None] = []
    for ckpt in args.checkpoint or [""]:
        if ckpt and Path(ckpt).is_dir():
            raise AnonbenchError(f"--checkpoint {ckpt}: a folder, not a checkpoint file")
        # an exported checkpoint may lie in NAME.part* pieces, as the loaders accept
        if ckpt and not (
            Path(ckpt).is_file() or any(Path(ckpt).parent.glob(f"{Path(ckpt).name}.part*"))
        ):
            raise AnonbenchError(f"--checkpoint {ckpt}: no such file")
        log = Path(args.log_to) if args.log_to else (_training_dir(Path(ckpt)) if ckpt else None)
        if log is not None:
            # rule 2, as for --out: quality.csv is never written into the data
            refuse_overlap([("--log-to", log)], [("the data root", root)])
            check_writable_dir(log, "--log-to")
            if (log / "quality.csv").is_dir():
                raise AnonbenchError(f"--log-to {log}: {log / 'quality.csv'} is a folder")
        logs.append(log)
    return logs


def run(args: argparse.Namespace) -> int:
    from anonbench import quality
    from anonbench.errors import AnonbenchError

    if args.rank:
        rows = quality.read_log(Path(args.rank) / "quality.csv")
        print(quality.format_table(quality.rank(rows)))
        return 0
    if not args.data_root:
        raise AnonbenchError("--data-root is required (an aligned CelebA folder)")
    if args.workers < 1 or args.heldout < 1:
        raise AnonbenchError("--workers and --heldout must be >= 1")
    root = Path(args.data_root)
    logs = _checked_inputs(args)
    results = []
    for ckpt, log in zip(args.checkpoint or [""], logs, strict=True):
        name = Path(ckpt).stem if ckpt else f"{args.method}-shipped"
        out = Path(args.out or DEFAULT_OUT) / name
        print(f"quality: scoring {ckpt or args.method + ' (shipped)'} ...", file=sys.stderr)
        res = quality.score(
            args.method, ckpt, root, out, args.heldout, args.workers, args.cache_dir
        )
        for note in res.notes:
            print(f"quality: {note}", file=sys.stderr)
        if log is not None:
            quality.append_log(log / "quality.csv", res)
        results.append(res.row())
    print(quality.format_table(results))
    return 0
