"""Datasets as parameters of protocols: `KIND:PATH` specs opened into one record list.

Kinds:
- `lfw:DIR`: LFW images (`<Name>/<Name>_NNNN.jpg`, directly or under images_deepfunneled/ ...)
  and a pairs file; records are the images the pairs name.
- `celeba:DIR`: aligned CelebA (`img_align_celeba/` + `identity_CelebA.txt`).
- `folders:DIR`: identity folders, `DIR/<identity>/<image>`, any image size.

A plain path takes the protocol's default kind; no spec at all is the embedded LFW sample.
Every record's key is its path relative to the dataset's image root, so outputs written at
the same relative paths map back to their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError

KINDS = ("lfw", "celeba", "folders")


@dataclass
class Dataset:
    kind: str
    root: Path
    label: str  # written in every result row: the folder's name, or "lfw-sample"
    image_root: Path  # record keys are paths relative to this folder
    records: list[ImageRecord]
    missing_files: list[str] = field(default_factory=list)
    pairs: list = field(default_factory=list)  # LFW pairs (anonbench.data.lfw.Pair)
    pairs_file: Path | None = None
    spec: str = ""

    def by_key(self) -> dict[str, ImageRecord]:
        return {r.key: r for r in self.records}

    def describe(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "root": str(self.root),
            "label": self.label,
            "records": len(self.records),
            "identities": len({r.identity for r in self.records}),
            "missing_files": len(self.missing_files),
            **({"pairs_file": str(self.pairs_file)} if self.pairs_file else {}),
        }


def parse_spec(spec: str | None, default_kind: str) -> tuple[str, str | None]:
    """`KIND:PATH` -> (kind, path); a plain path -> (default_kind, path); None -> sample."""
    if spec is None or spec == "":
        return default_kind, None
    kind, sep, path = spec.partition(":")
    if sep and kind in KINDS:
        if not path:
            raise AnonbenchError(f"--data {spec!r}: no path after '{kind}:'")
        return kind, path
    if sep and len(kind) > 1 and "/" not in kind and not Path(spec).exists():
        raise AnonbenchError(
            f"--data {spec!r}: unknown dataset kind {kind!r} (one of: {', '.join(KINDS)})"
        )
    return default_kind, spec


def open_dataset(spec: str | None, default_kind: str = "lfw", pairs: str = "pairs.txt") -> Dataset:
    """Opens a dataset spec (see the module docstring)."""
    kind, path = parse_spec(spec, default_kind)
    if path is None and kind != "lfw":
        raise AnonbenchError(
            f"this protocol needs --data ({kind}:DIR, or folders:DIR for identity folders); "
            "the embedded sample is LFW pairs only"
        )
    if path is not None and not Path(path).is_dir():
        raise AnonbenchError(f"data root not found: {path}")
    ds = _open(kind, path, pairs, spec or "")
    from anonbench.produce import output_name
    from anonbench.safety import refuse_collisions

    # rule 3: one output per input, refused before any work
    refuse_collisions(((r.key, output_name(r.key)) for r in ds.records), f"--data {ds.root}")
    _warn_animated(ds)
    return ds


def _warn_animated(ds: Dataset) -> None:
    """One warning line when inputs are animated (GIF, APNG, WebP, multi-page TIFF): every
    command reads their first frame only. Only formats that can animate are opened, and only
    their header (a JPEG dataset costs nothing)."""
    from anonbench.data.images import declared_frames
    from anonbench.log import warn

    animated = [(r.key, n) for r in ds.records if (n := declared_frames(r.path)) > 1]
    if animated:
        key, n = animated[0]
        more = f" and {len(animated) - 1} more" if len(animated) > 1 else ""
        warn(
            f"--data {ds.root}: {len(animated)} animated image(s) ({key}: {n} frames{more}); "
            "only the first frame of each is anonymized and scored"
        )


def _open(kind: str, path: str | None, pairs: str, spec: str) -> Dataset:
    if kind == "lfw":
        return _open_lfw(path, pairs, spec)
    assert path is not None
    root = Path(path)
    if kind == "celeba":
        from anonbench.data.celeba import load_celeba

        ds = load_celeba(path)
        return Dataset(
            "celeba", root, root.resolve().name, root, ds.records, ds.missing_files, spec=spec
        )
    from anonbench.data.folders import load_identity_folders

    return Dataset(
        "folders", root, root.resolve().name, root, load_identity_folders(root), spec=spec
    )


def _open_lfw(path: str | None, pairs: str, spec: str) -> Dataset:
    from anonbench.data.lfw import open_lfw
    from anonbench.safety import DataRoot

    lfw = open_lfw(path, pairs)
    ps = lfw.pairs()
    images = DataRoot(lfw.image_dir, "the LFW image folder")
    records: dict[str, ImageRecord] = {}
    for p in ps:
        for name, num in ((p.name1, p.num1), (p.name2, p.num2)):
            key = lfw_key(name, num)
            if key not in records:  # rule 1: inside the image folder, links resolved
                img = images.path(key, f"{lfw.pairs_file}:{p.line}")
                records[key] = ImageRecord(key, img, name)
    label = lfw.label if path is None else Path(path).resolve().name
    if label == "images_deepfunneled" or label == "":
        label = "lfw"
    return Dataset(
        "lfw",
        lfw.root,
        label,
        lfw.image_dir,
        sorted(records.values(), key=lambda r: r.key),
        pairs=ps,
        pairs_file=lfw.pairs_file,
        spec=spec,
    )


def lfw_key(name: str, num: int) -> str:
    """The record key of an LFW image."""
    return f"{name}/{name}_{num:04d}.jpg"
