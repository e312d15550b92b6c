"""Runs methods x one protocol, writes results.csv, run.json and per-item scores."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anonbench
from anonbench.api import RunContext
from anonbench.cache import default_cache_dir
from anonbench.display import format_table
from anonbench.errors import AnonbenchError
from anonbench.provenance import git_sha, now, versions
from anonbench.registry import EMBEDDERS, METHODS, PROTOCOLS
from anonbench.safety import check_tree, refuse_overlap, sigterm_as_interrupt


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
    force: bool = False  # recompute methods whose rows are complete and inputs unchanged
    allow_empty: bool = False  # a run that measured nothing exits 0
    # where shards run (anonbench.executors): "local" (process pool) or "ray"; a Ray cluster
    # address to join (None: a local instance of `workers` CPUs); Ray's retries per shard
    executor: str = "local"
    ray_address: str | None = None
    max_retries: int = 3


@dataclass
class MethodSpec:
    """One --methods item: a registered name, `folder:DIR`, or `LABEL=folder:DIR`."""

    label: str
    name: str | None = None  # registered method name
    folder: str | None = None  # pre-computed outputs


def parse_method(item: str) -> MethodSpec:
    spec = _parse_method(item)
    # a label names files (scores/, missed/, examples/): no path separators, no hidden names
    if not spec.label or any(c in spec.label for c in "/\\\0") or spec.label.startswith("."):
        raise AnonbenchError(
            f"--methods {item!r}: the label {spec.label!r} cannot name a file "
            "(no '/', '\\', or leading '.'); give LABEL=folder:DIR"
        )
    return spec


def _parse_method(item: str) -> MethodSpec:
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


class RunWriteError(AnonbenchError):
    """An OS error (disk full, permission, a file where a folder should be) after work has
    started: one line, exit 1; what was finished before it stays in results.csv and run.json."""

    exit_code = 1


def check_writable_dir(path: str | Path, what: str) -> None:
    """Before any work: `path` is a folder, or can be made one, and files can be written in
    it. Creates nothing (the probe is an unnamed temporary file in the nearest existing
    folder). One line (AnonbenchError) when not."""
    import tempfile

    p = Path(path).expanduser()
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        where = "" if anc == p else f": {anc} is a file"
        raise AnonbenchError(f"{what} {p}: not a folder{where}")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise AnonbenchError(f"{what} {p}: {anc} is not writable")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise AnonbenchError(f"{what} {p}: cannot write in {anc} ({e.strerror or e})") from None


def _check_out_dir(out: Path) -> tuple[dict[str, Any], Any]:
    """--out before any work: writable, and what an earlier run left there readable (run.json,
    results.csv), so nothing computed is lost to a merge that fails at the end. Returns the
    earlier run.json and results.csv (as strings; None when absent)."""
    import pandas as pd

    from anonbench.results import COLUMNS, read_run_json

    check_writable_dir(out, "--out")
    for name in ("results.csv", "run.json", "report.html"):
        f = out / name
        if f.exists() and not f.is_file():
            raise AnonbenchError(f"--out {out}: {f} is not a file")
    prev = read_run_json(out / "run.json")
    res = None
    if (out / "results.csv").is_file():
        try:
            res = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError) as e:
            raise AnonbenchError(
                f"{out / 'results.csv'}: not a results table ({type(e).__name__}); "
                "move it away or choose another --out"
            ) from None
        missing = [c for c in COLUMNS if c not in res.columns]
        if missing:
            raise AnonbenchError(
                f"{out / 'results.csv'}: not an anonbench results file (missing columns "
                f"{missing}); move it away or choose another --out"
            )
    return prev, res


def _key_str(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


_ROW_KEY = ("dataset", "split", "metric", "evaluator")


def _folder_fingerprint(folder: str) -> list[tuple[str, int, int]]:
    root = Path(folder)
    return sorted(
        (f.relative_to(root).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
        for f in root.rglob("*")
        if f.is_file()
    )


def input_digest(spec: MethodSpec, method: Any, ds: Any, proto: Any, cfg: RunConfig, options):
    """sha256 of everything a method's rows depend on: its config and checkpoint sha256 (a
    folder method: its files' names, sizes and times), the data (spec, label, record count),
    the protocol (name, version, options), the seed and the embedder."""
    import hashlib

    d = {
        "method": {
            "label": spec.label,
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "config": method.config(),
            "checkpoint_sha256": method.meta.checkpoint_sha256,
            "folder": None if spec.folder is None else _folder_fingerprint(spec.folder),
        },
        "data": {
            "spec": ds.spec,
            "kind": ds.kind,
            "label": ds.label,
            "records": len(ds.records),
            "missing_files": len(ds.missing_files),
            "pairs_file": None if not ds.pairs_file else Path(ds.pairs_file).name,
        },
        "protocol": {"name": proto.name, "version": proto.version, "options": options},
        "seed": cfg.seed,
        "embedder": cfg.embedder,
    }
    text = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _earlier_methods(prev: dict[str, Any], protocol: str) -> dict[str, dict[str, Any]]:
    """method -> its record in the latest run of `protocol` (run.json) that ran or skipped it."""
    from anonbench.results import run_entries

    out: dict[str, dict[str, Any]] = {}
    for e in run_entries(prev):
        proto = e.get("protocol")
        if not isinstance(proto, dict) or proto.get("name") != protocol:
            continue
        for name, m in (e.get("methods") or {}).items():
            if isinstance(m, dict):
                out[name] = m
    return out


def _earlier_details(prev: dict[str, Any], proto: Any) -> dict[str, Any]:
    """The details of the latest run.json entry of this protocol (name and version)."""
    from anonbench.results import run_entries

    for e in reversed(run_entries(prev)):
        p = e.get("protocol")
        if isinstance(p, dict) and (p.get("name"), p.get("version")) == (proto.name, proto.version):
            details = p.get("details")
            if isinstance(details, dict) and details:
                return details
    return {}


def _rows_complete(res: Any, method: str, protocol: str, keys: Any) -> bool:
    """Every row key recorded for the method is in results.csv."""
    if res is None or not isinstance(keys, list) or not keys:
        return False
    sel = res[(res["method"] == method) & (res["protocol"] == protocol)]
    have = {tuple(r) for r in sel[list(_ROW_KEY)].to_numpy()}
    return all(isinstance(k, list) and tuple(k) in have for k in keys)


def _measured(rows: list[dict[str, Any]], metrics: Any) -> bool:
    """Whether any row holds a computed value of a metric with a direction (not a count)."""
    import math

    from anonbench.display import is_count

    specs = {m.name: m for m in metrics}
    for r in rows:
        if is_count(specs.get(str(r.get("metric")))):
            continue
        try:
            if math.isfinite(float(r.get("value"))):
                return True
        except (TypeError, ValueError):
            continue
    return False


def _remove_if_empty(out: Path) -> None:
    """Removes the folders a failed run created and left empty (never a file)."""
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        out.rmdir()
    except OSError:
        pass


def data_inputs(ds: Any, specs: Sequence[MethodSpec] = ()) -> list[tuple[str, Any]]:
    """What a run or a production reads and must never write (rule 2): the data root, its
    image folder and pairs file, and the folders of `folder:` methods."""
    inputs: list[tuple[str, Any]] = [("the data root", ds.root), ("the images", ds.image_root)]
    if ds.pairs_file:
        inputs.append(("the pairs file", ds.pairs_file))
    inputs += [(f"the outputs of {s.label!r}", s.folder) for s in specs if s.folder is not None]
    return inputs


def run(cfg: RunConfig) -> Path:
    """Produces each method's outputs, evaluates them with the protocol; returns the folder."""
    from anonbench.data.datasets import open_dataset
    from anonbench.options import parse_options
    from anonbench.produce import check_folder_manifest

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
    from anonbench.executors import create_executor

    # a missing ray extra or a bad executor option is one line before any work
    executor = create_executor(
        cfg.executor, workers=cfg.workers, address=cfg.ray_address, max_retries=cfg.max_retries
    )
    ds = open_dataset(cfg.data, proto.datasets[0], pairs=str(options.get("pairs", "pairs.txt")))
    if ds.kind not in proto.datasets:
        raise AnonbenchError(
            f"protocol {proto.name} runs on {' or '.join(k + ':DIR' for k in proto.datasets)} "
            f"data, not {ds.kind}:"
        )
    out = Path(cfg.out or f"runs/{cfg.protocol}-{ds.label}")
    cache_dir = str(cfg.cache_dir or default_cache_dir())
    # where the run writes, before any work: one line, nothing created
    refuse_overlap([("--out", out), ("--cache-dir", cache_dir)], data_inputs(ds, specs))
    for s in specs:  # rule 1: no link in a folder of outputs leaves it; its manifest valid
        if s.folder is not None:
            check_tree(s.folder, f"the outputs of {s.label!r}")
            check_folder_manifest(s.folder)
    prev, res = _check_out_dir(out)
    check_writable_dir(cache_dir, "--cache-dir")
    if ds.missing_files:
        print(
            f"warning: {len(ds.missing_files)} files listed in {ds.label} are missing "
            "(left out; run.json lists the count)",
            file=sys.stderr,
        )
    # methods are built before any work and before --out exists: a bad checkpoint or an
    # option a method refuses is one line, with nothing left behind
    built = {spec.label: build_method(spec, cfg) for spec in specs}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sigterm_as_interrupt(), executor:  # a Ray instance it started is shut down
            return _run(
                cfg, proto, options, specs, built, ds, out, cache_dir, device, prev, res, executor
            )
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder
            _remove_if_empty(out)
        raise


