"""Regression check of a run's tidy results against a baseline results file (CI gate).

Tolerances are given per metric as the change allowed in the metric's *worse* direction:

- ``recall_at_1=+0.5``: Recall@1 (lower is better) may rise by up to 0.5; any fall passes.
- ``detection_rate=-0.5``: the detection rate (higher is better) may fall by up to 0.5.
- ``fid=2`` (no sign): the sign is taken from the metric's known direction.
- A signed tolerance on a metric with no known direction (a count) sets the worse direction;
  an unsigned one allows that much change either way.
- A sign that contradicts a known direction (``detection_rate=+0.5``) is bad input: it would
  silently allow the opposite change, so it is refused.
- ``metric[evaluator]=tol`` limits a tolerance to one evaluator (e.g. ``recall_at_1[pnca]``).

Directions come from ``run.json`` (``protocol.metrics``) of the run (and of the baseline when it
is a run folder), falling back to :data:`KNOWN_DIRECTIONS`.

Exit codes (through the CLI): 0 every checked value holds, 1 at least one regresses, 2 the files
do not match (a metric or method missing from the run, a different protocol_version, a file that
is not a results table): that case raises :class:`~anonbench.errors.AnonbenchError`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anonbench.errors import AnonbenchError

# Directions of the metrics anonbench's protocols write; run.json, when present, wins.
# True: higher is better; False: lower is better; None: a count/diagnostic with no direction.
KNOWN_DIRECTIONS: dict[str, bool | None] = {
    "tar_far_1e-3": False,
    "accuracy": False,
    "recall_at_1": False,
    "detection_rate": True,
    "fid": False,
    "faces_missed": None,
    "embedder_no_face": None,
    "unreadable_images": None,
}

# The row key a run and its baseline are matched on (results.KEY).
MATCH_KEY = ("method", "protocol", "dataset", "split", "metric", "evaluator")


@dataclass(frozen=True)
class Tolerance:
    """The allowed change of one metric in its worse direction."""

    metric: str
    evaluator: str | None  # None: every evaluator of the metric
    amount: float  # >= 0
    worse: int  # +1: a rise is worse; -1: a fall is worse; 0: both directions count


@dataclass
class CheckRow:
    """One compared value: a baseline row and the run's row with the same key."""

    method: str
    protocol: str
    dataset: str
    split: str
    metric: str
    evaluator: str
    baseline: float
    current: float
    allowed: str  # e.g. "+0.5", "-0.5", "±2"
    ok: bool
    change: float

    @property
    def status(self) -> str:
        return "pass" if self.ok else "REGRESSED"


@dataclass
class CheckResult:
    rows: list[CheckRow]
    unchecked_metrics: list[str]  # baseline metrics with no tolerance given
    extra_methods: list[str]  # methods in the run but not in the baseline

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def metric_directions(*run_dirs: Path) -> dict[str, bool | None]:
    """Metric name -> higher_is_better, from each folder's run.json over KNOWN_DIRECTIONS."""
    out: dict[str, bool | None] = dict(KNOWN_DIRECTIONS)
    for d in run_dirs:
        p = Path(d) / "run.json"
        if not p.is_file():
            continue
        try:
            info = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # a broken run.json only loses the directions it would have given
        for spec in (info.get("protocol") or {}).get("metrics") or []:
            if isinstance(spec, dict) and "name" in spec:
                out[str(spec["name"])] = spec.get("higher_is_better")
    return out


_TOL_RE = re.compile(
    r"^(?P<metric>[^\[\]=\s]+)(?:\[(?P<ev>[^\[\]=]+)\])?=(?P<sign>[+-]?)(?P<num>[0-9.eE+-]+)$"
)


