"""Does bf16 autocast help training on this CPU? Times the forward + backward of a small
conv stack (CIAGAN-like widths, batch 16, 64 x 64) in fp32 and under bf16 autocast, one
thread, alternating, and records the CPU's bf16 flags. On CPUs with AVX-512 BF16 or AMX bf16
halves CIAGAN's step; on AVX2 it is emulated and far slower, which is why the trainers'
`--preset cpu` turns it on only where `gan_options.cpu_has_bf16()` is true.

    python benchmarks/cpu_bf16_check.py --out benchmarks/results/cpu_bf16_check.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from anonbench.methods.gan_options import cpu_has_bf16


def _time(net: torch.nn.Module, x: torch.Tensor, amp: bool, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = net(x).float().mean()
        y.backward()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/cpu_bf16_check.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(64, 64, 3, padding=1),
    )
    x = torch.randn(16, 32, 64, 64)
    _time(net, x, False, 1)  # warm-up
    res: dict[str, list[float]] = {"fp32_s": [], "bf16_autocast_s": []}
    for _ in range(a.rounds):
        res["fp32_s"].append(round(_time(net, x, False, a.reps), 4))
        res["bf16_autocast_s"].append(round(_time(net, x, True, a.reps), 4))
    out = {
        "what": "conv 32->64->64, 3x3, batch 16, 64x64, forward+backward, 1 thread",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_has_bf16": cpu_has_bf16(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        **res,
        "bf16_over_fp32": round(min(res["bf16_autocast_s"]) / min(res["fp32_s"]), 2),
    }
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
