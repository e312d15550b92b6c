"""Tiny random training data shared by the GAN trainer tests (imported like safety_cases)."""

from __future__ import annotations

from pathlib import Path


def tiny_prepared(path: Path) -> str:
    """8 random 144-px 'faces' of 4 identities written as a prepared file; the --data value."""
    import torch

    from anonbench.methods.landmark_data import TrainData, save_prepared

    g = torch.Generator().manual_seed(1)
    canvas = torch.randint(0, 256, (8, 5, 144, 144), generator=g, dtype=torch.uint8)
    labels = torch.arange(8) // 2
    data = TrainData(canvas, labels, [f"id{i}" for i in range(4)], [str(i) for i in range(8)])
    save_prepared(data, path, {"split": "all"})
    return f"prepared:{path}"
