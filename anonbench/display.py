"""How metrics are read back and shown: MetricSpecs from run.json (or the registered protocol)
and the console's headline table.

:class:`anonbench.api.MetricSpec` is the single source of a metric's direction, label,
decimals, unit and default `check` tolerance. A run records its protocol's specs in
``run.json`` (``protocol.metrics``, one dict per spec); readers (``anonbench check``, the
reports, the console table) take them from there and, for a run.json that is absent or written
before a field existed, from the MetricSpecs of the registered protocol class. Nothing else
declares a metric's direction or display.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from anonbench.api import METRIC_ROLES, MetricSpec

_FIELDS = {f.name for f in dataclasses.fields(MetricSpec)}


def spec_from_dict(d: Mapping[str, Any], base: MetricSpec | None = None) -> MetricSpec:
    """A MetricSpec from a run.json dict. Fields the dict lacks (an older run.json) or holds
    with a wrong type come from `base` (the registered spec), else the dataclass defaults."""
    name = str(d["name"])
    kw: dict[str, Any] = (
        {f: getattr(base, f) for f in _FIELDS}
        if base is not None
        else {"name": name, "higher_is_better": None, "description": ""}
    )
    kw["name"] = name
    for key, value in d.items():
        if key not in _FIELDS or key == "name":
            continue
        if key == "higher_is_better" and (value is None or isinstance(value, bool)):
            kw[key] = value
        elif key == "decimals" and isinstance(value, int) and not isinstance(value, bool):
            kw[key] = max(0, min(12, value))
        elif key == "tolerance" and (
            value is None
            or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0)
        ):
            kw[key] = None if value is None else float(value)
        elif key in ("description", "label", "unit") and isinstance(value, str):
            kw[key] = value
        elif key == "role" and (value is None or value in METRIC_ROLES):
            kw[key] = value
    return MetricSpec(**kw)


def registered_metrics(protocol: str) -> dict[str, MetricSpec]:
    """name -> MetricSpec of the registered protocol class (imports its module; protocol
    modules import nothing heavy at module level). Empty for a protocol not registered here
    (a plug-in that is not installed)."""
    from anonbench.errors import UnknownNameError
    from anonbench.registry import PROTOCOLS

    try:
        factory = PROTOCOLS.entry(protocol).factory
    except UnknownNameError:
        return {}
    return {m.name: m for m in getattr(factory, "metrics", ())}


def protocol_info_specs(info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The metric dicts of a run.json (``protocol.metrics``), ignoring malformed entries."""
    proto = info.get("protocol") if isinstance(info, Mapping) else None
    metrics = proto.get("metrics") if isinstance(proto, Mapping) else None
    if not isinstance(metrics, list):
        return []
    return [m for m in metrics if isinstance(m, Mapping) and "name" in m]


def run_metric_specs(
    protocol: str,
    infos: Iterable[Mapping[str, Any]] = (),
    metrics: Iterable[str] | None = None,
) -> dict[str, MetricSpec]:
    """name -> MetricSpec for one protocol, from the run.json dicts in `infos` of that
    protocol (merged field by field, a later one wins; a run.json's ``runs`` in order, its top
    level last) over the registered class's specs.

    The registered protocol is looked up lazily: only when one of `metrics` (the metric names
    to describe; all of the registered ones when None) has no complete dict in the infos."""
    from anonbench.results import run_entries

    dicts: dict[str, dict[str, Any]] = {}
    # a run.json lists every run into its folder (older ones: one run); a later one wins
    for info in (e for i in infos for e in (run_entries(i) if isinstance(i, dict) else [i])):
        proto = info.get("protocol") if isinstance(info, Mapping) else None
        pname = proto.get("name") if isinstance(proto, Mapping) else None
        if pname is not None and str(pname) != protocol:
            continue
        for d in protocol_info_specs(info):
            dicts.setdefault(str(d["name"]), {}).update(d)
    wanted = None if metrics is None else list(dict.fromkeys(metrics))
    complete = wanted is not None and all(n in dicts and _FIELDS <= set(dicts[n]) for n in wanted)
    base = {} if complete else registered_metrics(protocol)
    out: dict[str, MetricSpec] = {}
    for name in dict.fromkeys([*dicts, *base]):
        out[name] = spec_from_dict(dicts[name], base.get(name)) if name in dicts else base[name]
    return out


