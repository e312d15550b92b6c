"""One escaping function per output format (issue 20, rule 5): everything that enters a report
from data or paths (method labels, dataset and folder names, run paths, keys, messages) passes
through :func:`tex_escape` (LaTeX), :func:`md_escape` (Markdown) or :func:`html_escape` (HTML),
and nothing else builds those formats from data.

All three start with :func:`one_line`: every line break (``\\n``, ``\\r``, vertical tab, form
feed, the Unicode separators) and every other control character becomes a space. A line break is
what turns text into markup in LaTeX (it ends a ``%`` comment, so ``\\input{...}`` after it would
run) and in Markdown (a new line can start a heading, a list, a table row or an HTML block).
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls (tab, newline, carriage return included), DEL, and the Unicode line and
# paragraph separators: whatever some reader might take as the end of a line
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(s: Any) -> str:
    """`s` as text on one line: line breaks and other control characters become spaces."""
    return _BREAKS.sub(" ", str(s))


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def tex_escape(s: Any) -> str:
    """Text for LaTeX, in a table, a caption or a ``%`` comment: on one line, every special
    character written as itself (``\\``, ``{``, ``%``, ``^`` included, so neither a command nor
    ``^^`` notation can form)."""
    return "".join(_TEX.get(ch, ch) for ch in one_line(s))


# backslash-escaped in Markdown: emphasis, code, links and images, table cells, strikethrough
_MD = {ch: "\\" + ch for ch in "\\`*[]|~"}
_MD.update({"&": "&amp;", "<": "&lt;", ">": "&gt;"})  # no HTML, no entity, no autolink
# an underscore at a word's edge can start or end emphasis; inside a word (recall_at_1) not
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(s: Any) -> str:
    """Text for Markdown (GitHub's flavour), in a paragraph, a list item or a table cell: on
    one line, shown as written (no HTML, link, image, code or emphasis can form)."""
    text = "".join(_MD.get(ch, ch) for ch in one_line(s))
    return _MD_UNDERSCORE.sub(r"\\_", text)


def html_escape(s: Any) -> Any:
    """Text for HTML, as element content or a quoted attribute value: on one line, ``& < > " '``
    as entities (markupsafe.Markup, which jinja2 does not escape again). Markup (a template's
    own HTML) passes unchanged: the report's jinja2 environment calls this on every value."""
    import markupsafe

    if hasattr(s, "__html__"):
        return s
    return markupsafe.escape(one_line(s))
