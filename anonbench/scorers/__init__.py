"""Scorers: the metric families protocols compose (contract: anonbench.scorers.base)."""
