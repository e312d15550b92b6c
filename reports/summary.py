"""The report's summary, shown first when a report holds several protocols (a run file's
report): per method, the headline metrics of every section side by side.

A section's headline columns are its first privacy column (an attacker's success) and its
first utility or realism column, in the section's own column order, so the choice follows the
protocol's declared metric order and the catalog's roles, never a list kept here. The cells
are the sections' own (same value, interval and best mark): the summary computes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from anonbench.reports.tables import Cell, Column, WideTable

_ROLES = (("privacy",), ("utility", "realism"))


@dataclass(frozen=True)
class SummaryColumn:
    table: WideTable
    index: int  # the column's index in its table

    @property
    def column(self) -> Column:
        return self.table.columns[self.index]

    @property
    def heading(self) -> str:
        return self.table.title

    def cell(self, method: str) -> Cell | None:
        return self.table.cell(method, self.index)


@dataclass(frozen=True)
class Summary:
    columns: list[SummaryColumn]
    methods: list[str]


def headline_columns(t: WideTable) -> list[int]:
    """Indices of the table's first privacy column and first utility/realism column."""
    out = []
    for roles in _ROLES:
        for i, col in enumerate(t.columns):
            if col.spec is not None and col.spec.role in roles:
                out.append(i)
                break
    return out


def build_summary(tables: list[WideTable]) -> Summary | None:
    """The summary of a report with at least two sections, else None (one section is its own
    summary)."""
    if len(tables) < 2:
        return None
    columns = [SummaryColumn(t, i) for t in tables for i in headline_columns(t)]
    if not columns:
        return None
    methods = list(dict.fromkeys(m for t in tables for m in t.methods))
    return Summary(columns, methods)
