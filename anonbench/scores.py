"""Where a method's per-pair scores are stored: ``scores/<protocol>/<name>.csv``, the name made
from the method's label by :func:`score_file_name`, the one naming function that the writers
(protocols) and the report use (issue 20, rule 9).

The name is collision-free by construction, also on a case-insensitive disk: ASCII letters,
digits and ``-_.=+~`` stay (an upper-case letter is written ``^`` and the letter in lower
case), every other byte of the label's UTF-8 is ``%XX``. So ``x y`` is ``x%20y``, ``x_y`` is
``x_y``, ``X`` is ``^x``, and any label (spaces, accents, emoji) has a file and so its ROC plot.
A name that would be longer than :data:`MAX_NAME` characters is cut and ends in the sha256 of
the label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MAX_NAME = 200  # file systems allow 255 bytes; room for ".csv" and temporary-file affixes
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.=+~")


def score_file_name(label: str) -> str:
    """The file name (``.csv`` included) of a method label's scores; distinct labels never
    share one, even compared case-insensitively."""
    out: list[str] = []
    for i, ch in enumerate(str(label)):
        if ch in _KEEP and not (i == 0 and ch == "."):  # no hidden file
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("^" + ch.lower())
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    name = "".join(out)
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(str(label).encode("utf-8", "surrogatepass")).hexdigest()
        name = name[: MAX_NAME - 66] + "~" + digest
    return name + ".csv"


def artifact_name(label: str) -> str:
    """The file-system name of a method label's other artifacts (missed/<protocol>/NAME.csv,
    examples/<protocol>/NAME/): score_file_name's stem, so distinct labels never share one."""
    return score_file_name(label)[: -len(".csv")]


def score_file(run_dir: str | Path, protocol: str, label: str) -> Path:
    """``run_dir/scores/<protocol>/<score_file_name(label)>``."""
    return Path(run_dir) / "scores" / protocol / score_file_name(label)
