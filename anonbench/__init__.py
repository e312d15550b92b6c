"""anonbench: a benchmark and evaluation suite for face anonymizers."""

__version__ = "0.1.0"
