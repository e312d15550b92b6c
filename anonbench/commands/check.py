"""`anonbench check RUN_DIR --baseline FILE [--preset ci] [--tolerance ...] [--as RUN=BASE]`:
the CI regression gate."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "check"
HELP = "compare a run's results to a baseline: exit 0 pass, 1 regression, 2 files do not match"

_EPILOG = """\
Without --tolerance, every headline metric is checked with the default tolerance its protocol
declares (its MetricSpec); the summary lists the metrics not checked and why. --tolerance
overrides per metric (the other headline metrics keep their default), e.g.
  --tolerance recall_at_1=+0.5,tar_far_1e-3=+0.01,detection_rate=-0.5
Each is the change allowed in the metric's worse direction: '+' for lower-is-better metrics (a
rise is worse), '-' for higher-is-better ones; an unsigned amount takes the sign from the
metric's direction, and a sign that contradicts it is an error. METRIC[EVALUATOR]=X limits a
tolerance to one evaluator.

Noise-aware: METRIC=+Kci allows K x the BASELINE row's interval (CI half-width, or its fold
std where it has no CI; never the run's own), at least the metric's default tolerance (the
floor, 0 for a metric without one), e.g. --tolerance recall_at_1=+2ci. A baseline interval
wider than the metric's unit allows (a fraction's std above 1) is an error: it would allow any
change.

--preset ci holds privacy and utility together: every headline metric uses +1ci (the default
is the floor); every method needs at least one privacy metric (a lower-is-better rate: TAR,
accuracy, Recall@1) and one utility metric (higher-is-better: face_kept, detection_rate; or
FID) checked, and every run method needs baseline rows; else exit 2.

--as RUN_METHOD=BASELINE_METHOD checks a run's method against another method's baseline rows,
e.g. --as mask=blur17 (repeatable, or comma-separated).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_dir", help="run folder (or its results.csv)")
    parser.add_argument(
        "--baseline", required=True, help="baseline results.csv (or a run folder holding one)"
    )
    parser.add_argument(
        "--tolerance",
        help="comma-separated METRIC=+X / METRIC=-X overriding the metrics' default tolerances "
        "(see below)",
    )
    parser.add_argument(
        "--preset",
        choices=["ci"],
        help="ci: privacy and utility together, noise-aware tolerances (see below)",
    )
    parser.add_argument(
        "--as",
        dest="method_map",
        action="append",
        metavar="RUN_METHOD=BASELINE_METHOD",
        help="compare a run's method to a baseline method of another name (repeatable)",
    )
    parser.add_argument("--markdown", help="also write a markdown summary here (CI job page)")


def run(args: argparse.Namespace) -> int:
    from anonbench.check import (
        format_markdown,
        format_markdown_error,
        format_text,
        parse_method_map,
        run_check,
    )
    from anonbench.commands.report import check_writable_file, refuse_foreign_file
    from anonbench.errors import AnonbenchError
    from anonbench.safety import refuse_overlap, run_files

    check_writable_file(args.markdown, "--markdown")  # before any work: one line, exit 2
    # rule 2: the summary never overwrites the run's or the baseline's files, nor the user's
    refuse_overlap(
        [("--markdown", args.markdown)], run_files(args.run_dir) + _baseline_files(args.baseline)
    )
    refuse_foreign_file(args.markdown, "--markdown", is_check_summary, "an anonbench check summary")
    try:
        res = run_check(
            args.run_dir,
            args.baseline,
            args.tolerance,
            preset=args.preset,
            method_map=parse_method_map(args.method_map),
        )
    except AnonbenchError as e:
        # the CI page should say why the gate failed, not only the log
        _write_markdown(args.markdown, format_markdown_error(args.run_dir, args.baseline, e))
        raise
    print(format_text(res))
    _write_markdown(args.markdown, format_markdown(res, args.run_dir, args.baseline))
    return res.exit_code


def _baseline_files(baseline: str) -> list[tuple[str, Path]]:
    """The baseline's own files (safety.run_files), each named as the baseline's: an error
    naming "the run's own file" would point at the wrong argument."""
    from anonbench.safety import run_files

    p = Path(baseline)
    table = p / "results.csv" if p.is_dir() else p
    rest = [("a file of the --baseline's run", f) for _, f in run_files(p) if f != table]
    return [("the --baseline file", table), *rest]


def is_check_summary(head: bytes) -> bool:
    """The start of a summary `check --markdown` wrote: "## <icon> anonbench check: ..."."""
    first = head.split(b"\n", 1)[0]
    return first.startswith(b"## ") and b" anonbench check: " in first


def _write_markdown(path: str | None, text: str) -> None:
    if path:
        md = Path(path)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text, encoding="utf-8")
