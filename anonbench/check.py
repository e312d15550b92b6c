"""Regression check of a run's tidy results against a baseline results file (CI gate).

Each metric's direction and default tolerance come from its :class:`~anonbench.api.MetricSpec`
in the installed protocol (the registered protocol class): the files under check never set
their own gate, so a run.json that flips a direction or widens a tolerance changes nothing. Only
for a protocol that is not installed here, or a metric it does not declare, the copy in
``run.json`` (``protocol.metrics``; the run's over the baseline's) is used, with a warning
(:func:`trusted_specs`, which the reports use too). Nothing else declares them.

Non-finite values (:func:`holds`): a run value of +-inf never holds unless the baseline is the
same infinity; a NaN run value never holds against a finite baseline. A baseline value that is
not finite (NaN, blank, +-inf alike) has nothing to regress from: the run holds with NaN or any
finite value (a value appearing is fine), not with a new infinity, so such a baseline never
causes a regression by itself. Its row was not *compared* (:attr:`CheckRow.compared`): it can
fail (the run's own infinity) but never counts towards a PASS, and when no baseline value at
all could be compared the check is an error (exit 2), never "all within tolerance".

The files must be valid tables (:func:`run_check`): one row per key (:data:`MATCH_KEY`; rows
equal in every checked column are kept once, a key with two different values is an error), and
every finite value of the run within its unit's range (percent 0-100, fraction 0-1, count
>= 0; the metric's MetricSpec ``unit``, see :data:`UNIT_RANGES`), else exit 2 naming the file
and row.

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

Noise-aware tolerances: ``recall_at_1=+2ci`` allows 2 x the BASELINE row's interval: its CI
half-width ``(ci_high - ci_low) / 2``, or, for a row with a ``std`` and no CI (LFW's fold std),
that std. Never the run's own interval: a broken, noisy run must not loosen its own gate. The
floor is the metric's MetricSpec default tolerance (0 for a metric without one): the allowed
change is ``max(K x interval, floor)``, so a row with no interval or a zero one (one fold, a
rate of exactly 0 or 100) falls back to the default. An interval wider than its unit's span (a
fraction's std above 1, a percent's above 100) is impossible and would allow any change: such a
baseline row is an error (exit 2) where a ``ci`` tolerance would scale it.

``--as RUN_METHOD=BASELINE_METHOD`` (:func:`parse_method_map`) checks a run's method against
the baseline rows of another method (e.g. ``mask=blur17``).

Preset ``ci`` (:data:`PRESETS`): every headline metric is checked with ``+1ci`` (so the
default is the floor), every method compared must have at least one privacy and one utility
metric checked (see :func:`role`), and every method of the run must have baseline rows (by
name or through ``--as``); otherwise exit 2.

The summary names the metrics that held, those that regressed, and those not checked with the
reason (``count, no direction``, ``no default tolerance``, ``no MetricSpec``).

Exit codes (through the CLI): 0 every checked value holds, 1 at least one regresses, 2 the files
do not match (a metric or method missing from the run, a different protocol_version, a file that
is not a results table) or there is nothing to check: that case raises
:class:`~anonbench.errors.AnonbenchError`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
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
    source: str = "given"  # "given" (--tolerance), "default" (MetricSpec) or a preset's name
    # "": `amount` is the allowed change itself; "ci": `amount` multiplies the baseline row's
    # interval (CI half-width, else its std), floored at the MetricSpec default tolerance
    per: str = ""

    @property
    def rule(self) -> str:
        """How the allowed change is set, e.g. "default +0.01", "preset -1ci"."""
        text = {1: "+", -1: "-", 0: "±"}[self.worse] + f"{self.amount:g}" + self.per
        return f"{self.source} {text}"


@dataclass(frozen=True)
class Preset:
    """A named set of check rules (``--preset``)."""

    name: str
    ci_multiple: float  # headline metrics: this multiple of the baseline's interval
    require_roles: tuple[str, ...]  # each compared method needs a checked metric of each role
    require_baseline_for_every_method: bool
    description: str


PRESETS = {
    "ci": Preset(
        "ci",
        ci_multiple=1.0,
        require_roles=("privacy", "utility"),
        require_baseline_for_every_method=True,
        description=(
            "privacy and utility held together: each headline metric may worsen by at most "
            "1x the baseline row's interval (CI half-width, or fold std), and never less than "
            "its MetricSpec default; every method needs a checked privacy and utility metric"
        ),
    )
}


def role(spec: MetricSpec | None) -> str | None:
    """The role a checked metric plays: the spec's declared one (the metric catalog's:
    privacy, utility, realism; None for a count). A spec without one (a plug-in's) gets it
    from direction and unit: "utility" (higher is better, or a lower-is-better plain number),
    "privacy" (a lower-is-better rate, percent or fraction: an attacker's success), None (a
    count or diagnostic with no direction)."""
    if spec is not None and spec.role is not None:
        return None if spec.role == "count" else spec.role
    if spec is None or spec.higher_is_better is None:
        return None
    if spec.higher_is_better:
        return "utility"
    return "privacy" if spec.unit in ("percent", "fraction") else "utility"


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
    source: str = "given"  # where the tolerance came from: "given", "default" or a preset
    rule: str = ""  # the tolerance as written, e.g. "default +0.01", "preset -1ci"
    note: str = ""  # for an interval multiple: "1ci=0.0375" or "floor" (the default won)
    baseline_method: str = ""  # the baseline's method compared (another name through --as)
    role: str | None = None
    # False: the baseline value is NaN, blank or +-inf, so no tolerance was applied; such a
    # row can fail (a new infinity) but never counts as a value that held
    compared: bool = True

    @property
    def status(self) -> str:
        if not self.ok:
            return "REGRESSED"
        return "pass" if self.compared else "not compared"

    @property
    def allowed_text(self) -> str:
        if self.note:
            return f"{self.allowed} ({self.note})"
        return self.allowed + (" (default)" if self.source == "default" else "")

    @property
    def method_text(self) -> str:
        bm = self.baseline_method
        return self.method if not bm or bm == self.method else f"{self.method} (as {bm})"


@dataclass
class CheckResult:
    rows: list[CheckRow]
    # baseline metrics (or metric[evaluator]s) left unchecked -> why
    unchecked: dict[str, str] = field(default_factory=dict)
    extra_methods: list[str] = field(default_factory=list)  # in the run, not in the baseline
    preset: Preset | None = None
    method_map: dict[str, str] = field(default_factory=dict)  # run method -> baseline method
    warnings: list[str] = field(default_factory=list)  # e.g. a MetricSpec taken from run.json

    @property
    def unchecked_metrics(self) -> list[str]:
        return list(self.unchecked)

    @property
    def compared(self) -> list[CheckRow]:
        """The rows whose baseline value is finite: the only ones a PASS can rest on."""
        return [r for r in self.rows if r.compared]

    @property
    def ok(self) -> bool:
        # nothing compared is not a pass: a baseline of NaNs would otherwise gate nothing
        return all(r.ok for r in self.rows) and bool(self.compared)

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


def _run_info(p: Path, warnings: list[str] | None = None) -> dict[str, Any]:
    """The run.json of a run folder (or of the folder holding a results.csv); {} if none. A
    run.json that cannot be read only loses what it would have said: one line in `warnings`."""
    from anonbench.results import read_run_json

    if not p.is_dir() and p.name != "results.csv":
        return {}  # a loose baseline file: a run.json beside it may belong to something else
    try:
        return read_run_json(p / "run.json" if p.is_dir() else p.parent / "run.json")
    except AnonbenchError as e:
        if warnings is not None:
            warnings.append(f"{e} (ignored)")
        return {}


def metric_specs(
    metrics: Mapping[str, Any], *paths: Path, warnings: list[str] | None = None
) -> dict[str, dict[str, MetricSpec]]:
    """protocol -> metric -> MetricSpec for `metrics` (protocol -> metric names), from the
    run.json of each path in turn (a later path wins) where :func:`trusted_specs` allows."""
    infos = [_run_info(Path(p), warnings) for p in paths]
    return {p: trusted_specs(p, names, infos, warnings) for p, names in metrics.items()}


def trusted_specs(
    protocol: str,
    names: Iterable[str],
    infos: Sequence[Mapping[str, Any]] = (),
    warnings: list[str] | None = None,
) -> dict[str, MetricSpec]:
    """name -> MetricSpec of one protocol, as `check` and the reports read them. What decides
    a verdict (direction, default tolerance, unit, role) is the installed protocol's, never a
    file's; only the display (label, decimals, description) may come from run.json, as the run
    recorded it. For a protocol not installed here, or a metric it does not declare, the whole
    copy in the run.json dicts `infos` (a later one wins), said in one line in `warnings`."""
    import dataclasses

    from anonbench.display import registered_metrics, run_metric_specs

    installed = registered_metrics(protocol)
    wanted = sorted({str(n) for n in names})
    found = run_metric_specs(protocol, infos, wanted)
    out: dict[str, MetricSpec] = {}
    for name, spec in found.items():
        inst = installed.get(name)
        if inst is None:
            out[name] = spec
        else:
            out[name] = dataclasses.replace(
                spec,
                higher_is_better=inst.higher_is_better,
                tolerance=inst.tolerance,
                unit=inst.unit,
                role=inst.role,
            )
    copied = sorted(n for n in wanted if n in out and n not in installed)
    if copied and warnings is not None:
        where = "is not installed here" if not installed else "does not declare them"
        warnings.append(
            f"protocol {protocol!r} {where}: the direction and tolerance of "
            f"{', '.join(copied)} come from run.json"
        )
    return out


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
    r"^(?P<metric>[^\[\]=\s]+)(?:\[(?P<ev>[^\[\]=]+)\])?=(?P<sign>[+-]?)(?P<num>[0-9.eE+-]+)"
    r"(?P<per>ci)?$"
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
                f"--tolerance: cannot parse {item!r} (expected METRIC=+X, METRIC=-X or "
                "METRIC=+Kci, e.g. recall_at_1=+0.5 or recall_at_1=+2ci)"
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
                f"is {want}; write {metric}={want}{m['num']}{m['per'] or ''}"
            )
        if (metric, ev) in seen:
            raise AnonbenchError(f"--tolerance: {metric}{f'[{ev}]' if ev else ''} given twice")
        seen.add((metric, ev))
        out.append(Tolerance(metric, ev, amount, known_worse or given, per=m["per"] or ""))
    if not out:
        raise AnonbenchError("--tolerance: no tolerances given")
    return out


def parse_method_map(items: list[str] | str | None) -> dict[str, str]:
    """``RUN=BASELINE[,RUN=BASELINE...]`` (``--as``, repeatable) -> run method -> baseline
    method."""
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in (t.strip() for chunk in items or [] for t in chunk.split(",")):
        if not item:
            continue
        run_m, sep, base_m = (x.strip() for x in item.partition("="))
        if not sep or not run_m or not base_m:
            raise AnonbenchError(
                f"--as: cannot parse {item!r} (expected RUN_METHOD=BASELINE_METHOD, e.g. "
                "mask=blur17)"
            )
        if run_m in out:
            raise AnonbenchError(f"--as: run method {run_m!r} mapped twice")
        out[run_m] = base_m
    return out


def _fmt_amount(worse: int, amount: float) -> str:
    return {1: "+", -1: "-", 0: "±"}[worse] + f"{amount:.4g}"


def _fmt_allowed(t: Tolerance) -> str:
    return {1: "+", -1: "-", 0: "±"}[t.worse] + f"{t.amount:g}"


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def baseline_interval(row: Mapping[str, Any]) -> float | None:
    """A baseline row's interval: CI half-width (ci_high - ci_low) / 2, else its std (the fold
    std of LFW's TAR and accuracy), else None."""
    lo, hi = _finite(row.get("ci_low")), _finite(row.get("ci_high"))
    if lo is not None and hi is not None:
        return max(0.0, (hi - lo) / 2)
    std = _finite(row.get("std"))
    return None if std is None else max(0.0, std)


def _resolve(t: Tolerance, row: Mapping[str, Any], spec: MetricSpec | None) -> tuple[float, str]:
    """(allowed change, note) of tolerance `t` on one baseline row. A "ci" tolerance is
    max(K x the baseline row's interval, the MetricSpec default tolerance or 0)."""
    if t.per != "ci":
        return t.amount, ""
    floor = float(spec.tolerance) if spec is not None and spec.tolerance is not None else 0.0
    iv = baseline_interval(row)
    scaled = None if iv is None else t.amount * iv
    if scaled is None or scaled < floor:
        why = "no interval" if iv is None else f"{t.amount:g}ci={scaled:.3g}"
        return floor, f"floor, {why}"
    return scaled, f"{t.amount:g}ci"


def holds(base: float, cur: float, worse: int, amount: float) -> bool:
    """Whether the run value `cur` holds against `base` with `amount` allowed in the `worse`
    direction (+1 a rise, -1 a fall, 0 either). The one place non-finite values are judged
    (see the module docstring): a run's +-inf only against the same infinity, its NaN only
    against a non-finite baseline; a NaN or +-inf baseline holds with NaN or any finite value."""
    if not math.isfinite(base):
        # nothing to regress from (NaN and +-inf alike: "not compared"); a value appearing is
        # fine, a new infinity in the run is the run's own failure
        return not math.isinf(cur) or cur == base
    if not math.isfinite(cur):
        return False  # NaN or an infinity where the baseline had a number
    change = cur - base
    # a small slack so that a change exactly at the tolerance passes despite float rounding
    eps = 1e-9 * max(1.0, abs(base), abs(cur))
    if worse == 0:
        return abs(change) <= amount + eps
    return change * worse <= amount + eps


def _str(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _map_baseline(base: Any, cur: Any, method_map: Mapping[str, str]) -> Any:
    """The baseline with each mapped baseline method's rows copied under the run method's name
    (column ``baseline_method`` keeps the original); the others stay under their own name."""
    import pandas as pd

    base = base.assign(baseline_method=base["method"])
    if not method_map:
        return base
    run_methods, base_methods = sorted(set(cur["method"])), sorted(set(base["method"]))
    for run_m, base_m in method_map.items():
        if run_m not in run_methods:
            raise AnonbenchError(
                f"--as {run_m}={base_m}: the run has no method {run_m!r} "
                f"(run methods: {', '.join(run_methods)})"
            )
        if base_m not in base_methods:
            close = difflib.get_close_matches(base_m, base_methods, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AnonbenchError(
                f"--as {run_m}={base_m}: the baseline has no method {base_m!r}{hint} "
                f"(baseline methods: {', '.join(base_methods)})"
            )
        if run_m != base_m and run_m in base_methods:
            raise AnonbenchError(
                f"--as {run_m}={base_m}: the baseline has rows of {run_m!r} itself, so {run_m} "
                "would be compared twice; use a baseline without them"
            )
    targets = set(method_map.values())
    parts = [base[~base["method"].isin(targets)]]
    for base_m in sorted(targets):
        rows = base[base["method"] == base_m]
        names = [r for r, b in method_map.items() if b == base_m]
        # a mapped-to method is still compared under its own name where the run has it
        if base_m in run_methods and base_m not in names:
            names.append(base_m)
        parts += [rows.assign(method=name) for name in names]
    return pd.concat(parts, ignore_index=True)


def compare(
    current: Any,
    baseline: Any,
    tolerances: list[Tolerance],
    specs: Specs | None = None,
    *,
    preset: Preset | None = None,
    method_map: Mapping[str, str] | None = None,
) -> CheckResult:
    """Compares two tidy result tables (pandas DataFrames with results.COLUMNS).

    `tolerances` are the given ones; `specs` (protocol -> metric -> MetricSpec) supply the
    default tolerance of every metric the given ones do not cover (under `preset`, its
    interval multiple instead). `method_map` (run method -> baseline method) compares a run's
    method to the baseline rows of another."""
    specs = specs or {}
    method_map = dict(method_map or {})
    key_cols = list(MATCH_KEY)
    cur = current.copy()
    base = baseline.copy()
    for df in (cur, base):
        for c in key_cols:
            df[c] = df[c].map(_str)
        df["protocol_version"] = df["protocol_version"].map(_str)

    _same_versions(cur, base)
    _tolerances_apply(tolerances, base)
    base = _map_baseline(base, cur, method_map)
    extra = sorted(set(cur["method"]) - set(base["method"]))
    if preset is not None and preset.require_baseline_for_every_method and extra:
        raise AnonbenchError(
            f"--preset {preset.name}: the run's method(s) {', '.join(extra)} have no baseline "
            f"rows (baseline methods: {', '.join(sorted(set(base['baseline_method'])))}); add "
            "them to the baseline or map them with --as RUN_METHOD=BASELINE_METHOD"
        )

    cur_idx = {tuple(r[c] for c in key_cols): r for r in cur.to_dict("records")}
    rows: list[CheckRow] = []
    skipped: dict[tuple[str, str], str] = {}  # (metric, evaluator) -> why not checked
    for r in base.to_dict("records"):
        spec = specs.get(r["protocol"], {}).get(r["metric"])
        tol = _pick(tolerances, r["metric"], r["evaluator"]) or _default(spec, preset)
        if tol is None:
            skipped.setdefault((r["metric"], r["evaluator"]), _why_unchecked(spec))
            continue
        k = tuple(r[c] for c in key_cols)
        c = cur_idx.get(k)
        if c is None:
            raise AnonbenchError(_missing_message(r, cur))
        rows.append(_check_row(r, float(c["value"]), tol, spec))
    if not rows:
        why = "; ".join(f"{m} ({w})" for m, w in _collapse(skipped, set()).items())
        raise AnonbenchError(
            "nothing to check: no metric of the baseline has a default tolerance"
            + (f" ({why})" if why else "")
            + "; give --tolerance METRIC=+X or METRIC=-X"
        )
    if preset is not None:
        _require_roles(rows, preset, specs)
    checked = {r.metric for r in rows}
    return CheckResult(
        rows=rows,
        unchecked=_collapse(skipped, checked),
        extra_methods=extra,
        preset=preset,
        method_map=method_map,
    )


def _same_versions(cur: Any, base: Any) -> None:
    """A baseline computed under another protocol version measures something else."""
    cur_versions = cur.groupby("protocol")["protocol_version"].agg(lambda s: sorted(set(s)))
    for proto, bver in base.groupby("protocol")["protocol_version"]:
        if proto in cur_versions.index:
            bv, cv = sorted(set(bver)), cur_versions[proto]
            if bv != cv:
                raise AnonbenchError(
                    f"protocol {proto!r}: baseline is version {', '.join(bv)}, run is version "
                    f"{', '.join(cv)}; results of different protocol versions are not comparable"
                )


def _tolerances_apply(tolerances: list[Tolerance], base: Any) -> None:
    """Every given tolerance names a metric (and evaluator) the baseline has."""
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


def _check_row(
    r: Mapping[str, Any], cv: float, tol: Tolerance, spec: MetricSpec | None
) -> CheckRow:
    """Baseline row `r` against the run's value `cv` under tolerance `tol` (see holds)."""
    bv = float(r["value"])
    amount, note = _resolve(tol, r, spec)
    if math.isinf(bv) or math.isinf(cv):
        note = f"{note}, non-finite" if note else "non-finite"
    return CheckRow(
        method=r["method"],
        protocol=r["protocol"],
        dataset=r["dataset"],
        split=r["split"],
        metric=r["metric"],
        evaluator=r["evaluator"],
        baseline=bv,
        current=cv,
        allowed=_fmt_amount(tol.worse, amount),
        ok=holds(bv, cv, tol.worse, amount),
        change=cv - bv,
        source=tol.source,
        rule=_rule_text(tol, spec),
        note=note,
        baseline_method=r["baseline_method"],
        role=role(spec),
        compared=math.isfinite(bv),
    )


def _rule_text(t: Tolerance, spec: MetricSpec | None) -> str:
    """The tolerance as the summary states it, e.g. "default +0.01", "preset -1x baseline
    interval, at least -2"."""
    if t.per != "ci":
        return t.rule
    floor = spec.tolerance if spec is not None and spec.tolerance is not None else 0.0
    sign = {1: "+", -1: "-", 0: "±"}[t.worse]
    source = t.source if t.source in ("given", "default") else "preset"
    return f"{source} {sign}{t.amount:g}x baseline interval, at least {sign}{floor:g}"


def _require_roles(rows: list[CheckRow], preset: Preset, specs: Specs) -> None:
    """Every compared method has, for each role the preset requires, a checked row whose
    baseline value is a number (a NaN baseline holds nothing)."""
    have: dict[str, set[str]] = {}
    for r in rows:
        have.setdefault(r.method_text, set())
        if r.role and math.isfinite(r.baseline):
            have[r.method_text].add(r.role)
    missing = {m: [x for x in preset.require_roles if x not in got] for m, got in have.items()}
    missing = {m: x for m, x in missing.items() if x}
    if not missing:
        return
    known = {
        ro: sorted({n for per in specs.values() for n, s in per.items() if role(s) == ro})
        for ro in preset.require_roles
    }
    what = "; ".join(f"{m}: no {' or '.join(x)} metric" for m, x in sorted(missing.items()))
    kinds = "; ".join(f"{ro}: {', '.join(ns) or 'none declared'}" for ro, ns in known.items())
    raise AnonbenchError(
        f"--preset {preset.name} holds privacy and utility together, but these methods have "
        f"none checked ({what}); metrics by role here: {kinds}"
    )


def _default(spec: MetricSpec | None, preset: Preset | None = None) -> Tolerance | None:
    """The MetricSpec's default tolerance, in its worse direction (both ways for a count);
    under a preset, its multiple of the baseline's interval (floored at that default)."""
    if spec is None or spec.tolerance is None:
        return None
    amount = float(spec.tolerance)
    if not math.isfinite(amount) or amount < 0:
        raise AnonbenchError(
            f"metric {spec.name}: its MetricSpec tolerance {spec.tolerance!r} is not a "
            "finite number >= 0"
        )
    worse = _worse(spec.higher_is_better)
    if preset is not None:
        return Tolerance(spec.name, None, preset.ci_multiple, worse, preset.name, per="ci")
    return Tolerance(spec.name, None, amount, worse, "default")


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
            r.method_text,
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
    """A plain aligned table for the terminal, then the summary lines; names from the files
    on one line each (a label holding a newline cannot forge a PASS line in a CI log)."""
    from anonbench.escape import one_line

    rows = [[one_line(c) for c in r] for r in table_rows(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(one_line(x) for x in summary_lines(res))
    return "\n".join(lines)


def summary_lines(res: CheckResult) -> list[str]:
    """The verdict, then which metrics held, regressed, were not checked (and why)."""
    out = [_verdict(res)]
    if res.preset is not None:
        out.append(f"preset {res.preset.name}: {res.preset.description}")
    held, regressed, no_base = [], [], []
    for metric, rows in res.by_metric().items():
        if all(r.ok and not r.compared for r in rows):
            no_base.append(f"{metric} ({len(rows)})")
            continue
        allowed = ", ".join(dict.fromkeys(r.rule or f"{r.source} {r.allowed}" for r in rows))
        # under a preset, the role each metric plays (privacy, utility) is part of the verdict
        tag = f" [{rows[0].role}]" if res.preset is not None and rows[0].role else ""
        n_bad = sum(not r.ok for r in rows)
        if n_bad:
            who = ", ".join(dict.fromkeys(r.method_text for r in rows if not r.ok))
            regressed.append(
                f"{metric}{tag} ({n_bad} of {len(rows)} values beyond {allowed}: {who})"
                if res.preset is not None or res.method_map
                else f"{metric} ({n_bad} of {len(rows)} values beyond {allowed})"
            )
        else:
            held.append(f"{metric}{tag} ({allowed})")
    if regressed:
        out.append(f"regressed: {', '.join(regressed)}")
    if held:
        out.append(f"held: {', '.join(held)}")
    if no_base:
        out.append(f"not compared, baseline value NaN, blank or infinite: {', '.join(no_base)}")
    if res.unchecked:
        out.append("not checked: " + ", ".join(f"{m} ({why})" for m, why in res.unchecked.items()))
    if res.extra_methods:
        out.append(f"methods not in the baseline: {', '.join(res.extra_methods)}")
    if res.method_map:
        pairs = ", ".join(f"{r} against baseline {b}" for r, b in res.method_map.items())
        out.append(f"method mapping (--as): {pairs}")
    out += [f"warning: {w}" for w in res.warnings]
    return out


def _verdict(res: CheckResult) -> str:
    """The first summary line. "within tolerance" only counts values actually compared: a
    row with a NaN/blank/inf baseline is said apart, and none compared is never a PASS."""
    n, bad = len(res.rows), sum(not r.ok for r in res.rows)
    skipped = n - len(res.compared)
    aside = f" ({skipped} more not compared: baseline NaN, blank or infinite)" if skipped else ""
    if bad:
        return f"FAIL: {bad} of {n} checked values regressed beyond tolerance"
    if not res.compared:
        return f"FAIL: none of the {n} baseline values could be compared (NaN, blank or infinite)"
    return f"PASS: all {len(res.compared)} checked values within tolerance{aside}"


def format_markdown(res: CheckResult, run_dir: str, baseline: str) -> str:
    """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY renders it)."""
    from anonbench.escape import md_escape

    icon = "✅" if res.ok else "❌"
    rows = table_rows(res)
    summary = summary_lines(res)
    out = [
        f"## {icon} anonbench check: {'pass' if res.ok else 'regression'}",
        "",
        f"Run {_md_path(run_dir)} against baseline {_md_path(baseline)}.",
        "",
        md_escape(summary[0]),
        "",
        *[f"- {md_escape(line)}" for line in summary[1:]],
        *([""] if summary[1:] else []),
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join(["---"] * 6 + ["---:"] * 3 + ["---"]) + "|",
    ]
    for r in rows[1:]:
        cells = [md_escape(c) for c in r]
        cells[0] = {"pass": "✅ pass", "not compared": "⚪ not compared"}.get(
            r[0], "❌ **regressed**"
        )
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def format_markdown_error(run_dir: str, baseline: str, error: object) -> str:
    """The CI page when the files do not match: why the gate failed, not only in the log."""
    from anonbench.escape import md_escape

    return (
        f"## ⚠️ anonbench check: files do not match\n\nRun {_md_path(run_dir)} against "
        f"baseline {_md_path(baseline)}:\n\n> {md_escape(error)}\n"
    )


def _md_path(path: object) -> str:
    """A path in Markdown: escaped, in monospace (a code span would show the escapes)."""
    from anonbench.escape import md_escape

    return f"<code>{md_escape(path)}</code>"


def run_check(
    run_dir: str | Path,
    baseline: str | Path,
    tolerance: str | None = None,
    *,
    preset: str | None = None,
    method_map: Mapping[str, str] | None = None,
) -> CheckResult:
    """Reads both files and their metric specs, parses the given tolerances (if any) with the
    metrics' directions, and compares; headline metrics not named keep their default (or the
    preset's rule)."""
    if preset is not None and preset not in PRESETS:
        raise AnonbenchError(f"--preset {preset!r}: unknown (presets: {', '.join(PRESETS)})")
    run_p, base_p = Path(run_dir), Path(baseline)
    cur = _read(run_p, "run")
    base = _read(base_p, "baseline")
    names: dict[str, set[str]] = {}
    for df in (base, cur):
        for proto, metric in zip(df["protocol"], df["metric"], strict=True):
            names.setdefault(_str(proto), set()).add(_str(metric))
    # for a protocol not installed, the run's run.json wins over the baseline's
    warnings: list[str] = []
    specs = metric_specs(names, base_p, run_p, warnings=warnings)
    # an impossible run value (a TAR of -0.5) is a broken run, not an improvement; baselines
    # are not held to it: hand-made ones (tests, what-if gates) may sit past a bound
    _refuse_impossible(cur, specs, _table(run_p), "run")
    given = [] if tolerance is None else parse_tolerances(tolerance, directions_of(specs))
    chosen = PRESETS[preset] if preset else None
    _refuse_impossible_intervals(base, specs, given, chosen, _table(base_p))
    res = compare(cur, base, given, specs, preset=chosen, method_map=method_map)
    res.warnings = warnings
    if not res.compared:
        raise AnonbenchError(_nothing_compared(res, base, _table(base_p)))
    return res


def _nothing_compared(res: CheckResult, base: Any, base_p: Path) -> str:
    """The error when no baseline value of the checked rows is finite (a gate of NaNs)."""
    first = res.rows[0]
    # the whole key (MATCH_KEY), the baseline's own method name: one metric of one method can
    # sit in several protocols, datasets or splits of the same file
    want = {**{c: str(getattr(first, c)) for c in MATCH_KEY}, "method": first.baseline_method}
    sel = base["method"].map(_str) == want.pop("method")
    for c, v in want.items():
        if c in base.columns:
            sel &= base[c].map(_str) == v
    row = f"row {base.index[sel][0] + 1}: " if sel.any() else ""
    return (
        f"baseline {base_p}: no value to compare: all {len(res.rows)} checked baseline values "
        f"are NaN, blank or infinite (e.g. {row}method={first.baseline_method} "
        f"metric={first.metric} evaluator={first.evaluator} value={_fmt(first.baseline)})"
    )


# the valid range of a value by MetricSpec unit (api.MetricSpec: "percent" 0-100, "fraction"
# 0-1, "count" a number of items); a plain number ("") has no known range
UNIT_RANGES: dict[str, tuple[float, float]] = {
    "percent": (0.0, 100.0),
    "fraction": (0.0, 1.0),
    "count": (0.0, math.inf),
}


def _refuse_impossible(df: Any, specs: Specs, p: Path, what: str) -> None:
    """Every finite value lies in its unit's range (:data:`UNIT_RANGES`); one line naming the
    file, row, method and metric otherwise. Non-finite values are judged by :func:`holds`."""
    for i, r in zip(df.index, df.to_dict("records"), strict=True):
        spec = specs.get(_str(r["protocol"]), {}).get(_str(r["metric"]))
        bounds = UNIT_RANGES.get(spec.unit) if spec is not None else None
        v = float(r["value"])
        if bounds is None or not math.isfinite(v) or bounds[0] <= v <= bounds[1]:
            continue
        lo, hi = bounds
        where = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise AnonbenchError(
            f"{what} {p}: row {i + 1}: method={_str(r['method'])} metric={_str(r['metric'])} "
            f"evaluator={_str(r['evaluator'])}: value {v:g} is impossible for a {spec.unit} "
            f"(valid: {where})"
        )


def _refuse_impossible_intervals(
    base: Any, specs: Specs, given: list[Tolerance], preset: Preset | None, p: Path
) -> None:
    """A baseline interval that a "ci" tolerance scales (:func:`baseline_interval`) is at most
    its unit's span (a fraction's std cannot exceed 1, a percent's 100): a wider one (a std of
    1e300) would allow any change, so the gate would pass every run. One line naming the file
    and row, rather than a clamp: a clamped gate would still let every value in the range
    pass. Rows with a fixed tolerance never read the interval and are not held to this."""
    for i, r in zip(base.index, base.to_dict("records"), strict=True):
        spec = specs.get(_str(r["protocol"]), {}).get(_str(r["metric"]))
        bounds = UNIT_RANGES.get(spec.unit) if spec is not None else None
        if spec is None or bounds is None or not math.isfinite(span := bounds[1] - bounds[0]):
            continue
        tol = _pick(given, _str(r["metric"]), _str(r["evaluator"])) or _default(spec, preset)
        iv = baseline_interval(r) if tol is not None and tol.per == "ci" else None
        if iv is None or iv <= span:
            continue
        raise AnonbenchError(
            f"baseline {p}: row {i + 1}: method={_str(r['method'])} metric={_str(r['metric'])} "
            f"evaluator={_str(r['evaluator'])}: interval {iv:g} (CI half-width, else std) is "
            f"impossible for a {spec.unit} (at most {span:g}): {tol.amount:g}ci of it would "
            "allow any change; fix the baseline row or give a fixed --tolerance"
        )


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
    return _refuse_duplicates(df, _table(p), what)


def _table(p: Path) -> Path:
    """The results file a path names (a run folder's results.csv), for error messages."""
    return p / "results.csv" if p.is_dir() else p


# what `check` reads of a row besides its key: two rows of one key equal in these are one result
_CHECKED_COLS = ("protocol_version", "value", "std", "ci_low", "ci_high")


def _refuse_duplicates(df: Any, p: Path, what: str) -> Any:
    """`df` with one row per key (:data:`MATCH_KEY`). Rows of one key that agree in every
    column `check` reads are kept once: the verdict cannot depend on which one is used (a file
    concatenated twice). Rows of one key that disagree are an error naming the file, the rows
    and the key: silently keeping one would let a bad row hide behind a good one."""
    import pandas as pd

    keys = pd.DataFrame({c: df[c].map(_str) for c in MATCH_KEY}, index=df.index)
    cols = pd.DataFrame({c: df[c].map(_cell) for c in _CHECKED_COLS}, index=df.index)
    same = pd.concat([keys, cols], axis=1).duplicated(keep="first")
    df, keys = df[~same], keys[~same]
    clash = keys.duplicated(keep=False)
    if not clash.any():
        return df
    first = keys[clash].iloc[0]
    rows = keys.index[(keys == first).all(axis=1)]
    key = " ".join(f"{c}={first[c]}" for c in MATCH_KEY)
    values = ", ".join(_fmt(float(df.at[i, "value"])) for i in rows)
    raise AnonbenchError(
        f"{what} {p}: rows {', '.join(str(i + 1) for i in rows)} have the same key ({key}) "
        f"with different contents (values {values}); keep one row per key"
    )


def _cell(v: Any) -> str:
    """A cell as text for comparing rows: numbers by value (1 == 1.0), NaN and blank as ""."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _str(v)
    return "" if math.isnan(f) else repr(f)
