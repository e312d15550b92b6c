"""What a long background GAN training tells the outside world, and keeps: OUT/status.json
(step, CPU-hours, the loss trend, the last quality scores) and OUT/snapshots/ (a copy of the
checkpoint every --keep-minutes, so a learning curve can be scored afterwards). Free of torch.

CPU-hours add up across resumes: status.json is written at every checkpoint with the process
CPU time spent so far, and a resumed run starts from that number, so the count belongs to
the checkpoint (work after the last checkpoint of a killed run is not counted, as it is lost).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
QUALITY_FILE = "quality.csv"  # rows appended by `anonbench quality --log-to OUT`
SNAPSHOT_DIR = "snapshots"
TREND_WINDOW = 100  # steps per window of the loss trend (last window against the one before)
FLAT = 0.05  # a relative change below this is "flat"


def read_status(out: Path) -> dict[str, Any]:
    """OUT/status.json, or {} when absent or unreadable (a status file is advisory)."""
    try:
        data = json.loads((out / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_quality(out: Path) -> dict[str, str]:
    """The last row of OUT/quality.csv ({} when there is none)."""
    try:
        with open(out / QUALITY_FILE, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error):
        return {}
    return dict(rows[-1]) if rows else {}


def _mean(rows: list[Mapping[str, float]], col: str) -> float:
    vals = [float(r[col]) for r in rows if col in r and math.isfinite(float(r[col]))]
    return sum(vals) / len(vals) if vals else float("nan")


def loss_trend(rows: list[Mapping[str, float]], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Per loss column: the mean of the last TREND_WINDOW steps, of the window before it, and
    a word (falling, rising, flat; None while there is only one window)."""
    last, prev = rows[-TREND_WINDOW:], rows[-2 * TREND_WINDOW : -TREND_WINDOW]
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        a, b = _mean(prev, col), _mean(last, col)
        word = None
        if math.isfinite(a) and math.isfinite(b):
            rel = (b - a) / max(abs(a), 1e-12)
            word = "flat" if abs(rel) < FLAT else ("falling" if rel < 0 else "rising")
        out[col] = {
            "last": round(b, 6) if math.isfinite(b) else None,
            "before": round(a, 6) if math.isfinite(a) else None,
            "trend": word,
        }
    return out


class TrainingStatus:
    """Keeps status.json and the snapshots of one training run (see the module docstring)."""

    def __init__(self, out: Path, family: str, loss_columns: list[str], keep_minutes: float):
        self.out = out
        self.family = family
        self.columns = [c for c in loss_columns if c not in ("step", "epoch", "seconds")]
        self.keep_minutes = keep_minutes
        self.cpu_base = float(read_status(out).get("cpu_seconds") or 0.0)
        self.cpu_t0 = time.process_time()
        self.wall_t0 = time.monotonic()
        self.rows: deque[Mapping[str, float]] = deque(maxlen=2 * TREND_WINDOW)
        self.snapshot_t = time.monotonic()

    def add(self, row: Mapping[str, float]) -> None:
        self.rows.append(row)

    def cpu_seconds(self) -> float:
        return self.cpu_base + time.process_time() - self.cpu_t0

    def write(self, step: int, epoch: int, total: int, state: str, **extra: Any) -> None:
        """status.json, replaced atomically (a reader never sees half a file)."""
        rows = list(self.rows)
        secs = [float(r["seconds"]) for r in rows[-TREND_WINDOW:] if "seconds" in r]
        status = {
            "family": self.family,
            "state": state,  # running, stopped (time budget or signal), finished, failed
            "step": step,
            "epoch": epoch,
            "steps_total": total,
            "cpu_hours": round(self.cpu_seconds() / 3600, 4),
            "cpu_seconds": round(self.cpu_seconds(), 3),  # ms: a short resume must still add
            "wall_hours_this_run": round((time.monotonic() - self.wall_t0) / 3600, 4),
            "seconds_per_step": round(sum(secs) / len(secs), 4) if secs else None,
            "pid": os.getpid(),
            "threads": _torch_threads(),
            "nice": os.nice(0),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "losses": loss_trend(rows, self.columns),
            "quality": last_quality(self.out),
            **extra,
        }
        tmp = self.out / f".{STATUS_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(status, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / STATUS_FILE)

    def maybe_snapshot(self, last: Path, step: int, force: bool = False) -> Path | None:
        """A copy of the checkpoint under snapshots/ every keep_minutes (a hard link where the
        filesystem allows: last.pt is replaced by rename, so the link keeps this version)."""
        if not self.keep_minutes or not last.is_file():
            return None
        if not force and time.monotonic() - self.snapshot_t < 60 * self.keep_minutes:
            return None
        dest = self.out / SNAPSHOT_DIR / f"step_{step:07d}.pt"
        dest.parent.mkdir(exist_ok=True)
        if not dest.exists():
            try:
                os.link(last, dest)
            except OSError:
                shutil.copy2(last, dest)
            # what the snapshot cost, for the learning curve (`anonbench quality` reads it)
            info = {"step": step, "cpu_hours": round(self.cpu_seconds() / 3600, 4)}
            dest.with_suffix(".json").write_text(json.dumps(info) + "\n", encoding="utf-8")
        self.snapshot_t = time.monotonic()
        return dest


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def apply_priority(threads: int, nice: int) -> None:
    """--threads (torch's intra-op threads) and --nice (added to the process's niceness)."""
    if nice:
        os.nice(nice)
    if threads:
        import torch

        torch.set_num_threads(threads)


@contextmanager
def stop_on_sigterm() -> Iterator[list[bool]]:
    """While inside, SIGTERM sets flag[0] instead of killing the process, so the loop can save
    a checkpoint and stop (a `kill` of a background training loses nothing)."""
    flag = [False]
    try:
        old = signal.signal(signal.SIGTERM, lambda *_: flag.__setitem__(0, True))
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, old)
