"""Identity folders: root/<identity>/<image>."""

from __future__ import annotations

from pathlib import Path

from anonbench.data.records import IMAGE_EXTENSIONS, ImageRecord
from anonbench.errors import AnonbenchError


def load_identity_folders(root: str | Path) -> list[ImageRecord]:
    root = Path(root)
    if not root.is_dir():
        raise AnonbenchError(f"identity folder root not found: {root}")
    records = [
        ImageRecord(f"{d.name}/{f.name}", f, d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not records:
        raise AnonbenchError(f"no images in {root}/<identity>/ folders")
    return records
