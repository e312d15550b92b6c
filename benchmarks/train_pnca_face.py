"""Trains the shipped `pnca-face` attacker (anonbench/faces/pnca_face.py) and exports it.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/train_pnca_face.py \
        --data celeba:../shared/data/celeba --out /tmp/pnca_face --budget-min 60

Train identities: the celeba protocol's default split (`identity_split(seed, test_fraction)`),
so the checkpoint is disjoint from its default test identities. The reference box of an image
is the dlib HOG face nearest the image centre (the protocol's rule, cached analysis); images
without one are left out (counted). With --epochs 0 the run is sized to --budget-min: the
learning-rate schedule follows the larger of step and wall-time progress, so on a shared CPU
it still anneals and ends on time (the steps done are recorded). Writes
log.txt, last.pt (float32, every epoch) and the fp16 export pnca_face_r18.pt.part* to --out.

This trains v1 (149 celeba identities). v2 (LFW + celeba train identities, resumable
background job): benchmarks/pnca_face_v2.py.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=0, help="0: sized to --budget-min")
    p.add_argument("--budget-min", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--init", help="last.pt of an earlier run: continue it with a fresh schedule")
    p.add_argument("--lr", type=float, default=2e-3, help="peak lr (proxies: 10x)")
    return p.parse_args(argv)


def _train_crops(train: list, out: Path, say: Callable[[str], None]) -> tuple[Any, list, int]:
    """The train images' 112-px crops at their reference box, cached in --out: (crops,
    labels, images without a dlib face)."""
    from anonbench.cache import Cache
    from anonbench.data.images import read_rgb
    from anonbench.faces import pnca_face as pf
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.faces.pnca import centre_face_box

    crops_file = out / f"crops-{pf.CROP_VERSION}-{pf.TRAIN_SIZE}.npz"
    if crops_file.is_file():
        z = np.load(crops_file)
        return z["crops"], [str(v) for v in z["labels"]], int(z["no_face"])
    analyzer = FaceAnalyzer(cache=Cache())
    crops_l, labels, no_face = [], [], 0
    for i, r in enumerate(train):
        img = read_rgb(r.path)
        box, found = centre_face_box(img, analyzer)
        if not found:
            no_face += 1
            continue
        crops_l.append(pf.face_crop_112(img, box, pf.TRAIN_SIZE))
        labels.append(r.identity)
        if i % 500 == 0:
            say(f"cropped {i}/{len(train)}")
    crops = np.stack(crops_l)
    np.savez(crops_file, crops=crops, labels=np.array(labels), no_face=no_face)
    return crops, labels, no_face


def _epochs_for_budget(crops: Any, a: argparse.Namespace, batch_size: int) -> tuple[int, float]:
    """Times a few steps of the real network: (epochs that fit --budget-min, best step s).
    An upper bound: the schedule runs on wall time (the budget) when the CPU is slower."""
    from anonbench.faces import pnca_face as pf

    net = pf.build_net().to(a.device)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    xb = pf.to_input(crops[:batch_size], a.device)
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(4):
        t = time.perf_counter()
        loss = net(pf.augment(xb, g)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = min(times[1:])  # the first step pays the warm-up
    per_epoch = step * (len(crops) // batch_size)
    return max(1, math.ceil(a.budget_min * 60 / per_epoch)), step


def main(argv: list[str] | None = None) -> int:
    from anonbench.data.splits import identity_split, load_identity_dataset
    from anonbench.faces import pnca_face as pf

    a = _parse(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.txt").open("a")

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    records = load_identity_dataset(a.data)
    train_ids, test_ids = identity_split([r.identity for r in records], a.seed, a.test_fraction)
    train_set = set(train_ids)
    crops, labels, no_face = _train_crops([r for r in records if r.identity in train_set], out, say)
    say(
        f"{len(train_ids)} train identities, {len(crops)} crops ({no_face} train images without "
        f"a dlib face left out); {len(test_ids)} test identities held out"
    )
    hp = {"batch_size": 64, "lr": a.lr, "proxy_lr": 10 * a.lr, "weight_decay": 5e-4, "scale": 3.0}
    epochs = a.epochs
    if epochs <= 0:
        epochs, step = _epochs_for_budget(crops, a, hp["batch_size"])
        say(
            f"timed step {step:.2f}s -> ~{step * (len(crops) // hp['batch_size']):.0f}s/epoch "
            f"-> at most {epochs} epochs, the schedule and the run end after {a.budget_min:g} min"
        )
    t0 = time.time()

    def on_epoch(epoch: int, net: torch.nn.Module, proxies: torch.Tensor, loss: float) -> None:
        el = time.time() - t0
        say(f"epoch {epoch + 1}/{epochs} loss {loss:.4f} ({el / (epoch + 1):.0f}s/epoch)")
        torch.save(
            {"epoch": epoch + 1, "state_dict": net.state_dict(), "proxies": proxies.detach()},
            out / "last.pt",
        )

    budget = a.budget_min * 60 if a.epochs <= 0 else None
    init = None
    if a.init:
        init = torch.load(a.init, map_location="cpu", weights_only=True)
        say(f"warm restart from {a.init} (epoch {init['epoch']})")
    res = pf.train_face_net(
        crops,
        labels,
        epochs=epochs,
        seed=a.seed,
        device=a.device,
        budget_s=budget,
        on_epoch=on_epoch,
        init=init,
        **hp,
    )
    seconds = time.time() - t0
    meta = _export_meta(a, res, hp, init, test_ids, len(crops), no_face, budget)
    meta["train_seconds"] = round(seconds)
    sha, pieces = pf.export(res["state_dict"], meta, out / pf.WEIGHTS.name)
    (out / "export.json").write_text(
        json.dumps({**{k: v for k, v in meta.items() if k != "classes"}, "sha256": sha}, indent=1)
    )
    say(f"done: {res['steps']} steps in {seconds / 60:.1f} min; exported {pieces} sha256 {sha}")
    return 0


def _export_meta(
    a: argparse.Namespace,
    res: dict[str, Any],
    hp: dict[str, Any],
    init: dict[str, Any] | None,
    test_ids: list[str],
    n_crops: int,
    no_face: int,
    budget: float | None,
) -> dict[str, Any]:
    """What the export carries about its training (config, classes, data, losses)."""
    from anonbench.faces import pnca_face as pf

    return {
        "config": {
            "crop": pf.CROP_VERSION,
            "dim": 128,
            "backbone": "torchvision resnet18(weights=None), fc -> 128",
            "loss": "proxy-nca (positive proxy left out of the denominator)",
            "optimizer": "AdamW, 10% linear warm-up then cosine (progress: steps or wall time)",
            "epochs": round(res["epochs"], 2),
            "budget_min": a.budget_min if budget else None,
            "steps": res["steps"],
            **hp,
            "seed": a.seed,
            "init": ({"from": Path(a.init).name, "epochs_before": init["epoch"]} if init else None),
        },
        "classes": res["classes"],
        "test_identities": test_ids,
        "data": {
            "spec": a.data,
            "test_fraction": a.test_fraction,
            "train_images": n_crops,
            "train_images_without_face": no_face,
        },
        "losses": res["losses"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
