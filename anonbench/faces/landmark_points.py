"""`pnca-landmark-points`: the landmark attack (CIAGAN section 4.4) on the points themselves.

CIAGAN's generator sees the landmark drawing: the jaw, the nose bridge and the inner lips of
the dlib 68 points, mapped into the official 178x218 crop and truncated to whole pixels
(`anonbench.methods.landmark_input`). This attacker takes exactly those 29 points, as drawn
(the same crop transform and truncation, so it uses no information the drawing lacks), centres
them, standardises each coordinate with the train set's mean and spread, and embeds them with a
small MLP trained with the Proxy-NCA loss on the real train identities
(`--option attacker=pnca-landmark-points` of the landmark-attack protocol).

Measured through the protocol on the celeba default split, real landmarks, at equal settings
(benchmarks/results/landmark_attack.md): at the protocol's default (every test image, N =
2,939) 26.2% Recall@1 against the drawing CNN's 11.1%, so it is the protocol's default
attacker; with `max_per_identity=3` (N = 442) 8.6% against the CNN's 11.1%: with few gallery
images per identity the CNN is the stronger.

For each image, the dlib HOG face best overlapping the image's reference box (IoU >= 0.3) is
used, as for `pnca-landmarks`; an image with no face there is a zero vector, flagged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError
from anonbench.faces.pnca import Box, per_image_boxes

POINTS_VERSION = "ciagan-line-points-trunc-v1"


def drawn_point_indices() -> list[int]:
    """The dlib-68 indices the CIAGAN drawing connects (jaw, nose bridge, inner lips)."""
    from anonbench.methods.landmark_input import LINES

    return sorted({i for pair in LINES for i in pair})


@dataclass(frozen=True)
class PointsConfig:
    """The MLP and its training (chosen on the celeba default split, see the results file)."""

    hidden: int = 512
    dim: int = 128
    epochs: int = 60
    batch: int = 128
    lr: float = 1e-3
    proxy_lr: float = 1e-2
    weight_decay: float = 1e-4
    dropout: float = 0.2
    scale: float = 8.0  # Proxy-NCA temperature on squared distances of unit vectors
    seed: int = 0


def drawn_points(landmarks: np.ndarray) -> np.ndarray:
    """The 29 drawn points of one face as the drawing has them: crop frame, truncated, centred
    (N x 2 float32)."""
    from anonbench.methods.landmark_input import crop_transform

    t = crop_transform(np.asarray(landmarks, np.float64))
    p = np.trunc(t.points_to_crop(np.asarray(landmarks, np.float64)))[drawn_point_indices()]
    return (p - p.mean(0, keepdims=True)).astype(np.float32)


def _net(n_in: int, cfg: PointsConfig) -> Any:
    from torch import nn

    h = cfg.hidden
    return nn.Sequential(
        nn.Linear(n_in, h),
        nn.BatchNorm1d(h),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(h, h),
        nn.BatchNorm1d(h),
        nn.ReLU(),
        nn.Linear(h, cfg.dim),
    )


def train_points(x: np.ndarray, labels: Sequence[str], cfg: PointsConfig) -> dict[str, Any]:
    """Proxy-NCA training of the MLP on N x F features; returns a checkpoint dict."""
    import torch
    import torch.nn.functional as F

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise AnonbenchError("pnca-landmark-points: need at least 2 train identities")
    mean, std = x.mean(0), x.std(0) + 1e-6
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = _net(x.shape[1], cfg)
    proxies = torch.nn.Parameter(torch.randn(len(classes), cfg.dim, generator=g) / cfg.dim**0.5)
    opt = torch.optim.Adam(
        [
            {"params": net.parameters(), "lr": cfg.lr},
            {"params": [proxies], "lr": cfg.proxy_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.tensor([classes.index(v) for v in labels])
    net.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), cfg.batch):
            b = perm[i : i + cfg.batch]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            z = F.normalize(net(xt[b]), dim=1)
            p = F.normalize(proxies, dim=1)
            loss = F.cross_entropy(-torch.cdist(z, p).pow(2) * cfg.scale, yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {
        "format": "anonbench-landmark-points",
        "config": asdict(cfg),
        "points": POINTS_VERSION,
        "n_in": int(x.shape[1]),
        "mean": torch.from_numpy(mean.astype(np.float32)),
        "std": torch.from_numpy(std.astype(np.float32)),
        "classes": classes,
        "state": net.state_dict(),
    }


class PointsEmbedder:
    """A trained MLP: features -> unit embeddings."""

    def __init__(self, ckpt: dict[str, Any]) -> None:
        cfg = PointsConfig(**ckpt["config"])
        self.net = _net(int(ckpt["n_in"]), cfg)
        self.net.load_state_dict(ckpt["state"])
        self.net.eval()
        self.mean = ckpt["mean"].numpy()
        self.std = ckpt["std"].numpy()
        self.classes: list[str] = list(ckpt["classes"])
        self.dim = cfg.dim

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            z = self.net(torch.from_numpy((x - self.mean) / self.std).float())
            return F.normalize(z, dim=1).numpy()


class LandmarkPointsAttacker:
    """`pnca-landmark-points` (a TrainedAttacker, training "real"): Proxy-NCA MLP on the 29
    points of the CIAGAN drawing of the dlib face at each reference box."""

    name = "pnca-landmark-points"
    training = "real"

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 256,
        epochs: int = PointsConfig.epochs,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        from anonbench.cache import Cache
        from anonbench.faces.analysis import FaceAnalyzer

        if epochs < 1:
            raise ValueError("epochs must be >= 1")
        self.config = PointsConfig(epochs=epochs, seed=seed)
        self.analyzer = FaceAnalyzer(
            cache=Cache(cache_dir) if cache_dir is not None else Cache(enabled=False)
        )
        self.net: PointsEmbedder | None = None
        self.fit_info: dict[str, Any] = {}

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def classes(self) -> list[str]:
        return self.net.classes if self.net is not None else []

    @property
    def version(self) -> str:
        c = self.config
        trained = self._digest[:16] if self.net is not None else f"untrained-e{c.epochs}"
        return f"{self.name}/{self.analyzer.version}/{POINTS_VERSION}/{trained}-s{c.seed}"

    def points(self, image: np.ndarray, box: Box) -> np.ndarray | None:
        """The drawn points of the dlib face best overlapping box (IoU >= 0.3), or None."""
        from anonbench.faces.landmark_attacker import landmarks_at_box

        lm = landmarks_at_box(self.analyzer, image, box)
        return None if lm is None else drawn_points(lm).reshape(-1)

    def _features(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> list[np.ndarray | None]:
        return [
            self.points(im, b) for im, b in zip(images, per_image_boxes(boxes, images), strict=True)
        ]

    def fit(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[Box],
        labels: Sequence[str],
        *,
        cache_dir: str,
        quiet: bool = False,
    ) -> None:
        """Trains on the train images' points (images without a face at their box are left
        out, counted in `fit_info`); the net is cached by its features, labels and config."""
        from anonbench.cache import Cache

        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if self.analyzer.cache.enabled is False:
            self.analyzer.cache = Cache(cache_dir)
        feats = self._features(images, boxes)
        keep = [i for i, f in enumerate(feats) if f is not None]
        self.fit_info = {
            "train_images": len(images),
            "train_images_without_face": len(images) - len(keep),
        }
        if len({labels[i] for i in keep}) < 2:
            raise AnonbenchError(
                f"{self.name}: dlib found landmarks in {len(keep)} of {len(images)} train "
                "images, of fewer than 2 identities: nothing to train on"
            )
        x = np.stack([feats[i] for i in keep])  # type: ignore[misc]
        y = [str(labels[i]) for i in keep]
        self.net, self._digest = _cached(Path(cache_dir), x, y, self.config)

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x dim embeddings, N bool "no face at the box": zero vector)."""
        if self.net is None:
            raise AnonbenchError(f"{self.name}: call fit() before embed()")
        feats = self._features(images, boxes)
        missing = np.array([f is None for f in feats], bool)
        emb = np.zeros((len(images), self.dim), np.float32)
        if (~missing).any():
            emb[~missing] = self.net(np.stack([f for f in feats if f is not None]))
        return emb, missing


def _cached(cache_dir: Path, x: np.ndarray, y: list[str], cfg: PointsConfig):
    """(embedder, digest): trained once per (features, labels, config), kept in the cache."""
    import torch

    from anonbench.cache import atomic_open

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, np.float32).tobytes())
    h.update(json.dumps([y, asdict(cfg), POINTS_VERSION]).encode())
    key = h.hexdigest()
    path = cache_dir / "landmark_points" / f"{key[:32]}.pt"
    ckpt = None
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache entry is retrained, never trusted
            ckpt = None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "anonbench-landmark-points":
        ckpt = train_points(x, y, cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            torch.save(ckpt, f)
    return PointsEmbedder(ckpt), key
