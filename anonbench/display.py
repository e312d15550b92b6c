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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from anonbench.api import MetricSpec

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


def format_table(
    df: Any,
    specs: Sequence[MetricSpec] | Mapping[str, MetricSpec] = (),
    *,
    counts: Iterable[str] | None = None,
) -> str:
    """Wide console display of tidy rows: methods as rows, one column per metric label
    [evaluator]; 'value ± std' or 'value [ci_low, ci_high]' with each spec's decimals; counts
    (unit "count" or no better direction) as value/n.

    `counts` (metric names shown as counts) is the older way to say which metrics are counts;
    it adds to what the specs say."""
    import pandas as pd

    if df.empty:
        return "(no results)"
    by_name = dict(specs) if isinstance(specs, Mapping) else {s.name: s for s in specs}
    forced = set(counts or ())

    def cell(r: Mapping[str, Any]) -> str:
        spec = by_name.get(r["metric"])
        count = True if r["metric"] in forced else None
        text, interval, _ = format_value(
            spec,
            r["value"],
            std=r.get("std"),
            ci_low=r.get("ci_low"),
            ci_high=r.get("ci_high"),
            n=r.get("n"),
            count=count,
        )
        return f"{text} {interval}" if interval else text

    d = df.copy()
    d["cell"] = [cell(r) for r in d.to_dict("records")]
    ev = d["evaluator"] if "evaluator" in d else pd.Series([None] * len(d), index=d.index)
    d["column"] = [
        (by_name[m].display if m in by_name else m) + ("" if _blank(e) else f" [{e}]")
        for m, e in zip(d["metric"], ev, strict=True)
    ]
    wide = d.pivot_table(
        index="method", columns="column", values="cell", aggfunc="first", sort=False
    )
    wide = wide.reindex(list(dict.fromkeys(d["method"])))
    wide = wide[list(dict.fromkeys(d["column"]))]
    title = ", ".join(
        sorted(
            {
                f"{p} v{v} on {ds}"
                for p, v, ds in zip(d["protocol"], d["protocol_version"], d["dataset"], strict=True)
            }
        )
    )
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return f"{title}\n{wide.T.to_string() if wide.shape[1] > 6 else wide.to_string()}"


def _blank(e: Any) -> bool:
    return e is None or (isinstance(e, float) and math.isnan(e)) or e == ""
