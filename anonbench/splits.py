"""The identity split of the identity protocols (celeba, landmark-attack, faceswap): the
dataset's identities split (seeded, anonbench.data.splits.identity_split) into train
identities, used only to train attackers, and disjoint test identities, anonymized and scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anonbench.api import Option, RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError


def _inside_0_1(value: float) -> None:
    if not 0 < value < 1:  # both halves of the split need identities
        raise AnonbenchError(f"option test_fraction={value:g}: expected a number between 0 and 1")


SPLIT_OPTIONS = (
    Option(
        "test_fraction",
        float,
        0.5,
        "share of identities held out for testing (between 0 and 1, both excluded)",
        0,
        1,
        check=_inside_0_1,
    ),
    Option("max_per_identity", int, 0, "test images per identity (0 = all)"),
    Option("pnca_epochs", int, 20, "training epochs of the Proxy-NCA attackers", 1),
)


@dataclass
class Split:
    """Train and test records of disjoint identities, and what run.json records (`info`)."""

    train: list[ImageRecord]
    test: list[ImageRecord]
    train_ids: list[str]
    test_ids: list[str]
    info: dict[str, Any]


def cap_per_identity(records: list[ImageRecord], per_id: int) -> list[ImageRecord]:
    """At most per_id images per identity (0 = all), keeping the first by key."""
    if per_id <= 0:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in sorted(records, key=lambda r: r.key):
        if seen.get(r.identity, 0) < per_id:
            seen[r.identity] = seen.get(r.identity, 0) + 1
            out.append(r)
    return out


def load_split(ctx: RunContext) -> Split:
    """The dataset's records split by identity (seeded; options test_fraction and
    max_per_identity): train identities train attackers, test identities are scored."""
    from anonbench.data.splits import identity_split

    records = ctx.data.records
    frac = float(ctx.options.get("test_fraction", 0.5))
    train_ids, test_ids = identity_split([r.identity for r in records], ctx.seed, frac)
    per_id = int(ctx.options.get("max_per_identity", 0))
    test_set, train_set = set(test_ids), set(train_ids)
    test = cap_per_identity([r for r in records if r.identity in test_set], per_id)
    train = [r for r in records if r.identity in train_set]
    info = {
        "dataset": ctx.data.label,
        "seed": ctx.seed,
        "test_fraction": frac,
        "max_per_identity": per_id,
        "train_identities": train_ids,
        "test_identities": test_ids,
        "n_test_images": len(test),
        "n_train_images": len(train),
        "missing_files": len(ctx.data.missing_files),
    }
    return Split(train, test, train_ids, test_ids, info)


def analyse_test(ctx: RunContext, split: Split, warn: bool = True) -> list[ImageRecord]:
    """Analyses the test originals, warns (`warn`) about unreadable ones and freezes the
    reference boxes (anonbench.evaluate.Originals.freeze) before any train image is analysed;
    returns the readable test records."""
    org = ctx.originals
    org.analyze(split.test, f"analyse test ({ctx.data.label})")
    for e in sorted(org.errors(split.test).values()) if warn else ():
        print(f"warning: {e} (left out)")
    org.freeze()
    return org.readable(split.test)
