"""CelebA in the aligned format (178x218 crops).

root/
  img_align_celeba/NNNNNN.jpg
  identity_CelebA.txt               `file identity` per line (required)
  list_landmarks_align_celeba.txt   count line, header line, then `file x1 y1 ... x5 y5` (optional)
  list_eval_partition.txt           `file 0|1|2` = train|val|test (optional)

Tolerant of subsets: files listed but not on disk are skipped and counted; landmarks and
partitions may cover only some files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anonbench.data.records import ImageRecord
from anonbench.data.text import read_text_utf8
from anonbench.errors import AnonbenchError
from anonbench.safety import DataRoot

PARTITIONS = {"0": "train", "1": "val", "2": "test"}

# The face box the aligned format implies (178x218 crops, eyes on fixed positions): the median
# dlib HOG box (upsample 1) over 300 random images of ../shared/data/celeba. Used by an
# attacker whose own detector finds no face.
CELEBA_FACE_BOX = (46.0, 86.0, 135.0, 176.0)


@dataclass
class CelebA:
    root: Path
    records: list[ImageRecord]
    missing_files: list[str]

    def identities(self) -> list[str]:
        return sorted({r.identity for r in self.records}, key=_natural)


def _natural(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 62, s)


def _read_table(
    path: Path, ncols: int, skip: int = 0, under: DataRoot | None = None
) -> dict[str, list[str]]:
    """First field -> the others; `under`: the first field is a file name that must stay
    inside that folder (rule 1, checked with file:line)."""
    out: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text_utf8(path).splitlines()[skip:], start=skip + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != ncols:
            raise AnonbenchError(f"{path}:{lineno}: expected {ncols} fields, got {len(parts)}")
        if under is not None:
            under.path(parts[0], f"{path}:{lineno}")
        out[parts[0]] = parts[1:]
    return out


def load_celeba(root: str | Path) -> CelebA:
    root = Path(root)
    img_dir = root / "img_align_celeba"
    ident_file = root / "identity_CelebA.txt"
    if not img_dir.is_dir():
        raise AnonbenchError(f"CelebA root {root} has no img_align_celeba/ folder")
    if not ident_file.is_file():
        raise AnonbenchError(f"CelebA root {root} has no identity_CelebA.txt")
    idents = _read_table(ident_file, 2, under=DataRoot(img_dir, "the CelebA image folder"))
    lm_file = root / "list_landmarks_align_celeba.txt"
    landmarks = _read_table(lm_file, 11, skip=2) if lm_file.is_file() else {}
    part_file = root / "list_eval_partition.txt"
    parts = _read_table(part_file, 2) if part_file.is_file() else {}
    records, missing = [], []
    for fname, (ident,) in sorted(idents.items()):
        path = img_dir / fname
        if not path.is_file():
            missing.append(fname)
            continue
        lm = landmarks.get(fname)
        try:
            lm_arr = np.array(lm, np.float32).reshape(5, 2) if lm else None
        except ValueError:
            raise AnonbenchError(f"{lm_file}: non-numeric landmarks for {fname}") from None
        split = PARTITIONS.get(parts[fname][0]) if fname in parts else None
        records.append(ImageRecord(f"img_align_celeba/{fname}", path, ident, split, lm_arr))
    if not records:
        raise AnonbenchError(
            f"no CelebA images found under {img_dir} for the files in {ident_file}"
        )
    return CelebA(root, records, missing)
