"""Runs methods x one protocol, writes results.csv, run.json and per-item scores.

The steps, in order: `_setup` checks everything that can be wrong before any work (one line
each, nothing created) and builds the run's frozen Resources and its methods; the plan
(anonbench.plan) digests each method's inputs and decides what is skipped; `_run_method`
produces, evaluates and times one method; the ledger (anonbench.ledger) writes run.json and
merges results.csv after every method, and marks how a stopped run ended.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anonbench
from anonbench.api import Resources, RunContext
from anonbench.cache import default_cache_dir
from anonbench.display import format_table
from anonbench.errors import AnonbenchError
from anonbench.ledger import Ledger, earlier_details, key_str
from anonbench.log import get_logger, note, warn
from anonbench.provenance import git_sha, now, versions
from anonbench.registry import DETECTORS, EMBEDDERS, METHODS, PROTOCOLS
from anonbench.safety import (
    check_tree,
    file_head,
    is_html_report,
    refuse_broken_link,
    refuse_overlap,
    sigterm_as_interrupt,
)

if TYPE_CHECKING:
    from anonbench.plan import PlannedMethod

LOG = get_logger("runner")
DEFAULT_EMBEDDER = "dlib-resnet"


@dataclass
class RunConfig:
    """What `anonbench run` was asked, as data; `run` checks it and turns it into Resources."""

    methods: list[str]
    protocol: str
    data: str | None = None  # KIND:PATH or a plain path (the protocol's default kind)
    out: str | None = None
    # the LFW attacker (alias of its option `embedder`); None: the protocol's default
    embedder: str | None = None
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
    # the detector of the originals' analysis (anonbench.faces.analysis); the default keeps
    # every earlier analysis, output store and run digest valid
    analysis_detector: str = "dlib-hog"


@dataclass
class MethodSpec:
    """One --methods item: a registered name, `folder:DIR`, or `LABEL=folder:DIR`."""

    label: str
    name: str | None = None  # registered method name
    folder: str | None = None  # pre-computed outputs


# the strings pandas reads as a missing value by default (pandas._libs.parsers.STR_NA_VALUES):
# a method labelled so would come back from results.csv as NaN
_NA_STRINGS = frozenset(
    "#N/A|#N/A N/A|#NA|-1.#IND|-1.#QNAN|-NaN|-nan|1.#IND|1.#QNAN|<NA>|N/A|NA|NULL|NaN|None|"
    "n/a|nan|null".split("|")
)


def parse_method(item: str) -> MethodSpec:
    spec = _parse_method(item)
    # a label names files (scores/, missed/, examples/): no path separators, no hidden names
    if not spec.label or any(c in spec.label for c in "/\\\0") or spec.label.startswith("."):
        raise AnonbenchError(
            f"--methods {item!r}: the label {spec.label!r} cannot name a file "
            "(no '/', '\\', or leading '.'); give LABEL=folder:DIR"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in spec.label):
        # a carriage return is left unquoted in results.csv and cuts its row in two
        raise AnonbenchError(
            f"--methods {item!r}: the label {spec.label!r} holds a control character "
            "(tab, line break, ...); give another one with LABEL=folder:DIR"
        )
    if spec.label in _NA_STRINGS:
        raise AnonbenchError(
            f"--methods {item!r}: the label {spec.label!r} reads back from results.csv as a "
            "missing value; give another one with LABEL=folder:DIR"
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


def build_method(
    spec: MethodSpec, resources: Resources, checkpoints: dict[str, str] | None = None
) -> Any:
    """The method of one --methods item, named by its label: a folder of outputs, or a
    registered method built with its checkpoint and the run's device (when not the CPU) and
    torch.compile (when asked) if its constructor takes them."""
    from anonbench.plugins import build
    from anonbench.produce import FolderMethod

    if spec.folder is not None:
        m = FolderMethod(spec.folder)
    else:
        assert spec.name is not None
        fixed = {}
        if spec.name in (checkpoints or {}):
            fixed["checkpoint"] = (checkpoints or {})[spec.name]
        # only what differs from a method's own default is offered: a method built for the
        # CPU without torch.compile is built exactly as `METHODS.create(name)` builds it
        offer: dict[str, Any] = {}
        if resources.device != "cpu":
            offer["device"] = resources.device
        if resources.compile:
            offer["compile"] = True
        m = build(METHODS, spec.name, offer, **fixed)
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

    refuse_broken_link(what, path)  # its ancestor walk would pass a dangling link by
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
    if prev and not ({"run_id", "runs", "anonbench_version"} & set(prev)):
        # older run.json files (single-object format) have anonbench_version, newer run_id
        raise AnonbenchError(
            f"{out / 'run.json'}: not an anonbench run.json; move it away or choose another --out"
        )
    _check_report_is_ours(out / "report.html")
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


def _check_report_is_ours(path: Path) -> None:
    """A report.html in --out is rewritten by the run: only one anonbench wrote (its title),
    never a page of the user's."""
    head = file_head(path, str(path))
    if head is not None and not is_html_report(head):
        raise AnonbenchError(
            f"{path}: not an anonbench report, and a run writes report.html there; move it "
            "away or choose another --out"
        )