def is_count(spec: MetricSpec | None) -> bool:
    """A count or diagnostic (shown as value/n, never 'best', not checked by direction)."""
    return spec is None or spec.unit == "count" or spec.higher_is_better is None


def decimals_for(spec: MetricSpec | None, v: float) -> int:
    """The spec's display decimals; for a metric nobody declared, by magnitude."""
    if spec is not None:
        return spec.decimals
    a = abs(v)
    return 1 if a >= 100 else 2 if a >= 1 else 3


def _nan(v: Any) -> bool:
    if v is None:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def format_value(
    spec: MetricSpec | None,
    value: Any,
    *,
    std: Any = None,
    ci_low: Any = None,
    ci_high: Any = None,
    n: Any = None,
    count: bool | None = None,
) -> tuple[str, str, str]:
    """(number, interval, interval kind "std" | "ci" | "") as shown for one result row.

    A count (see :func:`is_count`, or `count` given) with an integral value and no interval is
    shown as ``value/n``; anything else with the spec's decimals, the interval as ``± std`` or
    ``[low, high]``. A missing value is ``n/a``."""
    if _nan(value):
        return "n/a", "", ""
    v = float(value)
    if spec is not None and spec.name == "fid" and v < 0:
        # a squared distance: a tiny negative value is round-off, shown as 0 (results.csv
        # keeps the raw value); KID is not clamped, its negative values are estimator noise
        v = 0.0
    counted = is_count(spec) if count is None else count
    if counted and v.is_integer() and _nan(std) and _nan(ci_low):
        return (f"{int(v)}" if _nan(n) else f"{int(v)}/{int(float(n))}"), "", ""
    d = decimals_for(spec, v)
    if not _nan(ci_low) and not _nan(ci_high):
        return f"{v:.{d}f}", f"[{float(ci_low):.{d}f}, {float(ci_high):.{d}f}]", "ci"
    if not _nan(std):
        return f"{v:.{d}f}", f"± {float(std):.{d}f}", "std"
    return f"{v:.{d}f}", "", ""


CONSOLE_WIDTH = 120  # wider than this, the console table drops its intervals, then shortens
# the longer built-in evaluator names in its header (and says which, below the table)
SHORT_EVALUATORS = {
    "dlib-hog": "hog",
    "dlib-mmod": "mmod",
    "dlib-resnet": "resnet",
    "dlib-68": "dlib68",
    "retinaface": "retina",
    "centerface": "center",
    "mediapipe": "mpipe",
    "inception-v3": "incv3",
    "mobilefacenet": "mfn",
    "facenet-vggface2": "fn-vgg",
    "facenet-casia": "fn-casia",
    "pnca-adaptive": "pnca-ad",
    "pnca-landmarks": "pnca-lm",
}


def short_evaluator(name: str) -> str:
    """The console header's name of an evaluator (a reversal suffix `+attack` kept)."""
    base, plus, attack = name.partition("+")
    return SHORT_EVALUATORS.get(base, base) + plus + attack


