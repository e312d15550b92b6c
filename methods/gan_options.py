"""Options of the GAN trainers (`anonbench train ciagan|pix2pix|cyclegan`): the config fields
every family shares and their command-line options. Free of torch, so `anonbench ls trainers`
can list each trainer's options without importing it; training itself is in gan_train."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anonbench import argtypes as at
from anonbench.errors import AnonbenchError

# fields a resumed run may change; every other field is fixed by the checkpoint
RUNTIME_FIELDS = (
    "data",
    "out",
    "epochs",
    "device",
    "amp",
    "max_steps",
    "workers",
    "cache_dir",
    "save_every",
    "max_minutes",
    "save_minutes",
    "cuda_graphs",
    "progress",
    "prepared_source",
    "threads",
    "nice",
    "keep_minutes",
)
SPLITS = ("all", "train", "val", "test", "identity-train", "identity-test")


@dataclass
class GanTrainConfig:
    """What every family's training config has (data, schedule, device, checkpoints)."""

    data: str = ""
    out: str = ""
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    img_size: int = 128
    crop_min: float = 0.75
    crop_max: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"  # auto: bf16 autocast on CUDA when supported; bf16; off
    max_steps: int = 0  # 0: no limit
    workers: int = 1
    cache_dir: str = ""
    split: str = "all"
    split_seed: int = 0  # identity-train/identity-test: the celeba protocol's seed
    test_fraction: float = 0.5  # and its test fraction
    min_images: int = 2
    detector: str = "dlib-hog"
    save_every: int = 0  # steps between extra checkpoints; 0: at epoch ends only
    cuda_graphs: bool = False  # capture each step's compute in one CUDA graph
    max_minutes: float = 0.0  # stop (and save) after this much training time; 0: no limit
    save_minutes: float = 0.0  # epoch-end grid + checkpoint at most this often; 0: every epoch
    grid_sources: int = 4
    progress: bool = True
    threads: int = 0  # torch intra-op threads; 0: torch's default (all cores)
    nice: int = 0  # added to the process's niceness at start (19: lowest priority)
    keep_minutes: float = 0.0  # a copy of the checkpoint in OUT/snapshots/ this often; 0: none
    preset: str = "paper"  # the --preset whose defaults the run started from
    # a generator to start from (export or last.pt; a fresh run only: a resume ignores it)
    init_generator: str = ""
    # with --data prepared:FILE, how that file was made (data spec, split, seed, detector):
    # recorded so a checkpoint says which identities it was trained on
    prepared_source: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the command line -------------------------------------------------------------------------


