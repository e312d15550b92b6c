"""Proxy-NCA identity network (Movshovitz-Attias et al., ICCV 2017): our CelebA identifier.

A compact ResNet (one basic block per stage, widths 32-64-128-256) on 64x64 face crops, trained
with the Proxy-NCA loss: one learnable proxy per training identity, and for an embedding x of
identity y the loss d(x, p_y) + log sum_{z != y} exp(-d(x, p_z)), with squared Euclidean
distances between L2-normalised vectors. It is small because the evaluation must train it on
a 2-core CPU (and again per method for the adaptive attacker); the paper's network was larger.

Input crop (the same for training and embedding, any image geometry): a square centred on the
image's reference face box, side CROP_FACTOR x the box's larger side, edge-replicated where it
leaves the image, resized to 64x64 (`face_crops`). `ProxyNCAAttacker` is the protocol's
`TrainedAttacker` (`pnca`, and `pnca-adaptive` trained on real + anonymized images).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anonbench.errors import AnonbenchError
from anonbench.faces.pnca_options import DEFAULT_EPOCHS

Box = tuple[float, float, float, float]

INPUT_SIZE = 64
# Side of the input square / the reference box's larger side. Reference boxes are dlib HOG
# boxes (brows to chin, about 89 px on 178x218 aligned CelebA): twice that is the 178-px square
# the identifier was designed on (whole head: hair, ears, jaw line, which carry identity at
# 64x64), and it leaves room for boxes of other detectors, which are up to ~30% larger or
# shifted, without cutting the face. On a tight 112x112 crop the square reaches past the image
# and the border rows and columns are replicated.
CROP_FACTOR = 2.0
CROP_VERSION = f"box-square-x{CROP_FACTOR:g}-area{INPUT_SIZE}"
TRAININGS = ("real", "real+anonymized")


# --- the crop -----------------------------------------------------------------------------------


def square_around(box: Box, factor: float = CROP_FACTOR) -> tuple[int, int, int]:
    """(x0, y0, side) of the integer square centred on box, side = factor x its larger side.
    An integer shift of the box shifts the square by the same amount."""
    left, top, right, bottom = (float(v) for v in box)
    if not all(math.isfinite(v) for v in box) or not (right > left and bottom > top):
        raise ValueError(f"not a face box (left, top, right, bottom): {box}")
    side = max(1, math.floor(factor * max(right - left, bottom - top) + 0.5))
    x0 = math.floor((left + right) / 2 - side / 2 + 0.5)
    y0 = math.floor((top + bottom) / 2 - side / 2 + 0.5)
    return x0, y0, side


def whole_image_box(height: int, width: int, factor: float = CROP_FACTOR) -> Box:
    """The reference box whose crop is the square bounding the whole image (centred; the
    shorter side edge-replicated): what images without a face box are embedded with."""
    s = max(height, width) / (2 * factor)
    cx, cy = width / 2, height / 2
    return (cx - s, cy - s, cx + s, cy + s)


def face_crop(
    image: np.ndarray, box: Box, size: int = INPUT_SIZE, factor: float = CROP_FACTOR
) -> np.ndarray:
    """size x size x 3 uint8: the square around box (see CROP_FACTOR), edge-replicated outside
    the image, resized with pixel-area averaging."""
    import cv2

    im = np.asarray(image)
    if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {im.dtype} {im.shape}")
    h, w = im.shape[:2]
    x0, y0, s = square_around(box, factor)
    if x0 >= 0 and y0 >= 0 and x0 + s <= w and y0 + s <= h:
        sq = im[y0 : y0 + s, x0 : x0 + s]
    else:  # index clipping is exactly edge replication
        ys = np.clip(np.arange(y0, y0 + s), 0, h - 1)
        xs = np.clip(np.arange(x0, x0 + s), 0, w - 1)
        sq = im[ys[:, None], xs[None, :]]
    if s == size:
        return np.ascontiguousarray(sq)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(sq), (size, size), interpolation=interp)


def per_image_boxes(boxes: Sequence[Box] | Box | None, images: Sequence[np.ndarray]) -> list[Box]:
    """One reference box per image: `boxes` as given, one box for all, or (None) the
    whole-image box of each image."""
    if boxes is None:
        return [whole_image_box(*im.shape[:2]) for im in images]
    arr = np.asarray(boxes, np.float64)
    if arr.size == 0 and not len(images):
        return []
    if arr.shape == (4,):
        return [tuple(float(v) for v in arr)] * len(images)  # type: ignore[list-item]
    if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) != len(images):
        raise ValueError(f"expected {len(images)} boxes (l, t, r, b), got shape {arr.shape}")
    return [tuple(float(v) for v in b) for b in arr]  # type: ignore[misc]


def face_crops(
    images: Sequence[np.ndarray], boxes: Sequence[Box] | Box | None = None
) -> np.ndarray:
    """N x 64 x 64 x 3 uint8 network crops (boxes: see `per_image_boxes`)."""
    bs = per_image_boxes(boxes, images)
    if not len(images):
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    return np.stack([face_crop(im, b) for im, b in zip(images, bs, strict=True)])


def to_input(
    crops: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """N x 64 x 64 x 3 uint8 crops -> N x 3 x 64 x 64 float32 in [-1, 1] on device (None: where
    the crops are; the conversion runs there, so only uint8 crosses to an accelerator)."""
    x = torch.as_tensor(crops)
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def preprocess(
    images: Sequence[np.ndarray], boxes: Sequence[Box] | Box | None = None
) -> torch.Tensor:
    """Images -> N x 3 x 64 x 64 in [-1, 1] on the CPU (boxes: see `per_image_boxes`)."""
    return to_input(face_crops(images, boxes), "cpu")


# --- the network and its loss -------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.skip(x))


class PNCANet(nn.Module):
    """Compact ResNet -> embedding (L2-normalised by `embed`)."""

    def __init__(self, dim: int = 128, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_Block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def proxy_nca_loss(
    emb: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, scale: float = 3.0
) -> torch.Tensor:
    """Proxy-NCA as in the paper: the positive proxy is left out of the denominator."""
    x = scale * F.normalize(emb, dim=1)
    p = scale * F.normalize(proxies, dim=1)
    d = torch.cdist(x, p).pow(2)  # B x C
    pos = d.gather(1, labels[:, None]).squeeze(1)
    neg = (-d).masked_fill(F.one_hot(labels, d.shape[1]).bool(), -math.inf)
    return (pos + torch.logsumexp(neg, dim=1)).mean()


# --- training -----------------------------------------------------------------------------------


@dataclass
class PNCAConfig:
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 64
    lr: float = 1e-3
    proxy_lr: float = 1e-2
    dim: int = 128
    seed: int = 0
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    crop: str = CROP_VERSION  # the input crop the net is trained (and must be used) with


def train_pnca(
    images: Sequence[np.ndarray],
    identities: Sequence[str],
    cfg: PNCAConfig,
    desc: str = "pnca",
    quiet: bool = False,
    boxes: Sequence[Box] | Box | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Trains the network on the crops around `boxes` (None: whole images); returns a
    checkpoint dict (tensors on the CPU, numbers, strings, lists only)."""
    from tqdm.auto import tqdm

    if cfg.crop != CROP_VERSION:
        raise AnonbenchError(f"this anonbench crops faces as {CROP_VERSION}, not {cfg.crop}")
    if len(images) != len(identities):
        raise ValueError(f"{len(images)} images but {len(identities)} identities")
    classes = sorted(set(identities))
    if len(classes) < 2:
        raise AnonbenchError("Proxy-NCA training needs at least 2 identities")
    dev = torch.device(device)
    idx = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([idx[i] for i in identities], device=dev)
    # uint8 crops on the device (12 kB an image), converted to float one batch at a time
    x = torch.from_numpy(face_crops(images, boxes)).to(dev)
    g = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on every device
    torch.manual_seed(cfg.seed)
    net = PNCANet(cfg.dim, cfg.widths).to(dev)
    proxies = nn.Parameter((torch.randn(len(classes), cfg.dim, generator=g) / 8).to(dev))
    opt = torch.optim.Adam(
        [{"params": net.parameters(), "lr": cfg.lr}, {"params": [proxies], "lr": cfg.proxy_lr}]
    )
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [cfg.lr, cfg.proxy_lr], total_steps=steps)
    losses = []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=quiet, dynamic_ncols=True)
    net.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g).to(dev)
        for b in range(0, len(x), cfg.batch_size):
            sel = perm[b : b + cfg.batch_size]
            xb = _augment(to_input(x[sel], dev), g)
            loss = proxy_nca_loss(net(xb), y[sel], proxies)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())
            if not quiet:
                bar.update(1)
                if len(losses) % 10 == 0:  # .item() waits for the device: not every step
                    bar.set_postfix(loss=f"{torch.stack(losses[-20:]).mean().item():.3f}")
    bar.close()
    loss_values = torch.stack(losses).cpu().tolist() if losses else []
    if not np.isfinite(loss_values).all():
        raise AnonbenchError("Proxy-NCA training diverged (NaN loss)")
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "config": asdict(cfg),
        "classes": classes,
        "losses": loss_values,
        "input_size": INPUT_SIZE,
    }


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 4 pixels (draws from the CPU
    generator g, so they do not depend on the device)."""
    flip = (torch.rand(len(x), generator=g) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def checkpoint_digest(ckpt: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(ckpt["config"], sort_keys=True).encode())
    h.update(json.dumps(ckpt["classes"]).encode())
    for k in sorted(ckpt["state_dict"]):
        h.update(k.encode())
        h.update(ckpt["state_dict"][k].cpu().numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise AnonbenchError(
            f"Proxy-NCA checkpoint not found: {p} (train one with "
            "`anonbench train identifier --data celeba:PATH --out DIR`)"
        )
    return torch.load(p, map_location="cpu", weights_only=True)


# --- embedding ----------------------------------------------------------------------------------


class PNCAEmbedder:
    """A trained PNCANet: embeds the crop around each image's reference box, batched on the
    device. No detector: the reference box is the face (`embed` never falls back)."""

    name = "pnca"
    dim = 128

    def __init__(
        self,
        checkpoint: dict[str, Any] | str | Path,
        batch_size: int = 256,
        device: torch.device | str = "cpu",
    ) -> None:
        if not isinstance(checkpoint, dict):
            checkpoint = load_checkpoint(checkpoint)
        cfg = checkpoint["config"]
        crop = cfg.get("crop")
        if crop != CROP_VERSION:
            raise AnonbenchError(
                f"Proxy-NCA checkpoint was trained on {crop or 'CelebA-only centre crops'}, "
                f"this anonbench embeds {CROP_VERSION} crops: retrain it "
                "(`anonbench train identifier`)"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device)
        self.net = PNCANet(cfg["dim"], cfg["widths"])
        try:
            self.net.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as e:
            raise AnonbenchError(
                f"Proxy-NCA checkpoint does not fit the network: {str(e).splitlines()[0]}"
            ) from None
        self.net.to(self.device).eval()
        self.dim = cfg["dim"]
        self.classes = list(checkpoint["classes"])
        self.batch_size = batch_size
        self.digest = checkpoint_digest(checkpoint)
        self.version = "pnca/" + self.digest[:16]

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """N x 64 x 64 x 3 uint8 crops -> N x dim L2-normalised float32."""
        out = []
        for b in range(0, len(crops), self.batch_size):
            x = to_input(crops[b : b + self.batch_size], self.device)
            out.append(F.normalize(self.net(x), dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_boxes(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box | None
    ) -> np.ndarray:
        """N x dim embeddings of the crops around boxes (None: whole images). The crops are
        cut one batch at a time, so memory stays at one batch of images' crops."""
        bs = per_image_boxes(boxes, images)
        out = [
            self.embed_crops(
                face_crops(images[b : b + self.batch_size], bs[b : b + self.batch_size])
            )
            for b in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_aligned(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of whole images (see `whole_image_box`): for inputs that are the face."""
        return self.embed_boxes(images, None)

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.embed_boxes(images, boxes), np.zeros(len(images), bool)


def training_key(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    cfg: PNCAConfig,
    boxes: Sequence[Box] | Box | None = None,
) -> str:
    """sha256 of the config, the labels, every image's pixels and every reference box."""
    from anonbench.cache import array_digest

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    h = hashlib.sha256(json.dumps([asdict(cfg), list(labels)], sort_keys=True).encode())
    for im in images:
        h.update(array_digest(im).encode())
    h.update(np.asarray(per_image_boxes(boxes, images), np.float64).tobytes())
    return h.hexdigest()


def cached_train(
    cache_dir: str | Path,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    cfg: PNCAConfig,
    desc: str = "pnca",
    quiet: bool = False,
    boxes: Sequence[Box] | Box | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> PNCAEmbedder:
    """Trains (or loads the cached result of training) on exactly these images, boxes and
    labels (see `training_key`); the model goes to <cache_dir>/pnca/<key>.pt."""
    from anonbench.cache import atomic_open

    path = Path(cache_dir) / "pnca" / f"{training_key(images, labels, cfg, boxes)[:32]}.pt"
    if path.is_file():
        return PNCAEmbedder(path, batch_size, device)
    ckpt = train_pnca(images, labels, cfg, desc=desc, quiet=quiet, boxes=boxes, device=device)
    # a unique temporary name: worker processes may train the same cached model at once
    with atomic_open(path) as f:
        torch.save(ckpt, f)
    return PNCAEmbedder(ckpt, batch_size, device)


# --- the trained attacker -----------------------------------------------------------------------


class PNCAAttackerBase:
    """What the Proxy-NCA attackers share: the training config, an optional given checkpoint
    (then `fit` does nothing), and the net once fitted."""

    def __init__(
        self, *, device: str, batch_size: int, epochs: int, seed: int, checkpoint: str | None
    ) -> None:
        if batch_size < 1 or epochs < 1:
            raise ValueError("batch_size and epochs must be >= 1")
        self.device = device
        self.batch_size = batch_size
        self.config = PNCAConfig(epochs=epochs, seed=seed)
        self.checkpoint = checkpoint
        self.net: PNCAEmbedder | None = (
            PNCAEmbedder(checkpoint, batch_size, device) if checkpoint is not None else None
        )

    @property
    def dim(self) -> int:
        return self.net.dim if self.net is not None else self.config.dim

    @property
    def classes(self) -> list[str]:
        """The identities the net was trained on (empty before fitting)."""
        return self.net.classes if self.net is not None else []


class ProxyNCAAttacker(PNCAAttackerBase):
    """Proxy-NCA identity attacker (a TrainedAttacker): trained by the protocol on the train
    identities, `training="real"` (`pnca`) on real images, `"real+anonymized"`
    (`pnca-adaptive`) on real images plus the method's outputs of them. Given a `checkpoint`
    (path), it is that net and `fit` does nothing (the protocol checks identity overlap
    with `classes`)."""

    name = "pnca"
    training = "real"

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 256,
        epochs: int = PNCAConfig.epochs,
        seed: int = 0,
        checkpoint: str | None = None,
        training: str = "real",
    ) -> None:
        if training not in TRAININGS:
            raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
        super().__init__(
            device=device, batch_size=batch_size, epochs=epochs, seed=seed, checkpoint=checkpoint
        )
        self.training = training
        self.name = "pnca" if training == "real" else "pnca-adaptive"

    @property
    def version(self) -> str:
        c = self.config
        if self.net is None:
            return f"{self.name}/{CROP_VERSION}/untrained-e{c.epochs}-s{c.seed}"
        return f"{self.name}/{CROP_VERSION}/{self.net.digest[:16]}"

    def fit(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[Box],
        labels: Sequence[str],
        *,
        cache_dir: str,
        quiet: bool = False,
    ) -> None:
        if self.checkpoint is not None:
            return
        desc = f"{self.name} ({self.training} train images)"
        self.net = cached_train(
            cache_dir,
            images,
            labels,
            self.config,
            desc,
            quiet,
            boxes=per_image_boxes(boxes, images),
            device=self.device,
            batch_size=self.batch_size,
        )

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.net is None:
            raise AnonbenchError(f"{self.name}: call fit() (or give a checkpoint) before embed()")
        return self.net.embed(images, boxes)


# --- `anonbench train identifier` ---------------------------------------------------------------


def centre_face_box(image: np.ndarray, analyzer: Any) -> tuple[Box, bool]:
    """The dlib face whose box centre is nearest the image centre, or (no face) the
    whole-image box; returns (box, found)."""
    h, w = image.shape[:2]
    a = analyzer(image)
    if len(a) == 0:
        return whole_image_box(h, w), False
    c = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2
    i = int(np.argmin(((c - (w / 2, h / 2)) ** 2).sum(1)))
    return tuple(float(v) for v in a.boxes[i]), True  # type: ignore[return-value]


def train_from_args(a: Any) -> int:
    """`anonbench train identifier` (options: anonbench.faces.pnca_options).

    The reference box of each image is the dlib HOG face nearest the image centre (cached
    analysis); an image where dlib finds none is used whole (its `whole_image_box`)."""
    from anonbench.cache import Cache, atomic_open, atomic_write_text
    from anonbench.data.images import read_rgb
    from anonbench.data.splits import identity_split, load_identity_dataset
    from anonbench.faces.analysis import FaceAnalyzer

    records = load_identity_dataset(a.data)
    train_ids, test_ids = identity_split([r.identity for r in records], a.seed, a.test_fraction)
    train = [r for r in records if r.identity in set(train_ids)]
    analyzer = FaceAnalyzer(cache=Cache(a.cache_dir))
    images, boxes, whole = [], [], 0
    for r in train:
        img = read_rgb(r.path)
        box, found = centre_face_box(img, analyzer)
        images.append(img)
        boxes.append(box)
        whole += not found
    ckpt = train_pnca(
        images,
        [r.identity for r in train],
        PNCAConfig(epochs=a.epochs, seed=a.seed),
        boxes=boxes,
        device=a.device,
    )
    ckpt["test_identities"] = test_ids
    out = Path(a.out)
    with atomic_open(out / "pnca.pt") as f:
        torch.save(ckpt, f)
    atomic_write_text(
        out / "config.json",
        json.dumps(
            {
                "config": ckpt["config"],
                "data": a.data,
                "train_identities": train_ids,
                "test_identities": test_ids,
                "images_without_face_used_whole": whole,
                "final_loss": float(np.mean(ckpt["losses"][-20:])),
            },
            indent=2,
        ),
    )
    print(
        f"wrote {out / 'pnca.pt'} ({len(train_ids)} identities, {len(train)} images, "
        f"{whole} without a dlib face used whole)"
    )
    return 0