def _artifacts(out: Path, protocol: str, labels: Sequence[str]) -> list[tuple[Path, bool]]:
    """What a run of `labels` writes in --out besides results.csv, run.json and report.html,
    as (path, whether a folder of files): the paths named after each label (anonbench.scores)
    and the protocol's index of examples."""
    from anonbench.scores import artifact_name, score_file_name

    paths = [(out / "examples" / protocol / "examples.csv", False)]
    for label in labels:
        name, stem = score_file_name(label), artifact_name(label)
        paths += [
            (out / "scores" / protocol / name, False),
            (out / "scores" / protocol / stem, True),  # tables: scores/<protocol>/<stem>/*.csv
            (out / "missed" / protocol / f"{stem}.csv", False),
            (out / "examples" / protocol / stem, True),
            (out / "learned_reversal" / name, False),
        ]
    return paths


def _refuse_foreign_artifacts(out: Path, protocol: str, labels: Sequence[str]) -> None:
    """--out before any work, when it holds no run.json or results.csv of anonbench's: no
    file stands where the run writes its scores, examples or missed lists. anonbench writes
    those only beside its run.json, so these are a user's and are never overwritten. (A
    folder in a file's place fails the run when it is written, as any write error does.)"""
    taken: list[Path] = []
    for p, folder in _artifacts(out, protocol, labels):
        if p.is_symlink() or (not folder and p.is_file()):  # a link: writes would follow it
            taken.append(p)
        elif folder and p.is_dir():
            taken += sorted(_files_under(p))
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise AnonbenchError(
            f"{taken[0]}{more}: not written by anonbench (--out {out} holds no anonbench "
            "run.json), and this run writes there; move it away or choose another --out"
        )


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


def remove_if_empty(out: Path) -> None:
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


@dataclass
class _Setup:
    """What `run` checked and built before any work; the run's steps read it."""

    cfg: RunConfig
    proto: Any  # anonbench.api.Protocol
    options: dict[str, Any]  # parsed, typed protocol options
    embedder: str
    specs: list[MethodSpec]
    ds: Any  # anonbench.data.datasets.Dataset
    out: Path
    resources: Resources
    prev: dict[str, Any]  # the run.json an earlier run left in --out
    res: Any  # its results.csv (strings), None when absent
    analysis: str = ""  # the analysis version (anonbench.produce.analysis_version)
    built: dict[str, Any] = field(default_factory=dict)  # label -> method


def run(cfg: RunConfig) -> Path:
    """Produces each method's outputs, evaluates them with the protocol; returns the folder.

    The steps: checks (everything that can be wrong is one line before any work), the plan
    (anonbench.plan: digests, skip decisions), one method's run (produce, evaluate, timings)
    per planned method, and the ledger (anonbench.ledger: run.json, results.csv)."""
    s = _setup(cfg)
    created = not s.out.exists()
    s.out.mkdir(parents=True, exist_ok=True)
    try:
        with sigterm_as_interrupt(), s.resources.executor:  # a Ray instance it started stops
            return _run(s)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder
            remove_if_empty(s.out)
        raise


