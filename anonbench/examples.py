"""Example outputs saved by protocols for reports: the same faces for every method."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

N_EXAMPLES = 8


def pick_examples(keys_and_ids: Sequence[tuple[str, str]], n: int = N_EXAMPLES) -> list[str]:
    """Keys of n items from distinct identities, spread over the sorted identities."""
    first: dict[str, str] = {}
    for k, ident in sorted(keys_and_ids):
        first.setdefault(ident, k)
    people = sorted(first)
    if not people:
        return []
    step = max(1, len(people) // n)
    return [first[p] for p in people[::step][:n]]


def save_examples(
    out_dir: str | Path, protocol: str, method: str, items: Sequence[tuple[str, str, np.ndarray]]
) -> None:
    """Writes examples/<protocol>/<method>/NN.jpg and examples/<protocol>/examples.csv
    (index,key,identity,file) for items (key, identity, RGB uint8 image); <method> is the
    label's artifact_name (labels differing only in case or by a ':' get distinct folders)."""
    import cv2

    from anonbench.scores import artifact_name

    edir = Path(out_dir) / "examples" / protocol
    mdir = edir / artifact_name(method)
    mdir.mkdir(parents=True, exist_ok=True)
    index = ["index,key,identity,file"]
    for i, (key, ident, img) in enumerate(items):
        name = f"{i:02d}.jpg"
        cv2.imwrite(
            str(mdir / name),
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )
        index.append(f"{i},{key},{ident},{name}")
    (edir / "examples.csv").write_text("\n".join(index) + "\n")


def save_missed(out_dir: str | Path, protocol: str, method: str, keys: Sequence[str]) -> None:
    """Writes missed/<protocol>/<artifact_name(method)>.csv (column `key`): the images in
    which the anonymizer found no face and so returned them unchanged (leaks, in reports)."""
    from anonbench.scores import artifact_name

    d = Path(out_dir) / "missed" / protocol
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{artifact_name(method)}.csv").write_text(
        "key\n" + "".join(f"{k}\n" for k in sorted(keys))
    )
