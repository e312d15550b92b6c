"""The ledger of a run: its entry in run.json and its rows in results.csv.

Written after every method (an interrupted run keeps what it finished), and read back by
the next run of the same --out: the latest record of each method (its input digest and row
keys) decides whether it is skipped (anonbench.plan).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anonbench.errors import AnonbenchError

# the columns that identify a row of one method and protocol in results.csv
ROW_KEY = ("dataset", "split", "metric", "evaluator")


def key_str(v: Any) -> str:
    """A row-key value as results.csv holds it (NaN and None: empty; 3.0: "3")."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def earlier_methods(prev: dict[str, Any], protocol: str) -> dict[str, dict[str, Any]]:
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


def earlier_details(prev: dict[str, Any], proto: Any) -> dict[str, Any]:
    """The details of the latest run.json entry of this protocol (name and version)."""
    from anonbench.results import run_entries

    for e in reversed(run_entries(prev)):
        p = e.get("protocol")
        if isinstance(p, dict) and (p.get("name"), p.get("version")) == (proto.name, proto.version):
            details = p.get("details")
            if isinstance(details, dict) and details:
                return details
    return {}


def rows_complete(res: Any, method: str, protocol: str, keys: Any) -> bool:
    """Every row key recorded for the method is in results.csv (`res`, read as strings)."""
    if res is None or not isinstance(keys, list) or not keys:
        return False
    sel = res[(res["method"] == method) & (res["protocol"] == protocol)]
    have = {tuple(r) for r in sel[list(ROW_KEY)].to_numpy()}
    return all(isinstance(k, list) and tuple(k) in have for k in keys)


class Ledger:
    """This run's entry in run.json (`info`) and the rows it adds to results.csv.

    `rows`: every row shown at the end (a skipped method's earlier ones included);
    `computed`: the rows computed now; `finished`: labels of the methods done, in order."""

    def __init__(self, out: Path, info: dict[str, Any], prev: dict[str, Any]) -> None:
        self.out = out
        self.run_json = out / "run.json"
        self.info = info
        self.prev = prev
        self.recorded = False  # run.json holds this run's entry
        self.rows: list[dict[str, Any]] = []
        self.computed: list[dict[str, Any]] = []
        self.finished: list[str] = []

    def write(self) -> None:
        from anonbench.results import append_run_info

        append_run_info(self.run_json, self.info)
        self.recorded = True

    def skip(self, label: str, before: dict[str, Any], res: Any, protocol: str) -> None:
        """A method whose rows are complete and inputs unchanged: its earlier record and rows
        (shown in the table, not rewritten)."""
        import pandas as pd

        self.info["methods"][label] = {**before, "skipped": True}
        old = res[(res["method"] == label) & (res["protocol"] == protocol)].copy()
        for c in ("value", "std", "ci_low", "ci_high", "n"):
            old[c] = pd.to_numeric(old[c], errors="coerce")
        self.rows.extend(old.to_dict("records"))
        self.finished.append(label)
        self.write()

    def describe(self, label: str, entry: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Notes a computed method's record (with the keys of its rows) and its rows."""
        self.info["methods"][label] = {
            **entry,
            "rows": [[key_str(r[k]) for k in ROW_KEY] for r in rows],
        }
        self.rows.extend(rows)
        self.computed.extend(rows)

    def commit(self, label: str, rows: list[dict[str, Any]]) -> None:
        """Merges a method's rows into results.csv and rewrites run.json."""
        from anonbench.results import merge_and_write

        merge_and_write(self.out / "results.csv", rows)
        self.write()
        self.finished.append(label)

    def timing(self, key: str, value: Any) -> None:
        self.info["timings_s"][key] = value

    def finish(self, total_s: float, executor: Any, details: dict[str, Any]) -> None:
        """The last write: the run's total time, the executor (with the cluster's size once
        it started), the protocol's details and status "finished"."""
        from anonbench.provenance import now

        self.timing("total", round(total_s, 2))
        self.info["executor"] = executor.describe()
        self.info["protocol"]["details"] = details
        self.info["finished_at"] = now()
        self.info["status"] = "finished"
        self.write()

    def mark(self, status: str) -> None:
        """Best effort: records how a run that had written its entry ended."""
        if not self.recorded:
            return
        self.info["status"] = status
        try:
            self.write()
        except (OSError, AnonbenchError):
            pass

    def kept(self) -> str:
        """'the N method(s) finished before it (a, b)' for a one-line stop message."""
        names = f" ({', '.join(self.finished)})" if self.finished else ""
        return f"the {len(self.finished)} method(s) finished before it{names}"
