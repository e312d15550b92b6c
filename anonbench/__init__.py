"""anonbench: a benchmark and evaluation suite for face anonymizers."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# the Python API (anonbench.experiment), loaded on first use: `import anonbench` and
# `anonbench ls` stay free of torch and pandas
_API = ("benchmark", "run_config", "Results")


def __getattr__(name: str) -> Any:
    if name in _API:
        from anonbench import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'anonbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
