"""Metrics: verification (TAR@FAR, accuracy, k-fold), later retrieval, FID, detection rate."""
