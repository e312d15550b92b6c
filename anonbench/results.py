"""The tidy result table: one row per method x protocol x metric (x evaluator), with provenance.

Stored long (results.csv); pivoted wide only for display. Reruns into the same folder replace
rows with the same key and keep the others, so methods can be added one run at a time.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anonbench.cache import atomic_write_text

COLUMNS = [
    "method",
    "protocol",
    "protocol_version",
    "dataset",
    "split",
    "metric",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "n",
    "evaluator",
    "seed",
    "checkpoint_sha256",
    "anonbench_version",
    "git_sha",
    "created_at",
    "note",
]
KEY = ["method", "protocol", "dataset", "split", "metric", "evaluator"]


def make_row(**kw: Any) -> dict[str, Any]:
    unknown = set(kw) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns: {sorted(unknown)}")
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(kw)
    return row


def read_results(path: str | Path):
    import pandas as pd

    from anonbench.errors import AnonbenchError

    p = Path(path)
    if p.is_dir():
        p = p / "results.csv"
    if not p.is_file():
        raise AnonbenchError(f"no results file at {p}")
    df = pd.read_csv(p, dtype={"checkpoint_sha256": str, "git_sha": str, "note": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnonbenchError(f"{p}: not an anonbench results file (missing columns {missing})")
    return df[COLUMNS]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the sidecar `<name>.lock` (fcntl.flock: Linux and other POSIX
    systems; elsewhere no lock is taken). The sidecar is left in place: removing it would let
    a waiting process lock a file a newcomer no longer sees."""
    try:
        import fcntl
    except ImportError:  # Windows: merges from concurrent processes are not serialised
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def merge_and_write(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Writes rows to results.csv atomically, replacing earlier rows with the same key. The
    read-merge-write holds an exclusive lock on results.csv.lock, so processes merging into
    the same file at once lose no rows (POSIX only)."""
    import pandas as pd

    new = pd.DataFrame(rows, columns=COLUMNS)
    p = Path(path)
    with _locked(p):
        if p.is_file():
            old = read_results(p)
            keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
            keep = [tuple(r) not in keys for r in old[KEY].astype(str).to_numpy()]
            new = pd.concat([old[keep], new], ignore_index=True) if any(keep) else new
        buf = io.StringIO()
        new.to_csv(buf, index=False)
        atomic_write_text(p, buf.getvalue())
