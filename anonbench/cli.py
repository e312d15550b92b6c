"""Command line: anonbench ls | run | produce | ... (one module each in anonbench.commands).
`main(argv)` returns the exit code (callable from tests).

Exit codes: 0 success, 1 unexpected failure (an OS error such as a full disk after work has
started: one line), 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from typing import Any

from anonbench import argtypes
from anonbench.errors import AnonbenchError


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one line on stderr (exit 2), like every other input error;
    `--help` still shows the usage."""

    def error(self, message: str) -> Any:
        cmd = self.prog.removeprefix("anonbench").strip()  # the subcommand, if any
        self.exit(2, f"anonbench: error: {f'{cmd}: ' if cmd else ''}{message}\n")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data KIND:PATH (with --data-root as an alias), --device, --batch-size, --workers."""
    p.add_argument(
        "--data",
        "--data-root",
        dest="data",
        help="dataset: lfw:DIR, celeba:DIR, folders:DIR, or a plain DIR (the protocol's "
        "default kind); omitted: the embedded LFW sample (lfw-sample)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for methods and evaluators: auto, cpu, cuda, cuda:N (default cpu)",
    )
    p.add_argument(
        "--batch-size",
        type=argtypes.positive_int,
        default=32,
        help="images per batched torch call (default 32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator of methods that take it (ciagan; CUDA only)",
    )
    p.add_argument(
        "--workers",
        type=argtypes.workers,
        default=None,
        help="worker processes, at most the core count (default min(2, cores))",
    )
    p.add_argument(
        "--cache-dir", help="cache folder (default $ANONBENCH_CACHE or ~/.cache/anonbench)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--max-pixels",
        type=argtypes.max_pixels,
        default=None,
        help="refuse images declaring more pixels than this, before decoding "
        "(default 64e6; 0 = no limit)",
    )


def add_analysis_argument(p: argparse.ArgumentParser, default: str | None = "dlib-hog") -> None:
    """--analysis-detector NAME: the detector of the originals' analysis."""
    p.add_argument(
        "--analysis-detector",
        type=argtypes.detector,
        default=default,
        metavar="NAME",
        help="detector of the originals' analysis: which faces methods anonymize and the "
        "reference box of each original; dlib's 68 landmarks are placed in its boxes "
        "(default dlib-hog, as in the paper; e.g. retinaface finds more faces in tight "
        "crops; anonbench ls detectors)",
    )


def build_parser() -> argparse.ArgumentParser:
    from anonbench import __version__

    p = OneLineParser(prog="anonbench", description="Benchmark face anonymizers.")
    p.add_argument("--version", action="version", version=f"anonbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for mod in _command_modules():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    return p


FIRST = ("ls", "run")


def _command_modules() -> list:
    """The modules of anonbench.commands, each one subcommand (see its package docstring)."""
    import importlib
    import pkgutil

    import anonbench.commands as pkg

    mods = [
        importlib.import_module(f"{pkg.__name__}.{m.name}")
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_")
    ]
    # ls and run first (the commands most runs start with), the others by name
    return sorted(
        mods, key=lambda m: (FIRST.index(m.NAME) if m.NAME in FIRST else len(FIRST), m.NAME)
    )


class StdoutError(Exception):
    """Standard output cannot be written (a full disk, a closed terminal): the command's
    output is lost, so it cannot succeed. A closed pipe stays a BrokenPipeError (console_main)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))


class _GuardedStdout:
    """sys.stdout during a command: a write or flush that fails with an OSError other than a
    closed pipe raises StdoutError, so main can tell it from an OSError of the command's own
    files (which may fail for other reasons and are reported where they are written)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(e) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(e) from None

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...: the stream's
        return getattr(self.stream, name)


class _ClosedStdout:
    """Standard output of a process started with it closed (sys.stdout is None)."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "max_pixels", None) is not None:
        from anonbench.data.images import set_max_pixels

        set_max_pixels(args.max_pixels or None)
    # with a run file, --workers not given leaves the file's value (anonbench.runfile)
    if getattr(args, "workers", 1) is None and not getattr(args, "config", None):
        from anonbench.runner import default_workers

        args.workers = default_workers()
    from anonbench.safety import sigterm_as_interrupt

    stdout = sys.stdout
    # None: started with stdout closed, where print() would drop the output without a word
    sys.stdout = _GuardedStdout(stdout if stdout is not None else _ClosedStdout())
    try:
        with sigterm_as_interrupt():  # rule 10: `kill` ends any command like Ctrl-C
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # the output is complete only once it is written
        return code
    except AnonbenchError as e:
        print(f"anonbench: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))  # 1 for an OS error after work started
    except StdoutError as e:
        print(f"anonbench: error: cannot write output: {e}", file=sys.stderr)
        return 1  # the command may have done its work; its output is lost
    except KeyboardInterrupt:
        print("anonbench: interrupted", file=sys.stderr)
        return 130
    finally:
        if isinstance(sys.stdout, _GuardedStdout):  # not if the command replaced it
            sys.stdout = stdout


def console_main() -> None:
    try:
        code = _flushed(main())
    except BrokenPipeError:
        # `anonbench ls | head`: the reader left. No traceback, but no success either (the
        # output was cut short: exit 1, as the Python docs advise); devnull keeps the
        # interpreter's final flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def _flushed(code: int) -> int:
    """`code` once stdout is flushed. Where it cannot be (`> /dev/full`: main said so in one
    line), what is left in its buffer is dropped, so the interpreter's last flush stays quiet
    too, and the exit is not 0."""
    if sys.stdout is None:
        return code
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return code or 1
    return code