def check(cfg: RunConfig) -> None:
    """Every check `run` makes before any work (options, data, methods and their weights,
    where it writes), without running: a run file checks all its protocol runs with it before
    the first starts, so a mistake in the last one is not found hours in."""
    _setup(cfg)


def _check_numbers(cfg: RunConfig) -> None:
    if not cfg.methods:
        raise AnonbenchError("no methods given")
    if cfg.workers < 1:
        raise AnonbenchError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.batch_size < 1:
        raise AnonbenchError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    cores = os.cpu_count() or 1
    if cfg.workers > cores:
        warn(f"--workers {cfg.workers} > {cores} cores: using {cores}", logger=LOG)
        cfg.workers = cores


def _protocol_options(proto: Any, cfg: RunConfig) -> tuple[dict[str, Any], str]:
    """The protocol's typed options and the embedder. --embedder is the alias of the option
    `embedder` where the protocol declares one (LFW), else the run's embedder (ctx.embedder)."""
    from anonbench.options import parse_options

    given = dict(cfg.options)
    declared = {o.name for o in proto.options}
    if "embedder" in declared and cfg.embedder is not None:
        if str(given.get("embedder", cfg.embedder)).strip() != cfg.embedder:
            raise AnonbenchError(
                f"--embedder {cfg.embedder} and --option embedder={given['embedder']} disagree"
            )
        given["embedder"] = cfg.embedder
    options = parse_options(proto.options, given, f"protocol {proto.name}")
    if "embedder" in declared:
        return options, str(options["embedder"])
    return options, cfg.embedder or DEFAULT_EMBEDDER


def _check_methods(cfg: RunConfig) -> list[MethodSpec]:
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
    return specs


def refuse_imageless_folder(label: str, folder: str) -> None:
    """Before any work: a `folder:` method's folder holds at least one image file (one that
    does not decode is found when it is scored: _refuse_unusable_folder)."""
    from anonbench.data.records import IMAGE_EXTENSIONS

    root = Path(folder)
    if not any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in root.rglob("*")):
        raise AnonbenchError(
            f"folder method {label!r}: no image file in {folder}; nothing of it could be scored"
        )


def check_analysis_detector(name: str) -> str:
    """The analysis version of a registered detector (one line when it is unknown, or when its
    weights are missing); built once here, before any work."""
    from anonbench.produce import analysis_version

    DETECTORS.entry(name)
    return analysis_version(name)


def _setup(cfg: RunConfig) -> _Setup:
    """Every check before any work, in the order a user meets them; nothing is created."""
    from anonbench.data.datasets import open_dataset
    from anonbench.executors import create_executor
    from anonbench.produce import check_folder_manifest

    _check_numbers(cfg)
    proto = PROTOCOLS.create(cfg.protocol)
    options, embedder = _protocol_options(proto, cfg)
    cfg.embedder = embedder  # run.json's config records the embedder used
    EMBEDDERS.entry(embedder)  # a typo fails now, not after the first method
    specs = _check_methods(cfg)
    analysis = check_analysis_detector(cfg.analysis_detector)
    cfg.device = resolve_device(cfg.device)
    # a missing ray extra or a bad executor option is one line before any work
    executor = create_executor(
        cfg.executor, workers=cfg.workers, address=cfg.ray_address, max_retries=cfg.max_retries
    )
    # a protocol's `pairs` option (LFW) names the pairs file of its data
    pairs = {"pairs": str(options["pairs"])} if "pairs" in options else {}
    ds = open_dataset(cfg.data, proto.datasets[0], **pairs)
    if ds.kind not in proto.datasets:
        raise AnonbenchError(
            f"protocol {proto.name} runs on {' or '.join(k + ':DIR' for k in proto.datasets)} "
            f"data, not {ds.kind}:"
        )
    if cfg.out is not None and not str(cfg.out).strip():  # not silently the default folder
        raise AnonbenchError("--out: an empty path; give a folder (or leave --out out)")
    out = Path(cfg.out or f"runs/{cfg.protocol}-{ds.label}")
    cache_dir = str(cfg.cache_dir or default_cache_dir())
    # where the run writes, before any work: one line, nothing created
    refuse_overlap([("--out", out), ("--cache-dir", cache_dir)], data_inputs(ds, specs))
    for s in specs:  # rule 1: no link in a folder of outputs leaves it; its manifest valid
        if s.folder is not None:
            check_tree(s.folder, f"the outputs of {s.label!r}")
            check_folder_manifest(s.folder)
            refuse_imageless_folder(s.label, s.folder)
    prev, res = _check_out_dir(out)
    if not prev and res is None:  # not anonbench's run folder: its files are the user's
        _refuse_foreign_artifacts(out, proto.name, [s.label for s in specs])
    check_writable_dir(cache_dir, "--cache-dir")
    if ds.missing_files:
        warn(
            f"{len(ds.missing_files)} files listed in {ds.label} are missing "
            "(left out; run.json lists the count)",
            logger=LOG,
        )
    resources = Resources(
        device=cfg.device,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        cache_dir=cache_dir,
        executor=executor,
        seed=cfg.seed,
        quiet=cfg.quiet,
        compile=cfg.compile,
        logger=LOG,
        analysis_detector=cfg.analysis_detector,
    )
    s = _Setup(cfg, proto, options, embedder, specs, ds, out, resources, prev, res, analysis)
    # methods are built before any work and before --out exists: a bad checkpoint or an
    # option a method refuses is one line, with nothing left behind
    s.built = {spec.label: build_method(spec, resources, cfg.checkpoints) for spec in specs}
    return s


