"""Reports (installed as anonbench.reports): they read result files, never compute metrics.

    from anonbench.reports import write_report, write_latex
    write_report([Path("runs/lfw1")], Path("report.html"))

The names below are imported on first use, so importing the package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_latex", "write_report", "write_run_report"]

_WHERE = {
    "write_report": "anonbench.reports.html",
    "write_run_report": "anonbench.reports.html",
    "write_latex": "anonbench.reports.latex",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
