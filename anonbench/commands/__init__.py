"""The subcommands, one module each, discovered by anonbench.cli.

A command module must stay light at import (no torch, cv2, pandas at top level) and define:
    NAME: str                      the subcommand name
    HELP: str                      one line for `anonbench --help`
    def add_arguments(parser) -> None
    def run(args) -> int           the exit code; raise AnonbenchError for bad input
"""
