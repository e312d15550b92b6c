"""`anonbench report RUN_DIR [RUN_DIR ...] --html report.html --latex tables.tex`."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "write an HTML report and/or LaTeX tables from one or more run folders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders (anonbench run --out)")
    parser.add_argument("--html", type=Path, help="self-contained HTML report to write")
    parser.add_argument("--latex", type=Path, help="booktabs LaTeX tables to write")
    parser.add_argument(
        "--no-intervals",
        action="store_true",
        help="LaTeX: values only, without ± std / [a, b] intervals",
    )


def run(args: argparse.Namespace) -> int:
    from anonbench.errors import AnonbenchError

    if args.html is None and args.latex is None:
        raise AnonbenchError("nothing to write: give --html FILE and/or --latex FILE")
    if args.html is not None:
        from anonbench.reports.html import write_report

        print(f"html report: {write_report(args.run_dirs, args.html)}")
    if args.latex is not None:
        from anonbench.reports.latex import write_latex

        print(f"latex tables: {write_latex(args.run_dirs, args.latex, not args.no_intervals)}")
    return 0
