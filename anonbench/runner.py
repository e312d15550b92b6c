"""Runs methods x one protocol, writes results.csv, run.json and per-item scores."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anonbench
from anonbench.api import RunContext
from anonbench.cache import atomic_write_text, default_cache_dir
from anonbench.errors import AnonbenchError
from anonbench.provenance import git_sha, now, versions
from anonbench.registry import EMBEDDERS, METHODS, PROTOCOLS


@dataclass
class RunConfig:
    methods: list[str]
    protocol: str
    data_root: str | None = None
    out: str | None = None
    embedder: str = "dlib-resnet"
    workers: int = 1
    seed: int = 0
    folds: int | None = None
    cache_dir: str | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def _dataset_tag(cfg: RunConfig) -> str:
    return "sample" if cfg.data_root is None else Path(cfg.data_root).name


def run(cfg: RunConfig) -> Path:
    """Runs every method through the protocol; returns the output folder."""
    import pandas as pd

    from anonbench.results import make_row, merge_and_write

    if not cfg.methods:
        raise AnonbenchError("no methods given")
    proto = PROTOCOLS.create(cfg.protocol)
    EMBEDDERS.entry(cfg.embedder)  # a typo fails now, not after the first method
    for m in cfg.methods:
        METHODS.entry(m)
    unknown_ckpt = set(cfg.checkpoints) - set(cfg.methods)
    if unknown_ckpt:
        raise AnonbenchError(
            f"--checkpoint given for methods not in --methods: {sorted(unknown_ckpt)}"
        )
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise AnonbenchError(f"data root not found: {cfg.data_root}")
    if cfg.folds is not None and cfg.folds < 1:
        raise AnonbenchError("--folds must be >= 1")
    out = Path(cfg.out or f"runs/{cfg.protocol}-{_dataset_tag(cfg)}")
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = str(cfg.cache_dir or default_cache_dir())
    ctx = RunContext(
        data_root=cfg.data_root,
        out_dir=str(out),
        cache_dir=cache_dir,
        embedder=cfg.embedder,
        seed=cfg.seed,
        workers=cfg.workers,
        limit_folds=cfg.folds,
        options=dict(cfg.options),
    )
    info: dict[str, Any] = {
        "anonbench_version": anonbench.__version__,
        "git_sha": git_sha(),
        "versions": versions(),
        "started_at": now(),
        "config": {**cfg.__dict__, "cache_dir": cache_dir},
        "protocol": {
            "name": proto.name,
            "version": proto.version,
            "metrics": [m.__dict__ for m in proto.metrics],
        },
        "methods": {},
        "timings_s": {},
    }
    all_rows: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    for name in cfg.methods:
        kwargs = {"checkpoint": cfg.checkpoints[name]} if name in cfg.checkpoints else {}
        method = METHODS.create(name, **kwargs)
        method.name = name
        if method.meta.note:
            print(f"note: {name}: {method.meta.note}", file=sys.stderr)
        t0 = time.perf_counter()
        rows = proto.run(method, ctx)
        info["timings_s"][name] = round(time.perf_counter() - t0, 2)
        info["methods"][name] = {
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "config": method.config(),
            "meta": method.meta.__dict__,
        }
        stamp = now()
        for r in rows:
            all_rows.append(
                make_row(
                    method=name,
                    protocol=proto.name,
                    protocol_version=proto.version,
                    seed=cfg.seed,
                    checkpoint_sha256=method.meta.checkpoint_sha256,
                    anonbench_version=anonbench.__version__,
                    git_sha=git_sha(),
                    created_at=stamp,
                    **{**r, "note": _join_notes(r.get("note"), method.meta.note)},
                )
            )
        # written after every method: an interrupted run keeps what it finished
        merge_and_write(out / "results.csv", all_rows)
    info["timings_s"]["total"] = round(time.perf_counter() - t_run, 2)
    info["protocol"]["details"] = ctx.extra
    info["finished_at"] = now()
    atomic_write_text(out / "run.json", json.dumps(info, indent=2, default=str))
    df = pd.DataFrame(all_rows)
    print(format_table(df, counts={m.name for m in proto.metrics if m.higher_is_better is None}))
    from anonbench.reports.html import write_run_report

    report = write_run_report(out)
    print(f"results: {out / 'results.csv'}  (run.json, scores/ beside it)")
    if report is not None:
        print(f"report: {report}")
    return out


def _join_notes(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def format_table(df, counts: set[str] | frozenset[str] = frozenset()) -> str:
    """Wide display of tidy rows: methods as rows, one column per metric[evaluator];
    'value ± std' or '[ci_low, ci_high]'; metrics named in `counts` shown as value/n."""
    import math

    import pandas as pd

    if df.empty:
        return "(no results)"

    def num(x) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    def cell(r) -> str:
        v, s, lo, hi = (
            num(r["value"]),
            num(r.get("std")),
            num(r.get("ci_low")),
            num(r.get("ci_high")),
        )
        if v is None:
            return "n/a"
        if r["metric"] in counts:
            n = num(r.get("n"))
            return f"{int(v)}/{int(n)}" if n is not None else f"{int(v)}"
        txt = f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
        if s is not None:
            txt += f" ± {s:.4f}" if abs(v) < 10 else f" ± {s:.2f}"
        elif lo is not None and hi is not None:
            txt += f" [{lo:.1f}, {hi:.1f}]"
        return txt

    d = df.copy()
    d["cell"] = d.apply(cell, axis=1)
    ev = d["evaluator"] if "evaluator" in d else pd.Series([None] * len(d), index=d.index)
    d["column"] = [
        m if e is None or (isinstance(e, float) and math.isnan(e)) or e == "" else f"{m}[{e}]"
        for m, e in zip(d["metric"], ev, strict=True)
    ]
    wide = d.pivot_table(
        index="method", columns="column", values="cell", aggfunc="first", sort=False
    )
    wide = wide.reindex(list(dict.fromkeys(d["method"])))
    wide = wide[list(dict.fromkeys(d["column"]))]
    title = ", ".join(
        sorted(
            {
                f"{p} v{v} on {ds}"
                for p, v, ds in zip(d["protocol"], d["protocol_version"], d["dataset"], strict=True)
            }
        )
    )
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return f"{title}\n{wide.T.to_string() if wide.shape[1] > 6 else wide.to_string()}"


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
