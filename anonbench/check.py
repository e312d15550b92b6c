"""Regression check of a run's tidy results against a baseline results file (CI gate).

Each metric's direction and default tolerance come from its :class:`~anonbench.api.MetricSpec`:
the ``protocol.metrics`` of the run's ``run.json`` (and of the baseline's, when the baseline is
a run folder), or, for a run.json that is absent or older than a field, the MetricSpecs of the
registered protocol class. Nothing else declares them.

Without ``--tolerance``, every headline metric (one whose MetricSpec declares a default
``tolerance``) is checked with that tolerance in its worse direction. ``--tolerance`` gives
tolerances per metric; a metric named there uses yours, the other headline metrics keep their
default. Tolerances are the change allowed in the metric's *worse* direction:

- ``recall_at_1=+0.5``: Recall@1 (lower is better) may rise by up to 0.5; any fall passes.
- ``detection_rate=-0.5``: the detection rate (higher is better) may fall by up to 0.5.
- ``fid=2`` (no sign): the sign is taken from the metric's direction.
- A signed tolerance on a metric with no direction (a count) sets the worse direction; an
  unsigned one allows that much change either way.
- A sign that contradicts the metric's direction (``detection_rate=+0.5``) is bad input: it
  would silently allow the opposite change, so it is refused.
- ``metric[evaluator]=tol`` limits a tolerance to one evaluator (e.g. ``recall_at_1[pnca]``);
  the metric's other evaluators keep their default.

The summary names the metrics that held, those that regressed, and those not checked with the
reason (``count, no direction``, ``no default tolerance``, ``no MetricSpec``).

Exit codes (through the CLI): 0 every checked value holds, 1 at least one regresses, 2 the files
do not match (a metric or method missing from the run, a different protocol_version, a file that
is not a results table) or there is nothing to check: that case raises
:class:`~anonbench.errors.AnonbenchError`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonbench.api import MetricSpec
from anonbench.errors import AnonbenchError

# The row key a run and its baseline are matched on (results.KEY).
MATCH_KEY = ("method", "protocol", "dataset", "split", "metric", "evaluator")


@dataclass(frozen=True)
class Tolerance:
    """The allowed change of one metric in its worse direction."""

    metric: str
    evaluator: str | None  # None: every evaluator of the metric
    amount: float  # >= 0
    worse: int  # +1: a rise is worse; -1: a fall is worse; 0: both directions count
    source: str = "given"  # "given" (--tolerance) or "default" (the MetricSpec's tolerance)


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
    source: str = "given"  # where the tolerance came from: "given" or "default"

    @property
    def status(self) -> str:
        return "pass" if self.ok else "REGRESSED"

    @property
    def allowed_text(self) -> str:
        return self.allowed + (" (default)" if self.source == "default" else "")


@dataclass
class CheckResult:
    rows: list[CheckRow]
    # baseline metrics (or metric[evaluator]s) left unchecked -> why
    unchecked: dict[str, str] = field(default_factory=dict)
    extra_methods: list[str] = field(default_factory=list)  # in the run, not in the baseline

    @property
    def unchecked_metrics(self) -> list[str]:
        return list(self.unchecked)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def by_metric(self) -> dict[str, list[CheckRow]]:
        out: dict[str, list[CheckRow]] = {}
        for r in self.rows:
            out.setdefault(r.metric, []).append(r)
        return dict(sorted(out.items()))


# protocol -> metric name -> MetricSpec
Specs = Mapping[str, Mapping[str, MetricSpec]]


def _run_info(p: Path) -> dict[str, Any]:
    """The run.json of a run folder (or of the folder holding a results.csv); {} if none."""
    rj = p / "run.json" if p.is_dir() else p.parent / "run.json"
    if not p.is_dir() and p.name != "results.csv":
        return {}  # a loose baseline file: a run.json beside it may belong to something else
    if not rj.is_file():
        return {}
    try:
        info = json.loads(rj.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a broken run.json only loses what it would have said
    return info if isinstance(info, dict) else {}


def metric_specs(metrics: Mapping[str, Any], *paths: Path) -> dict[str, dict[str, MetricSpec]]:
    """protocol -> metric -> MetricSpec for `metrics` (protocol -> metric names): the run.json
    of each path in turn (a later path wins), over the registered protocol's specs where a
    run.json lacks them (see anonbench.display.run_metric_specs)."""
    from anonbench.display import run_metric_specs

    infos = [_run_info(Path(p)) for p in paths]
    return {proto: run_metric_specs(proto, infos, names) for proto, names in metrics.items()}


def directions_of(specs: Specs) -> dict[str, bool | None]:
    """metric -> higher_is_better over every protocol (None where protocols disagree)."""
    out: dict[str, bool | None] = {}
    for per in specs.values():
        for name, spec in per.items():
            if name in out and out[name] != spec.higher_is_better:
                out[name] = None
            else:
                out[name] = spec.higher_is_better
    return out


def _worse(hib: bool | None) -> int:
    return 0 if hib is None else (-1 if hib else +1)


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
        known_worse = _worse(hib)
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
    specs: Specs | None = None,
) -> CheckResult:
    """Compares two tidy result tables (pandas DataFrames with results.COLUMNS).

    `tolerances` are the given ones; `specs` (protocol -> metric -> MetricSpec) supply the
    default tolerance of every metric the given ones do not cover."""
    specs = specs or {}
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
    skipped: dict[tuple[str, str], str] = {}  # (metric, evaluator) -> why not checked
    for r in base.to_dict("records"):
        spec = specs.get(r["protocol"], {}).get(r["metric"])
        tol = _pick(tolerances, r["metric"], r["evaluator"]) or _default(spec)
        if tol is None:
            skipped.setdefault((r["metric"], r["evaluator"]), _why_unchecked(spec))
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
                source=tol.source,
            )
        )
    if not rows:
        why = "; ".join(f"{m} ({w})" for m, w in _collapse(skipped, set()).items())
        raise AnonbenchError(
            "nothing to check: no metric of the baseline has a default tolerance"
            + (f" ({why})" if why else "")
            + "; give --tolerance METRIC=+X or METRIC=-X"
        )
    checked = {r.metric for r in rows}
    return CheckResult(
        rows=rows,
        unchecked=_collapse(skipped, checked),
        extra_methods=sorted(set(cur["method"]) - set(base["method"])),
    )


def _default(spec: MetricSpec | None) -> Tolerance | None:
    """The MetricSpec's default tolerance, in its worse direction (both ways for a count)."""
    if spec is None or spec.tolerance is None:
        return None
    amount = float(spec.tolerance)
    if not math.isfinite(amount) or amount < 0:
        raise AnonbenchError(
            f"metric {spec.name}: its MetricSpec tolerance {spec.tolerance!r} is not a "
            "finite number >= 0"
        )
    return Tolerance(spec.name, None, amount, _worse(spec.higher_is_better), "default")


