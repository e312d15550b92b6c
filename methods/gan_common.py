"""What the pix2pix and CycleGAN baselines share: their checkpoint format and the registered
method around a generator, which sees exactly CIAGAN's 128 px face input and is pasted back
into the CIAGAN mask like CIAGAN (the crop, landmark drawing, mask and paste-back are CIAGAN's
own functions: anonbench.methods.landmark_data / .preprocess).

Input variants:
- "landmarks" (3 channels): CIAGAN's landmark drawing alone, the paper's pix2pix / CycleGAN
  baselines (source domain = landmarks, target = faces);
- "masked" (6 channels): landmarks ⊕ masked face, exactly CIAGAN's generator input.
Inputs are mapped from [0, 1] to [-1, 1] (the reference normalises to mean 0.5, std 0.5); the
generators' tanh output is mapped back.

Checkpoint (a plain dict, read with torch.load(weights_only=True)):
    format: "anonbench-gan", format_version: 1, family: "pix2pix" | "cyclegan"
    config: {variant, ngf, norm, in_channels, out_channels, img_size, ...}
    generator: state dict (of the landmarks -> face generator, G_A for CycleGAN)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from anonbench.api import Anonymizer, FaceBatch, MethodMeta
from anonbench.errors import AnonbenchError

FORMAT = "anonbench-gan"
FORMAT_VERSION = 1
VARIANTS = {"landmarks": 3, "masked": 6}  # variant -> generator input channels
IMG_SIZE = 128
# the generator's precision: "auto" = bf16 autocast on CUDA devices that support it, else fp32
DTYPES = ("auto", "fp32", "bf16")


class GanCheckpointError(AnonbenchError):
    """A pix2pix / CycleGAN checkpoint that is missing, unreadable or does not fit."""


def method_name(family: str, variant: str) -> str:
    return family if variant == "landmarks" else f"{family}-{variant}"


def check_variant(variant: str, family: str) -> int:
    """The generator input channels of a variant; one line on an unknown one."""
    if variant not in VARIANTS:
        raise AnonbenchError(
            f"{family}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
        )
    return VARIANTS[variant]


# -- face input and paste-back --------------------------------------------------------------


def face_views(
    batch: FaceBatch, size: int = IMG_SIZE, device: torch.device | str = "cpu"
) -> tuple[list[int], Any, list[Any]]:
    """CIAGAN's inference views of each face with finite landmarks: (indices of those faces,
    landmark_data.Views at size x size on `device`, the image -> view affine of each)."""
    from anonbench.methods.landmark_data import crop_boxes, face_canvas, make_views

    images = batch.images.detach().float().cpu()
    u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    lms = batch.landmarks.detach().cpu().numpy()
    todo = [i for i in range(len(batch)) if np.isfinite(lms[i]).all()]
    if not todo:
        return todo, None, []
    canvases, affines = [], []
    for i in todo:
        c, t = face_canvas(u8[i], lms[i])
        canvases.append(c)
        affines.append(t.view_affine(size=size))
    canvas = torch.from_numpy(np.stack(canvases)).to(device)
    return todo, make_views(canvas, crop_boxes(len(todo), None, 0, 0), size), affines


def generator_input(views: Any, variant: str) -> torch.Tensor:
    """B x C x S x S in [-1, 1]: the landmark drawing (landmarks) or landmarks ⊕ masked face
    (masked: CIAGAN's generator input)."""
    if variant == "landmarks":
        x = views.landmarks
    else:
        x = torch.cat([views.landmarks, views.image * (1 - views.mask)], 1)
    return x * 2 - 1


def paste_faces(
    batch: FaceBatch, todo: list[int], views: Any, affines: list[Any], faces: torch.Tensor
) -> torch.Tensor:
    """faces (len(todo) x 3 x S x S in [0, 1]) put into each view's mask, pasted back into a
    copy of the batch images like CIAGAN does; faces not in todo stay as they were."""
    from anonbench.methods.landmark_input import paste_back

    out = batch.images.detach().float().cpu().clone()
    if not todo:
        return out.to(batch.images.device, batch.images.dtype)
    faces = faces.detach().float()
    mask, image = views.mask.to(faces.device), views.image.to(faces.device)
    comp = (faces * mask + image * (1 - mask)).clamp(0, 1).cpu()
    comp_np = comp.permute(0, 2, 3, 1).numpy()
    for j, i in enumerate(todo):
        full = out[i].permute(1, 2, 0).numpy()
        out[i] = torch.from_numpy(paste_back(full, comp_np[j], affines[j])).permute(2, 0, 1)
    return out.to(batch.images.device, batch.images.dtype)


# -- checkpoints ------------------------------------------------------------------------------


def make_checkpoint(
    family: str, generator: torch.nn.Module, config: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The checkpoint dict of a generator (its config: variant, ngf, norm, in/out channels)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": dict(config),
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        **extra,
    }


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Written atomically (a reader sees the old file or the new one)."""
    from anonbench.methods.ciagan.checkpoint import save_atomic

    save_atomic(ckpt, path)


def parse_checkpoint(raw: bytes, source: str, family: str | None) -> dict[str, Any]:
    """torch.load(weights_only=True) of checkpoint bytes, its header checked; one line on any
    defect. family None: any family (the checkpoint's own)."""
    from anonbench.methods.ciagan.checkpoint import torch_load_bytes

    what = family or "GAN"
    ckpt = torch_load_bytes(raw, source, what, GanCheckpointError)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise GanCheckpointError(
            f"{source} is not an anonbench {what} checkpoint (no format={FORMAT!r} header)"
        )
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise GanCheckpointError(
            f"{source} has format version {ckpt['format_version']}; this anonbench reads up "
            f"to {FORMAT_VERSION}"
        )
    if family is not None and ckpt.get("family") != family:
        raise GanCheckpointError(f"{source} is a {ckpt.get('family')!r} checkpoint, not {family}")
    for k in ("config", "generator"):
        if not isinstance(ckpt.get(k), dict):
            raise GanCheckpointError(f"{source} lacks {k!r}")
    return ckpt


def build_generator(
    ckpt: dict[str, Any],
    source: str,
    family: str,
    factory: Callable[[int, int, int, str], torch.nn.Module],
) -> torch.nn.Module:
    """The checkpoint's generator (fp32, eval mode, CPU). factory(in_ch, out_ch, ngf, norm)."""
    from anonbench.methods.ciagan.checkpoint import load_weights

    cfg = ckpt["config"]
    try:
        variant = str(cfg["variant"])
        in_ch, out_ch = int(cfg["in_channels"]), int(cfg["out_channels"])
        ngf, norm = int(cfg["ngf"]), str(cfg["norm"])
    except (KeyError, TypeError, ValueError) as e:
        raise GanCheckpointError(f"{source}: config lacks or mangles {e}") from None
    if variant not in VARIANTS or in_ch != VARIANTS[variant] or out_ch != 3:
        raise GanCheckpointError(
            f"{source}: config says variant {variant!r} with {in_ch} -> {out_ch} channels; "
            f"expected one of {VARIANTS} -> 3"
        )
    try:
        g = factory(in_ch, out_ch, ngf, norm)
    except ValueError as e:
        raise GanCheckpointError(f"{source}: {e}") from None
    load_weights(g, ckpt["generator"], f"{source} ({family} generator, {variant}, ngf {ngf})")
    return g.eval()


# -- the registered methods -----------------------------------------------------------------


class GanBaseline(Anonymizer):
    """A landmarks -> face generator (pix2pix or CycleGAN) as a method: CIAGAN's 128 px face
    view in, the generated face pasted back into the CIAGAN mask. Deterministic: the generator
    runs in eval mode (batch norm running statistics, no dropout), unlike the reference's
    test script, which keeps dropout on by default.

    dtype: "auto" (bf16 autocast on CUDA devices that support it, else fp32), "fp32" or
    "bf16"; compile: torch.compile the generator (CUDA only). Both are in `config()`."""

    family: str = ""
    paper: str = ""
    # variant -> weights shipped in the package (a family's weights/ folder)
    package_weights: ClassVar[dict[str, Path]] = {}

    def __init__(
        self,
        variant: str = "landmarks",
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        compile: bool = False,
    ) -> None:
        from anonbench.methods.ciagan.checkpoint import is_checkpoint, read_bytes

        family = self.family
        check_variant(variant, family)
        self.variant = variant
        self.name = method_name(family, variant)
        shipped = self.package_weights.get(variant)
        path = Path(checkpoint) if checkpoint else shipped
        raw = read_bytes(path) if path is not None else None
        if raw is None:
            if checkpoint:
                what = "a folder, not a checkpoint file" if path.is_dir() else "not found"
                raise GanCheckpointError(f"{family} checkpoint {checkpoint}: {what}")
            raise AnonbenchError(f"no {self.name} weights: {train_hint(family, variant)}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise AnonbenchError(
                f"{self.name}: device {device!r} requested but CUDA is unavailable"
            )
        if dtype not in DTYPES:
            raise AnonbenchError(
                f"{self.name}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"
            )
        if dtype == "auto":
            cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            dtype = "bf16" if cuda_bf16 else "fp32"
        self.dtype = dtype
        self.compile = bool(compile)
        if self.compile and self.device.type != "cuda":
            raise AnonbenchError(f"{self.name}: compile=True needs a CUDA device (got {device!r})")
        self._compiled: torch.nn.Module | None = None
        self.checkpoint = str(path)
        self.sha256 = hashlib.sha256(raw).hexdigest()
        ckpt = parse_checkpoint(raw, self.checkpoint, family)
        # the shipped file's training step when these are its weights (by content: however
        # its path was written or copied), else None
        same = is_checkpoint(shipped, path, len(raw), self.sha256)
        self.shipped_step = int(ckpt.get("step", 0)) if same else None
        got = str(ckpt["config"].get("variant"))
        if got != variant:
            raise GanCheckpointError(
                f"{self.checkpoint} is a {method_name(family, got)} checkpoint; use it with "
                f"--method {method_name(family, got)}, not {self.name}"
            )
        self.generator_net = self.build(ckpt, self.checkpoint).to(self.device)
        self.ngf = int(ckpt["config"]["ngf"])
        self.img_size = int(ckpt["config"].get("img_size", IMG_SIZE))
        self.meta = MethodMeta(
            paper=self.paper,
            license="code: MIT (re-implementation after junyanz/pytorch-CycleGAN-and-pix2pix, "
            "BSD); weights: "
            + (
                "yours"
                if self.shipped_step is None
                else "trained on CelebA (non-commercial research)"
            ),
            input_size=(self.img_size, self.img_size),
            checkpoint_sha256=self.sha256,
            identity_conditioned=False,
            deterministic=True,
            note=self.note(),
            region="mask",
        )

    @classmethod
    def build(cls, ckpt: dict[str, Any], source: str) -> torch.nn.Module:
        raise NotImplementedError

    def note(self) -> str:
        what = "landmarks only" if self.variant == "landmarks" else "landmarks + masked face"
        # no "; " inside: result notes use it to join separate notes
        if self.shipped_step is not None:
            return (
                f"{self.family} baseline ({what}, ngf {self.ngf}): shipped CPU-trained "
                f"checkpoint ({self.shipped_step} training steps, see methods/{self.family}/"
                "weights/MODEL_CARD.md), shorter training than the paper's Table 4 baseline"
            )
        return (
            f"{self.family} baseline ({what}, ngf {self.ngf}): it is the paper's Table 4 "
            "baseline only once trained like it (CelebA, landmarks -> faces)"
        )

    def config(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "ngf": self.ngf,
            "checkpoint_sha256": self.sha256,
            "dtype": self.dtype,
            "compile": self.compile,
        }

    def _net(self) -> torch.nn.Module:
        if not self.compile:
            return self.generator_net
        if self._compiled is None:
            self._compiled = torch.compile(self.generator_net)
        return self._compiled

    @torch.no_grad()
    def _generate(
        self,
        batch: FaceBatch,
        *,
        targets: Sequence[int] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        todo, views, affines = face_views(batch, self.img_size, self.device)
        if not todo:
            return batch.images.clone()
        x = generator_input(views, self.variant)
        bf16 = self.dtype == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = self._net()(x).float()
        return paste_faces(batch, todo, views, affines, (y + 1) / 2)


def train_hint(family: str, variant: str) -> str:
    """How to get weights: the trainer's command if it is registered, else that it is not
    built yet."""
    from anonbench.registry import TRAINERS

    flag = "" if variant == "landmarks" else f" --variant {variant}"
    if family in TRAINERS:
        return (
            f"train one with `anonbench train {family} --data celeba:DIR --out DIR{flag}` and "
            f"pass --checkpoint DIR/last.pt"
        )
    return (
        f"training (anonbench train {family}) is not built yet (a later release), so pass "
        f"--checkpoint PATH to a {family} generator checkpoint"
    )


def random_checkpoint(
    family: str,
    make: Any,
    norm: str,
    net_name: str,
    variant: str,
    ngf: int,
    seed: int,
) -> dict[str, Any]:
    """A `family` checkpoint whose generator `make(in_ch, 3, ngf)` has N(0, 0.02) weights."""
    import torch

    from anonbench.methods.pix2pix.model import init_weights

    in_ch = check_variant(variant, family)
    with torch.random.fork_rng():  # leaves the caller's RNG as it was
        torch.manual_seed(seed)
        g = init_weights(make(in_ch, 3, ngf))
    cfg = {
        "variant": variant,
        "ngf": ngf,
        "norm": norm,
        "netG": net_name,
        "in_channels": in_ch,
        "out_channels": 3,
        "img_size": IMG_SIZE,
        "note": "random weights",
    }
    return make_checkpoint(family, g, cfg, step=0)


def export_generator(src: str | Path, dst: str | Path, half: bool = True) -> dict[str, Any]:
    """Writes the generator-only checkpoint of a training checkpoint (OUT/last.pt): format
    header, the inference config, the step, and the generator, fp16 by default (half the size;
    the method computes in fp32 or bf16 either way). Returns what it wrote."""
    from anonbench.methods.ciagan.checkpoint import read_bytes

    raw = read_bytes(src)
    if raw is None:
        raise GanCheckpointError(f"checkpoint not found: {src}")
    ckpt = parse_checkpoint(raw, str(src), None)
    family = str(ckpt.get("family", ""))
    gen = {
        k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["generator"].items()
    }
    keys = ("variant", "ngf", "norm", "netG", "in_channels", "out_channels", "img_size")
    cfg = {k: ckpt["config"][k] for k in keys if k in ckpt["config"]}
    train_keys = ("data", "split", "epochs", "batch_size", "lr", "seed", "prepared_source")
    train = {k: ckpt["config"][k] for k in train_keys if k in ckpt["config"]}
    out = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": cfg,
        "generator": gen,
        "step": int(ckpt.get("step", 0)),
        "training": train,
    }
    save_checkpoint(out, dst)
    return out
