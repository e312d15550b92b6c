"""`anonbench report RUN_DIR [RUN_DIR ...] --html report.html --latex tables.tex`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anonbench.reports.runs import Bundle

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
    from anonbench.escape import one_line
    from anonbench.reports.runs import load_runs
    from anonbench.safety import is_html_report, refuse_overlap, run_files

    if args.html is None and args.latex is None:
        raise AnonbenchError("nothing to write: give --html FILE and/or --latex FILE")
    for flag, path in (("--html", args.html), ("--latex", args.latex)):
        check_writable_file(path, flag)  # before any work: one line, exit 2
    refuse_same_file([("--html", args.html), ("--latex", args.latex)])
    # rule 2: a report never overwrites a run's own files
    refuse_overlap(
        [("--html", args.html), ("--latex", args.latex)],
        [f for d in args.run_dirs for f in run_files(d)],
    )
    # rule 2: regenerating a report is normal, replacing a page of the user's is not
    refuse_foreign_file(args.html, "--html", is_html_report, "an anonbench HTML report")
    refuse_foreign_file(args.latex, "--latex", is_latex_tables, "anonbench LaTeX tables")
    bundle = load_runs(args.run_dirs)  # a malformed results.csv: one line, nothing written
    for note in report_warnings(bundle):
        print(f"warning: {one_line(note)}", file=sys.stderr)
    if args.html is not None:
        from anonbench.reports.html import write_report

        print(f"html report: {write_report(args.run_dirs, args.html, bundle)}")
    if args.latex is not None:
        from anonbench.reports.latex import write_latex

        tex = write_latex(args.run_dirs, args.latex, not args.no_intervals, bundle)
        print(f"latex tables: {tex}")
    return 0


def report_warnings(bundle: Bundle) -> list[str]:
    """What the reader of the report must know, said once on the console whatever the
    outputs: runs that did not finish (reports.runs.run_status_note), infinite values (shown
    as non-finite in the tables, left out of the plots)."""
    from anonbench.reports.tables import build_tables, nonfinite_cells

    inf = nonfinite_cells(build_tables(bundle))
    notes = list(bundle.status_notes)
    if inf:
        notes.append(
            f"{len(inf)} infinite value(s), shown as non-finite in the tables (not a "
            f"measurement): {', '.join(inf)}"
        )
    return notes


def check_writable_file(path: str | Path | None, flag: str) -> None:
    """Before any work: `path` (None: not asked for) can be written, i.e. it is not a folder
    and its folder exists or can be made and takes files. One line (AnonbenchError) when not;
    creates nothing."""
    from anonbench.errors import AnonbenchError
    from anonbench.runner import check_writable_dir

    if path is None:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise AnonbenchError(f"{flag} {p}: is a folder, not a file")
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise AnonbenchError(f"{flag} {p}: {anc} is a file, not a folder")
    refuse_run_file(p, flag)
    try:
        check_writable_dir(p.parent, "")
    except AnonbenchError as e:  # '{flag} FILE: DIR is not writable'
        why = str(e).removeprefix(f" {p.parent}: ")
        raise AnonbenchError(f"{flag} {p}: {why}") from None


def refuse_same_file(outputs: list[tuple[str, Path | None]]) -> None:
    """Two outputs of one command are two files: one would silently overwrite the other.
    Links resolved (a hard link to the same file counts too); one line, before any work."""
    import os

    from anonbench.errors import AnonbenchError

    given = [(flag, Path(p).expanduser()) for flag, p in outputs if p is not None]
    for i, (flag_a, a) in enumerate(given):
        for flag_b, b in given[i + 1 :]:
            same = os.path.realpath(a) == os.path.realpath(b)
            if not same and a.exists() and b.exists():
                same = os.path.samefile(a, b)
            if same:
                raise AnonbenchError(
                    f"{flag_a} {a} and {flag_b} {b} are the same file: one would overwrite the "
                    "other; give two paths"
                )


# a run folder's own files by name: never an output, whichever folder they are in
RUN_FILE_NAMES = ("results.csv", "run.json")


def refuse_run_file(path: Path, flag: str) -> None:
    """An output never replaces a run's own files, of any run folder, not only those given:
    no file named results.csv or run.json (compared case-insensitively), and nothing that is
    or lies in the own files of a folder holding a run.json (safety.run_files: results.csv,
    run.json, scores/, examples/, missed/). A report.html beside them stays allowed (`anonbench
    run` writes one there). One line, before any work."""
    import os

    from anonbench.safety import OverlapError, refuse_overlap, run_files

    real = Path(os.path.realpath(path))  # a link named r.html may point at a results.csv
    for name in dict.fromkeys((path.name, real.name)):
        if name.casefold() in RUN_FILE_NAMES:
            raise OverlapError(
                f"{flag} {path}: a file named {name} is a run's own file: inputs are never "
                "written; choose another path"
            )
    for folder in real.parents:
        if (folder / "run.json").is_file():
            refuse_overlap([(flag, path)], run_files(folder))


def is_latex_tables(head: bytes) -> bool:
    """The start of LaTeX tables anonbench wrote: their first line, "% anonbench VERSION"."""
    return head.startswith(b"% anonbench ")


def refuse_foreign_file(
    path: str | Path | None, flag: str, ours: Callable[[bytes], bool], what: str
) -> None:
    """An output replaces only a file anonbench wrote (`ours` recognises its first 4 KiB), an
    empty one (nothing to lose: CI creates $GITHUB_STEP_SUMMARY so) or nothing; any other
    existing file is the user's: one line, before any work. Not a regular file (/dev/stdout):
    not replaced, so not looked at."""
    from anonbench.errors import AnonbenchError
    from anonbench.safety import file_head

    if path is None:
        return
    p = Path(path).expanduser()
    head = file_head(p, f"{flag} {p}")
    if head and not ours(head):
        raise AnonbenchError(
            f"{flag} {p}: an existing file that is not {what}: never overwritten; move it "
            "away or choose another path"
        )