def parse_tolerances(text: str, directions: dict[str, bool | None]) -> list[Tolerance]:
    """Parses ``metric[evaluator]=±amount,...`` (see the module docstring for the sign rule)."""
    out: list[Tolerance] = []
    seen: set[tuple[str, str | None]] = set()
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        m = _TOL_RE.match(item)
        if not m:
            raise AnonbenchError(
                f"--tolerance: cannot parse {item!r} (expected METRIC=+X or METRIC=-X, "
                "e.g. recall_at_1=+0.5)"
            )
        metric, ev, sign = m["metric"], m["ev"], m["sign"]
        try:
            amount = float(m["num"])
        except ValueError:
            raise AnonbenchError(f"--tolerance: {item!r}: {m['num']!r} is not a number") from None
        if not math.isfinite(amount) or amount < 0:
            raise AnonbenchError(f"--tolerance: {item!r}: the amount must be a finite number")
        hib = directions.get(metric)
        known_worse = 0 if hib is None else (-1 if hib else +1)
        given = {"+": +1, "-": -1, "": 0}[sign]
        if known_worse and given and given != known_worse:
            better = "higher" if hib else "lower"
            want = "-" if hib else "+"
            raise AnonbenchError(
                f"--tolerance {item!r}: {metric} is {better}-is-better, so its worse direction "
                f"is {want}; write {metric}={want}{m['num']}"
            )
        if (metric, ev) in seen:
            raise AnonbenchError(f"--tolerance: {metric}{f'[{ev}]' if ev else ''} given twice")
        seen.add((metric, ev))
        out.append(Tolerance(metric, ev, amount, known_worse or given))
    if not out:
        raise AnonbenchError("--tolerance: no tolerances given")
    return out


def _fmt_allowed(t: Tolerance) -> str:
    return {1: "+", -1: "-", 0: "±"}[t.worse] + f"{t.amount:g}"


def _holds(base: float, cur: float, t: Tolerance) -> bool:
    if math.isnan(base):
        return math.isnan(cur)  # nothing to regress from; a value appearing is fine too
    if math.isnan(cur):
        return False  # a metric that could not be computed any more is a regression
    change = cur - base
    # a small slack so that a change exactly at the tolerance passes despite float rounding
    eps = 1e-9 * max(1.0, abs(base), abs(cur))
    if t.worse == 0:
        return abs(change) <= t.amount + eps
    return change * t.worse <= t.amount + eps


