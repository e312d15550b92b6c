"""Published numbers of the seed paper, shown beside ours where the protocol matches.

The numbers live in one data file, reports/published/ciagan_cvpr2020.toml (Maximov, Elezi,
Leal-Taixé: "CIAGAN", CVPR 2020: Tables 1-3, section 4.4's landmark attack, supplementary
Table 4), each table with its section and its lines in the extracted paper text. This module
reads it once. ``paper_evaluator`` is the model the paper used; ``evaluator`` is the anonbench
evaluator that is the *same* model, or None when anonbench has no identical one (then the
numbers are shown side by side but labelled as a different evaluator).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).with_name("published") / "ciagan_cvpr2020.toml"
PAPER = "CIAGAN (Maximov et al., CVPR 2020)"


@dataclass(frozen=True)
class PaperValue:
    table: str  # "Table 2"
    row: str  # the row label as printed
    method: str | None  # the anonbench method name; None: not available in anonbench
    protocol: str  # the anonbench protocol the table corresponds to
    dataset: str  # the dataset the paper evaluated on
    metric: str  # the anonbench metric name (same unit as ours)
    paper_evaluator: str  # the evaluator as the paper names it
    evaluator: str | None  # the identical anonbench evaluator, None if there is none
    value: float
    std: float | None = None
    caveat: str = ""  # what else differs between the paper's setup and ours
    source: str = ""  # "Table 2, section 4.4 ...; lines 582-594 of the paper text"


@dataclass(frozen=True)
class PaperStatement:
    """What the paper says, without a number, about a protocol that has no table."""

    protocol: str
    text: str
    source: str


def _source(t: dict[str, Any]) -> str:
    return f"{t['table']}, section {t['section']}; lines {t['lines']} of the paper text"


def _values(t: dict[str, Any]) -> list[PaperValue]:
    """One PaperValue per (row, column) of a [[table]] entry; a cell is x or [mean, std]."""
    out = []
    for label, method, *cells in t["rows"]:
        if len(cells) != len(t["columns"]):
            raise ValueError(f"{DATA_FILE.name}: {t['table']} row {label!r}: wrong cell count")
        for col, cell in zip(t["columns"], cells, strict=True):
            mean, std = (cell[0], cell[1]) if isinstance(cell, list) else (cell, None)
            out.append(
                PaperValue(
                    t["table"],
                    label,
                    method or None,
                    t["protocol"],
                    t["dataset"],
                    col["metric"],
                    col["paper_evaluator"],
                    col["evaluator"] or None,
                    float(mean),
                    None if std is None else float(std),
                    t.get("caveat", ""),
                    _source(t),
                )
            )
    return out


@functools.cache
def _load() -> tuple[tuple[PaperValue, ...], tuple[PaperStatement, ...]]:
    from anonbench.runfile import toml_module

    data = toml_module().loads(DATA_FILE.read_text(encoding="utf-8"))
    values = tuple(v for t in data.get("table", []) for v in _values(t))
    notes = tuple(
        PaperStatement(s["protocol"], s["text"], _source(s)) for s in data.get("statement", [])
    )
    return values, notes


def paper_values() -> list[PaperValue]:
    """Every published value, in the data file's order."""
    return list(_load()[0])


def for_protocol(protocol: str) -> list[PaperValue]:
    """The published values that correspond to an anonbench protocol (empty if none)."""
    return [v for v in _load()[0] if v.protocol == protocol]


def statements_for(protocol: str) -> list[PaperStatement]:
    """The paper's statements without a number about `protocol` (empty if none)."""
    return [s for s in _load()[1] if s.protocol == protocol]
