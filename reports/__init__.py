"""Reports (installed as anonbench.reports): they read result files, never compute metrics."""
