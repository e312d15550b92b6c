"""The wide display table shared by the HTML and LaTeX reports.

One table per (protocol, version, dataset, split): methods as rows, one column per
metric x evaluator. Values are formatted once here, and the best value of each column is
decided on the *displayed* (rounded) numbers, so two values that print the same are both best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from anonbench.reports.runs import REFERENCE_METHODS, Bundle, is_sample

METRIC_LABELS = {
    "tar_far_1e-3": "TAR@FAR=1e-3",
    "accuracy": "Accuracy",
    "recall_at_1": "Recall@1 (%)",
    "detection_rate": "Detection (%)",
    "fid": "FID",
    "faces_missed": "Faces missed",
    "embedder_no_face": "Recognizer: no face",
    "unreadable_images": "Unreadable images",
}
LATEX_LABELS = {
    "tar_far_1e-3": r"TAR@FAR$=10^{-3}$",
    "accuracy": "Accuracy",
    "recall_at_1": r"Recall@1 (\%)",
    "detection_rate": r"Detection (\%)",
    "fid": "FID",
}
DECIMALS = {"tar_far_1e-3": 3, "accuracy": 3, "recall_at_1": 1, "detection_rate": 1, "fid": 2}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def arrow(higher_is_better: bool | None) -> str:
    return {True: "↑", False: "↓"}.get(higher_is_better, "")  # type: ignore[arg-type]


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _decimals(metric: str, v: float) -> int:
    if metric in DECIMALS:
        return DECIMALS[metric]
    a = abs(v)
    return 1 if a >= 100 else 2 if a >= 1 else 3


@dataclass
class Column:
    metric: str
    evaluator: str
    higher_is_better: bool | None
    description: str

    @property
    def label(self) -> str:
        return metric_label(self.metric)

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
        """The one evaluator of every column, if there is one (then shown once, not per column)."""
        evs = {c.evaluator for c in self.columns}
        return evs.pop() if len(evs) == 1 else None

    def is_reference(self, method: str) -> bool:
        return method in REFERENCE_METHODS


def _make_cell(r: dict[str, Any], metric: str, hib: bool | None) -> Cell:
    v = r["value"]
    n = None if _nan(r["n"]) else float(r["n"])
    note = "" if _nan(r.get("note")) else str(r["note"])
    if _nan(v):
        return Cell(math.nan, "n/a", n=n, note=note)
    v = float(v)
    is_count = hib is None and v.is_integer() and _nan(r["std"]) and _nan(r["ci_low"])
    if is_count:
        text = f"{int(v)}" if n is None else f"{int(v)}/{int(n)}"
        return Cell(v, text, n=n, note=note, is_count=True)
    d = _decimals(metric, v)
    text = f"{v:.{d}f}"
    lo = hi = None
    interval, kind = "", ""
    if not _nan(r["ci_low"]) and not _nan(r["ci_high"]):
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
        interval, kind = f"[{lo:.{d}f}, {hi:.{d}f}]", "ci"
    elif not _nan(r["std"]):
        s = float(r["std"])
        lo, hi = v - s, v + s
        interval, kind = f"± {s:.{d}f}", "std"
    return Cell(v, text, interval, kind, lo, hi, n, note)


def _order_methods(methods: list[str]) -> list[str]:
    first = [m for m in methods if m == "original"]
    last = [m for m in methods if m in REFERENCE_METHODS and m != "original"]
    return first + [m for m in methods if m not in REFERENCE_METHODS] + last


def build_tables(bundle: Bundle) -> list[WideTable]:
    """One wide table per (protocol, version, dataset, split) of the bundle."""
    df = bundle.results
    spec_order: list[str] = []
    for r in bundle.runs:
        for s in (r.info.get("protocol") or {}).get("metrics") or []:
            if isinstance(s, dict) and s.get("name") not in spec_order:
                spec_order.append(str(s.get("name")))
    tables = []
    for proto, ver, ds, split in bundle.groups():
        sel = df[
            (df["protocol"] == proto)
            & (df["protocol_version"] == ver)
            & (df["dataset"] == ds)
            & (df["split"] == split)
        ]
        metrics = list(dict.fromkeys(sel["metric"]))
        metrics.sort(key=lambda m: spec_order.index(m) if m in spec_order else len(spec_order))
        columns: list[Column] = []
        for m in metrics:
            for ev in dict.fromkeys(sel[sel["metric"] == m]["evaluator"]):
                hib = bundle.directions.get(m)
                columns.append(Column(m, ev, hib, bundle.descriptions.get(m, "")))
        methods = _order_methods(list(dict.fromkeys(sel["method"])))
        cells: dict[tuple[str, int], Cell] = {}
        col_of = {(c.metric, c.evaluator): i for i, c in enumerate(columns)}
        by_note: dict[str, list[str]] = {}  # one line per note, naming every method it concerns
        for r in sel.to_dict("records"):
            i = col_of[(r["metric"], r["evaluator"])]
            c = _make_cell(r, r["metric"], columns[i].higher_is_better)
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
            (float(c.text), c)
            for m in t.methods
            if not t.is_reference(m) and (c := t.cell(m, i)) is not None and not math.isnan(c.value)
        ]
        # "best of one" says nothing, and neither does a tie of all (e.g. the chance column)
        if len(cand) < 2 or len({v for v, _ in cand}) == 1:
            continue
        target = max(v for v, _ in cand) if col.higher_is_better else min(v for v, _ in cand)
        for v, c in cand:
            c.best = v == target