def _run_info(s: _Setup) -> dict[str, Any]:
    """This run's entry in run.json, before any method."""
    import uuid

    r = s.resources
    return {
        "run_id": uuid.uuid4().hex,
        "status": "running",
        "anonbench_version": anonbench.__version__,
        "git_sha": git_sha(),
        "versions": versions(),
        "started_at": now(),
        "config": {**s.cfg.__dict__, "cache_dir": r.cache_dir, "options": s.options},
        "dataset": s.ds.describe(),
        "device": r.device,
        "executor": r.executor.describe(),
        "analysis": {"detector": r.analysis_detector, "version": s.analysis},
        "protocol": {
            "name": s.proto.name,
            "version": s.proto.version,
            "metrics": [dataclasses.asdict(m) for m in s.proto.metrics],
        },
        "methods": {},
        "timings_s": {},
    }


class _TorchThreads(importlib.abc.MetaPathFinder):
    """Sets torch's intra-op threads as soon as torch is first imported (torch_threads)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once: the finders after this one find torch
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run, threads = spec.loader.exec_module, self.threads

        def exec_module(module: Any) -> None:
            run(module)
            module.set_num_threads(threads)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def torch_threads(n: int) -> None:
    """torch's intra-op threads in this process: set now when torch is loaded, else right
    after whatever imports it first, so a run that needs no torch (`original` on LFW: dlib
    only) never pays its import (3 CPU-s, about 6 s wall on a loaded 2-core machine)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchThreads)]
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    else:
        sys.meta_path.insert(0, _TorchThreads(n))


def _run(s: _Setup) -> Path:
    from anonbench.evaluate import Originals
    from anonbench.plan import plan_methods

    r = s.resources
    torch_threads(max(1, r.workers))
    originals = Originals(
        r.cache_dir, r.workers, r.quiet, executor=r.executor, detector=r.analysis_detector
    )
    ctx = RunContext(
        data=s.ds,
        out_dir=str(s.out),
        embedder=s.embedder,
        options=s.options,
        originals=originals,
        resources=r,
    )
    ledger = Ledger(s.out, _run_info(s), s.prev)
    plan = plan_methods(
        s.specs,
        s.built,
        s.ds,
        s.proto,
        _digested_options(s),
        seed=r.seed,
        embedder=s.embedder,
        force=s.cfg.force,
        prev=s.prev,
        res=s.res,
    )
    _execute(plan, s, ctx, ledger)
    return _conclude(s, ledger)