def _run(
    cfg, proto, options, specs, built, ds, out, cache_dir, device, prev, res, executor
) -> Path:
    import uuid

    import pandas as pd

    from anonbench.evaluate import Originals
    from anonbench.executors import ShardError
    from anonbench.produce import open_folder_store, produce
    from anonbench.results import append_run_info, make_row, merge_and_write

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
        originals=Originals(cache_dir, cfg.workers, cfg.quiet, executor=executor),
        executor=executor,
    )
    info: dict[str, Any] = {
        "run_id": uuid.uuid4().hex,
        "status": "running",
        "anonbench_version": anonbench.__version__,
        "git_sha": git_sha(),
        "versions": versions(),
        "started_at": now(),
        "config": {**cfg.__dict__, "cache_dir": cache_dir, "options": options},
        "dataset": ds.describe(),
        "device": device,
        "executor": executor.describe(),
        "protocol": {
            "name": proto.name,
            "version": proto.version,
            "metrics": [dataclasses.asdict(m) for m in proto.metrics],
        },
        "methods": {},
        "timings_s": {},
    }
    run_json = out / "run.json"
    earlier = _earlier_methods(prev, proto.name)
    all_rows: list[dict[str, Any]] = []
    computed_rows: list[dict[str, Any]] = []
    finished: list[str] = []
    recorded = False  # run.json holds this run's entry
    prepared = False
    doing = "preparing"
    t_run = time.perf_counter()
    try:
        for spec in specs:
            method = built[spec.label]
            name = spec.label
            digest = input_digest(spec, method, ds, proto, cfg, options)
            before = earlier.get(name) or {}
            if (
                not cfg.force
                and before.get("input_digest") == digest
                and _rows_complete(res, name, proto.name, before.get("rows"))
            ):
                print(f"skipped {name} (rows complete, inputs unchanged; --force recomputes)")
                info["methods"][name] = {**before, "skipped": True}
                old = res[(res["method"] == name) & (res["protocol"] == proto.name)].copy()
                for c in ("value", "std", "ci_low", "ci_high", "n"):
                    old[c] = pd.to_numeric(old[c], errors="coerce")
                all_rows.extend(old.to_dict("records"))  # shown in the table, not rewritten
                finished.append(name)
                append_run_info(run_json, info)
                recorded = True
                continue
            if not prepared:
                doing = "preparing"
                t0 = time.perf_counter()
                proto.prepare(ctx)
                info["timings_s"]["prepare"] = round(time.perf_counter() - t0, 2)
                prepared = True
            if method.meta.note:
                print(f"note: {name}: {method.meta.note}", file=sys.stderr)
            doing = f"producing {name}"
            t0 = time.perf_counter()
            records = proto.records(method, ctx)
            targets = proto.targets(method, ctx)
            if spec.folder is not None:
                store = open_folder_store(name, spec.folder, records)
                if store.info["found"] < len(records):
                    bad = store.info.get("undecodable")
                    print(
                        f"warning: {name}: {len(records) - store.info['found']}/{len(records)} "
                        f"outputs missing in the folder{f' ({bad} undecodable)' if bad else ''}"
                        ": scored as originals (leaks), listed as missed",
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
                    executor=executor,
                    device=device,
                    force=cfg.force,
                )
            else:
                store = None
            t_prod = time.perf_counter() - t0
            doing = f"evaluating {name}"
            t1 = time.perf_counter()
            had = _files_under(out)
            rows = proto.evaluate(method, store, ctx)
            _verify_store(name, store, records, out, had, proto.name)
            info["timings_s"][name] = {
                "produce": round(t_prod, 2),
                "evaluate": round(time.perf_counter() - t1, 2),
            }
            stamp = now()
            mrows = [
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
                for r in rows
            ]
            measured = _measured(mrows, proto.metrics)
            info["methods"][name] = {
                "class": f"{type(method).__module__}.{type(method).__qualname__}",
                "config": method.config(),
                "meta": method.meta.__dict__,
                "store": None if store is None else {"root": str(store.root), **store.info},
                # what a rerun compares to skip it; none when it measured nothing (recomputed)
                "input_digest": digest if measured else None,
                "rows": [[_key_str(r[k]) for k in _ROW_KEY] for r in mrows],
            }
            all_rows.extend(mrows)
            computed_rows.extend(mrows)
            # written after every method: an interrupted run keeps what it finished
            doing = f"writing the results of {name}"
            merge_and_write(out / "results.csv", mrows)
            append_run_info(run_json, info)
            recorded = True
            finished.append(name)
        doing = "writing run.json"
        info["timings_s"]["total"] = round(time.perf_counter() - t_run, 2)
        info["executor"] = executor.describe()  # with the cluster's size once it started
        # rule 10: a run that skipped every method keeps its own protocol's latest details,
        # never those of another protocol recorded in the same run.json
        info["protocol"]["details"] = ctx.extra if prepared else _earlier_details(prev, proto)
        info["finished_at"] = now()
        info["status"] = "finished"
        append_run_info(run_json, info)
    except ShardError as e:
        _mark(run_json, info, f"failed: {e}", recorded)
        kept = f" ({', '.join(finished)})" if finished else ""
        raise ShardError(
            f"stopped while {doing}: {e}; results.csv and run.json keep the "
            f"{len(finished)} method(s) finished before it{kept}; a rerun computes only "
            "what is missing"
        ) from None
    except OSError as e:
        _mark(run_json, info, f"failed: {e}", recorded)
        kept = f" ({', '.join(finished)})" if finished else ""
        raise RunWriteError(
            f"stopped while {doing}: {e}; results.csv and run.json keep the "
            f"{len(finished)} method(s) finished before it{kept}"
        ) from None
    except BaseException as e:
        _mark(
            run_json,
            info,
            "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
            recorded,
        )
        raise
    print(format_table(pd.DataFrame(all_rows), proto.metrics))
    if computed_rows and not _measured(computed_rows, proto.metrics) and not cfg.allow_empty:
        counts = ", ".join(
            f"{r['method']} {r['metric']} {_key_str(r['value'])}/{_key_str(r['n'])}"
            for r in computed_rows
            if r["metric"] == "unreadable_images"
        )
        raise AnonbenchError(
            f"nothing measured: no {proto.name} metric could be computed (unreadable images, "
            f"or no face found in any original{'; ' + counts if counts else ''}); the counts "
            "are in results.csv; --allow-empty accepts such a run"
        )
    from anonbench.reports.html import write_run_report

    report = write_run_report(out)
    print(f"results: {out / 'results.csv'}  (run.json, scores/ beside it)")
    if report is not None:
        print(f"report: {report}")
    return out


