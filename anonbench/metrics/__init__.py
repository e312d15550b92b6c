"""Metrics: verification (TAR@FAR, accuracy, k-fold), retrieval (Recall@k, bootstrap intervals),
FID, KID, reversal attacks, and face-geometry utility (landmark NME, head pose, expression)."""
