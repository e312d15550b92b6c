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


def _timed(run: Any, dev: torch.device, warmup: int, steps: int) -> tuple[float, list[float]]:
    """Seconds of the first call (compilation, capture, autotuning), then of each of `steps`
    calls after `warmup` more, each synchronised with the device."""
    t_first = time.perf_counter()
    run()
    _sync(dev)
    first_s = time.perf_counter() - t_first
    for _ in range(warmup):
        run()
    _sync(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return first_s, times


def _median(times: list[float]) -> float:
    return sorted(times)[len(times) // 2]


def _generator_inputs(
    args: argparse.Namespace, dev: torch.device, batch: int
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """A seeded paper-size generator in eval mode, random inputs and one-hot targets (channels
    last on CUDA, as the trainer and anonymizer use it)."""
    from anonbench.methods.ciagan.model import Generator

    torch.manual_seed(0)
    net = Generator(args.num_identities, args.img_size, args.gen_width).to(dev).eval()
    x = torch.rand(batch, 6, args.img_size, args.img_size, device=dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    onehot = torch.nn.functional.one_hot(
        torch.arange(batch, device=dev) % args.num_identities, args.num_identities
    ).float()
    return net, x, onehot


def _trainer(args: argparse.Namespace, dev: torch.device, amp: str, graphs: bool = False) -> Any:
    from anonbench.methods.ciagan.train import TrainConfig, Trainer
    from anonbench.methods.landmark_data import TrainData

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
        cuda_graphs=graphs,
        progress=False,
    )
    return Trainer(cfg, data, dev)


def time_training(
    args: argparse.Namespace, dev: torch.device, amp: str, graphs: bool = False
) -> dict[str, Any]:
    tr = _trainer(args, dev, amp, graphs)
    first_s, times = _timed(tr.step, dev, args.warmup, args.steps)  # first: graph capture
    ms = 1000 * _median(times)
    return {
        "amp": "bf16" if tr.amp else "off",
        "cuda_graphs": graphs,
        "ms_per_iter_median": ms,
        "it_per_s": 1000 / ms,
        "first_step_s": first_s,
        "ms_per_iter_all": [1000 * t for t in times],
    }


def check_graphs(args: argparse.Namespace, dev: torch.device, amp: str) -> dict[str, Any]:
    """The CUDA-graph step against the eager one from the same start, beside the gap between
    two eager runs (cuDNN/TF32 algorithms make eager runs differ too): losses over 3 steps and
    generator weights after them."""
    e0, e1, gr = (_trainer(args, dev, amp, g) for g in (False, False, True))
    keys = ("identity", "critic", "gen_gan", "gen_identity")
    eager_gap = graph_gap = 0.0
    for _ in range(3):
        r0, r1, rg = e0.step(), e1.step(), gr.step()
        eager_gap = max(eager_gap, *(abs(r0[k] - r1[k]) / max(abs(r0[k]), 1e-6) for k in keys))
        graph_gap = max(graph_gap, *(abs(r0[k] - rg[k]) / max(abs(r0[k]), 1e-6) for k in keys))

    def w(t: Any) -> torch.Tensor:
        return torch.cat([p.detach().float().flatten() for p in t.G.parameters()])

    w0 = w(e0)
    return {
        "amp": amp,
        "steps": 3,
        "max_rel_loss_diff_eager_vs_eager": eager_gap,
        "max_rel_loss_diff_graph_vs_eager": graph_gap,
        "generator_weights_rel_l2_eager_vs_eager": float((w(e1) - w0).norm() / w0.norm()),
        "generator_weights_rel_l2_graph_vs_eager": float((w(gr) - w0).norm() / w0.norm()),
    }


@torch.no_grad()
def time_inference(
    args: argparse.Namespace, dev: torch.device, bf16: bool, mode: str = "autocast"
) -> dict[str, Any]:
    """mode: autocast (fp32 weights, bf16 autocast when bf16), half (weights and inputs cast
    to bf16, no autocast), compile (torch.compile of the autocast forward). The output's
    relative L2 error against the fp32 forward is reported for every mode."""
    from anonbench.methods.ciagan.model import Generator

    b = args.infer_batch
    net, x, onehot = _generator_inputs(args, dev, b)
    ref = net(x[:64], onehot[:64]).float()
    fwd, xin, oin = net, x, onehot
    if mode == "half":
        fwd = Generator(args.num_identities, args.img_size, args.gen_width).to(dev).eval()
        fwd.load_state_dict(net.state_dict())
        fwd = fwd.to(dtype=torch.bfloat16)
        if dev.type == "cuda":
            fwd = fwd.to(memory_format=torch.channels_last)
        xin, oin = x.to(torch.bfloat16), onehot.to(torch.bfloat16)
    elif mode == "compile":
        fwd = torch.compile(net)

    def run(xx: torch.Tensor = xin, oo: torch.Tensor = oin) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16 and mode != "half"):
            return fwd(xx, oo)

    first_s, times = _timed(run, dev, args.warmup, args.steps)  # first: compilation too
    t = _median(times)
    out = run()[:64].float()
    err = float((out - ref).norm() / ref.norm())
    return {
        "mode": mode,
        "bf16": bf16,
        "batch": b,
        "ms_per_batch_median": 1000 * t,
        "img_per_s": b / t,
        "first_call_s": first_s,
        "rel_l2_vs_fp32": err,
    }


def profile_tables(args: argparse.Namespace, dev: torch.device, path: Path) -> None:
    """torch.profiler tables (top kernels by device time) of one bf16 training iteration and
    one bf16 inference batch: where the time goes, for the next optimisation."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    tr = _trainer(args, dev, "auto")
    for _ in range(3):
        tr.step()
    _sync(dev)
    with profile(activities=acts) as prof:
        tr.step()
        _sync(dev)
    text = [f"== one training iteration, batch {args.batch}, amp {tr.amp} =="]
    text.append(prof.key_averages().table(sort_by=key, row_limit=30))
    b = min(args.infer_batch, 256)
    net, x, oh = _generator_inputs(args, dev, b)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        for _ in range(3):
            net(x, oh)
        _sync(dev)
        with profile(activities=acts) as prof:
            net(x, oh)
            _sync(dev)
    text.append(f"== generator inference, batch {b}, bf16 autocast ==")
    text.append(prof.key_averages().table(sort_by=key, row_limit=30))
    path.write_text("\n".join(text))


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
    p.add_argument("--half", action="store_true", help="also time a bf16-weights generator")
    p.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph training step")
    p.add_argument("--skip-infer", action="store_true", help="time training only")
    p.add_argument("--compile", action="store_true", help="also time torch.compile inference")
    p.add_argument("--profile", default="", help="write profiler tables to this file")
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
    out = Path(args.out)
    jobs: list[tuple[str, Any]] = []
    if not args.skip_train:
        jobs.append(("train_fp32", lambda: time_training(args, dev, "off")))
        if bf16 and dev.type == "cuda":  # CPU bf16 training is not a setting anyone uses
            jobs.append(("train_bf16", lambda: time_training(args, dev, "bf16")))
        if dev.type == "cuda" and not args.no_graphs:
            jobs.append(("check_graphs_fp32", lambda: check_graphs(args, dev, "off")))
            jobs.append(("train_fp32_graphs", lambda: time_training(args, dev, "off", True)))
            if bf16:
                jobs.append(("train_bf16_graphs", lambda: time_training(args, dev, "bf16", True)))
    if not args.skip_infer:
        jobs.append(("infer_fp32", lambda: time_inference(args, dev, False)))
    if bf16 and not args.skip_infer:
        jobs.append(("infer_bf16", lambda: time_inference(args, dev, True)))
        if args.half:
            jobs.append(("infer_bf16_weights", lambda: time_inference(args, dev, True, "half")))
    if args.profile:
        jobs.append(("profile", lambda: profile_tables(args, dev, Path(args.profile))))
    if args.compile:
        jobs.append(("infer_bf16_compile", lambda: time_inference(args, dev, bf16, "compile")))
    failed = 0
    for name, job in jobs:
        # one variant failing (an unsupported dtype, a compiler error) keeps the others'
        # numbers; the file is rewritten after each, so a run cut short keeps what it measured
        try:
            r = job()
            if r is not None:
                res[name] = r
                print(name, json.dumps(r))
        except Exception as e:  # recorded in the JSON and the exit code
            failed += 1
            res[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(name, "FAILED", res[name]["error"])
        out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
