"""Evaluation protocols (installed as anonbench.protocols)."""
