"""`anonbench check RUN_DIR --baseline FILE [--tolerance ...]`: the CI regression gate."""

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
    parser.add_argument("--markdown", help="also write a markdown summary here (CI job page)")


def run(args: argparse.Namespace) -> int:
    from anonbench.check import format_markdown, format_text, run_check
    from anonbench.errors import AnonbenchError

    try:
        res = run_check(args.run_dir, args.baseline, args.tolerance)
    except AnonbenchError as e:
        # the CI page should say why the gate failed, not only the log
        _write_markdown(
            args.markdown,
            f"## ⚠️ anonbench check: files do not match\n\nRun `{args.run_dir}` against "
            f"baseline `{args.baseline}`:\n\n> {e}\n",
        )
        raise
    print(format_text(res))
    _write_markdown(args.markdown, format_markdown(res, args.run_dir, args.baseline))
    return res.exit_code


def _write_markdown(path: str | None, text: str) -> None:
    if path:
        md = Path(path)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text, encoding="utf-8")