def _str(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def compare(
    current: Any,
    baseline: Any,
    tolerances: list[Tolerance],
) -> CheckResult:
    """Compares two tidy result tables (pandas DataFrames with results.COLUMNS)."""
    key_cols = list(MATCH_KEY)
    cur = current.copy()
    base = baseline.copy()
    for df in (cur, base):
        for c in key_cols:
            df[c] = df[c].map(_str)
        df["protocol_version"] = df["protocol_version"].map(_str)

    # a baseline computed under another protocol version measures something else
    cur_versions = cur.groupby("protocol")["protocol_version"].agg(lambda s: sorted(set(s)))
    for proto, bver in base.groupby("protocol")["protocol_version"]:
        if proto in cur_versions.index:
            bv, cv = sorted(set(bver)), cur_versions[proto]
            if bv != cv:
                raise AnonbenchError(
                    f"protocol {proto!r}: baseline is version {', '.join(bv)}, run is version "
                    f"{', '.join(cv)}; results of different protocol versions are not comparable"
                )

    base_metrics = sorted(set(base["metric"]))
    for t in tolerances:
        sel = base[base["metric"] == t.metric]
        if sel.empty:
            close = difflib.get_close_matches(t.metric, base_metrics, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AnonbenchError(
                f"--tolerance names metric {t.metric!r}, which the baseline does not have{hint}; "
                f"baseline metrics: {', '.join(base_metrics)}"
            )
        if t.evaluator is not None and (sel["evaluator"] != t.evaluator).all():
            evs = ", ".join(sorted(set(sel["evaluator"])))
            raise AnonbenchError(
                f"--tolerance names {t.metric}[{t.evaluator}], but the baseline's {t.metric} "
                f"rows have evaluators: {evs}"
            )

    cur_idx = {tuple(r[c] for c in key_cols): r for r in cur.to_dict("records")}
    rows: list[CheckRow] = []
    for r in base.to_dict("records"):
        tol = _pick(tolerances, r["metric"], r["evaluator"])
        if tol is None:
            continue
        k = tuple(r[c] for c in key_cols)
        c = cur_idx.get(k)
        if c is None:
            raise AnonbenchError(_missing_message(r, cur))
        bv, cv = float(r["value"]), float(c["value"])
        rows.append(
            CheckRow(
                method=r["method"],
                protocol=r["protocol"],
                dataset=r["dataset"],
                split=r["split"],
                metric=r["metric"],
                evaluator=r["evaluator"],
                baseline=bv,
                current=cv,
                allowed=_fmt_allowed(tol),
                ok=_holds(bv, cv, tol),
                change=cv - bv,
            )
        )
    checked = {t.metric for t in tolerances}
    return CheckResult(
        rows=rows,
        unchecked_metrics=[m for m in base_metrics if m not in checked],
        extra_methods=sorted(set(cur["method"]) - set(base["method"])),
    )


def _pick(tolerances: list[Tolerance], metric: str, evaluator: str) -> Tolerance | None:
    """The most specific tolerance for a (metric, evaluator), or None."""
    exact = [t for t in tolerances if t.metric == metric and t.evaluator == evaluator]
    if exact:
        return exact[0]
    generic = [t for t in tolerances if t.metric == metric and t.evaluator is None]
    return generic[0] if generic else None


def _missing_message(r: dict[str, Any], cur: Any) -> str:
    """Says which part of a baseline row the run lacks (method, dataset, evaluator, metric)."""
    what = (
        f"method={r['method']} protocol={r['protocol']} dataset={r['dataset']} "
        f"metric={r['metric']} evaluator={r['evaluator']}"
    )
    for col in ("protocol", "method", "dataset", "split", "evaluator", "metric"):
        have = sorted(set(cur[col]))
        if r[col] not in have:
            return f"the run has no row for {what} (run {col}s: {', '.join(have) or 'none'})"
    return f"the run has no row for {what}"


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4g}"


def _fmt_change(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:+.4g}"


def table_rows(res: CheckResult) -> list[list[str]]:
    head = ["status", "method", "protocol", "dataset", "metric", "evaluator"]
    head += ["baseline", "run", "change", "allowed"]
    body = [
        [
            r.status,
            r.method,
            r.protocol,
            r.dataset,
            r.metric,
            r.evaluator,
            _fmt(r.baseline),
            _fmt(r.current),
            _fmt_change(r.change),
            r.allowed,
        ]
        for r in res.rows
    ]
    return [head, *body]


def format_text(res: CheckResult) -> str:
    """A plain aligned table for the terminal, then one summary line."""
    rows = table_rows(res)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(_summary(res))
    return "\n".join(lines)


def _summary(res: CheckResult) -> str:
    bad = sum(not r.ok for r in res.rows)
    head = (
        f"PASS: all {len(res.rows)} checked values within tolerance"
        if res.ok
        else f"FAIL: {bad} of {len(res.rows)} checked values regressed beyond tolerance"
    )
    notes = []
    if res.unchecked_metrics:
        notes.append(f"not checked (no tolerance): {', '.join(res.unchecked_metrics)}")
    if res.extra_methods:
        notes.append(f"methods not in the baseline: {', '.join(res.extra_methods)}")
    return head + ("" if not notes else "; " + "; ".join(notes))


def _md_cell(s: str) -> str:
    # a '|' inside a name would split the markdown cell
    return s.replace("|", "\\|")


def format_markdown(res: CheckResult, run_dir: str, baseline: str) -> str:
    """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY renders it)."""
    icon = "✅" if res.ok else "❌"
    rows = table_rows(res)
    out = [
        f"## {icon} anonbench check: {'pass' if res.ok else 'regression'}",
        "",
        f"Run `{run_dir}` against baseline `{baseline}`.",
        "",
        f"{_summary(res)}",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join(["---"] * 6 + ["---:"] * 3 + ["---"]) + "|",
    ]
    for r in rows[1:]:
        cells = [_md_cell(c) for c in r]
        cells[0] = "✅ pass" if r[0] == "pass" else "❌ **regressed**"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def run_check(run_dir: str | Path, baseline: str | Path, tolerance: str) -> CheckResult:
    """Reads both files, parses the tolerances with the known directions, compares."""
    run_p, base_p = Path(run_dir), Path(baseline)
    cur = _read(run_p, "run")
    base = _read(base_p, "baseline")
    dirs = [p for p in (run_p, base_p) if p.is_dir()]
    directions = metric_directions(*dirs)
    tolerances = parse_tolerances(tolerance, directions)
    return compare(cur, base, tolerances)


def _read(p: Path, what: str) -> Any:
    import pandas as pd

    from anonbench.results import read_results

    try:
        df = read_results(p)
    except (ValueError, UnicodeDecodeError) as e:  # pandas' parser errors are ValueErrors
        raise AnonbenchError(f"{what} {p}: not a results table ({type(e).__name__})") from None
    if df.empty:
        raise AnonbenchError(f"{what} {p}: the results table has no rows")
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = df["value"].notna() & values.isna()
    if bad.any():
        raise AnonbenchError(f"{what} {p}: non-numeric value {df['value'][bad].iloc[0]!r}")
    df = df.assign(value=values)
    return df
