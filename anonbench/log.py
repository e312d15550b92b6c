"""Warnings and notes through `logging`, shown as they always were.

Every anonbench module logs to the ``anonbench`` logger (or a child, ``anonbench.runner``)
instead of printing with a ``quiet`` flag threaded by hand. A handler installed here shows a
record as one line on the standard error stream of the moment (looked up at each record, so
pytest's capsys and capfd see it): ``warning: ...`` for a warning, ``note: ...`` for
:func:`note`, ``error: ...`` for an error. A program that embeds anonbench can replace that
handler or raise the logger's level like any other logger's.

Adopting it is one line: ``print(f"warning: {msg}", file=sys.stderr)`` becomes
``warn(msg)``; a warning that went to standard output keeps doing so with ``warn(msg,
stdout=True)``.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "anonbench"
_PREFIX = {logging.WARNING: "warning: ", logging.INFO: "note: ", logging.ERROR: "error: "}
_STDOUT = "anonbench_stdout"  # a record attribute: show it on standard output


class ConsoleHandler(logging.Handler):
    """One line per record on the current sys.stderr (or sys.stdout when the record asks)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if getattr(record, _STDOUT, False) else sys.stderr
            prefix = _PREFIX.get(record.levelno, f"{record.levelname.lower()}: ")
            stream.write(f"{prefix}{record.getMessage()}\n")
            stream.flush()
        except Exception:  # logging's rule: a failing handler never breaks the program
            self.handleError(record)


def get_logger(name: str | None = None) -> logging.Logger:
    """The anonbench logger (a child when `name` is given, e.g. "runner"), with the console
    handler installed once on the ``anonbench`` logger."""
    root = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, ConsoleHandler) for h in root.handlers):
        root.addHandler(ConsoleHandler())
        root.setLevel(logging.INFO)
        # shown once, by the handler above, even when the application configures the root
        root.propagate = False
    return root.getChild(name) if name else root


def warn(msg: str, *, stdout: bool = False, logger: logging.Logger | None = None) -> None:
    """Logs a warning, shown as ``warning: msg`` (on stdout when `stdout`)."""
    (logger or get_logger()).warning(msg, extra={_STDOUT: stdout})


def note(msg: str, *, logger: logging.Logger | None = None) -> None:
    """Logs a note (a caveat of a method, say), shown as ``note: msg`` on stderr."""
    (logger or get_logger()).info(msg, extra={_STDOUT: False})
