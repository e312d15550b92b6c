"""Runs methods x one protocol, writes results.csv, run.json and per-item scores."""

from __future__ import annotations

import dataclasses
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
from anonbench.display import format_table
from anonbench.errors import AnonbenchError
from anonbench.provenance import git_sha, now, versions
from anonbench.registry import EMBEDDERS, METHODS, PROTOCOLS


@dataclass
class RunConfig:
    methods: list[str]
    protocol: str
    data: str | None = None  # KIND:PATH or a plain path (the protocol's default kind)
    out: str | None = None
    embedder: str = "dlib-resnet"
    workers: int = 1
    seed: int = 0
    cache_dir: str | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 32
    quiet: bool = False
    compile: bool = False  # torch.compile for methods that take it (CIAGAN, on CUDA)


@dataclass
class MethodSpec:
    """One --methods item: a registered name, `folder:DIR`, or `LABEL=folder:DIR`."""

    label: str
    name: str | None = None  # registered method name
    folder: str | None = None  # pre-computed outputs


def parse_method(item: str) -> MethodSpec:
    label, sep, rest = item.partition("=")
    if sep and rest.startswith("folder:"):
        return MethodSpec(label.strip(), folder=rest[len("folder:") :])
    if item.startswith("folder:"):
        folder = item[len("folder:") :]
        if not folder:
            raise AnonbenchError("folder: needs a folder, e.g. --methods folder:outputs/dp2")
        return MethodSpec(Path(folder.rstrip("/")).name or folder, folder=folder)
    if sep:
        raise AnonbenchError(
            f"--methods {item!r}: LABEL=... only names pre-computed outputs (LABEL=folder:DIR)"
        )
    return MethodSpec(item, name=item)


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda[:N] is checked to exist."""
    dev = (device or "cpu").strip()
    if dev == "cpu":
        return dev
    import torch

    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AnonbenchError(f"--device {dev}: torch sees no CUDA GPU here")
        idx = dev.partition(":")[2]
        if idx and (not idx.isdigit() or int(idx) >= torch.cuda.device_count()):
            raise AnonbenchError(
                f"--device {dev}: no such GPU ({torch.cuda.device_count()} visible)"
            )
        return dev
    raise AnonbenchError(f"--device {dev!r}: expected auto, cpu, cuda or cuda:N")


def build_method(spec: MethodSpec, cfg: RunConfig) -> Any:
    import inspect

    from anonbench.produce import FolderMethod

    if spec.folder is not None:
        m = FolderMethod(spec.folder)
    else:
        assert spec.name is not None
        kwargs: dict[str, Any] = {}
        if spec.name in cfg.checkpoints:
            kwargs["checkpoint"] = cfg.checkpoints[spec.name]
        try:
            params = inspect.signature(METHODS.entry(spec.name).factory).parameters  # type: ignore[arg-type]
        except (TypeError, ValueError):
            params = {}
        if "device" in params and cfg.device != "cpu":
            kwargs["device"] = cfg.device
        if cfg.compile and "compile" in params:
            kwargs["compile"] = True
        m = METHODS.create(spec.name, **kwargs)
    m.name = spec.label
    return m


def run(cfg: RunConfig) -> Path:
    """Produces each method's outputs, evaluates them with the protocol; returns the folder."""
    import pandas as pd

    from anonbench.data.datasets import open_dataset
    from anonbench.evaluate import Originals
    from anonbench.options import parse_options
    from anonbench.produce import open_folder_store, produce
    from anonbench.results import make_row, merge_and_write

    if not cfg.methods:
        raise AnonbenchError("no methods given")
    if cfg.workers < 1:
        raise AnonbenchError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.batch_size < 1:
        raise AnonbenchError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    cores = os.cpu_count() or 1
    if cfg.workers > cores:
        print(f"warning: --workers {cfg.workers} > {cores} cores: using {cores}", file=sys.stderr)
        cfg.workers = cores
    proto = PROTOCOLS.create(cfg.protocol)
    options = parse_options(proto.options, cfg.options, f"protocol {proto.name}")
    EMBEDDERS.entry(cfg.embedder)  # a typo fails now, not after the first method
    specs = [parse_method(m) for m in cfg.methods]
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise AnonbenchError(f"--methods names {dup[0]!r} twice")
    for s in specs:
        if s.name is not None:
            METHODS.entry(s.name)
        elif not Path(str(s.folder)).is_dir():
            raise AnonbenchError(f"folder method {s.label!r}: no such folder {s.folder}")
    unknown_ckpt = set(cfg.checkpoints) - {s.name for s in specs if s.name}
    if unknown_ckpt:
        raise AnonbenchError(
            f"--checkpoint given for methods not in --methods: {sorted(unknown_ckpt)}"
        )
    device = resolve_device(cfg.device)
    cfg.device = device
    ds = open_dataset(cfg.data, proto.datasets[0], pairs=str(options.get("pairs", "pairs.txt")))
    if ds.kind not in proto.datasets:
        raise AnonbenchError(
            f"protocol {proto.name} runs on {' or '.join(k + ':DIR' for k in proto.datasets)} "
            f"data, not {ds.kind}:"
        )
    if ds.missing_files:
        print(
            f"warning: {len(ds.missing_files)} files listed in {ds.label} are missing "
            "(left out; run.json lists the count)",
            file=sys.stderr,
        )
    # methods are built before any work and before --out exists: a bad checkpoint or an
    # option a method refuses is one line, with nothing left behind
    built = {spec.label: build_method(spec, cfg) for spec in specs}
    out = Path(cfg.out or f"runs/{cfg.protocol}-{ds.label}")
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = str(cfg.cache_dir or default_cache_dir())
    try:
        import torch

        torch.set_num_threads(max(1, cfg.workers))
    except ImportError:
        pass
    ctx = RunContext(
        data=ds,
        out_dir=str(out),
        cache_dir=cache_dir,
        embedder=cfg.embedder,
        seed=cfg.seed,
        workers=cfg.workers,
        device=device,
        batch_size=cfg.batch_size,
        options=options,
        quiet=cfg.quiet,
        originals=Originals(cache_dir, cfg.workers, cfg.quiet),
    )
    info: dict[str, Any] = {
        "anonbench_version": anonbench.__version__,
        "git_sha": git_sha(),
        "versions": versions(),
        "started_at": now(),
        "config": {**cfg.__dict__, "cache_dir": cache_dir, "options": options},
        "dataset": ds.describe(),
        "device": device,
        "protocol": {
            "name": proto.name,
            "version": proto.version,
            "metrics": [dataclasses.asdict(m) for m in proto.metrics],
        },
        "methods": {},
        "timings_s": {},
    }
    all_rows: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    t0 = time.perf_counter()
    proto.prepare(ctx)
    info["timings_s"]["prepare"] = round(time.perf_counter() - t0, 2)
    for spec in specs:
        method = built[spec.label]
        name = spec.label
        if method.meta.note:
            print(f"note: {name}: {method.meta.note}", file=sys.stderr)
        t0 = time.perf_counter()
        records = proto.records(method, ctx)
        targets = proto.targets(method, ctx)
        if spec.folder is not None:
            store = open_folder_store(name, spec.folder, records)
            if store.info["found"] < len(records):
                print(
                    f"warning: {name}: {len(records) - store.info['found']}/{len(records)} "
                    "outputs missing in the folder: scored as originals (leaks), listed as missed",
                    file=sys.stderr,
                )
        elif records:
            analyses = ctx.originals.analyze(records, f"analyse {ds.label}")
            store = produce(
                method,
                name,
                records,
                analyses,
                cache_dir=cache_dir,
                batch_size=cfg.batch_size,
                targets=targets,
                quiet=cfg.quiet,
            )
        else:
            store = None
        t_prod = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = proto.evaluate(method, store, ctx)
        info["timings_s"][name] = {
            "produce": round(t_prod, 2),
            "evaluate": round(time.perf_counter() - t1, 2),
        }
        info["methods"][name] = {
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "config": method.config(),
            "meta": method.meta.__dict__,
            "store": None if store is None else {"root": str(store.root), **store.info},
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
    print(format_table(df, proto.metrics))
    from anonbench.reports.html import write_run_report

    report = write_run_report(out)
    print(f"results: {out / 'results.csv'}  (run.json, scores/ beside it)")
    if report is not None:
        print(f"report: {report}")
    return out


def _join_notes(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
