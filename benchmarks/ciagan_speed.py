"""CIAGAN speed: one training iteration (identity net 1 batch, critic 5 iterations, generator
1 batch) and generator inference, fp32 and bf16 autocast where supported. Random data, the
paper's architecture unless sizes are given. Writes a JSON file.

    python benchmarks/ciagan_speed.py --device cuda --out ciagan_speed.json
    python benchmarks/ciagan_speed.py --device cpu --threads 1 --infer-batch 8 --steps 2

Reference (the issue, official code on one H100): 440 ms per training iteration at batch 16,
generator inference 6.5k img/s fp32 and 7.7k img/s bf16 at batch 1024.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

OFFICIAL_H100 = {
    "train_ms_per_iter_batch16": 440.0,
    "infer_img_per_s_fp32_batch1024": 6500.0,
    "infer_img_per_s_bf16_batch1024": 7700.0,
    "source": "issue 4, official dvl-tum/ciagan architecture and iteration, one H100",
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _bf16_ok(dev: torch.device) -> bool:
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # CPU autocast to bf16 exists in every supported torch; speed varies by CPU
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        return True
    except RuntimeError:
        return False


def time_training(args: argparse.Namespace, dev: torch.device, amp: str) -> dict[str, Any]:
    from anonbench.methods.ciagan.data import TrainData
    from anonbench.methods.ciagan.train import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    n = args.batch * 12 * 2  # two epochs' worth of distinct images
    canvas = torch.randint(0, 256, (n, 5, 144, 144), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % args.num_identities
    names = [str(i) for i in range(args.num_identities)]
    data = TrainData(canvas, labels, names, [str(i) for i in range(n)])
    cfg = TrainConfig(
        batch_size=args.batch,
        img_size=args.img_size,
        gen_width=args.gen_width,
        critic_width=args.critic_width,
        id_width=args.id_width,
        identity_pretrain="none",
        device=str(dev),
        amp=amp,
        progress=False,
    )
    tr = Trainer(cfg, data, dev)
    for _ in range(args.warmup):
        tr.step()
    _sync(dev)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        tr.step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    ms = 1000 * sorted(times)[len(times) // 2]
    return {
        "amp": "bf16" if tr.amp else "off",
        "ms_per_iter_median": ms,
        "it_per_s": 1000 / ms,
        "ms_per_iter_all": [1000 * t for t in times],
    }


@torch.no_grad()
def time_inference(args: argparse.Namespace, dev: torch.device, bf16: bool) -> dict[str, Any]:
    from anonbench.methods.ciagan.model import Generator

    torch.manual_seed(0)
    net = Generator(args.num_identities, args.img_size, args.gen_width).to(dev).eval()
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    b = args.infer_batch
    x = torch.rand(b, 6, args.img_size, args.img_size, device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    onehot = torch.nn.functional.one_hot(
        torch.arange(b, device=dev) % args.num_identities, args.num_identities
    ).float()

    def run() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            net(x, onehot)

    for _ in range(args.warmup):
        run()
    _sync(dev)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        run()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    return {"batch": b, "ms_per_batch_median": 1000 * t, "img_per_s": b / t}


def gflop_per_image(args: argparse.Namespace) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from anonbench.methods.ciagan.model import Generator

    net = Generator(args.num_identities, args.img_size, args.gen_width).eval()
    x = torch.rand(1, 6, args.img_size, args.img_size)
    oh = torch.zeros(1, args.num_identities)
    oh[0, 0] = 1
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, oh)
    return fc.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16, help="training batch")
    p.add_argument("--infer-batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="timed repetitions")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--num-identities", type=int, default=1200)
    p.add_argument("--gen-width", type=int, default=32)
    p.add_argument("--critic-width", type=int, default=64)
    p.add_argument("--id-width", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--out", default="ciagan_speed.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bf16 = _bf16_ok(dev)
    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "device_type": dev.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "settings": vars(args),
        "generator_gflop_per_image": gflop_per_image(args),
        "official_reference": OFFICIAL_H100,
    }
    if not args.skip_train:
        res["train_fp32"] = time_training(args, dev, "off")
        print("train fp32", json.dumps(res["train_fp32"]))
        if bf16 and dev.type == "cuda":  # CPU bf16 training is not a setting anyone uses
            res["train_bf16"] = time_training(args, dev, "bf16")
            print("train bf16", json.dumps(res["train_bf16"]))
    res["infer_fp32"] = time_inference(args, dev, False)
    print("infer fp32", json.dumps(res["infer_fp32"]))
    if bf16:
        res["infer_bf16"] = time_inference(args, dev, True)
        print("infer bf16", json.dumps(res["infer_bf16"]))
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
