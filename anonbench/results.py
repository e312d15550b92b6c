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
    try:
        df = pd.read_csv(
            p, dtype={"checkpoint_sha256": str, "git_sha": str, "note": str}, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise AnonbenchError(f"{p}: empty file, not an anonbench results file") from None
    except UnicodeDecodeError:
        raise AnonbenchError(f"{p}: not UTF-8 text; not a results file") from None
    except (ValueError, OSError) as e:  # pandas' parser errors are ValueErrors
        why = " ".join(str(e).split())[:160]
        raise AnonbenchError(f"{p}: cannot be read as a results table ({why})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnonbenchError(f"{p}: not an anonbench results file (missing columns {missing})")
    _warn_incomplete_rows(p, df)
    return df[COLUMNS]


# every row anonbench writes fills these; a row without them was cut short (a copy that
# stopped mid-file, a hand edit), and pandas would fill its tail with NaN without a word
ROW_REQUIRED = ("method", "protocol", "metric", "evaluator", "n")


def _warn_incomplete_rows(path: Path, df: Any) -> None:
    from anonbench.log import warn

    with path.open("rb") as f:  # anonbench ends every row with a newline
        f.seek(max(0, path.stat().st_size - 1))
        if f.read(1) not in (b"\n", b""):
            warn(f"{path}: ends mid-line: the file may be truncated (its last row may be cut)")
    bad = df[list(ROW_REQUIRED)].isna().any(axis=1)
    if bad.any():
        rows = [int(i) + 2 for i in df.index[bad][:3]]  # file lines: header is line 1
        more = f" and {int(bad.sum()) - 3} more" if bad.sum() > 3 else ""
        warn(
            f"{path}: line {', '.join(map(str, rows))}{more} incomplete (no "
            f"{'/'.join(ROW_REQUIRED)}): the file may be truncated; those rows are shown as "
            "they are"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the sidecar `<name>.lock` (fcntl.flock: Linux and other POSIX
    systems; elsewhere no lock is taken). The sidecar is left in place: removing it would let
    a waiting process lock a file a newcomer no longer sees. results.csv and run.json of one
    run folder share the lock of results.csv (results.csv.lock)."""
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


# -- run.json: a list of runs --------------------------------------------------------------------


def run_entries(info: Any) -> list[dict[str, Any]]:
    """The runs a run.json records, oldest first. The current format is the latest run's
    fields at the top level (what older readers read) plus ``runs``, the list of every run; an
    older run.json is one run object. The top level comes last, so it wins."""
    if not isinstance(info, dict):
        return []
    runs = info.get("runs")
    top = {k: v for k, v in info.items() if k != "runs"}
    out = [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
    if top:  # the same run as a list entry: the top level (written last, or edited) stands
        rid = top.get("run_id")
        out = [r for r in out if rid is None or r.get("run_id") != rid] + [top]
    return out


def read_run_json(path: str | Path) -> dict[str, Any]:
    """run.json as a dict ({} when absent); AnonbenchError (one line) when it is not JSON."""
    import json

    from anonbench.errors import AnonbenchError

    p = Path(path)
    if not p.is_file():
        return {}
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise AnonbenchError(f"{p}: not UTF-8 text (byte {e.start}); not a run.json") from None
    except (ValueError, RecursionError) as e:
        why = " ".join(str(e).split())[:160]
        raise AnonbenchError(
            f"{p}: not valid JSON ({why}); move it away to start a new one"
        ) from None
    except OSError as e:
        raise AnonbenchError(f"{p}: cannot be read ({e.strerror or e})") from None
    if not isinstance(info, dict):
        raise AnonbenchError(f"{p}: not a run.json (a JSON object is expected)")
    return info


def append_run_info(path: str | Path, info: dict[str, Any]) -> None:
    """Records one run in run.json: appended to its ``runs`` list, replacing the entry with the
    same ``run_id`` (a run updates its entry after every method, so an interrupted run keeps
    what it finished); the list is in the order of the last write. The top level mirrors the
    entry written last, for readers of the single-object format. Read-modify-write under the
    run folder's lock (results.csv.lock), the one merge_and_write holds, so concurrent runs
    lose no entry."""
    import json

    p = Path(path)
    with _locked(p.with_name("results.csv")):
        old = read_run_json(p)
        rid = info.get("run_id")
        # the top level is an entry too (an older run.json); this run's earlier entry goes
        runs = [r for r in run_entries(old) if rid is None or r.get("run_id") != rid]
        runs.append(info)
        atomic_write_text(p, json.dumps({**info, "runs": runs}, indent=2, default=str))