PRESET_CHOICES = ("paper", "cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): there bf16 autocast
    halves CIAGAN's step; without it (AVX2) autocast emulates bf16 and a convolution's
    forward + backward took 30-40x longer than fp32 (measured on an AVX2 EPYC)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_runtime_defaults() -> dict[str, Any]:
    """What every family's `cpu` preset sets for a long background job beside other work:
    one thread, lowest priority, a checkpoint every 5 minutes, a snapshot every 30 for the
    learning curve, bf16 autocast only where the CPU has it."""
    return dict(
        device="cpu",
        threads=1,
        nice=19,
        save_minutes=5.0,
        keep_minutes=30.0,
        amp="bf16" if cpu_has_bf16() else "off",
        progress=False,
    )


def apply_preset(
    parser: argparse.ArgumentParser, argv: list[str], presets: dict[str, dict[str, Any]]
) -> str:
    """Sets the parser's defaults to the --preset named in argv (flags given still win);
    returns the preset's name."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=PRESET_CHOICES, default="paper")
    name = pre.parse_known_args(argv)[0].preset
    values = dict(presets.get(name, {}))
    if "progress" in values:  # the parser's dest is no_progress
        values["no_progress"] = not values.pop("progress")
    parser.set_defaults(**values, preset=name)
    return name


def add_common_arguments(p: argparse.ArgumentParser, d: GanTrainConfig) -> None:
    """The options every family's `anonbench train` command has (d: that family's defaults)."""
    p.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default="paper",
        help="paper: the paper's / reference's settings (for a GPU); cpu: the recipe chosen "
        "by measurement for a CPU-only machine, as a low-priority 1-thread background job "
        "(sizes in the family's MODEL_CARD.md); other flags override either",
    )
    p.add_argument(
        "--data",
        required=True,
        help="celeba:PATH (aligned CelebA), folders:PATH, or prepared:FILE.npz (see --export-data)",
    )
    p.add_argument("--out", help="output folder (required unless --export-data)")
    p.add_argument(
        "--export-data",
        metavar="FILE",
        help="only preprocess --data and write the faces to FILE.npz, for training on a "
        "machine without dlib (--data prepared:FILE.npz); then exit",
    )
    p.add_argument("--epochs", type=at.positive_int, default=d.epochs)
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=at.positive_int, default=d.batch_size)
    p.add_argument("--lr", type=at.positive_number, default=d.lr, help="Adam learning rate")
    p.add_argument(
        "--max-steps", type=at.non_negative_int, default=d.max_steps, help="stop after N steps"
    )
    p.add_argument(
        "--crop-range",
        type=at.positive_number,
        nargs=2,
        default=(d.crop_min, d.crop_max),
        metavar=("MIN", "MAX"),
        help="training crop side as a fraction of the 144 px canvas (CIAGAN official: 0.5 0.75)",
    )
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default=d.amp)
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay each training step as one captured CUDA graph (CUDA only; faster when "
        "kernel launches, not the GPU, bound the step)",
    )
    p.add_argument("--seed", type=at.seed, default=d.seed)
    p.add_argument("--workers", type=at.workers, default=d.workers, help="preprocessing processes")
    p.add_argument("--cache-dir", default=d.cache_dir, help="default $ANONBENCH_CACHE")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default=d.split,
        help="train/val/test: the dataset's partition; identity-train/-test: the seeded "
        "identity split of the celeba protocol (--split-seed, --test-fraction)",
    )
    p.add_argument("--split-seed", type=at.seed, default=d.split_seed)
    p.add_argument("--test-fraction", type=at.fraction, default=d.test_fraction)
    p.add_argument("--min-images", type=at.positive_int, default=d.min_images, help="per identity")
    add_job_arguments(p, d)


def add_job_arguments(p: argparse.ArgumentParser, d: GanTrainConfig) -> None:
    """The options of a training as a long, resumable job: resume, time limits, checkpoints,
    snapshots, priority, threads, and the warm start of a lost run."""
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--max-minutes",
        type=at.non_negative_number,
        default=d.max_minutes,
        help="stop after this long; 0: no limit",
    )
    p.add_argument(
        "--save-minutes",
        type=at.non_negative_number,
        default=d.save_minutes,
        help="write the epoch grid and checkpoint at most this often (0: every epoch)",
    )
    p.add_argument(
        "--save-every", type=at.non_negative_int, default=d.save_every, help="extra checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--threads",
        type=at.non_negative_int,
        default=d.threads,
        help="torch threads (0: all cores); 1 for a background training beside other work",
    )
    p.add_argument(
        "--nice",
        type=at.integer(0, 19),
        default=d.nice,
        help="lower the process's priority by this (0-19)",
    )
    p.add_argument(
        "--keep-minutes",
        type=at.non_negative_number,
        default=d.keep_minutes,
        help="keep a copy of the checkpoint in OUT/snapshots/ this often, for scoring a "
        "learning curve later (0: none)",
    )
    p.add_argument(
        "--init-generator",
        default=d.init_generator,
        metavar="CHECKPOINT",
        help="a new run's generator starts from this checkpoint of the same family and sizes "
        "(CIAGAN: and identities): an export in .part* pieces, such as the shipped weights, "
        "or a last.pt, e.g. when a training folder is lost; everything else starts fresh; "
        "a --resume continues its last.pt and ignores this",
    )


def common_config(args: argparse.Namespace) -> dict[str, Any]:
    """The GanTrainConfig fields from parsed common arguments."""
    return dict(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crop_min=args.crop_range[0],
        crop_max=args.crop_range[1],
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        max_steps=args.max_steps,
        workers=args.workers,
        cache_dir=args.cache_dir,
        split=args.split,
        split_seed=args.split_seed,
        test_fraction=args.test_fraction,
        max_minutes=args.max_minutes,
        cuda_graphs=args.cuda_graphs,
        save_minutes=args.save_minutes,
        min_images=args.min_images,
        save_every=args.save_every,
        progress=not args.no_progress,
        threads=args.threads,
        nice=args.nice,
        keep_minutes=args.keep_minutes,
        preset=args.preset,
        init_generator=args.init_generator,
    )


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Config fields whose options appear in argv (a resume reports those it ignores)."""
    given = {
        a.dest
        for a in parser._actions
        if any(x == o or x.startswith(o + "=") for o in a.option_strings for x in argv)
    }
    if "crop_range" in given:
        given = (given - {"crop_range"}) | {"crop_min", "crop_max"}
    return given


