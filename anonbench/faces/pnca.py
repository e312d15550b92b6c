"""Proxy-NCA identity network (Movshovitz-Attias et al., ICCV 2017): our CelebA identifier.

A compact ResNet (one basic block per stage, widths 32-64-128-256) on 64x64 face crops, trained
with the Proxy-NCA loss: one learnable proxy per training identity, and for an embedding x of
identity y the loss d(x, p_y) + log sum_{z != y} exp(-d(x, p_z)), with squared Euclidean
distances between L2-normalised vectors. It is small because the evaluation must train it on
a 2-core CPU (and again per method for the adaptive attacker); the paper's network was larger.
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

INPUT_SIZE = 64


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


def preprocess(images: Sequence[np.ndarray]) -> torch.Tensor:
    """H x W x 3 uint8 aligned faces -> N x 3 x 64 x 64 in [-1, 1]. CelebA-aligned crops
    (178x218) are centre-cropped to a 178x178 square on the face first."""
    import cv2

    out = []
    for im in images:
        h, w = im.shape[:2]
        s = min(h, w)
        top = (h - s) // 2 + (h - s) // 6 if h > w else (h - s) // 2  # CelebA: face sits high
        left = (w - s) // 2
        sq = im[top : top + s, left : left + s]
        out.append(cv2.resize(sq, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA))
    arr = np.stack(out).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@dataclass
class PNCAConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    proxy_lr: float = 1e-2
    dim: int = 128
    seed: int = 0
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])


def train_pnca(
    images: Sequence[np.ndarray],
    identities: Sequence[str],
    cfg: PNCAConfig,
    desc: str = "pnca",
    quiet: bool = False,
) -> dict[str, Any]:
    """Trains the network; returns a checkpoint dict (tensors, numbers, strings, lists only)."""
    from tqdm.auto import tqdm

    classes = sorted(set(identities))
    if len(classes) < 2:
        raise AnonbenchError("Proxy-NCA training needs at least 2 identities")
    idx = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([idx[i] for i in identities])
    x = preprocess(images)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = PNCANet(cfg.dim, cfg.widths)
    proxies = nn.Parameter(torch.randn(len(classes), cfg.dim, generator=g) / 8)
    opt = torch.optim.Adam(
        [{"params": net.parameters(), "lr": cfg.lr}, {"params": [proxies], "lr": cfg.proxy_lr}]
    )
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [cfg.lr, cfg.proxy_lr], total_steps=steps)
    losses = []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=quiet, dynamic_ncols=True)
    net.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        for b in range(0, len(x), cfg.batch_size):
            sel = perm[b : b + cfg.batch_size]
            xb = _augment(x[sel], g)
            loss = proxy_nca_loss(net(xb), y[sel], proxies)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    if not np.isfinite(losses).all():
        raise AnonbenchError("Proxy-NCA training diverged (NaN loss)")
    return {
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "config": asdict(cfg),
        "classes": classes,
        "losses": losses,
        "input_size": INPUT_SIZE,
    }


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 4 pixels."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class PNCAEmbedder:
    """Embeds aligned face crops with a trained PNCANet (no detector: the crop is the face)."""

    name = "pnca"
    dim = 128

    def __init__(self, checkpoint: dict[str, Any] | str | Path, batch_size: int = 256) -> None:
        if not isinstance(checkpoint, dict):
            path = Path(checkpoint)
            if not path.is_file():
                raise AnonbenchError(
                    f"Proxy-NCA checkpoint not found: {path} (train one with "
                    "`anonbench train identifier --data celeba:PATH --out DIR`)"
                )
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        cfg = checkpoint["config"]
        self.net = PNCANet(cfg["dim"], cfg["widths"])
        try:
            self.net.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as e:
            raise AnonbenchError(
                f"Proxy-NCA checkpoint does not fit the network: {str(e).splitlines()[0]}"
            ) from None
        self.net.eval()
        self.dim = cfg["dim"]
        self.classes = list(checkpoint["classes"])
        self.batch_size = batch_size
        self.version = "pnca/" + checkpoint_digest(checkpoint)[:16]

    @torch.no_grad()
    def embed_aligned(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for b in range(0, len(images), self.batch_size):
            x = preprocess(images[b : b + self.batch_size])
            out.append(F.normalize(self.net(x), dim=1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), "f4")

    def embed(
        self, images: Sequence[np.ndarray], fallback_box: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.embed_aligned(images), np.zeros(len(images), bool)


def checkpoint_digest(ckpt: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(ckpt["config"], sort_keys=True).encode())
    h.update(json.dumps(ckpt["classes"]).encode())
    for k in sorted(ckpt["state_dict"]):
        h.update(k.encode())
        h.update(ckpt["state_dict"][k].numpy().tobytes())
    return h.hexdigest()


def train_main(argv: list[str]) -> int:
    """`anonbench train identifier --data celeba:PATH --out DIR [--epochs N] [--seed S]`."""
    import argparse

    from anonbench.cache import atomic_open, atomic_write_text
    from anonbench.data.images import read_rgb
    from anonbench.data.splits import identity_split, load_identity_dataset

    p = argparse.ArgumentParser(prog="anonbench train identifier")
    p.add_argument("--data", required=True, help="celeba:PATH or folders:PATH")
    p.add_argument("--out", required=True, help="output folder (pnca.pt, config.json)")
    p.add_argument("--epochs", type=int, default=PNCAConfig.epochs)
    p.add_argument("--seed", type=int, default=0, help="split and training seed")
    p.add_argument("--test-fraction", type=float, default=0.5)
    a = p.parse_args(argv)
    records = load_identity_dataset(a.data)
    train_ids, test_ids = identity_split([r.identity for r in records], a.seed, a.test_fraction)
    train = [r for r in records if r.identity in set(train_ids)]
    images = [read_rgb(r.path) for r in train]
    ckpt = train_pnca(images, [r.identity for r in train], PNCAConfig(epochs=a.epochs, seed=a.seed))
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
                "final_loss": float(np.mean(ckpt["losses"][-20:])),
            },
            indent=2,
        ),
    )
    print(f"wrote {out / 'pnca.pt'} ({len(train_ids)} identities, {len(train)} images)")
    return 0


def cached_train(
    cache_dir: str | Path,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    cfg: PNCAConfig,
    desc: str = "pnca",
    quiet: bool = False,
) -> PNCAEmbedder:
    """Trains (or loads the cached result of training) on exactly these images and labels:
    the key is the sha256 of every image's pixels, the labels and the config."""
    from anonbench.cache import array_digest, atomic_open

    h = hashlib.sha256(json.dumps([asdict(cfg), list(labels)], sort_keys=True).encode())
    for im in images:
        h.update(array_digest(im).encode())
    path = Path(cache_dir) / "pnca" / f"{h.hexdigest()[:32]}.pt"
    if path.is_file():
        return PNCAEmbedder(path)
    ckpt = train_pnca(images, labels, cfg, desc=desc, quiet=quiet)
    # a unique temporary name: worker processes may train the same cached model at once
    with atomic_open(path) as f:
        torch.save(ckpt, f)
    return PNCAEmbedder(ckpt)