def _digested_options(s: _Setup) -> dict[str, Any]:
    """The options a method's input digest covers (anonbench.plan): the protocol's, plus the
    analysis detector when it is not the default, so a rerun with another detector is never
    skipped while default runs keep their earlier digests."""
    r = s.resources
    if r.analysis_detector == "dlib-hog":
        return s.options
    return {**s.options, "analysis_detector": s.analysis}


@dataclass
class _Doing:
    """What the run is doing, for the one-line message of a run that stops."""

    what: str = "preparing"


def _execute(plan: list[PlannedMethod], s: _Setup, ctx: RunContext, ledger: Ledger) -> None:
    """Runs the plan: the protocol's preparation once (only when a method is computed), then
    each method, the ledger written after each; a stop is recorded and said in one line."""
    from anonbench.executors import ShardError

    doing = _Doing()
    t_run = time.perf_counter()
    prepared = False
    try:
        for item in plan:
            if item.skip:
                print(f"skipped {item.label} (rows complete, inputs unchanged; --force recomputes)")
                ledger.skip(item.label, item.before, s.res, s.proto.name)
                continue
            if not prepared:
                doing.what = "preparing"
                t0 = time.perf_counter()
                s.proto.prepare(ctx)
                ledger.timing("prepare", round(time.perf_counter() - t0, 2))
                prepared = True
            _run_method(item, s, ctx, ledger, doing)
        doing.what = "writing run.json"
        # rule 10: a run that skipped every method keeps its own protocol's latest details,
        # never those of another protocol recorded in the same run.json
        details = ctx.extra if prepared else earlier_details(s.prev, s.proto)
        ledger.finish(time.perf_counter() - t_run, s.resources.executor, details)
    except ShardError as e:
        ledger.mark(f"failed: {e}")
        raise ShardError(
            f"stopped while {doing.what}: {e}; results.csv and run.json keep {ledger.kept()}; "
            "a rerun computes only what is missing"
        ) from None
    except OSError as e:
        ledger.mark(f"failed: {e}")
        raise RunWriteError(
            f"stopped while {doing.what}: {e}; results.csv and run.json keep {ledger.kept()}"
        ) from None
    except BaseException as e:
        ledger.mark("interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        raise


def _run_method(
    item: PlannedMethod, s: _Setup, ctx: RunContext, ledger: Ledger, doing: _Doing
) -> None:
    """One method: produce its outputs, evaluate them, stamp and record its rows."""
    name, method = item.label, item.method
    if method.meta.note:
        note(f"{name}: {method.meta.note}", logger=LOG)
    doing.what = f"producing {name}"
    t0 = time.perf_counter()
    records, store = _produce(item, s, ctx)
    t_prod = time.perf_counter() - t0
    doing.what = f"evaluating {name}"
    t1 = time.perf_counter()
    had = _files_under(s.out)
    try:
        rows = s.proto.evaluate(method, store, ctx)
        _verify_store(name, store, records)
        ledger.timing(
            name, {"produce": round(t_prod, 2), "evaluate": round(time.perf_counter() - t1, 2)}
        )
        mrows = _stamp(rows, name, method, s.proto, s.resources.seed)
        entry = {
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "config": method.config(),
            "meta": method.meta.__dict__,
            "store": None if store is None else {"root": str(store.root), **store.info},
            # what a rerun compares to skip it; none when it measured nothing (recomputed)
            "input_digest": item.digest if _measured(mrows, s.proto.metrics) else None,
        }
        ledger.describe(name, entry, mrows)
        # written after every method: an interrupted run keeps what it finished
        doing.what = f"writing the results of {name}"
        ledger.commit(name, mrows)
    except BaseException:
        # nothing partial stays: the files its scoring added (scores, examples, missed list)
        # go with its numbers, and a first method stopped before run.json was written leaves
        # no files that a rerun would take for a user's (_refuse_foreign_artifacts)
        for p in _own_new_files(s.out, had, name, s.proto.name):
            p.unlink(missing_ok=True)
        raise


def _produce(item: PlannedMethod, s: _Setup, ctx: RunContext) -> tuple[list[Any], Any]:
    """The records the protocol asks for and the method's output store (None: no records)."""
    from anonbench import produce as production  # looked up now: tests replace produce

    name, method, r = item.label, item.method, s.resources
    records = s.proto.records(method, ctx)
    targets = s.proto.targets(method, ctx)
    if item.spec.folder is not None:
        store = production.open_folder_store(name, item.spec.folder, records)
        if records and not store.info["found"]:
            _refuse_unusable_folder(name, item.spec.folder, len(records), store.info)
        if store.info["found"] < len(records):
            bad = store.info.get("undecodable")
            warn(
                f"{name}: {len(records) - store.info['found']}/{len(records)} outputs missing "
                f"in the folder{f' ({bad} undecodable)' if bad else ''}: scored as originals "
                "(leaks), listed as missed",
                logger=LOG,
            )
        return records, store
    if not records:
        return records, None
    analyses = ctx.originals.analyze(records, f"analyse {s.ds.label}")
    store = production.produce(
        method,
        name,
        records,
        analyses,
        cache_dir=r.cache_dir,
        batch_size=r.batch_size,
        targets=targets,
        quiet=r.quiet,
        executor=r.executor,
        device=r.device,
        force=s.cfg.force,
        analysis=ctx.originals.analysis_version(),
    )
    return records, store


def _refuse_unusable_folder(label: str, folder: str, expected: int, info: dict[str, Any]) -> None:
    """A `folder:` method none of whose outputs is usable: scored, it would be the originals
    under its label (every image a leak), a complete-looking set of rows from nothing. Some
    missing outputs are leaks (conservative); all of them is a wrong folder."""
    bad = int(info.get("undecodable") or 0)
    why = ", ".join(
        f"{n} {what}" for n, what in ((expected - bad, "missing"), (bad, "undecodable")) if n
    )
    raise AnonbenchError(
        f"folder method {label!r}: no usable output in {folder} (of the {expected} expected at "
        f"the dataset's relative paths: {why}); nothing of it could be scored"
    )


def _stamp(
    rows: list[dict[str, Any]], name: str, method: Any, proto: Any, seed: int
) -> list[dict[str, Any]]:
    """A method's rows with their provenance (results.csv columns)."""
    from anonbench.results import make_row

    stamp = now()
    return [
        make_row(
            method=name,
            protocol=proto.name,
            protocol_version=proto.version,
            seed=seed,
            checkpoint_sha256=method.meta.checkpoint_sha256,
            anonbench_version=anonbench.__version__,
            git_sha=git_sha(),
            created_at=stamp,
            **{**r, "note": _join_notes(r.get("note"), method.meta.note)},
        )
        for r in rows
    ]


def _conclude(s: _Setup, ledger: Ledger) -> Path:
    """The table on the console; a run that measured nothing is an error (unless
    --allow-empty); the HTML report of the run."""
    import pandas as pd

    proto, out = s.proto, s.out
    print(format_table(pd.DataFrame(ledger.rows), proto.metrics))
    computed = ledger.computed
    if computed and not _measured(computed, proto.metrics) and not s.cfg.allow_empty:
        counts = ", ".join(
            f"{r['method']} {r['metric']} {key_str(r['value'])}/{key_str(r['n'])}"
            for r in computed
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
    """The files of method `name` that its scoring added: those at the paths its run writes
    (_artifacts: scores/, missed/ and examples/ of the protocol named after the label, and the
    protocol's examples.csv when it was new); a concurrent run's files are not touched."""
    own = _artifacts(out, protocol, [name])
    return [
        p
        for p in _files_under(out) - had
        if any(p == a or (folder and a in p.parents) for a, folder in own)
    ]


def _verify_store(name: str, store: Any, records: Any) -> None:
    """Rule 6: a method is complete only if every output was scored as it was produced
    (otherwise its files go with its numbers: _run_method)."""
    bad = [] if store is None else store.verify(records)
    if bad:
        raise StoreChangedError(
            f"{len(bad)} output(s) of {name} vanished or changed while it was scored (first: "
            f"{bad[0]}); its partial numbers were not recorded; a rerun produces them again"
        )


def _join_notes(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
