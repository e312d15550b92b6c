"""Reading the small text files datasets ship (LFW pairs, CelebA lists) as UTF-8."""

from __future__ import annotations

from pathlib import Path

from anonbench.errors import AnonbenchError


class TextDecodeError(AnonbenchError):
    """A dataset text file holds bytes that are not UTF-8."""


def read_text_utf8(path: str | Path) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark is dropped). Bytes that are not
    UTF-8 are one AnonbenchError naming file:line and the byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        bad = data[e.start : e.end].hex(" ")
        raise TextDecodeError(
            f"{path}:{line}: not UTF-8 (byte {bad} at column {col}); save the file as UTF-8"
        ) from None