def _why_unchecked(spec: MetricSpec | None) -> str:
    if spec is None:
        return "no MetricSpec: its protocol is not installed and run.json does not declare it"
    if spec.higher_is_better is None:
        return "count, no direction" if spec.unit == "count" else "no direction"
    return "no default tolerance"


def _collapse(skipped: dict[tuple[str, str], str], checked: set[str]) -> dict[str, str]:
    """metric -> why, or metric[evaluator] -> why where other evaluators of it were checked."""
    out: dict[str, str] = {}
    for (metric, ev), why in sorted(skipped.items()):
        if metric in checked:
            out[f"{metric}[{ev}]" if ev else metric] = why
        else:
            out.setdefault(metric, why)
    return out


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
            r.allowed_text,
        ]
        for r in res.rows
    ]
    return [head, *body]


def format_text(res: CheckResult) -> str:
    """A plain aligned table for the terminal, then the summary lines."""
    rows = table_rows(res)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(summary_lines(res))
    return "\n".join(lines)


def summary_lines(res: CheckResult) -> list[str]:
    """The verdict, then which metrics held, regressed, were not checked (and why)."""
    bad = sum(not r.ok for r in res.rows)
    out = [
        f"PASS: all {len(res.rows)} checked values within tolerance"
        if res.ok
        else f"FAIL: {bad} of {len(res.rows)} checked values regressed beyond tolerance"
    ]
    held, regressed = [], []
    for metric, rows in res.by_metric().items():
        allowed = ", ".join(dict.fromkeys(f"{r.source} {r.allowed}" for r in rows))
        n_bad = sum(not r.ok for r in rows)
        if n_bad:
            regressed.append(f"{metric} ({n_bad} of {len(rows)} values beyond {allowed})")
        else:
            held.append(f"{metric} ({allowed})")
    if regressed:
        out.append(f"regressed: {', '.join(regressed)}")
    if held:
        out.append(f"held: {', '.join(held)}")
    if res.unchecked:
        out.append("not checked: " + ", ".join(f"{m} ({why})" for m, why in res.unchecked.items()))
    if res.extra_methods:
        out.append(f"methods not in the baseline: {', '.join(res.extra_methods)}")
    return out


def _md_cell(s: str) -> str:
    # a '|' inside a name would split the markdown cell
    return s.replace("|", "\\|")


def format_markdown(res: CheckResult, run_dir: str, baseline: str) -> str:
    """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY renders it)."""
    icon = "✅" if res.ok else "❌"
    rows = table_rows(res)
    summary = summary_lines(res)
    out = [
        f"## {icon} anonbench check: {'pass' if res.ok else 'regression'}",
        "",
        f"Run `{run_dir}` against baseline `{baseline}`.",
        "",
        summary[0],
        "",
        *[f"- {_md_cell(line)}" for line in summary[1:]],
        *([""] if summary[1:] else []),
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join(["---"] * 6 + ["---:"] * 3 + ["---"]) + "|",
    ]
    for r in rows[1:]:
        cells = [_md_cell(c) for c in r]
        cells[0] = "✅ pass" if r[0] == "pass" else "❌ **regressed**"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def run_check(
    run_dir: str | Path, baseline: str | Path, tolerance: str | None = None
) -> CheckResult:
    """Reads both files and their metric specs, parses the given tolerances (if any) with the
    metrics' directions, and compares; headline metrics not named keep their default."""
    run_p, base_p = Path(run_dir), Path(baseline)
    cur = _read(run_p, "run")
    base = _read(base_p, "baseline")
    names: dict[str, set[str]] = {}
    for df in (base, cur):
        for proto, metric in zip(df["protocol"], df["metric"], strict=True):
            names.setdefault(_str(proto), set()).add(_str(metric))
    # the run's run.json wins over the baseline's: a newer anonbench may declare more
    specs = metric_specs(names, base_p, run_p)
    given = [] if tolerance is None else parse_tolerances(tolerance, directions_of(specs))
    return compare(cur, base, given, specs)


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
