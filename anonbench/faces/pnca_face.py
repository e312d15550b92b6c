"""`pnca-face`: a Proxy-NCA identity attacker on tight face crops, shipped pre-trained.

The per-run `pnca` sees twice the reference box (the whole head at 64 px) and learns hair and
background; this one sees only the face: a square of FACE_FACTOR x the reference box's larger
side around the box centre (dlib HOG boxes run brows to chin, so the square holds brows, eyes,
nose, mouth and jaw with a strip of hair at the sides), resized to 112 px. The crop follows the
reference box, so any image geometry works (`face_crop_112`).

Backbone: torchvision ResNet-18 (weights=None: trained from scratch) with a 128-d embedding
head, trained with the Proxy-NCA loss (anonbench.faces.pnca.proxy_nca_loss), exported fp16 to
weights/pnca/ (see MODEL_CARD.md there). The shipped checkpoint is v2 (issue 24): ~1,800
identities, the LFW people with >= 2 images (named `lfw:<Name>`; those matching a celeba test
identity dropped) and the celeba protocol's default train identities
(`identity_split(seed=0, test_fraction=0.5)`, bare), trained as a resumable CPU background job
(benchmarks/pnca_face_v2.py; data: pnca_face_data.py, training, quality check and export:
pnca_face_train.py). v1 (149 celeba identities) is in git history. A protocol refuses it where
its test identities are among the checkpoint's `classes`: celeba with another split, and lfw
(it learned the LFW people).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anonbench.errors import AnonbenchError
from anonbench.faces.pnca import Box, face_crop, per_image_boxes, proxy_nca_loss

INPUT_SIZE = 112
# square side / the reference box's larger side: 1.25 x a dlib HOG box (89 px on aligned
# CelebA) is a 111-px square, brows to chin and cheek to cheek (1.0 cuts the chin)
FACE_FACTOR = 1.25
# training crops are cut wider (TRAIN_SIZE px, the same scale) so that random shifts and
# zooms stay inside real pixels; their centre INPUT_SIZE square is exactly the test crop
TRAIN_SIZE = 128
CROP_VERSION = f"face-square-x{FACE_FACTOR:g}-{INPUT_SIZE}px-v1"
FORMAT = "anonbench-pnca-face"
WEIGHTS = Path(__file__).parent / "weights" / "pnca" / "pnca_face_r18.pt"


# --- the crop -----------------------------------------------------------------------------------


def face_crop_112(image: np.ndarray, box: Box, size: int = INPUT_SIZE) -> np.ndarray:
    """size x size x 3 uint8: the square of FACE_FACTOR x box's larger side around its centre
    (edge-replicated outside the image), resized; always the same face region for any size."""
    return face_crop(image, box, size, FACE_FACTOR * size / INPUT_SIZE)


def face_crops_112(
    images: Sequence[np.ndarray], boxes: Sequence[Box] | Box | None, size: int = INPUT_SIZE
) -> np.ndarray:
    """N x size x size x 3 uint8 crops (boxes: see pnca.per_image_boxes)."""
    bs = per_image_boxes(boxes, images)
    if not len(images):
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([face_crop_112(im, b, size) for im, b in zip(images, bs, strict=True)])


def to_input(crops: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in [-1, 1] on device."""
    x = torch.as_tensor(crops).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


# --- the network --------------------------------------------------------------------------------


