"""Labeled Faces in the Wild: images `<Name>/<Name>_NNNN.jpg` and the official pairs files.

View 2 (`pairs.txt`): first line `folds n`, then per fold n matched pairs (`name i j`) followed by
n mismatched pairs (`name1 i name2 j`). View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`): first
line `n`, then n matched and n mismatched pairs, treated as a single fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from anonbench.data.text import read_text_utf8
from anonbench.errors import AnonbenchError

IMAGE_DIR_CANDIDATES = ("images_deepfunneled", "lfw-deepfunneled", "lfw_funneled", "lfw", "images")

# LFW images are 250x250 and centred on the face by construction. This is the face box the
# dataset implies, used by an embedder whose own detector finds no face: the median dlib HOG
# box (upsample 1) over the deep-funneled images, rounded.
LFW_FACE_BOX = (67.0, 80.0, 175.0, 187.0)


@dataclass(frozen=True)
class Pair:
    fold: int
    index: int  # position within its fold (0-based)
    label: int  # 1 = same person
    name1: str
    num1: int
    name2: str
    num2: int
    line: int = field(default=0, compare=False)  # in the pairs file (for error messages)


class PairsFormatError(AnonbenchError):
    pass


def _parse_line(
    parts: list[str], path: Path, lineno: int, matched: bool
) -> tuple[str, int, str, int]:
    try:
        if matched and len(parts) == 3:
            return parts[0], int(parts[1]), parts[0], int(parts[2])
        if not matched and len(parts) == 4:
            return parts[0], int(parts[1]), parts[2], int(parts[3])
    except ValueError:
        pass
    want = "name i j" if matched else "name1 i name2 j"
    raise PairsFormatError(
        f"{path}:{lineno}: expected a {'matched' if matched else 'mismatched'} "
        f"pair '{want}', got {' '.join(parts)!r}"
    )


def read_pairs(path: str | Path) -> list[Pair]:
    """Parses a View 2 (`folds n` header) or View 1 (`n` header) pairs file."""
    path = Path(path)
    if not path.is_file():
        raise AnonbenchError(f"pairs file not found: {path}")
    lines = [(i + 1, ln.split()) for i, ln in enumerate(read_text_utf8(path).splitlines())]
    lines = [(i, p) for i, p in lines if p]
    if not lines:
        raise PairsFormatError(f"{path}: empty pairs file")
    head_no, head = lines[0]
    try:
        nums = [int(x) for x in head]
    except ValueError:
        raise PairsFormatError(
            f"{path}:{head_no}: header must be 'folds n' or 'n', got {' '.join(head)!r}"
        ) from None
    if len(nums) == 2:
        folds, n = nums
    elif len(nums) == 1:
        folds, n = 1, nums[0]
    else:
        raise PairsFormatError(f"{path}:{head_no}: header must be 'folds n' or 'n'")
    if folds < 1 or n < 1:
        raise PairsFormatError(f"{path}:{head_no}: header needs positive numbers")
    body = lines[1:]
    if len(body) != 2 * folds * n:
        raise PairsFormatError(
            f"{path}:{head_no}: header promises {folds} folds x {2 * n} pairs = "
            f"{2 * folds * n} lines, found {len(body)}"
        )
    pairs = []
    for k, (lineno, parts) in enumerate(body):
        fold, pos = divmod(k, 2 * n)
        matched = pos < n
        a, i, b, j = _parse_line(parts, path, lineno, matched)
        for name in (a, b):
            if name in (".", "..") or any(c in name for c in "/\\\0"):
                raise PairsFormatError(
                    f"{path}:{lineno}: the name {name!r} is not a plain folder name "
                    "(no '/', '\\', '.' or '..'); nothing was written"
                )
        pairs.append(Pair(fold, pos, int(matched), a, i, b, j, lineno))
    return pairs


@dataclass
class LFWDataset:
    root: Path
    image_dir: Path
    pairs_file: Path
    label: str  # "lfw" or "lfw-sample": written in every output

    def image_path(self, name: str, num: int) -> Path:
        return self.image_dir / name / f"{name}_{num:04d}.jpg"

    def pairs(self) -> list[Pair]:
        return read_pairs(self.pairs_file)


def sample_root() -> Path:
    """The LFW sample shipped inside the package."""
    return Path(str(resources.files("anonbench.data") / "sample" / "lfw"))


def open_lfw(root: str | Path | None, pairs: str = "pairs.txt") -> LFWDataset:
    """LFW at `root` (or the embedded sample when root is None). `pairs` is a file name in root
    (pairs.txt, pairsDevTrain.txt, pairsDevTest.txt) or a path."""
    label = "lfw"
    if root is None:
        root, label = sample_root(), "lfw-sample"
    root = Path(root)
    if not root.is_dir():
        raise AnonbenchError(f"LFW data root not found: {root}")
    pairs_file = Path(pairs) if Path(pairs).is_absolute() else root / pairs
    if not pairs_file.is_file():
        raise AnonbenchError(f"no {pairs} in LFW data root {root} (need the official pairs file)")
    for c in IMAGE_DIR_CANDIDATES:
        if (root / c).is_dir():
            return LFWDataset(root, root / c, pairs_file, label)
    return LFWDataset(root, root, pairs_file, label)
