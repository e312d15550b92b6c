"""The wide display table shared by the HTML and LaTeX reports.

One table per (protocol, version, dataset, split): methods as rows, one column per
metric x evaluator. Values are formatted once here, and the best value of each column is
decided on the *displayed* (rounded) numbers, so two values that print the same are both best.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from anonbench.api import MetricSpec
from anonbench.display import format_value, is_count
from anonbench.reports.runs import REFERENCE_METHODS, Bundle, is_sample


def arrow(higher_is_better: bool | None) -> str:
    return {True: "↑", False: "↓"}.get(higher_is_better, "")  # type: ignore[arg-type]


_FOLDS = re.compile(r"^(\d+) folds?$")


def no_evaluator(evaluator: Any) -> bool:
    """A row without an evaluator of its own ("-", empty or missing)."""
    return _nan(evaluator) or str(evaluator).strip() in ("", "-")


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


@dataclass
class Column:
    metric: str
    evaluator: str
    spec: MetricSpec | None  # None: a metric neither run.json nor its protocol declares

    @property
    def label(self) -> str:
        return self.spec.display if self.spec is not None else self.metric

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.spec is None else self.spec.higher_is_better

    @property
    def description(self) -> str:
        return "" if self.spec is None else self.spec.description

    @property
    def is_count(self) -> bool:
        return is_count(self.spec)

    @property
    def arrow(self) -> str:
        return arrow(self.higher_is_better)


@dataclass
class Cell:
    value: float
    text: str  # the number as shown
    interval: str = ""  # "± 0.012" or "[0.010, 0.030]"
    interval_kind: str = ""  # "std" | "ci" | ""
    lo: float | None = None  # interval bounds for plots
    hi: float | None = None
    n: float | None = None
    note: str = ""
    best: bool = False
    is_count: bool = False


@dataclass
class WideTable:
    protocol: str
    version: str
    dataset: str
    split: str
    columns: list[Column]
    methods: list[str]
    cells: dict[tuple[str, int], Cell]
    notes: list[str] = field(default_factory=list)

    @property
    def sample(self) -> bool:
        return is_sample(self.dataset)

    @property
    def title(self) -> str:
        split = f", {self.split}" if self.split else ""
        return f"{self.protocol} v{self.version} on {self.dataset}{split}"

    @property
    def anchor(self) -> str:
        raw = f"{self.protocol}-{self.dataset}-{self.split}"
        return "t-" + "".join(c if c.isalnum() else "-" for c in raw)

    def cell(self, method: str, col: int) -> Cell | None:
        return self.cells.get((method, col))

    def column_index(self, metric: str, evaluator: str | None = None) -> list[int]:
        return [
            i
            for i, c in enumerate(self.columns)
            if c.metric == metric and (evaluator is None or c.evaluator == evaluator)
        ]

    def header_groups(self, cols: list[int] | None = None) -> list[tuple[Column, int]]:
        """Consecutive columns of the same metric: (first column, span) for a 2-level header."""
        idx = list(range(len(self.columns))) if cols is None else cols
        out: list[tuple[Column, int]] = []
        for i in idx:
            c = self.columns[i]
            if out and out[-1][0].metric == c.metric:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((c, 1))
        return out

    @property
    def common_evaluator(self) -> str | None:
        """The one evaluator of every column, if there is one (then shown once, not per column);
        columns with no evaluator of their own ("-": e.g. the anonymizer's own detector) aside."""
        evs = {c.evaluator for c in self.columns if not no_evaluator(c.evaluator)}
        return evs.pop() if len(evs) == 1 else None

    @property
    def folds(self) -> str:
        """The fold counts the rows' notes state ("2 folds"; "" when none does)."""
        counts = sorted(
            {
                int(m.group(1))
                for c in self.cells.values()
                for part in (c.note or "").split("; ")
                if (m := _FOLDS.match(part))
            }
            | {1 for c in self.cells.values() if "single fold" in (c.note or "")}
        )
        if not counts:
            return ""
        return f"{' or '.join(map(str, counts))} fold{'s' if counts != [1] else ''}"

    @property
    def any_best(self) -> bool:
        """Whether some column marks a best anonymizer (never with one anonymizer)."""
        return any(c.best for c in self.cells.values())

    def is_reference(self, method: str) -> bool:
        return method in REFERENCE_METHODS


NON_FINITE = "(non-finite)"  # the mark of an infinite value in a table cell


def nonfinite_cells(tables: list[WideTable]) -> list[str]:
    """'method metric[evaluator]=inf' for every infinite value of the tables, in order."""
    out = []
    for t in tables:
        for (m, i), c in t.cells.items():
            if math.isinf(c.value):
                col = t.columns[i]
                ev = "" if no_evaluator(col.evaluator) else f"[{col.evaluator}]"
                out.append(f"{m} {col.metric}{ev}={c.value:g}")
    return out


def _make_cell(r: dict[str, Any], spec: MetricSpec | None) -> Cell:
    n = None if _nan(r["n"]) else float(r["n"])
    note = "" if _nan(r.get("note")) else str(r["note"])
    text, interval, kind = format_value(
        spec, r["value"], std=r["std"], ci_low=r["ci_low"], ci_high=r["ci_high"], n=r["n"]
    )
    if text == "n/a":
        return Cell(math.nan, text, n=n, note=note)
    v = float(r["value"])
    if math.isinf(v):
        # not a measurement: said in the cell, without the interval that made "inf ±0.000"
        # look like one (the report command also warns, nonfinite_cells)
        return Cell(v, f"{'-' if v < 0 else ''}inf {NON_FINITE}", n=n, note=note)
    lo = hi = None
    if kind == "ci":
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
    elif kind == "std":
        lo, hi = v - float(r["std"]), v + float(r["std"])
    counted = not kind and is_count(spec) and v.is_integer()
    return Cell(v, text, interval, kind, lo, hi, n, note, is_count=counted)


def _order_methods(methods: list[str]) -> list[str]:
    first = [m for m in methods if m == "original"]
    last = [m for m in methods if m in REFERENCE_METHODS and m != "original"]
    return first + [m for m in methods if m not in REFERENCE_METHODS] + last


def build_tables(bundle: Bundle) -> list[WideTable]:
    """One wide table per (protocol, version, dataset, split) of the bundle."""
    df = bundle.results
    tables = []
    for proto, ver, ds, split in bundle.groups():
        sel = df[
            (df["protocol"] == proto)
            & (df["protocol_version"] == ver)
            & (df["dataset"] == ds)
            & (df["split"] == split)
        ]
        spec_order = list(bundle.specs.get(proto, {}))
        metrics = list(dict.fromkeys(sel["metric"]))
        metrics.sort(key=lambda m: spec_order.index(m) if m in spec_order else len(spec_order))
        columns: list[Column] = []
        for m in metrics:
            for ev in dict.fromkeys(sel[sel["metric"] == m]["evaluator"]):
                columns.append(Column(m, ev, bundle.spec(proto, m)))
        methods = _order_methods(list(dict.fromkeys(sel["method"])))
        cells: dict[tuple[str, int], Cell] = {}
        col_of = {(c.metric, c.evaluator): i for i, c in enumerate(columns)}
        by_note: dict[str, list[str]] = {}  # one line per note, naming every method it concerns
        for r in sel.to_dict("records"):
            i = col_of[(r["metric"], r["evaluator"])]
            c = _make_cell(r, columns[i].spec)
            cells[(r["method"], i)] = c
            # "10 folds" is the normal case; other notes (in-sample thresholds...) are warnings
            # a row's note may join several ("10 folds; <the method's caveat>"): one line each
            for part in (c.note or "").split("; "):
                if part and not part.endswith(" folds"):
                    ms = by_note.setdefault(part, [])
                    if r["method"] not in ms:
                        ms.append(r["method"])
        notes = [f"{', '.join(ms)}: {n}" for n, ms in by_note.items()]
        t = WideTable(proto, ver, ds, split, columns, methods, cells, notes)
        _mark_best(t)
        tables.append(t)
    return tables


def _mark_best(t: WideTable) -> None:
    for i, col in enumerate(t.columns):
        if col.higher_is_better is None:
            continue
        cand = [
            (c.value if c.is_count else float(c.text), c)
            for m in t.methods
            if not t.is_reference(m)
            and (c := t.cell(m, i)) is not None
            and math.isfinite(c.value)  # NaN is not measured, +-inf no measurement: never best
        ]
        # "best of one" says nothing, and neither does a tie of all (e.g. the chance column)
        if len(cand) < 2 or len({v for v, _ in cand}) == 1:
            continue
        target = max(v for v, _ in cand) if col.higher_is_better else min(v for v, _ in cand)
        for v, c in cand:
            c.best = v == target