def build_net(dim: int = 128) -> nn.Module:
    """ResNet-18 (torchvision layout, 11.2M parameters) whose classifier is the embedding.
    At 112 px its last feature map is 4 x 4."""
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=dim)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training crops (N x 3 x TRAIN_SIZE^2 in [-1, 1]) -> N x 3 x INPUT_SIZE^2: per image a
    random flip, zoom (0.9-1.1) and shift (+-6 px) of the centre crop, and colour jitter
    (brightness, contrast, saturation +-25%, 10% grey), so that 3,000 images go further."""
    n = len(x)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    scale = (0.9 + 0.2 * r(n)) * INPUT_SIZE / TRAIN_SIZE
    flip = torch.where(r(n) < 0.5, -1.0, 1.0)
    shift = (r(n, 2) * 2 - 1) * 6 * 2 / TRAIN_SIZE  # pixels -> normalised coordinates
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device), [n, 3, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = (y + 1) / 2
    bright = (0.75 + 0.5 * r(n)).to(x.device)[:, None, None, None]
    contrast = (0.75 + 0.5 * r(n)).to(x.device)[:, None, None, None]
    sat = (0.75 + 0.5 * r(n)).to(x.device)
    sat = torch.where((r(n) < 0.1).to(x.device), torch.zeros_like(sat), sat)[:, None, None, None]
    grey = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2])[:, None]
    y = grey + (y - grey) * sat
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * contrast + mean) * bright
    return y.clamp_(0, 1).mul_(2).sub_(1)


def train_face_net(
    crops: np.ndarray,
    labels: Sequence[str],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    proxy_lr: float = 2e-2,
    weight_decay: float = 5e-4,
    scale: float = 3.0,
    dim: int = 128,
    seed: int = 0,
    device: str = "cpu",
    budget_s: float | None = None,
    on_epoch: Any = None,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains ResNet-18 + Proxy-NCA on N x TRAIN_SIZE^2 x 3 uint8 training crops (see
    `face_crops_112(..., size=TRAIN_SIZE)`); AdamW, 10% linear warm-up then cosine decay.
    Progress is steps / (epochs x steps per epoch), or with budget_s the share of that wall
    time spent if larger (a shared CPU's speed is unknown up front: the schedule still anneals
    and the run stops on time). on_epoch(epoch, net, proxies, mean_loss) is called after every
    epoch (checkpointing). init ({"state_dict", "proxies"}, as on_epoch checkpoints save them,
    same classes) continues an earlier run with a fresh schedule (a warm restart). Returns the
    float32 checkpoint dict (see `export`)."""
    classes = _classes(crops, labels, batch_size)
    idx = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([idx[v] for v in labels])
    x = torch.from_numpy(np.ascontiguousarray(crops))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net, proxies = _net_and_proxies(len(classes), dim, g, device, init)
    opt = torch.optim.AdamW(
        [
            {"params": net.parameters(), "lr": lr, "weight_decay": weight_decay},
            {"params": [proxies], "lr": proxy_lr, "weight_decay": 0.0},
        ]
    )
    steps_per_epoch = len(x) // batch_size  # drop the ragged last batch (BatchNorm)
    total = epochs * steps_per_epoch
    base = [lr, proxy_lr]
    history: list[float] = []
    step, t0, progress = 0, time.monotonic(), 0.0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        losses = []
        for b in range(steps_per_epoch):
            progress = _progress(step, total, t0, budget_s)
            if progress >= 1:
                break
            for group, b_lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = b_lr * _schedule(progress)
            sel = perm[b * batch_size : (b + 1) * batch_size]
            xb = augment(to_input(x[sel], device), g)
            loss = proxy_nca_loss(net(xb), y[sel].to(device), proxies, scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
        if losses:
            mean = float(np.mean(losses))
            if not math.isfinite(mean):
                raise AnonbenchError("pnca-face training diverged (NaN loss)")
            history.append(mean)
            if on_epoch is not None:
                on_epoch(epoch, net, proxies, mean)
        if progress >= 1:
            break
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "classes": classes,
        "losses": history,
        "steps": step,
        "epochs": step / steps_per_epoch,
    }


def _classes(crops: np.ndarray, labels: Sequence[str], batch_size: int) -> list[str]:
    """The sorted identities, once the inputs can train: 2 identities or more, a label per
    crop, and at least one full batch (the ragged last batch is dropped: no step otherwise)."""
    classes = sorted(set(labels))
    if len(classes) < 2 or len(crops) != len(labels):
        raise AnonbenchError("need crops and labels of at least 2 identities, equal in number")
    if len(crops) < batch_size:
        raise AnonbenchError(
            f"pnca-face training needs at least one batch: {len(crops)} crops, batch size "
            f"{batch_size}"
        )
    return classes


def _net_and_proxies(
    n_classes: int,
    dim: int,
    g: torch.Generator,
    device: str,
    init: dict[str, Any] | None,
) -> tuple[nn.Module, nn.Parameter]:
    """The network (global torch seed) and one proxy per class (from `g`), both drawn in
    this order whether or not `init` (an earlier run's weights, same classes) replaces them,
    so that the generator's later draws (batches, augmentation) do not depend on `init`."""
    net = build_net(dim).to(device)
    proxies = nn.Parameter((torch.randn(n_classes, dim, generator=g) / 8).to(device))
    if init is not None:
        if tuple(init["proxies"].shape) != tuple(proxies.shape):
            raise AnonbenchError(
                f"init: {tuple(init['proxies'].shape)} proxies, this data needs "
                f"{tuple(proxies.shape)} (other identities?)"
            )
        net.load_state_dict(init["state_dict"])
        with torch.no_grad():
            proxies.copy_(init["proxies"].float())
    return net, proxies


