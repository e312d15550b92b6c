"""CIAGAN's Proxy-NCA pretraining of the identity network (the paper's), run before GAN
training by `Trainer.before_training`. Resumable: with a `partial` path its state is saved
every --save-minutes and a restarted training continues from it (on a 1-thread CPU this phase
alone takes about 20 CPU-minutes)."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from anonbench.methods.ciagan import checkpoint as ckpt_io
from anonbench.methods.gan_train import set_grad

if TYPE_CHECKING:
    from anonbench.methods.ciagan.train import Trainer


def proxy_nca_loss(
    emb: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, scale: float
) -> torch.Tensor:
    """Proxy-NCA (Movshovitz-Attias et al. 2017): -log(exp(-d(x, p_y)) / sum_{z != y}
    exp(-d(x, p_z))), d the squared distance between L2-normalised, scaled vectors."""
    x = scale * F.normalize(emb.float(), dim=1)
    p = scale * F.normalize(proxies.float(), dim=1)
    d = torch.cdist(x, p).pow(2)
    pos = d.gather(1, labels[:, None]).squeeze(1)
    neg = d.scatter(1, labels[:, None], float("inf"))
    return (pos + torch.logsumexp(-neg, 1)).mean()


def pretrain_identity(
    t: Trainer, log_path: Path | None = None, partial: Path | None = None
) -> list[float]:
    """Proxy-NCA on real images (the paper's pretraining), before GAN training. With
    `partial`, its state is saved there every --save-minutes and a restarted training
    continues from it (on a 1-thread CPU this phase alone takes about 20 CPU-minutes)."""
    from tqdm.auto import tqdm

    cfg = t.cfg
    B = 2 * cfg.batch_size
    steps = max(1, math.ceil(cfg.pnca_epochs * len(t.data) / B))
    dim = t.S.fc2.out_features
    proxies = torch.nn.Parameter(
        torch.randn(t.n_ids, dim, generator=t.gen).to(t.device) / math.sqrt(dim)
    )
    opt = torch.optim.Adam(
        [
            {"params": t.S.parameters(), "lr": cfg.lr},
            {"params": [proxies], "lr": cfg.proxy_lr},
        ],
        betas=(cfg.beta1, cfg.beta2),
    )
    t.S.train()
    set_grad(t.S, True)
    losses: list[float] = []
    first = _load_partial(t, partial, proxies, opt, losses) if partial else 0
    saved_t = time.monotonic()
    bar = tqdm(range(first, steps), desc="identity net (Proxy-NCA)", disable=not cfg.progress)
    for i in bar:
        if partial and cfg.save_minutes and time.monotonic() - saved_t >= 60 * cfg.save_minutes:
            save_partial(t, partial, i, proxies, opt, losses)
            saved_t = time.monotonic()
        idx = t.sampler.sample_images(B, t.gen)
        v = t.views(idx)
        with t.autocast():
            e = t.S(v.image)
        loss = proxy_nca_loss(e, proxies, t.data.labels[idx].to(t.device), t.S.scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if log_path is not None:
        with open(log_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "pnca_loss"])
            w.writerows([i + 1, f"{v:.6g}"] for i, v in enumerate(losses))
    t.pnca_done = True
    if partial is not None:
        partial.unlink(missing_ok=True)  # last.pt holds the pretrained net from here on
    return losses


def _partial_key(t: Trainer) -> dict[str, Any]:
    return {"config": t.cfg.to_dict(), "identity_names": list(t.data.identity_names)}


def save_partial(
    t: Trainer, path: Path, step: int, proxies: torch.Tensor, opt: Any, losses: list[float]
) -> None:
    ckpt_io.save_atomic(
        {
            **_partial_key(t),
            "step": step,
            "identity": t.S.state_dict(),
            "proxies": proxies.detach().cpu(),
            "optimizer": opt.state_dict(),
            "losses": list(losses),
            "rng": {"data": t.gen.get_state(), "torch": torch.get_rng_state()},
        },
        path,
    )


def _load_partial(
    t: Trainer, path: Path, proxies: torch.Tensor, opt: Any, losses: list[float]
) -> int:
    """The step to continue the pretraining from (0: no usable partial state; one from
    another config or other data is ignored and later overwritten)."""
    if not path.is_file():
        return 0
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file: start the pretraining over
        return 0
    key = _partial_key(t)
    if not isinstance(st, dict) or any(st.get(k) != v for k, v in key.items()):
        return 0
    t.S.load_state_dict(st["identity"])
    with torch.no_grad():
        proxies.copy_(st["proxies"].to(proxies.device))
    opt.load_state_dict(st["optimizer"])
    losses[:] = [float(v) for v in st["losses"]]
    t.gen.set_state(st["rng"]["data"])
    torch.set_rng_state(st["rng"]["torch"])
    print(f"ciagan: Proxy-NCA pretraining continues at step {int(st['step'])}")
    return int(st["step"])
