"""Identity folders: root/<identity>/<image>."""

from __future__ import annotations

from pathlib import Path

from anonbench.data.records import IMAGE_EXTENSIONS, ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.safety import DataRoot


def _visible(p: Path) -> bool:
    """Hidden entries are not data: `.git/`, `.ipynb_checkpoints/`, and macOS's AppleDouble
    `._photo.jpg` files, which carry a .jpg name but are no image."""
    return not p.name.startswith(".")


def load_identity_folders(root: str | Path) -> list[ImageRecord]:
    """One record per image file in root/<identity>/ (hidden files and folders left out)."""
    root = Path(root)
    if not root.is_dir():
        raise AnonbenchError(f"identity folder root not found: {root}")
    inside = DataRoot(root, "the identity folder root")
    records = [
        # rule 1: a linked folder or file that resolves outside the root is refused
        ImageRecord(f"{d.name}/{f.name}", inside.path(f"{d.name}/{f.name}", str(f)), d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
        for f in sorted(d.iterdir())
        if f.is_file() and _visible(f) and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not records:
        raise AnonbenchError(f"no images in {root}/<identity>/ folders")
    return records