def validate_common(cfg: GanTrainConfig, min_batch: int = 1) -> None:
    if cfg.batch_size < min_batch:
        raise AnonbenchError(f"--batch-size must be >= {min_batch}")
    if not 0 < cfg.crop_min <= cfg.crop_max <= 1.25:
        raise AnonbenchError("--crop-range needs 0 < MIN <= MAX <= 1.25")
    if cfg.epochs < 1 or cfg.lr <= 0:
        raise AnonbenchError("--epochs must be >= 1 and --lr > 0")
    if cfg.threads < 0 or not 0 <= cfg.nice <= 19:
        raise AnonbenchError("--threads must be >= 0 and --nice in 0..19")
    if not (cfg.keep_minutes >= 0 and cfg.save_minutes >= 0 and cfg.max_minutes >= 0):
        raise AnonbenchError("--keep-minutes, --save-minutes and --max-minutes must be >= 0")


def run_command(
    family: Any,
    parser: argparse.ArgumentParser,
    argv: list[str],
    config: Callable[[argparse.Namespace], GanTrainConfig],
    presets: dict[str, dict[str, Any]] | None = None,
) -> int:
    """`anonbench train FAMILY ...`: --export-data, or training to --out (presets: the
    defaults each --preset sets; `paper` is the parser's own)."""
    from anonbench.methods.gan_train import export_data, train

    apply_preset(parser, argv, presets or {})
    args = parser.parse_args(argv)
    if args.export_data:
        return export_data(config(args), args.export_data, family.name)
    if not args.out:
        parser.error("--out is required (unless --export-data)")
    path = train(family, config(args), resume=args.resume, given=given_options(parser, argv))
    print(f"{family.name}: checkpoint {path}")
    return 0


# -- pix2pix and CycleGAN ---------------------------------------------------------------------


@dataclass
class BaselineTrainConfig(GanTrainConfig):
    """What pix2pix and CycleGAN training share: the reference's optimizer (Adam 2e-4,
    betas 0.5/0.999), batch size 1 and schedule (constant lr for the first half of the
    epochs, then linear decay towards 0), the input variant and the network widths."""

    epochs: int = 200  # the reference: n_epochs 100 + n_epochs_decay 100
    batch_size: int = 1
    lr: float = 2e-4
    min_images: int = 1  # identities do not matter to these models
    variant: str = "landmarks"  # or "masked" (landmarks ⊕ masked face, CIAGAN's input)
    ngf: int = 64
    ndf: int = 64


VARIANT_CHOICES = ("landmarks", "masked")


def baseline_presets(epochs: int) -> dict[str, dict[str, Any]]:
    """pix2pix's and CycleGAN's --preset values: `paper` the reference's; `cpu` the background
    defaults with half-width networks (ngf/ndf 32: a quarter of the step time of 64) and the
    family's epoch count (the lr decays over its second half)."""
    return {"paper": {}, "cpu": dict(cpu_runtime_defaults(), ngf=32, ndf=32, epochs=epochs)}


def add_baseline_arguments(p: argparse.ArgumentParser, d: BaselineTrainConfig) -> None:
    add_common_arguments(p, d)
    p.add_argument(
        "--variant",
        choices=VARIANT_CHOICES,
        default=d.variant,
        help="landmarks: the landmark drawing alone (the paper's baseline); masked: "
        "landmarks + masked face (CIAGAN's input)",
    )
    p.add_argument(
        "--ngf", type=at.positive_int, default=d.ngf, help="generator width (reference 64)"
    )
    p.add_argument(
        "--ndf", type=at.positive_int, default=d.ndf, help="discriminator width (reference 64)"
    )


def baseline_config(args: argparse.Namespace) -> dict[str, Any]:
    return dict(common_config(args), variant=args.variant, ngf=args.ngf, ndf=args.ndf)


def validate_baseline(cfg: BaselineTrainConfig) -> None:
    validate_common(cfg, min_batch=1)
    if cfg.variant not in VARIANT_CHOICES:
        raise AnonbenchError(f"--variant must be one of {', '.join(VARIANT_CHOICES)}")
    if cfg.ngf < 1 or cfg.ndf < 1:
        raise AnonbenchError("--ngf and --ndf must be >= 1")
    if cfg.img_size != 128:
        raise AnonbenchError("pix2pix/CycleGAN train at 128 px (unet_128), the CIAGAN view")
