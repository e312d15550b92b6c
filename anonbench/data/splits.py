"""Identity-disjoint splits and "kind:PATH" dataset specs."""

from __future__ import annotations

import random
from collections.abc import Sequence

from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError


def identity_split(
    identities: Sequence[str], seed: int, test_fraction: float = 0.5
) -> tuple[list[str], list[str]]:
    """Splits the distinct identities into disjoint (train, test) lists, seeded and stable."""
    if not 0 < test_fraction < 1:
        raise AnonbenchError("test fraction must be between 0 and 1")
    ids = sorted(set(identities))
    if len(ids) < 2:
        raise AnonbenchError("need at least 2 identities to split")
    rng = random.Random(seed)
    rng.shuffle(ids)
    n_test = min(len(ids) - 1, max(1, round(len(ids) * test_fraction)))
    return sorted(ids[n_test:]), sorted(ids[:n_test])


def load_identity_dataset(spec: str) -> list[ImageRecord]:
    """`celeba:PATH` (aligned CelebA) or `folders:PATH` (root/<identity>/<image>)."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise AnonbenchError(f"dataset must look like celeba:PATH or folders:PATH, got {spec!r}")
    if kind == "celeba":
        from anonbench.data.celeba import load_celeba

        return load_celeba(path).records
    if kind == "folders":
        from anonbench.data.folders import load_identity_folders

        return load_identity_folders(path)
    raise AnonbenchError(f"unknown dataset kind {kind!r} (celeba or folders)")
