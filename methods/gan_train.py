"""The GAN training core shared by CIAGAN, pix2pix and CycleGAN.

It owns what every family needs the same way: the loop, the time budget (`--max-minutes`),
checkpoints (atomic, with metadata, read back with `weights_only`), exact resume (weights,
optimizers, the data RNG, torch's RNG), the loss log (losses.csv), sample grids throttled by
`--save-minutes`, the NaN guard, bf16 autocast and the optional CUDA-graph step.

A model family subclasses `GanTrainer` and supplies its networks and optimizers (registered
in `nets` / `optimizers`, in a fixed order), `draw()` (every random draw of a step, on the
CPU), `compute()` (the step's updates on device tensors, returning the losses named in
`computed`), its data loading and its sample grid. The draw/compute split is what lets a CUDA
graph capture a whole step.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from anonbench.errors import AnonbenchError
from anonbench.methods.gan_options import RUNTIME_FIELDS, GanTrainConfig
from anonbench.methods.gan_status import TrainingStatus, apply_priority, stop_on_sigterm


def resolve_device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AnonbenchError(f"--device {name}: CUDA is not available on this machine")
    return dev


def grad_norm(params: Iterable[torch.nn.Parameter], device: torch.device) -> torch.Tensor:
    """L2 norm of the gradients of params (0 when none), without a host sync."""
    sq = [p.grad.float().pow(2).sum() for p in params if p.grad is not None]
    return torch.stack(sq).sum().sqrt() if sq else torch.zeros((), device=device)


def set_grad(net: torch.nn.Module, on: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(on)


class GanTrainer:
    """One family's networks, optimizers and sampling state; `step()` runs one training step.

    Subclasses set, in __init__ after calling this one: `nets` and `optimizers` (name -> object,
    the order fixes the checkpoint and warm-up order), and implement draw, compute,
    steps_per_epoch, sample_grid; optionally derived, extra_state, load_extra_state,
    before_training, before_step, header, postfix."""

    family: ClassVar[str] = ""
    format: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    computed: ClassVar[tuple[str, ...]] = ()  # what compute() returns, in order
    loss_columns: ClassVar[list[str]] = []  # losses.csv columns (step, epoch, ..., seconds)
    graphs_supported: ClassVar[bool] = True

    def __init__(self, cfg: GanTrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.graphs = bool(cfg.cuda_graphs)
        if self.graphs and not self.graphs_supported:
            raise AnonbenchError(f"--cuda-graphs is not supported by {self.family} training")
        if self.graphs and device.type != "cuda":
            raise AnonbenchError("--cuda-graphs needs --device cuda")
        cl = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.memory_format = cl
        self.gen = torch.Generator().manual_seed(cfg.seed)  # every data draw comes from here
        self.step_count = 0
        self.nets: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._graph: Any = None
        self._static: dict[str, torch.Tensor] = {}
        self._static_out = torch.zeros(len(self.computed))
        amp = cfg.amp
        if amp == "auto":
            amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
        self.amp = amp == "bf16"

    def adam(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
        """Adam with the config's betas; capturable (step counts on the device) when steps
        are replayed as CUDA graphs, which requires it."""
        betas = (self.cfg.beta1, self.cfg.beta2)
        return torch.optim.Adam(params, lr=lr, betas=betas, capturable=self.graphs)

    # -- what a family supplies ---------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def draw(self) -> dict[str, torch.Tensor]:
        """Every random draw of one step, made on the CPU from self.gen in a fixed order."""
        raise NotImplementedError

    def compute(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's updates on device draws; the detached losses named in `computed`, as one
        tensor (read once per step, which keeps the GPU queue full)."""
        raise NotImplementedError

    def sample_grid(self, path: Path) -> None:
        raise NotImplementedError

    def derived(self, vals: dict[str, float]) -> dict[str, float]:
        """Loss-log columns computed from `computed` values."""
        return {}

    def before_step(self) -> None:
        """Called before each step's draw (e.g. a learning-rate schedule)."""

    def warm_start(self, src: str) -> None:
        """Loads --init-generator's generator before the first step of a new run (train()
        calls it; a resume continues last.pt instead)."""
        raise AnonbenchError(f"--init-generator is not supported by {self.family} training")

    def before_training(self, out: Path) -> bool:
        """Runs once before the first step of a new run (not on resume); True: a checkpoint
        should be written after it."""
        return False

    def extra_state(self) -> dict[str, Any]:
        """Family fields of the checkpoint, besides weights, optimizers, RNG and step."""
        return {}

    def load_extra_state(self, state: dict[str, Any], source: str) -> None:
        pass

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        """Progress-bar fields of a loss-log row."""
        return {}

    # -- the step -------------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager[Any]:
        if not self.amp:
            return nullcontext()
        # graph capture needs autocast's cast cache off (cached casts would outlive it)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graphs)

    def _state_tensors(self) -> list[torch.Tensor]:
        ts = [t for net in self.nets.values() for t in (*net.parameters(), *net.buffers())]
        for opt in self.optimizers.values():
            for st in opt.state.values():
                ts += [v for v in st.values() if torch.is_tensor(v)]
        return ts

    def warm_up(self, d: dict[str, torch.Tensor], n: int) -> None:
        """Runs compute(d) n times (autotuning, lazy optimizer state), then puts every weight,
        buffer and optimizer state back as it was: warm-up leaves no trace in training.
        Optimizer state that warm-up created is zeroed, which is a fresh optimizer's state."""
        before = {id(t): t.detach().clone() for t in self._state_tensors()}
        for _ in range(n):
            self.compute(d)
        with torch.no_grad():
            for t in self._state_tensors():
                if id(t) in before:
                    t.copy_(before[id(t)])
                else:
                    t.zero_()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _graph_compute(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """compute() through one captured CUDA graph: inputs are copied into static buffers
        and the graph replayed. The first call warms up (cuDNN autotuning, optimizer state)
        on a side stream, restores the state (warm_up), and captures."""
        if self._graph is None:
            self._static = {k: v.to(self.device) for k, v in d.items()}
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.warm_up(self._static, 2)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_out = self.compute(self._static)
            self._graph = graph
        for k, v in d.items():
            self._static[k].copy_(v, non_blocking=True)
        self._graph.replay()
        return self._static_out

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        for net in self.nets.values():
            net.train()
        self.before_step()
        d = self.draw()
        if self.graphs:
            losses = self._graph_compute(d)
        else:
            losses = self.compute({k: v.to(self.device) for k, v in d.items()})
        vals = dict(zip(self.computed, losses.tolist(), strict=True))
        self.step_count += 1
        row = {
            "step": self.step_count,
            "epoch": (self.step_count - 1) // self.steps_per_epoch + 1,
            **vals,
            **self.derived(vals),
            "seconds": time.perf_counter() - t0,
        }
        return {k: row[k] for k in self.loss_columns}

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"data": self.gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": self.format,
            "format_version": self.format_version,
            "config": self.cfg.to_dict(),
            **self.extra_state(),
            "models": {k: net.state_dict() for k, net in self.nets.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "rng": rng,
            "step": self.step_count,
            "epoch": self.step_count // self.steps_per_epoch,  # completed epochs
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        from anonbench.methods.ciagan.checkpoint import CheckpointError, check_fits

        for name, net in self.nets.items():
            if name not in state.get("models", {}):
                raise CheckpointError(f"{source} holds no {name} weights: cannot resume")
            check_fits(net, state["models"][name], f"{source} ({name})")
            net.load_state_dict(state["models"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            # load_state_dict restores the saving run's `capturable` and the device of its step
            # counts; a resume may switch --cuda-graphs or device, so both follow this run
            for group in opt.param_groups:
                group["capturable"] = self.graphs
            for st in opt.state.values():
                if torch.is_tensor(st.get("step")):
                    where = self.device if self.graphs else torch.device("cpu")
                    st["step"] = st["step"].to(where, torch.float32)
        self.gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step_count = int(state["step"])
        self.load_extra_state(state, source)


# -- the loop ---------------------------------------------------------------------------------


@dataclass
class Family:
    """How the core runs one family's training.

    make(cfg, data, device) builds its trainer; load_data(cfg) reads --data; load(path) reads
    its checkpoint (header checked); validate(cfg) refuses bad settings in one line;
    check_resume(saved, data, path, cfg) refuses to resume on other data; legacy: config values a
    checkpoint without those fields was trained with."""

    name: str
    make: Callable[[Any, Any, torch.device], GanTrainer]
    load_data: Callable[[Any], Any]
    load: Callable[[Path], dict[str, Any]]
    save: Callable[[dict[str, Any], Path], None]
    validate: Callable[[Any], None]
    check_resume: Callable[[dict[str, Any], Any, Path, Any], None] = lambda s, d, p, c: None
    legacy: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_init_generator(path: str) -> None:
    """--init-generator names a file, or its NAME.part* pieces ("" = no warm start); checked
    before the data are loaded (minutes for a dataset to preprocess)."""
    from anonbench.methods.ciagan.checkpoint import checkpoint_files

    if path and not checkpoint_files(path):
        raise AnonbenchError(f"--init-generator: no such file: {path}")


def merge_resume(
    saved: dict[str, Any], cli: GanTrainConfig, given: set[str], legacy: dict[str, Any]
) -> GanTrainConfig:
    """The checkpoint's config with the runtime fields from the command line; other flags
    that differ from the checkpoint are reported and ignored (they would break resuming)."""
    cls = type(cli)
    base = cls().to_dict()  # the defaults (default_factory fields included)
    # a checkpoint from before a field existed was trained with its legacy value
    merged = {**base, **legacy, **{k: v for k, v in saved.items() if k in base}}
    ignored = []
    for k, v in cli.to_dict().items():
        if k in RUNTIME_FIELDS:
            merged[k] = v
        elif k in given and merged.get(k) != v:
            ignored.append(f"{k}={v!r} (checkpoint: {merged.get(k)!r})")
    if ignored:
        print("anonbench: resuming keeps the checkpoint's settings; ignored: " + ", ".join(ignored))
    return cls(**merged)


def write_losses(
    path: Path, rows: list[dict[str, float]], columns: list[str], keep_upto: int | None = None
) -> None:
    """Appends rows; with keep_upto, first drops logged steps after it (a resumed run redoes
    them, so the log matches the checkpoint exactly)."""
    if keep_upto is not None and path.is_file():
        with open(path, newline="") as f:
            old = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_upto]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(old)
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, columns)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def train(
    family: Family, cfg: GanTrainConfig, resume: bool = False, given: set[str] | None = None
) -> Path:
    """Runs a family's training to OUT/last.pt (new, or resumed with --resume); returns it."""
    name = family.name
    out = Path(cfg.out)
    last = out / "last.pt"
    saved = None
    if last.exists() and not last.is_file():  # found now, not when the first save fails
        raise AnonbenchError(f"{last} is not a file: move it away, or choose another --out")
    if last.is_file():
        if not resume:
            raise AnonbenchError(f"{last} exists: pass --resume to continue, or another --out")
        saved = family.load(last)
        cfg = merge_resume(saved["config"], cfg, given or set(), family.legacy)
    family.validate(cfg)
    if saved is None:  # a resume continues last.pt: --init-generator was for its start only
        check_init_generator(cfg.init_generator)
    apply_priority(cfg.threads, cfg.nice)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = family.load_data(cfg)
    if saved is not None:
        family.check_resume(saved, data, last, cfg)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, prepared_source=dict(data.source))
    trainer = family.make(cfg, data, device)
    if saved is None and cfg.init_generator:
        try:
            trainer.warm_start(cfg.init_generator)
        except AnonbenchError:
            if created and not any(out.iterdir()):  # a refused start leaves no empty --out
                out.rmdir()
            raise
    columns = trainer.loss_columns
    # before the identity pretraining, so its CPU time counts too
    status = TrainingStatus(out, name, columns, cfg.keep_minutes)
    losses_csv = out / "losses.csv"
    if saved is not None:
        trainer.load_state_dict(saved, str(last))
        write_losses(losses_csv, [], columns, keep_upto=trainer.step_count)
        print(f"{name}: resumed at step {trainer.step_count}")
    else:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        write_losses(losses_csv, [], columns, keep_upto=0)
        if trainer.before_training(out):
            family.save(trainer.state_dict(), last)
    state = "failed"
    try:
        state = _loop(trainer, family, cfg, out, status)
    finally:
        status.write(trainer.step_count, _epoch(trainer), _total(trainer, cfg), state)
    status.maybe_snapshot(last, trainer.step_count, force=True)
    trainer.sample_grid(out / "samples" / "last.png")  # after the save: it cannot cost steps
    return last


def _total(trainer: GanTrainer, cfg: GanTrainConfig) -> int:
    total = cfg.epochs * trainer.steps_per_epoch
    return min(total, cfg.max_steps) if cfg.max_steps else total


def _epoch(trainer: GanTrainer) -> int:
    return trainer.step_count // max(trainer.steps_per_epoch, 1)


def _loop(
    trainer: GanTrainer, family: Family, cfg: GanTrainConfig, out: Path, status: TrainingStatus
) -> str:
    """The steps, with checkpoints at epoch ends (grid too) and at least every --save-minutes;
    returns how it ended: finished, or stopped (--max-minutes, SIGTERM). Always saves last."""
    from tqdm.auto import tqdm

    name, columns, last = family.name, trainer.loss_columns, out / "last.pt"
    losses_csv = out / "losses.csv"
    spe, total = trainer.steps_per_epoch, _total(trainer, cfg)
    pending: list[dict[str, float]] = []
    saved_at = [trainer.step_count if last.is_file() else -1]

    def save(state: str = "running") -> None:
        write_losses(losses_csv, pending, columns)
        pending.clear()
        family.save(trainer.state_dict(), last)
        saved_at[0] = trainer.step_count
        status.write(trainer.step_count, _epoch(trainer), total, state)
        status.maybe_snapshot(last, trainer.step_count)

    bar = tqdm(
        total=total, initial=min(trainer.step_count, total), desc=name, disable=not cfg.progress
    )
    t_start = last_save = last_grid = epoch_t0 = time.monotonic()
    ended = "finished"
    with stop_on_sigterm() as stop:
        while trainer.step_count < total:
            if cfg.max_minutes and time.monotonic() - t_start >= 60 * cfg.max_minutes:
                s = trainer.step_count
                print(f"{name}: --max-minutes {cfg.max_minutes:g} reached at step {s}")
                ended = "stopped"
                break
            if stop[0]:
                print(f"{name}: SIGTERM: stopping at step {trainer.step_count} (checkpoint saved)")
                ended = "stopped"
                break
            row = trainer.step()
            pending.append(row)
            status.add(row)
            bar.update(1)
            bar.set_postfix(ep=row["epoch"], **trainer.postfix(row))
            if not all(math.isfinite(v) for v in row.values()):
                save("failed")
                raise AnonbenchError(f"non-finite loss at step {trainer.step_count}: {row}")
            s = trainer.step_count
            now = time.monotonic()
            since = now - last_save
            if s % spe == 1 or spe == 1:
                epoch_t0 = now - float(row.get("seconds", 0.0))  # this epoch began with this step
            # the grid (and a checkpoint) at an epoch end, at most every --save-minutes
            due = not cfg.save_minutes or now - last_grid >= 60 * cfg.save_minutes
            if s % spe == 0 and due:
                trainer.sample_grid(out / "samples" / f"epoch_{s // spe:04d}.png")
                save()
                last_save = last_grid = time.monotonic()
            elif s == total or (cfg.save_every and s % cfg.save_every == 0):
                save()
            elif cfg.save_minutes and min(since, now - epoch_t0) >= 60 * cfg.save_minutes:
                # only an epoch longer than --save-minutes (pix2pix: one image per step)
                # checkpoints mid-epoch; shorter ones wait for their end, grid included
                save()
                last_save = time.monotonic()
            elif len(pending) >= 50:
                write_losses(losses_csv, pending, columns)
                pending.clear()
    bar.close()
    if pending or saved_at[0] != trainer.step_count:  # also: zero steps left on resume
        save(ended)
    return ended


def load_landmark_data(cfg: GanTrainConfig, name: str) -> Any:
    """The landmark/mask training data of --data (prepared file, or preprocessed now)."""
    from anonbench.methods.landmark_data import (
        load_prepared,
        load_records,
        parse_data_spec,
        prepare,
    )

    kind, path = parse_data_spec(cfg.data)
    if kind == "prepared":
        data = load_prepared(path)
        made = data.source.get("split", "all")
        # a resumed run keeps its split; the file must have been made with it
        if cfg.split not in ("all", made):
            raise AnonbenchError(
                f"--split {cfg.split}: {path} was prepared with split {made!r} (--split "
                "applies when preparing data)"
            )
        print(f"{name}: {len(data)} prepared faces of {data.num_identities} identities from {path}")
        return data
    records = load_records(cfg.data, cfg.split, cfg.split_seed, cfg.test_fraction)
    data = prepare(
        records,
        cache_dir=cfg.cache_dir or None,
        workers=cfg.workers,
        detector=cfg.detector,
        min_images=cfg.min_images,
        progress=cfg.progress,
    )
    print(
        f"{name}: {len(data)} faces of {data.num_identities} identities "
        f"({len(data.skipped)} images without a detected face skipped)"
    )
    return data


def export_data(cfg: GanTrainConfig, dest: str, name: str) -> int:
    """Preprocesses cfg.data and writes it to dest (`--export-data`)."""
    from anonbench.methods.landmark_data import PREP_VERSION, parse_data_spec, save_prepared

    if parse_data_spec(cfg.data)[0] == "prepared":
        raise AnonbenchError("--export-data needs celeba:PATH or folders:PATH data")
    data = load_landmark_data(cfg, name)
    source = {
        k: getattr(cfg, k)
        for k in ("data", "split", "split_seed", "test_fraction", "detector", "min_images")
    }
    save_prepared(data, dest, {**source, "prep_version": PREP_VERSION})
    mb = Path(dest).stat().st_size / 2**20
    print(f"{name}: wrote {len(data)} prepared faces to {dest} ({mb:.1f} MiB)")
    return 0