def _progress(step: int, total: int, t0: float, budget_s: float | None) -> float:
    """Share of the run done: steps / total, or the share of the wall-time budget spent
    since t0 when that is larger."""
    progress = step / total
    if budget_s is not None:
        progress = max(progress, (time.monotonic() - t0) / budget_s)
    return progress


def _schedule(progress: float, warmup: float = 0.1, floor: float = 0.002) -> float:
    """Learning-rate factor at progress in [0, 1): linear warm-up from 4%, then cosine to
    `floor`."""
    if progress < warmup:
        return 0.04 + 0.96 * progress / warmup
    t = (progress - warmup) / (1 - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


# --- the shipped checkpoint ---------------------------------------------------------------------


def checkpoint_files(path: Path) -> list[Path]:
    """The file, or its NAME.part* pieces in name order (pieces stay under 16 MiB)."""
    return [path] if path.is_file() else sorted(path.parent.glob(path.name + ".part*"))


def export(
    state_dict: dict[str, torch.Tensor], meta: dict[str, Any], out: Path, piece_mib: int = 15
) -> tuple[str, list[Path]]:
    """Writes the fp16 checkpoint {format, config, classes, test_identities, state_dict} as
    out.part00, out.part01, ... of at most piece_mib MiB; returns (sha256 of the whole, pieces)."""
    import io

    half = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()
    }
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **meta, "state_dict": half}, buf)
    raw = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in checkpoint_files(out):
        old.unlink()
    step = piece_mib << 20
    pieces = []
    for i in range(0, len(raw), step):
        p = out.with_name(f"{out.name}.part{i // step:02d}")
        p.write_bytes(raw[i : i + step])
        pieces.append(p)
    return hashlib.sha256(raw).hexdigest(), pieces


def load_checkpoint(path: str | Path = WEIGHTS) -> tuple[dict[str, Any], str]:
    """(checkpoint dict, sha256 of its bytes); one clear error when it is missing."""
    import io

    files = checkpoint_files(Path(path))
    if not files:
        raise AnonbenchError(
            f"pnca-face checkpoint not found: {path} (nor {Path(path).name}.part* pieces); "
            "train one with benchmarks/train_pnca_face.py"
        )
    raw = b"".join(f.read_bytes() for f in files)
    ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise AnonbenchError(f"{path} is not a pnca-face checkpoint (format {FORMAT!r})")
    if ckpt["config"]["crop"] != CROP_VERSION:
        raise AnonbenchError(
            f"{path} was trained on {ckpt['config']['crop']} crops; this anonbench cuts "
            f"{CROP_VERSION}"
        )
    return ckpt, hashlib.sha256(raw).hexdigest()


class FaceProxyNCAAttacker:
    """`pnca-face` (a TrainedAttacker with a fixed checkpoint, training "real"): the shipped
    ResNet-18 Proxy-NCA net on tight face crops around each reference box. `fit` does nothing;
    the protocol refuses a split whose test identities overlap `classes`."""

    name = "pnca-face"
    training = "real"

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 128,
        checkpoint: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.checkpoint = str(checkpoint or WEIGHTS)
        ckpt, self.sha256 = load_checkpoint(self.checkpoint)
        self.device = torch.device(device)
        self.dim = int(ckpt["config"]["dim"])
        self.net = build_net(self.dim)
        self.net.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
        self.net.to(self.device).eval()
        self.classes: list[str] = list(ckpt["classes"])
        self.batch_size = batch_size
        self.version = f"{self.name}/{CROP_VERSION}/{self.sha256[:16]}"

    def fit(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to fit: the checkpoint is fixed (its identities are checked by the protocol)."""

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """N x 112 x 112 x 3 uint8 crops -> N x dim L2-normalised float32."""
        out = [
            F.normalize(self.net(to_input(crops[b : b + self.batch_size], self.device)), dim=1)
            .float()
            .cpu()
            .numpy()
            for b in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x dim embeddings of the face crops, N False: the box is always embedded)."""
        bs = per_image_boxes(boxes, images)
        out = [
            self.embed_crops(
                face_crops_112(images[b : b + self.batch_size], bs[b : b + self.batch_size])
            )
            for b in range(0, len(images), self.batch_size)
        ]
        emb = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        return emb, np.zeros(len(images), bool)