def format_table(
    df: Any,
    specs: Sequence[MetricSpec] | Mapping[str, MetricSpec] = (),
    *,
    counts: Iterable[str] | None = None,
) -> str:
    """The console's headline table: one line per method, one column per metric x evaluator
    under a two-line header (metric label, evaluator), each spec's decimals; intervals
    (``±std`` or ``[low, high]``) only while the table fits CONSOLE_WIDTH. Counts (unit
    "count" or no better direction; `counts` adds metric names) are listed below it, only
    those above zero.

    `counts` is the older way to say which metrics are counts; it adds to what the specs say."""
    if df.empty:
        return "(no results)"
    by_name = dict(specs) if isinstance(specs, Mapping) else {s.name: s for s in specs}
    forced = set(counts or ())
    rows = df.to_dict("records")
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    cells: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    count_lines: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        metric, ev = str(r["metric"]), "" if _blank(r.get("evaluator")) else str(r["evaluator"])
        spec = by_name.get(metric)
        counted = metric in forced or is_count(spec)
        text, interval, _ = format_value(
            spec,
            r["value"],
            std=r.get("std"),
            ci_low=r.get("ci_low"),
            ci_high=r.get("ci_high"),
            n=r.get("n"),
            count=True if counted else None,
        )
        label = spec.display if spec is not None else metric
        if counted:
            if text not in ("0", "n/a") and not text.startswith("0/"):
                count_lines.setdefault((label, ev), []).append(f"{r['method']} {text}")
            continue
        cells.setdefault((label, ev), {})[str(r["method"])] = (text, interval)
    title = ", ".join(
        sorted(
            {
                f"{r['protocol']} v{r['protocol_version']} on {r['dataset']}"
                for r in rows
                if "protocol" in r
            }
        )
    )
    table, note, legend = _grid(methods, cells, intervals=True), "", ""
    if max(map(len, table), default=0) > CONSOLE_WIDTH:
        table = _grid(methods, cells, intervals=False)
        note = "  (intervals: results.csv, report.html)"
    if max(map(len, table), default=0) > CONSOLE_WIDTH:
        table = _grid(methods, cells, intervals=False, short=True)
        used = sorted({c[1] for c in cells if short_evaluator(c[1]) != c[1]})
        legend = ", ".join(f"{short_evaluator(e)} = {e}" for e in used)
    out = [title + note, *table]
    if legend:
        out += textwrap.wrap(f"evaluators: {legend}", CONSOLE_WIDTH, subsequent_indent="  ")
    if count_lines:
        out.append("counts above 0:")
        for (lb, ev), v in count_lines.items():
            line = f"{lb}{f' [{ev}]' if ev else ''}: {', '.join(v)}"
            out += textwrap.wrap(line, CONSOLE_WIDTH, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(out)


def _grid(
    methods: list[str],
    cells: Mapping[tuple[str, str], Mapping[str, tuple[str, str]]],
    *,
    intervals: bool,
    short: bool = False,
) -> list[str]:
    """Header (metric label over its evaluators, evaluator) and one line per method."""
    cols = list(cells)
    text = {
        c: [
            " ".join(x for x in cells[c].get(m, ("", ""))[: 2 if intervals else 1] if x)
            for m in methods
        ]
        for c in cols
    }
    head = {c: short_evaluator(c[1]) if short else c[1] for c in cols}
    widths = {c: max([len(head[c]), *map(len, text[c])]) for c in cols}
    # a label spans the columns of its metric; widen the last one when it is longer
    groups: dict[str, list[tuple[str, str]]] = {}
    for c in cols:
        groups.setdefault(c[0], []).append(c)
    for label, cs in groups.items():
        span = sum(widths[c] for c in cs) + 2 * (len(cs) - 1)
        if len(label) > span:
            widths[cs[-1]] += len(label) - span
    mw = max(len("method"), *map(len, methods))
    top = " " * mw + "".join(
        "  " + label.ljust(sum(widths[c] for c in cs) + 2 * (len(cs) - 1))
        for label, cs in groups.items()
    )
    second = "method".ljust(mw) + "".join(
        "  " + head[c].rjust(widths[c]) for cs in groups.values() for c in cs
    )
    lines = [top.rstrip(), second.rstrip()]
    for i, m in enumerate(methods):
        vals = "".join("  " + text[c][i].rjust(widths[c]) for cs in groups.values() for c in cs)
        lines.append((m.ljust(mw) + vals).rstrip())
    return lines


def _blank(e: Any) -> bool:
    return e is None or (isinstance(e, float) and math.isnan(e)) or e == ""
