r"""LaTeX tables ready to paste into a paper (needs ``\usepackage{booktabs}``).

One table per (protocol, dataset, split): methods as rows, metric x evaluator as columns with
the better direction as an arrow in the header, the best anonymizer per column in bold
(references such as ``original`` excluded), intervals optional. Count diagnostics (faces
missed, ...) have no better direction and are left to the HTML report.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from anonbench.escape import tex_escape
from anonbench.reports.runs import Bundle, load_runs
from anonbench.reports.tables import WideTable, build_tables

# a number in scientific notation inside a label ("TAR@FAR=1e-3"), typeset as a power of ten
_SCI = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)e([+-]?)0*(\d+)(?![\w.])")


def tex_label(label: str) -> str:
    """A MetricSpec label for LaTeX: escaped, with 1e-3 written as $10^{-3}$."""

    def sci(m: re.Match[str]) -> str:
        mant, sign, exp = m[1], "-" if m[2] == "-" else "", m[3]
        power = f"10^{{{sign}{exp}}}"
        return f"${power}$" if mant == "1" else f"${mant}\\times {power}$"

    return _SCI.sub(sci, tex_escape(label))


def _arrow(hib: bool | None) -> str:
    return {True: r" $\uparrow$", False: r" $\downarrow$"}.get(hib, "")  # type: ignore[arg-type]


def _interval(text: str, kind: str) -> str:
    if kind == "std":
        return r" {\scriptsize$\pm$" + tex_escape(text.removeprefix("± ")) + "}"
    if kind == "ci":
        return r" {\scriptsize" + tex_escape(text) + "}"
    return ""


def table_tex(t: WideTable, intervals: bool = True) -> str | None:
    """One booktabs table; None when the protocol has no metric with a better direction."""
    cols = [i for i, c in enumerate(t.columns) if c.higher_is_better is not None]
    if not cols:
        return None
    kinds = {c.interval_kind for (m, i), c in t.cells.items() if i in cols and c.interval_kind}
    groups = t.header_groups(cols)
    lines = [
        f"% {tex_escape(t.title)}"
        + (" -- EMBEDDED SAMPLE, not the full protocol" if t.sample else ""),
        r"\begin{table}[t]",
        r"  \centering",
    ]
    how = [r"$\uparrow$/$\downarrow$: higher/lower is better", "best anonymizer in bold"]
    if intervals and "std" in kinds:
        how.append(r"$\pm$: standard deviation over folds")
    if intervals and "ci" in kinds:
        how.append("[a, b]: 95\\% bootstrap interval")
    sample = " (embedded sample, not the full protocol)" if t.sample else ""
    lines.append(
        f"  \\caption{{{tex_escape(t.protocol)} v{tex_escape(t.version)} on "
        f"{tex_escape(t.dataset)}{sample}. {'; '.join(how)}.}}"
    )
    label = "".join(
        ch if ch.isascii() and ch.isalnum() else "-" for ch in f"{t.protocol}-{t.dataset}"
    )
    lines.append(f"  \\label{{tab:anonbench-{label}}}")
    lines.append(r"  \begin{tabular}{l" + "r" * len(cols) + "}")
    lines.append(r"    \toprule")
    head = ["Method"]
    rules = []
    pos = 2
    for col, span in groups:
        lab = tex_label(col.label) + _arrow(col.higher_is_better)
        head.append(lab if span == 1 else f"\\multicolumn{{{span}}}{{c}}{{{lab}}}")
        rules.append(f"\\cmidrule(lr){{{pos}-{pos + span - 1}}}")
        pos += span
    lines.append("    " + " & ".join(head) + r" \\")
    lines.append("    " + " ".join(rules))
    evs = [r"{\small " + tex_escape(t.columns[i].evaluator) + "}" for i in cols]
    lines.append("    & " + " & ".join(evs) + r" \\")
    lines.append(r"    \midrule")
    prev_ref: bool | None = None
    for m in t.methods:
        ref = t.is_reference(m)
        if prev_ref is not None and ref != prev_ref:
            lines.append(r"    \midrule")  # references apart from the anonymizers
        prev_ref = ref
        cells = [tex_escape(m) if not ref else r"\textit{" + tex_escape(m) + "}"]
        for i in cols:
            c = t.cell(m, i)
            if c is None or c.text == "n/a":
                cells.append("--")
                continue
            v = tex_escape(c.text)
            v = r"\textbf{" + v + "}" if c.best else v
            if intervals and c.interval:
                v += _interval(c.interval, c.interval_kind)
            cells.append(v)
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def render_latex(run_dirs: list[Path], intervals: bool = True, bundle: Bundle | None = None) -> str:
    """The tables of `run_dirs` (`bundle`: already loaded) as one LaTeX text."""
    from anonbench import __version__

    bundle = bundle or load_runs([Path(p) for p in run_dirs])
    tables = build_tables(bundle)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    parts = [
        f"% anonbench {__version__} tables, generated {stamp} from: "
        + ", ".join(tex_escape(p) for p in run_dirs),
        r"% requires \usepackage{booktabs} in the preamble",
        # a partial run stays visible in the file that goes into a paper
        *[f"% WARNING: {tex_escape(n)}" for n in bundle.status_notes],
    ]
    body = [tex for t in tables if (tex := table_tex(t, intervals)) is not None]
    if not body:
        parts.append("% (no metric with a better direction in these runs)")
    return "\n\n".join(["\n".join(parts), *body]) + "\n"


def write_latex(
    run_dirs: list[Path], out_tex: Path, intervals: bool = True, bundle: Bundle | None = None
) -> Path:
    from anonbench.reports.runs import write_shared_text

    return write_shared_text(Path(out_tex), render_latex(run_dirs, intervals, bundle))
