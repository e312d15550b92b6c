"""pnca-face v2 training as a resumable CPU background job, its quality check and export.

The network, loss, crop and augmentation are v1's (anonbench.faces.pnca_face); what changes is
the data (anonbench.faces.pnca_face_data: ~1,800 identities instead of 149) and the job:

- one epoch = per identity a random min(n, cap) of its images, shuffled (George W Bush has 530
  LFW images: without a cap he would be 5% of every epoch); every epoch has the same number
  of steps, so the cosine schedule runs over a fixed `epochs x steps_per_epoch`.
- every random draw is a function of (seed, epoch) or (seed, step), and the checkpoint holds
  the weights, proxies and AdamW state: `--resume` continues exactly where last.pt stopped.
- last.pt is written atomically at least every `save_minutes` and when SIGTERM arrives (the
  loop saves and stops); OUT/status.json (step, CPU-hours, loss trend, last quality row) and
  OUT/snapshots/step_N.pt every `keep_minutes` come from anonbench.methods.gan_status, as for
  the GAN trainings; OUT/losses.csv has one row per step.
- `recall_at_1` scores a checkpoint: leave-one-out Recall@1 on the originals of the celeba
  test identities (query = each test image, gallery = all other test images), which is what
  the celeba protocol's `original` row measures for `pnca-face`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anonbench.errors import AnonbenchError
from anonbench.faces import pnca_face as pf
from anonbench.faces.pnca import proxy_nca_loss

FORMAT = "anonbench-pnca-face-v2-train"
FAMILY = "pnca-face-v2"


@dataclass
class V2Config:
    """Hyper-parameters of a v2 run (saved in last.pt; a resume keeps them)."""

    data: str
    out: str
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    proxy_lr: float = 2e-2
    weight_decay: float = 5e-4
    scale: float = 3.0
    dim: int = 128
    cap: int = 40  # images per identity per epoch
    seed: int = 0
    save_minutes: float = 5.0
    keep_minutes: float = 30.0


def load_data(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(N x S x S x 3 uint8 crops, labels, meta) of a prepared npz."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise AnonbenchError(f"prepared data not found: {p} (run `pnca_face_v2.py prepare`)")
    with np.load(p, allow_pickle=False) as z:
        crops, labels = z["crops"], [str(v) for v in z["labels"]]
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    if crops.ndim != 4 or crops.shape[1:] != (pf.TRAIN_SIZE, pf.TRAIN_SIZE, 3):
        raise AnonbenchError(f"{p}: crops of shape {crops.shape}, need N x {pf.TRAIN_SIZE}^2 x 3")
    if len(crops) != len(labels) or len(set(labels)) < 2:
        raise AnonbenchError(f"{p}: need crops and labels of >= 2 identities, equal in number")
    return crops, labels, meta


def epoch_order(y: np.ndarray, cap: int, seed: int, epoch: int) -> np.ndarray:
    """Indices of one epoch: per class a random min(n, cap) of its items, all shuffled; a
    function of (seed, epoch) only, and always the same length."""
    rng = np.random.default_rng([seed, epoch])
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        picked.append(rng.permutation(idx)[:cap] if len(idx) > cap else idx)
    return rng.permutation(np.concatenate(picked))


class V2Trainer:
    """The network, proxies and optimizer of a run, stepped one batch at a time."""

    def __init__(self, cfg: V2Config, crops: np.ndarray, labels: list[str]) -> None:
        self.cfg = cfg
        self.classes = sorted(set(labels))
        idx = {c: i for i, c in enumerate(self.classes)}
        self.y = np.array([idx[v] for v in labels])
        self.x = torch.from_numpy(np.ascontiguousarray(crops))
        self.epoch_len = len(epoch_order(self.y, cfg.cap, cfg.seed, 0))
        self.steps_per_epoch = self.epoch_len // cfg.batch_size  # ragged batch dropped (BN)
        if self.steps_per_epoch < 1:
            raise AnonbenchError(f"{self.epoch_len} items per epoch: fewer than one batch")
        self.total = cfg.epochs * self.steps_per_epoch
        torch.manual_seed(cfg.seed)
        self.net = pf.build_net(cfg.dim)
        g = torch.Generator().manual_seed(cfg.seed)
        self.proxies = nn.Parameter(torch.randn(len(self.classes), cfg.dim, generator=g) / 8)
        self.opt = torch.optim.AdamW(
            [
                {"params": self.net.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                {"params": [self.proxies], "lr": cfg.proxy_lr, "weight_decay": 0.0},
            ]
        )
        self.step_count = 0
        self._order: tuple[int, np.ndarray] | None = None

    def batch_indices(self, step: int) -> np.ndarray:
        epoch, b = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.y, self.cfg.cap, self.cfg.seed, epoch))
        bs = self.cfg.batch_size
        return self._order[1][b * bs : (b + 1) * bs]

    def step(self) -> dict[str, float]:
        """One optimizer step; returns its loss row."""
        t0 = time.perf_counter()
        cfg, s = self.cfg, self.step_count
        f = pf._schedule(s / self.total)
        for group, base in zip(self.opt.param_groups, (cfg.lr, cfg.proxy_lr), strict=True):
            group["lr"] = base * f
        sel = torch.from_numpy(self.batch_indices(s))
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + s)
        self.net.train()
        xb = pf.augment(pf.to_input(self.x[sel], "cpu"), g)
        yb = torch.from_numpy(self.y[sel.numpy()])
        loss = proxy_nca_loss(self.net(xb), yb, self.proxies, cfg.scale)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.step_count += 1
        return {
            "step": self.step_count,
            "epoch": s // self.steps_per_epoch,
            "loss": float(loss.detach()),
            "lr_factor": f,
            "seconds": time.perf_counter() - t0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": dataclasses.asdict(self.cfg),
            "step": self.step_count,
            "classes": self.classes,
            "state_dict": self.net.state_dict(),
            "proxies": self.proxies.detach().clone(),
            "opt": self.opt.state_dict(),
        }

    def load_state_dict(self, ckpt: dict[str, Any], source: str) -> None:
        if ckpt.get("classes") != self.classes:
            raise AnonbenchError(f"{source} was trained on other identities: cannot resume")
        self.net.load_state_dict(ckpt["state_dict"])
        with torch.no_grad():
            self.proxies.copy_(ckpt["proxies"])
        self.opt.load_state_dict(ckpt["opt"])
        self.step_count = int(ckpt["step"])


def load_train_checkpoint(path: str | Path) -> dict[str, Any]:
    """A v2 last.pt or snapshot (weights_only); one line when it is not one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise AnonbenchError(f"checkpoint not found: {p}")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise AnonbenchError(f"{p} is not a pnca-face v2 training checkpoint")
    return ckpt


