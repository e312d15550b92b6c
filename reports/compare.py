"""Our numbers beside the paper's, where the protocol matches (see reports/paper.py).

The evaluator of every column is named, and a paper column is marked "same model" only when
anonbench has the identical evaluator and the run used it: a dlib-resnet TAR is never shown as
if it were comparable to the paper's FaceNet TAR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from anonbench.reports.paper import PaperValue, for_protocol
from anonbench.reports.tables import WideTable, arrow


@dataclass
class CompareColumn:
    kind: str  # "ours" | "paper"
    header: str  # "dlib-resnet" or "FaceNet (VGGFace2)"
    source: str  # "ours" or "paper, Table 3"
    same_model: bool = False  # a paper column whose model is one of our evaluators here


@dataclass
class CompareRow:
    label: str
    method: str | None
    origin: str  # "both" | "ours" | "paper"
    cells: list[str]


@dataclass
class Comparison:
    metric: str
    label: str
    arrow: str
    paper_dataset: str
    columns: list[CompareColumn]
    rows: list[CompareRow]
    notes: list[str] = field(default_factory=list)

    def source_groups(self) -> list[tuple[CompareColumn, int]]:
        """Consecutive columns from the same source: (first column, span) for the header."""
        out: list[tuple[CompareColumn, int]] = []
        for c in self.columns:
            if out and out[-1][0].source == c.source:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((c, 1))
        return out


def _fmt(v: float, std: float | None, decimals: int) -> str:
    txt = f"{v:.{decimals}f}"
    if std is not None and not math.isnan(std):
        txt += f" ± {std:.{decimals}f}"
    return txt


# a paper column: (table, the paper's evaluator name, our evaluator of the same model or None)
PaperKey = tuple[str, str, str | None]


def build_comparisons(table: WideTable) -> list[Comparison]:
    """One comparison per metric that both our table and the paper report for the protocol."""
    pvals = for_protocol(table.protocol)
    out = []
    for metric in dict.fromkeys(v.metric for v in pvals):
        c = _comparison(table, metric, [v for v in pvals if v.metric == metric])
        if c is not None:
            out.append(c)
    return out


def _comparison(table: WideTable, metric: str, mvals: list[PaperValue]) -> Comparison | None:
    """Our columns of `metric` beside the paper's values `mvals` (None: we do not report it)."""
    ours_cols = [i for i in table.column_index(metric) if table.columns[i].evaluator != "chance"]
    if not ours_cols:
        return None
    ours_evs = {table.columns[i].evaluator for i in ours_cols}
    pcols: list[PaperKey] = list(
        dict.fromkeys((v.table, v.paper_evaluator, v.evaluator) for v in mvals)
    )
    columns = _columns(table, ours_cols, ours_evs, pcols)
    rows = _rows(table, ours_cols, mvals, pcols)
    first = table.columns[ours_cols[0]]
    notes = _notes(table, mvals, columns, ours_evs, pcols)
    return Comparison(
        metric, first.label, arrow(first.higher_is_better), mvals[0].dataset, columns, rows, notes
    )


def _columns(
    table: WideTable, ours_cols: list[int], ours_evs: set[str], pcols: list[PaperKey]
) -> list[CompareColumn]:
    """Our evaluators' columns, then the paper's, each marked "same model" when it is one of
    our evaluators in this run."""
    columns = [
        CompareColumn("ours", table.columns[i].evaluator or "(none)", "ours") for i in ours_cols
    ]
    lower = {e.lower() for e in ours_evs}
    columns += [
        CompareColumn(
            "paper",
            pev,
            f"paper, {tab}",
            (ev is not None and ev in ours_evs) or pev.lower() in lower,
        )
        for tab, pev, ev in pcols
    ]
    return columns


def _decimals(table: WideTable, ours_cols: list[int]) -> int:
    """The paper's values are shown with as many decimals as our cells (3 when none)."""
    return max(
        (
            len(t.split(".")[1])
            for i in ours_cols
            for m in table.methods
            if (c := table.cell(m, i)) is not None and "." in (t := c.text)
        ),
        default=3,
    )


def _rows(
    table: WideTable, ours_cols: list[int], mvals: list[PaperValue], pcols: list[PaperKey]
) -> list[CompareRow]:
    """Our methods first (in table order), then the paper's methods this run does not have."""
    decimals = _decimals(table, ours_cols)
    by_key: dict[PaperKey, dict[str, PaperValue]] = {}
    for v in mvals:
        by_key.setdefault((v.table, v.paper_evaluator, v.evaluator), {})[v.method or v.row] = v
    paper_methods = list(dict.fromkeys(v.method or v.row for v in mvals))
    ours_methods = [
        m for m in table.methods if m != "chance" and any(table.cell(m, i) for i in ours_cols)
    ]
    rows = []
    for m in [*ours_methods, *[p for p in paper_methods if p not in ours_methods]]:
        cells = []
        for i in ours_cols:
            c = table.cell(m, i)
            cells.append("" if c is None else (c.text + (f" {c.interval}" if c.interval else "")))
        for key in pcols:
            v = by_key.get(key, {}).get(m)
            cells.append("" if v is None else _fmt(v.value, v.std, decimals))
        in_ours = m in ours_methods
        if in_ours:
            label, origin = m, ("both" if m in paper_methods else "ours")
        else:
            # a paper method anonbench has (by name) is "not in this run"
            ours_name = any(v.method == m for v in mvals)
            label = f"{m} (not in this run)" if ours_name else f"{m} (paper only)"
            origin = "paper"
        rows.append(CompareRow(label, m if in_ours else None, origin, cells))
    return rows


def _notes(
    table: WideTable,
    mvals: list[PaperValue],
    columns: list[CompareColumn],
    ours_evs: set[str],
    pcols: list[PaperKey],
) -> list[str]:
    """The paper's caveats, then what makes the numbers not comparable (evaluators, data)."""
    notes = [c for c in dict.fromkeys(v.caveat for v in mvals) if c]
    notes += [f"Source: {src}." for src in dict.fromkeys(v.source for v in mvals) if src]
    if not any(c.same_model for c in columns):
        notes.append(
            f"Different evaluators: ours used {', '.join(sorted(ours_evs))}, the paper "
            f"{', '.join(sorted({p[1] for p in pcols}))}. Compare orderings, not values."
        )
    if table.sample:
        notes.append(
            f"Ours are on {table.dataset} (the embedded sample), the paper on the full "
            f"{mvals[0].dataset}: not comparable numbers."
        )
    elif table.dataset != mvals[0].dataset:
        notes.append(f"Ours are on {table.dataset}, the paper on {mvals[0].dataset}.")
    return notes
