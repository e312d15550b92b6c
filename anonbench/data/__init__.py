"""Datasets: LFW (+ pairs), CelebA aligned (+ identities), identity folders, the embedded sample."""