def _write_losses(path: Path, rows: list[dict[str, float]], keep_upto: int | None = None) -> None:
    """Appends rows; keep_upto first drops the rows after that step (a resume redoes them)."""
    cols = ["step", "epoch", "loss", "lr_factor", "seconds"]
    old: list[dict[str, str]] = []
    if keep_upto is not None and path.is_file():
        with open(path, newline="") as f:
            old = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_upto]
    if keep_upto is not None:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(old)
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, cols, extrasaction="ignore").writerows(rows)


def train(
    cfg: V2Config, resume: bool = False, progress: bool = True, max_steps: int | None = None
) -> Path:
    """Runs (or with resume continues) a v2 training to OUT/last.pt; returns its path.
    max_steps: stop after that many steps of this process (state "stopped"). Priority
    (threads, nice) is the caller's: see `pnca_face_v2.py train`."""
    from anonbench.methods.ciagan.checkpoint import save_atomic
    from anonbench.methods.gan_status import TrainingStatus

    out = Path(cfg.out).expanduser()
    last = out / "last.pt"
    saved = None
    if last.is_file():
        if not resume:
            raise AnonbenchError(f"{last} exists: pass --resume to continue, or another --out")
        saved = load_train_checkpoint(last)
        cfg = V2Config(**{**saved["config"], "data": cfg.data, "out": cfg.out})
    crops, labels, meta = load_data(cfg.data)
    test_ids = {f"celeba:{t}" for t in meta.get("test_identities", [])}
    if test_ids & set(labels):  # the prepared file is checked too: never a test identity
        raise AnonbenchError(f"{cfg.data} holds celeba test identities: refusing to train")
    out.mkdir(parents=True, exist_ok=True)
    trainer = V2Trainer(cfg, crops, labels)
    del crops
    status = TrainingStatus(out, FAMILY, ["loss"], cfg.keep_minutes)
    losses = out / "losses.csv"
    if saved is not None:
        trainer.load_state_dict(saved, str(last))
        _write_losses(losses, [], keep_upto=trainer.step_count)
        print(f"{FAMILY}: resumed at step {trainer.step_count}/{trainer.total}", flush=True)
    else:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
        _write_losses(losses, [], keep_upto=0)
    print(
        f"{FAMILY}: {len(trainer.classes)} identities, {len(trainer.x)} crops, "
        f"{trainer.epoch_len} per epoch (cap {cfg.cap}), {trainer.steps_per_epoch} steps/epoch, "
        f"{trainer.total} steps",
        flush=True,
    )

    def save(state: str) -> None:
        save_atomic(trainer.state_dict(), last)
        s = trainer.step_count
        status.write(s, s // trainer.steps_per_epoch, trainer.total, state)
        status.maybe_snapshot(last, s)

    state = "failed"
    try:
        state = _loop(trainer, cfg, losses, status, save, progress, max_steps)
    finally:
        s = trainer.step_count
        status.write(s, s // trainer.steps_per_epoch, trainer.total, state)
    status.maybe_snapshot(last, trainer.step_count, force=True)
    return last


def _loop(
    trainer: V2Trainer,
    cfg: V2Config,
    losses: Path,
    status: Any,
    save: Any,
    progress: bool,
    max_steps: int | None,
) -> str:
    """Steps until the end or SIGTERM, saving at least every save_minutes; returns how it
    ended (finished, stopped). Always leaves last.pt at the final step."""
    from tqdm import tqdm

    from anonbench.methods.gan_status import stop_on_sigterm

    pending: list[dict[str, float]] = []
    last_save = time.monotonic()
    bar = tqdm(
        total=trainer.total,
        initial=trainer.step_count,
        desc=FAMILY,
        mininterval=30,
        disable=not progress,
    )
    ended, start = "finished", trainer.step_count
    with stop_on_sigterm() as stop:
        while trainer.step_count < trainer.total:
            if max_steps is not None and trainer.step_count - start >= max_steps:
                ended = "stopped"
                break
            if stop[0]:
                print(f"{FAMILY}: SIGTERM: stopping at step {trainer.step_count}", flush=True)
                ended = "stopped"
                break
            row = trainer.step()
            if not math.isfinite(row["loss"]):
                _write_losses(losses, pending)
                save("failed")
                raise AnonbenchError(f"non-finite loss at step {trainer.step_count}")
            pending.append(row)
            status.add(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", ep=row["epoch"], refresh=False)
            if time.monotonic() - last_save >= 60 * cfg.save_minutes:
                _write_losses(losses, pending)
                pending.clear()
                save("running")
                last_save = time.monotonic()
    bar.close()
    _write_losses(losses, pending)
    save(ended)
    return ended


# --- quality and export ---------------------------------------------------------------------


def heldout_crops(
    celeba_root: str | Path, cache_dir: str | None, seed: int = 0, test_fraction: float = 0.5
) -> tuple[np.ndarray, list[str]]:
    """112-px test crops of every celeba test image and their identities. The reference box
    is the protocol's: the dlib face nearest the centre, else (no face) the median relative
    reference box (here over the test images; the protocol takes all originals). Cached."""
    from anonbench.data.images import read_rgb
    from anonbench.faces.pnca import centre_face_box
    from anonbench.faces.pnca_face_data import FaceSource, celeba_split

    records, _, test_ids = celeba_split(celeba_root, seed, test_fraction)
    test = set(test_ids)
    src = FaceSource(cache_dir)
    items, rels = [], []
    for r in records:
        if r.identity in test:
            img = read_rgb(r.path)
            box, found = centre_face_box(img, src.analyzer)
            h, w = img.shape[:2]
            items.append((img, box, found, r.identity))
            if found:
                rels.append((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
    rel = np.median(rels, axis=0) if rels else (0.25, 0.25, 0.75, 0.75)
    crops = []
    for img, box, found, _ in items:
        h, w = img.shape[:2]
        if not found:
            box = (rel[0] * w, rel[1] * h, rel[2] * w, rel[3] * h)
        crops.append(pf.face_crop_112(img, box))
    return np.stack(crops), [it[3] for it in items]


@torch.inference_mode()
def embed(state_dict: dict[str, torch.Tensor], crops: np.ndarray, dim: int = 128) -> np.ndarray:
    """N x dim L2-normalised embeddings of 112-px crops (float32 weights, eval mode)."""
    net = pf.build_net(dim)
    net.load_state_dict({k: v.float() for k, v in state_dict.items()})
    net.eval()
    out = [
        F.normalize(net(pf.to_input(crops[b : b + 64], "cpu")), dim=1).numpy()
        for b in range(0, len(crops), 64)
    ]
    return np.concatenate(out)


def recall_at_1(emb: np.ndarray, ids: list[str]) -> float:
    """Leave-one-out Recall@1 (%): each item's nearest other item (cosine) has its identity."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    lab = np.array(ids)
    return 100.0 * float(np.mean(lab[sim.argmax(1)] == lab))


def export_v2(ckpt: dict[str, Any], data_meta: dict[str, Any], out: Path) -> tuple[str, list]:
    """The fp16 pieces `FaceProxyNCAAttacker` loads. classes: celeba identities bare (the
    protocol checks them against its test split), LFW people as `lfw:<Name>`."""
    classes = [c.removeprefix("celeba:") for c in ckpt["classes"]]
    cfg = ckpt["config"]
    meta = {
        "config": {
            "crop": pf.CROP_VERSION,
            "dim": cfg["dim"],
            "backbone": "torchvision resnet18(weights=None), fc -> 128",
            "loss": "proxy-nca (positive proxy left out of the denominator)",
            "optimizer": "AdamW, 10% linear warm-up then cosine over epochs x steps/epoch",
            "version": 2,
            "steps": ckpt["step"],
            **{k: v for k, v in cfg.items() if k not in ("data", "out")},
        },
        "classes": classes,
        "test_identities": data_meta.get("test_identities", []),
        "data": {k: v for k, v in data_meta.items() if k != "test_identities"},
    }
    return pf.export(ckpt["state_dict"], meta, out)
