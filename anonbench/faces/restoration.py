"""Learned reversal (issue 24 part 3): a network trained to undo one known anonymizer.

The attacker knows the method (Kerckhoffs) and can run it on faces of its own: on the train
identities it gets (original, anonymized) pairs and trains a small U-Net to map the
anonymized face back to the original (McPherson et al. 2016 broke blur and pixelation this
way). At test time every anonymized output is restored before each fixed recognizer.

What the net sees: the square of RESTORE_FACTOR x the reference box's larger side around its
centre, resized to 112 px. 1.5: on aligned CelebA (dlib box 89 px) that is 134 px, which holds
the whole region blur and pixelation change (about the box, shifted by up to 15 px) and
pnca-face's 1.25 x crop, at 0.84 x native scale. (The first setting, 2 x, left three quarters
of the square unchanged and a 0.62 x scale: on blur17 the held-out loss did not fall below
the unrestored one in 9 CPU-minutes, 356 steps.)
It predicts a residual; `Restorer.restore` resizes the residual to the square's size and adds
it to the image there, so pixels outside the square stay as the method left them.

Training runs to a CPU-time budget (`RestoreConfig.cpu_minutes`, process time, so a loaded
machine gets the same amount of work) and records a learning curve: L1 on held-out pairs of
train identities against the L1 of leaving the output as it is.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError
from anonbench.faces.pnca import Box, face_crop, square_around

RESTORE_FACTOR = 1.5
VERSION = "unet-residual-v2"
CHANGED_WEIGHT = 4.0  # extra loss weight of the pixels the method changed


@dataclass(frozen=True)
class RestoreConfig:
    size: int = 112
    factor: float = RESTORE_FACTOR
    width: int = 32
    batch: int = 16
    lr: float = 1e-3  # high for a U-Net: a step is ~2 CPU-s, so 30 minutes is ~900 steps
    cpu_minutes: float = 30.0  # the training budget, process CPU time (evaluation excluded)
    max_steps: int = 0  # 0: no step limit (tests use a few steps)
    eval_every: int = 200  # a learning-curve point every this many steps ...
    eval_minutes: float = 2.0  # ... and every this many CPU-minutes of training
    val_fraction: float = 0.1
    seed: int = 0


def build_unet(width: int) -> Any:
    """A 3-level U-Net (112 -> 56 -> 28 -> 14 and back) predicting an RGB residual."""
    import torch
    from torch import nn

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU()
        )

    class UNet(nn.Module):
        def __init__(self, w: int) -> None:
            super().__init__()
            self.e1, self.e2, self.e3 = block(3, w), block(w, 2 * w), block(2 * w, 4 * w)
            self.mid = block(4 * w, 4 * w)
            self.d3, self.d2, self.d1 = block(8 * w, 2 * w), block(4 * w, w), block(2 * w, w)
            self.out = nn.Conv2d(w, 3, 1)
            nn.init.zeros_(self.out.weight)  # starts as the identity: restore(x) = x
            nn.init.zeros_(self.out.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pool = nn.functional.max_pool2d
            up = nn.functional.interpolate
            a = self.e1(x)
            b = self.e2(pool(a, 2))
            c = self.e3(pool(b, 2))
            m = self.mid(pool(c, 2))
            c = self.d3(torch.cat([up(m, scale_factor=2.0), c], 1))
            b = self.d2(torch.cat([up(c, scale_factor=2.0), b], 1))
            a = self.d1(torch.cat([up(b, scale_factor=2.0), a], 1))
            return x + self.out(a)

    return UNet(width)


def crops(images: Sequence[np.ndarray], boxes: Sequence[Box], cfg: RestoreConfig) -> np.ndarray:
    """N x size x size x 3 uint8: the squares the net sees."""
    f = cfg.factor
    return np.stack([face_crop(im, b, cfg.size, f) for im, b in zip(images, boxes, strict=True)])


def _tensor(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div(255.0)


def _split(labels: Sequence[str], cfg: RestoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """Held-out identities for the learning curve (never the test identities: these are all
    train identities of the protocol's split)."""
    ids = sorted(set(labels))
    rng = np.random.default_rng(cfg.seed)
    n_val = max(1, round(len(ids) * cfg.val_fraction)) if len(ids) > 1 else 0
    val_ids = set(rng.permutation(ids)[:n_val].tolist())
    val = np.array([v in val_ids for v in labels])
    return np.flatnonzero(~val), np.flatnonzero(val)


def train_restorer(
    anon: np.ndarray,
    orig: np.ndarray,
    labels: Sequence[str],
    cfg: RestoreConfig,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """L1 training of the U-Net on crop pairs (N x S x S x 3 uint8 each) to the CPU budget;
    returns a checkpoint with the learning curve."""
    import torch

    if anon.shape != orig.shape or len(anon) != len(labels) or len(anon) < 2:
        raise AnonbenchError("learned reversal: need at least 2 (original, anonymized) pairs")
    tr, va = _split(labels, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = build_unet(cfg.width)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    xa, xo = _tensor(anon), _tensor(orig)
    curve: list[dict[str, float]] = []
    t0, step, evals, next_eval = time.process_time(), 0, 0.0, 0.0
    while True:
        spent = (time.process_time() - t0 - evals) / 60
        done = spent >= cfg.cpu_minutes or (cfg.max_steps and step >= cfg.max_steps)
        if step % cfg.eval_every == 0 or spent >= next_eval or done:
            e0 = time.process_time()
            curve.append(_evaluate(net, xa, xo, va, step, spent))
            evals += time.process_time() - e0  # the curve is not charged to the budget
            next_eval = spent + cfg.eval_minutes
            if progress is not None:
                progress(curve[-1])
        if done:
            break
        b = torch.from_numpy(tr)[torch.randint(len(tr), (cfg.batch,), generator=g)]
        x, y = xa[b], xo[b]
        if torch.rand((), generator=g) < 0.5:  # the faces are roughly symmetric
            x, y = x.flip(3), y.flip(3)
        net.train()
        # the pixels the method left alone must stay, but the ones it changed carry the
        # signal: weight them up (they are a fraction of the square)
        w = 1.0 + CHANGED_WEIGHT * ((x - y).abs().amax(1, keepdim=True) > 0.5 / 255).float()
        loss = ((net(x) - y).abs() * w).sum() / (w.sum() * 3)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    return {
        "format": "anonbench-restorer",
        "version": VERSION,
        "config": asdict(cfg),
        "state": net.state_dict(),
        "curve": curve,
        "train_pairs": len(tr),
        "val_pairs": len(va),
        "steps": step,
        "cpu_minutes": round((time.process_time() - t0 - evals) / 60, 3),
    }


def _evaluate(net: Any, xa: Any, xo: Any, va: np.ndarray, step: int, cpu_min: float):
    """One learning-curve point: L1 (pixels in [0, 1]) of the net and of no restoration."""
    import torch

    point = {"step": float(step), "cpu_minutes": round(cpu_min, 3)}
    if not len(va):
        return point
    net.eval()
    with torch.no_grad():
        errs = []
        for k in range(0, len(va), 64):
            i = torch.from_numpy(va[k : k + 64])
            errs.append((net(xa[i]) - xo[i]).abs().mean((1, 2, 3)))
        point["val_l1"] = float(torch.cat(errs).mean())
        point["val_l1_unrestored"] = float((xa[va] - xo[va]).abs().mean())
    return point


class Restorer:
    """A trained restorer for one method: restore(image, box) -> image."""

    def __init__(self, ckpt: dict[str, Any], path: str | Path | None = None) -> None:
        if not isinstance(ckpt, dict) or ckpt.get("format") != "anonbench-restorer":
            raise AnonbenchError("not an anonbench restorer checkpoint")
        self.cfg = RestoreConfig(**ckpt["config"])
        self.net = build_unet(self.cfg.width)
        self.net.load_state_dict(ckpt["state"])
        self.net.eval()
        self.curve: list[dict[str, float]] = list(ckpt.get("curve", []))
        self.info = {k: ckpt.get(k) for k in ("train_pairs", "val_pairs", "steps", "cpu_minutes")}
        self.path = str(path) if path is not None else None  # the cached file, if any

    def restore(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The image with the net's residual added inside the square around box."""
        import cv2
        import torch

        im = np.asarray(image)
        x = _tensor(face_crop(im, box, self.cfg.size, self.cfg.factor)[None])
        with torch.no_grad():
            res = (self.net(x) - x)[0].permute(1, 2, 0).numpy() * 255.0
        x0, y0, s = square_around(box, self.cfg.factor)
        res = cv2.resize(res, (s, s), interpolation=cv2.INTER_LINEAR)
        h, w = im.shape[:2]
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
        out = im.astype(np.float32)
        if ax1 > ax0 and ay1 > ay0:
            out[ay0:ay1, ax0:ax1] += res[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_restorer(path: str | Path) -> Restorer:
    """A restorer saved by `cached_restorer` (weights only: no pickled code is run)."""
    import torch

    return Restorer(torch.load(path, map_location="cpu", weights_only=True), path)


def restorer_file(
    cache_dir: str | Path,
    method_version: str,
    anon: np.ndarray,
    orig: np.ndarray,
    labels: Sequence[str],
    cfg: RestoreConfig,
) -> Path:
    """<cache>/restorer/<digest>.pt: keyed by the method config, the restorer version and
    config (budget included) and the pairs themselves."""
    h = hashlib.sha256(json.dumps([method_version, VERSION, asdict(cfg), list(labels)]).encode())
    h.update(np.ascontiguousarray(anon).tobytes())
    h.update(np.ascontiguousarray(orig).tobytes())
    return Path(cache_dir) / "restorer" / f"{h.hexdigest()[:32]}.pt"


def cached_restorer(
    cache_dir: str | Path,
    method_version: str,
    anon: np.ndarray,
    orig: np.ndarray,
    labels: Sequence[str],
    cfg: RestoreConfig,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> Restorer:
    """Trained once per (method config, pairs, config); kept in <cache>/restorer/."""
    import torch

    from anonbench.cache import atomic_open

    path = restorer_file(cache_dir, method_version, anon, orig, labels, cfg)
    if path.is_file():
        try:
            return load_restorer(path)
        except Exception:  # a damaged entry is retrained, never trusted
            pass
    ckpt = train_restorer(anon, orig, labels, cfg, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        torch.save(ckpt, f)
    return Restorer(ckpt, path)
