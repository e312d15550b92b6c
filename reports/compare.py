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


def build_comparisons(table: WideTable) -> list[Comparison]:
    """One comparison per metric that both our table and the paper report for the protocol."""
    pvals = for_protocol(table.protocol)
    out: list[Comparison] = []
    for metric in dict.fromkeys(v.metric for v in pvals):
        ours_cols = [
            i for i in table.column_index(metric) if table.columns[i].evaluator != "chance"
        ]
        if not ours_cols:
            continue
        ours_evs = {table.columns[i].evaluator for i in ours_cols}
        mvals = [v for v in pvals if v.metric == metric]
        pcols: list[tuple[str, str, str | None]] = list(
            dict.fromkeys((v.table, v.paper_evaluator, v.evaluator) for v in mvals)
        )
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
        decimals = max(
            (
                len(t.split(".")[1])
                for i in ours_cols
                for m in table.methods
                if (c := table.cell(m, i)) is not None and "." in (t := c.text)
            ),
            default=3,
        )
        by_key: dict[tuple[str, str, str | None], dict[str, PaperValue]] = {}
        for v in mvals:
            by_key.setdefault((v.table, v.paper_evaluator, v.evaluator), {})[v.method or v.row] = v
        rows: list[CompareRow] = []
        paper_methods = list(dict.fromkeys(v.method or v.row for v in mvals))
        ours_methods = [
            m for m in table.methods if m != "chance" and any(table.cell(m, i) for i in ours_cols)
        ]
        for m in [*ours_methods, *[p for p in paper_methods if p not in ours_methods]]:
            cells = []
            for i in ours_cols:
                c = table.cell(m, i)
                cells.append(
                    "" if c is None else (c.text + (f" {c.interval}" if c.interval else ""))
                )
            for key in pcols:
                v = by_key.get(key, {}).get(m)
                cells.append("" if v is None else _fmt(v.value, v.std, decimals))
            in_ours = m in ours_methods
            in_paper = m in paper_methods
            anon = next((v for v in mvals if v.method == m), None)
            if in_ours and in_paper:
                label, origin = m, "both"
            elif in_ours:
                label, origin = m, "ours"
            else:
                is_ours_name = anon is not None
                label = f"{m} (not in this run)" if is_ours_name else f"{m} (paper only)"
                origin = "paper"
            rows.append(CompareRow(label, m if in_ours else None, origin, cells))
        notes = [c for c in dict.fromkeys(v.caveat for v in mvals) if c]
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
        out.append(
            Comparison(
                metric,
                table.columns[ours_cols[0]].label,
                arrow(table.columns[ours_cols[0]].higher_is_better),
                mvals[0].dataset,
                columns,
                rows,
                notes,
            )
        )
    return out
