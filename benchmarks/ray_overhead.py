"""Overhead of `--executor ray` against `--executor local`: wall time of the same `anonbench run`
(default: the first 2 folds of LFW, methods original and blur17) with each executor, every run
from a fresh cache, on this machine. A benchmark, not a timed test: the machine may be shared,
so runs alternate (local, ray, ray, local, ...) and the ratio is of the medians, with the load
average recorded beside each run.

    python benchmarks/ray_overhead.py                              # ../shared/data/lfw, 2 folds
    python benchmarks/ray_overhead.py --repeats 2 --workers 2
    python benchmarks/ray_overhead.py --data-root anonbench/data/sample/lfw --folds 0

Writes <out>.json and <out>.md (default benchmarks/results/ray_overhead), and checks that both
executors wrote the same results.csv rows (provenance aside) and per-pair scores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = ["created_at", "git_sha"]


def _run(executor: str, args: argparse.Namespace, work: Path, i: int) -> dict[str, Any]:
    """One `anonbench run` from a fresh cache: wall seconds, the run's own stage timings."""
    out, cache = work / f"{executor}-{i}", work / f"cache-{executor}-{i}"
    cmd = [sys.executable, "-m", "anonbench", "run", "--methods", args.methods]
    cmd += ["--protocol", "lfw", "--data-root", args.data_root, "--quiet"]
    cmd += ["--out", str(out), "--cache-dir", str(cache), "--workers", str(args.workers)]
    cmd += ["--executor", executor]
    if args.folds:
        cmd += ["--folds", str(args.folds)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **_ENV})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{executor} run {i} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    info = json.loads((out / "run.json").read_text())
    shutil.rmtree(cache, ignore_errors=True)  # only results are kept for the comparison
    return {
        "executor": executor,
        "run": i,
        "wall_s": round(wall, 2),
        "timings_s": info["timings_s"],
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "out": str(out),
    }


# one thread per process in both executors (the local pool sets it per worker; the parent's
# torch and Ray's workers follow OMP_NUM_THREADS), so the comparison is of scheduling only
_ENV = {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _same_outputs(a: Path, b: Path) -> bool:
    import pandas as pd

    ra = pd.read_csv(a / "results.csv").drop(columns=PROVENANCE)
    rb = pd.read_csv(b / "results.csv").drop(columns=PROVENANCE)
    key = ["method", "metric", "evaluator"]
    ra = ra.sort_values(key).reset_index(drop=True)
    rb = rb.sort_values(key).reset_index(drop=True)
    if not ra.equals(rb):
        return False
    sa = sorted((a / "scores" / "lfw").glob("*.csv"))
    return bool(sa) and all(
        f.read_bytes() == (b / "scores" / "lfw" / f.name).read_bytes() for f in sa
    )


def _git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--folds", type=int, default=2, help="first K folds (0 = all)")
    ap.add_argument("--methods", default="original,blur17")
    ap.add_argument("--workers", type=int, default=2, help="local pool size = Ray CPUs")
    ap.add_argument("--repeats", type=int, default=1, help="runs per executor (alternating)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray_overhead"))
    args = ap.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    runs: list[dict[str, Any]] = []
    try:
        for i in range(args.repeats):
            # alternate the order so a load change during the benchmark hits both executors
            order = ("local", "ray") if i % 2 == 0 else ("ray", "local")
            for ex in order:
                r = _run(ex, args, work, i)
                print(
                    f"{ex} run {i}: {r['wall_s']} s (load {r['load_before']} -> {r['load_after']})"
                )
                runs.append(r)
        local = [r["wall_s"] for r in runs if r["executor"] == "local"]
        rayt = [r["wall_s"] for r in runs if r["executor"] == "ray"]
        same = all(
            _same_outputs(Path(a["out"]), Path(b["out"]))
            for a in runs
            if a["executor"] == "local"
            for b in runs
            if b["executor"] == "ray"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = statistics.median(rayt) / statistics.median(local)
    result = {
        "benchmark": "ray_overhead",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": _git_sha(),
        "command": {
            "methods": args.methods,
            "data_root": args.data_root,
            "folds": args.folds,
            "workers": args.workers,
            "repeats": args.repeats,
            "env": _ENV,
        },
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
        },
        "runs": [{k: v for k, v in r.items() if k != "out"} for r in runs],
        "local_s": round(statistics.median(local), 2),
        "ray_s": round(statistics.median(rayt), 2),
        "ratio": round(ratio, 3),
        "goal": "ray <= 1.25 x local",
        "goal_met": ratio <= 1.25,
        "identical_results": same,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(result))
    print(f"local {result['local_s']} s, ray {result['ray_s']} s, ratio {result['ratio']}")
    print(f"wrote {out.with_suffix('.md')} and .json")


def _markdown(r: dict[str, Any]) -> str:
    c, m = r["command"], r["machine"]
    folds = f"--folds {c['folds']}" if c["folds"] else "all folds"
    lines = [
        "# Ray executor overhead",
        "",
        f"`anonbench run --methods {c['methods']} --protocol lfw --data-root {c['data_root']} "
        f"{folds} --workers {c['workers']} --executor local|ray`, each run from a fresh cache "
        f"(analysis, production and evaluation all computed), {c['repeats']} run(s) per "
        "executor alternating, median wall time (process start to exit, Ray's start and "
        f"shutdown included). `benchmarks/ray_overhead.py`, {r['created_at']}, git "
        f"{r['git_sha']}.",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores visible, shared with other users' jobs: "
        f"see the load averages), Python {m['python']}, ray {m['ray']}; Ray: a local instance "
        f"of {c['workers']} CPUs; OMP_NUM_THREADS=1 for both.",
        "",
        f"**local {r['local_s']} s, ray {r['ray_s']} s: ratio {r['ratio']}** (goal "
        f"{r['goal']}: {'met' if r['goal_met'] else 'NOT met'}). Identical results.csv rows "
        f"(provenance aside) and per-pair scores: {'yes' if r['identical_results'] else 'NO'}.",
        "",
        "| executor | run | wall s | prepare s | produce s | evaluate s | load before | load "
        "after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["runs"]:
        t = x["timings_s"]
        per = [v for v in t.values() if isinstance(v, dict)]
        lines.append(
            f"| {x['executor']} | {x['run']} | {x['wall_s']} | {t.get('prepare', '')} | "
            f"{round(sum(v['produce'] for v in per), 2)} | "
            f"{round(sum(v['evaluate'] for v in per), 2)} | {x['load_before']} | "
            f"{x['load_after']} |"
        )
    lines += [
        "",
        "prepare = analysis of the originals (dlib HOG + 68 landmarks); produce and evaluate "
        "summed over the methods (run.json `timings_s`). With `ray`, the actors (one per CPU) "
        "start once per run and keep their models for every stage; the local pool starts once "
        "per stage call (analysis, each evaluation pass) and production runs in the parent.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