class StoreChangedError(AnonbenchError):
    """Outputs vanished or changed while a method was scored: its numbers would be partial.
    Exit 1; the method's rows are not written, so a rerun produces and scores it again."""

    exit_code = 1


def _files_under(out: Path) -> set[Path]:
    return {p for p in out.rglob("*") if not p.is_dir()}


def _own_new_files(out: Path, had: set[Path], name: str, protocol: str) -> list[Path]:
    """The files of method `name` that its scoring added: scores/, missed/ and examples/ of
    the protocol, named after the label (a concurrent run's files are not touched)."""
    from anonbench.scores import score_file_name

    names = {name, f"{name}.csv", score_file_name(name)}
    own = []
    for p in _files_under(out) - had:
        parts = p.relative_to(out).parts
        if len(parts) >= 3 and parts[0] in ("scores", "missed", "examples"):
            if parts[1] == protocol and parts[2] in names:
                own.append(p)
    return own


def _verify_store(
    name: str, store: Any, records: Any, out: Path, had: set[Path], protocol: str
) -> None:
    """Rule 6: a method is complete only if every output was scored as it was produced.
    Otherwise the files its scoring added to --out (scores, examples, missed list) go with
    its numbers: nothing partial is left."""
    bad = [] if store is None else store.verify(records)
    if bad:
        for p in _own_new_files(out, had, name, protocol):
            p.unlink(missing_ok=True)
        raise StoreChangedError(
            f"{len(bad)} output(s) of {name} vanished or changed while it was scored (first: "
            f"{bad[0]}); its partial numbers were not recorded; a rerun produces them again"
        )


def _mark(run_json: Path, info: dict[str, Any], status: str, recorded: bool) -> None:
    """Best effort: records how a run that had written its entry ended."""
    if not recorded:
        return
    from anonbench.results import append_run_info

    info["status"] = status
    try:
        append_run_info(run_json, info)
    except (OSError, AnonbenchError):
        pass


def _join_notes(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
