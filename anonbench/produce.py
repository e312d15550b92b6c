"""The production stage: method x dataset records -> an output store of anonymized images.

An output store is a folder of lossless PNGs at the records' relative paths plus a manifest
(per image: faces found, boxes, the region each face may change, the pixels that did change,
the target identities, timings). Stores of our own methods live in the cache, keyed by method
name + config + checkpoint sha256 + face-analysis version + target policy, and per record by
its key and the sha256 of its file, so every protocol and every rerun reuses one production.
A folder of pre-computed outputs (`folder:DIR`) is an external store: a missing file is a leak
(the original is scored in its place, counted and listed as missed).

With the ray executor, chunks of records (batch-size records, the same batches as in-process)
are Ray tasks on the run's actors: each worker fetches the method once, reads the originals,
writes the PNGs atomically into the store on the shared cache path and returns only its
manifest entries; the parent merges them by key and writes the manifest (also when a shard
fails or the run is interrupted, so a rerun produces only what is missing).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, FaceBatch, MethodMeta
from anonbench.cache import atomic_write_text, file_sha256
from anonbench.data.records import IMAGE_EXTENSIONS, ImageRecord
from anonbench.errors import AnonbenchError

STORE_VERSION = "1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ImageRef:
    """Where one image to evaluate comes from: `path`, or `fallback` (the original) when path
    is None; `like`: an original whose size the image is resized to when they differ."""

    path: str | None
    fallback: str
    like: str | None = None

    def load(self) -> np.ndarray:
        from anonbench.data.images import read_rgb

        img = read_rgb(self.path or self.fallback)
        if self.like is not None and self.path is not None:
            ref = read_rgb(self.like)
            if ref.shape != img.shape:
                import cv2

                img = cv2.resize(img, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
        return img


@dataclass
class OutputStore:
    """Anonymized images of one method (see the module docstring)."""

    label: str
    root: Path
    entries: dict[str, dict[str, Any]]
    external: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def ref(self, rec: ImageRecord) -> ImageRef:
        e = self.entries.get(rec.key)
        if e is None or not e.get("file"):
            return ImageRef(None, str(rec.path))
        return ImageRef(
            str(self.root / e["file"]), str(rec.path), str(rec.path) if self.external else None
        )

    def missed(self, records: Sequence[ImageRecord]) -> list[str]:
        """Keys of records whose face(s) the method left unchanged (a leak)."""
        return [r.key for r in records if self.entries.get(r.key, {}).get("missed", True)]

    def load(self, rec: ImageRecord) -> np.ndarray:
        return self.ref(rec).load()


def output_name(key: str) -> str:
    """The output file of a record: its relative path with a .png suffix."""
    return str(Path(key).with_suffix(".png").as_posix())


def analysis_version() -> str:
    from anonbench.faces.analysis import FaceAnalyzer

    return FaceAnalyzer.version_of("dlib-hog", "dlib-68")


def store_id(method: Anonymizer, label: str, targets: dict[str, int] | None, analysis: str) -> str:
    tag = (
        "default"
        if targets is None
        else hashlib.sha256(json.dumps(sorted(targets.items())).encode()).hexdigest()
    )
    key = json.dumps(
        {
            "store": STORE_VERSION,
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "name": label,
            "config": method.config(),
            "checkpoint": method.meta.checkpoint_sha256,
            "analysis": analysis,
            "targets": tag,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _region_boxes(meta: MethodMeta, faces: Any, h: int, w: int) -> list[list[int] | None]:
    if meta.region == "image":
        return [[0, 0, w, h]] * len(faces)
    if meta.region == "box":
        return [[int(v) for v in np.round(b)] for b in faces.boxes]
    return [_bbox(m > 0) for m in faces.masks(h, w)]


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    from anonbench.cache import atomic_open

    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise AnonbenchError(f"cannot encode PNG for {path}")
    with atomic_open(path) as f:
        f.write(buf.tobytes())


def anonymize_batch(
    method: Anonymizer,
    images: list[np.ndarray],
    analyses: list[Any],
    keys: list[str],
    targets: list[int | None],
) -> list[np.ndarray]:
    """Anonymizes every face of equal-size images, face k of every image in one batch call
    (the k-th round uses the image as rounds < k left it, as one image at a time would)."""
    import torch

    if not images:
        return []
    h, w = images[0].shape[:2]
    cur = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)
    masks = [a.masks(h, w) for a in analyses]
    rounds = max((len(a) for a in analyses), default=0)
    for k in range(rounds):
        idx = [i for i, a in enumerate(analyses) if len(a) > k]
        sel = torch.tensor(idx)
        batch = FaceBatch(
            images=cur[sel],
            landmarks=torch.from_numpy(np.stack([analyses[i].landmarks[k] for i in idx])),
            masks=torch.from_numpy(np.stack([masks[i][k] for i in idx])).unsqueeze(1),
            boxes=torch.from_numpy(np.stack([analyses[i].boxes[k] for i in idx])),
            keys=[f"{keys[i]}#{k}" for i in idx],
        )
        t = [targets[i] for i in idx]
        out = method.anonymize(batch, targets=None if t[0] is None else [int(x) for x in t])
        cur[sel] = out.to(cur.dtype)
    arr = cur.permute(0, 2, 3, 1).numpy()
    return [np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8) for a in arr]


def _produce_chunk(
    method: Anonymizer,
    root: Path,
    chunk: Sequence[tuple[ImageRecord, str]],
    analyses: dict[str, Any],
    targets: dict[str, int] | None,
) -> dict[str, dict[str, Any]]:
    """Anonymizes one chunk of (record, file sha256), equal-size images in one batch, writes
    the PNGs into the store at `root`; returns their manifest entries (unreadable: none)."""
    from anonbench.data.images import ImageReadError, read_rgb

    entries: dict[str, dict[str, Any]] = {}
    loaded = []
    for r, sha in chunk:
        try:
            loaded.append((r, sha, read_rgb(r.path)))
        except ImageReadError:
            continue
    by_shape: dict[tuple[int, ...], list[tuple[ImageRecord, str, np.ndarray]]] = {}
    for item in loaded:
        by_shape.setdefault(item[2].shape, []).append(item)
    for group in by_shape.values():
        t0 = time.perf_counter()
        outs = anonymize_batch(
            method,
            [g[2] for g in group],
            [analyses[g[0].key] for g in group],
            [g[0].key for g in group],
            [None if targets is None else targets.get(g[0].key) for g in group],
        )
        per_image = (time.perf_counter() - t0) / len(group)
        for (r, sha, img), out in zip(group, outs, strict=True):
            a = analyses[r.key]
            h, w = img.shape[:2]
            changed = _bbox(np.any(out != img, axis=2))
            name = output_name(r.key) if len(a) else None
            if name is not None:
                _write_png(root / name, out)
            entries[r.key] = {
                "source_sha256": sha,
                "faces": len(a),
                "missed": len(a) == 0,
                "boxes": [[round(float(v), 1) for v in b] for b in a.boxes],
                "regions": _region_boxes(method.meta, a, h, w),
                "changed": changed,
                "file": name,
                "target": None if targets is None else targets.get(r.key),
                "seconds": round(per_image, 5),
            }
    return entries


@dataclass
class _Shard:
    """A production shard for a Ray task: records with their analyses and targets (small)."""

    root: str
    chunk: list[tuple[ImageRecord, str]]
    analyses: dict[str, Any]
    targets: dict[str, int] | None


def _produce_shard(method: Anonymizer, shard: _Shard) -> dict[str, dict[str, Any]]:
    return _produce_chunk(method, Path(shard.root), shard.chunk, shard.analyses, shard.targets)


def _ship_method(method: Anonymizer, label: str) -> list[Any]:
    """The method in the Ray object store, once per production (its weights included), held
    in a list so each worker fetches it once (anonbench.executors.ray_deref)."""
    import ray

    try:
        return [ray.put(method)]
    except Exception as e:  # pickling errors vary (TypeError, PicklingError, RuntimeError)
        raise AnonbenchError(
            f"method {label!r} cannot be sent to Ray workers ({type(e).__name__}: {e}); "
            "use --executor local"
        ) from None


def produce(
    method: Anonymizer,
    label: str,
    records: Sequence[ImageRecord],
    analyses: dict[str, Any],
    *,
    cache_dir: str | Path,
    batch_size: int = 32,
    targets: dict[str, int] | None = None,
    quiet: bool = False,
    desc: str | None = None,
    executor: Any = None,
    device: str = "cpu",
) -> OutputStore:
    """Anonymizes the records (reusing what the store already holds) and returns the store.
    `analyses`: key -> FaceAnalysis of the original, or an error string (unreadable: skipped).
    executor: anonbench.executors.Executor; a distributed one (ray) runs chunks as tasks, a GPU
    each when `device` is cuda; otherwise batches run here."""
    from tqdm.auto import tqdm

    sid = store_id(method, label, targets, analysis_version())
    root = Path(cache_dir) / "outputs" / sid
    entries = _read_manifest(root)
    todo: list[tuple[ImageRecord, str]] = []
    for r in records:
        if not hasattr(analyses.get(r.key), "boxes"):
            continue  # unreadable original: the protocol counts it
        sha = file_sha256(r.path)
        e = entries.get(r.key)
        if (
            e is None
            or e.get("source_sha256") != sha
            or (e.get("file") and not (root / e["file"]).is_file())
        ):
            todo.append((r, sha))
    info = {
        "method": label,
        "class": f"{type(method).__module__}.{type(method).__qualname__}",
        "config": method.config(),
        "checkpoint_sha256": method.meta.checkpoint_sha256,
        "region": method.meta.region,
        "analysis": analysis_version(),
        "targets": "default" if targets is None else "explicit",
        "store": sid,
    }
    if todo:
        bar = tqdm(
            total=len(todo),
            desc=desc or f"produce {label}",
            unit="img",
            dynamic_ncols=True,
            disable=quiet,
        )
        last_save = time.monotonic()
        step = max(1, batch_size)
        chunks = [todo[i : i + step] for i in range(0, len(todo), step)]
        try:
            if executor is not None and executor.distributed:
                _produce_distributed(
                    executor,
                    method,
                    label,
                    sid,
                    root,
                    chunks,
                    analyses,
                    targets,
                    entries,
                    bar,
                    device,
                )
            else:
                for chunk in chunks:
                    entries.update(_produce_chunk(method, root, chunk, analyses, targets))
                    bar.update(len(chunk))
                    if time.monotonic() - last_save > 30:
                        _write_manifest(root, info, entries)
                        last_save = time.monotonic()
        finally:
            # also after a failed shard or Ctrl-C: the finished outputs are kept for a rerun
            bar.close()
            _write_manifest(root, info, entries)
    return OutputStore(label, root, entries, external=False, info=info)


def _produce_distributed(
    executor: Any,
    method: Anonymizer,
    label: str,
    sid: str,
    root: Path,
    chunks: list[list[tuple[ImageRecord, str]]],
    analyses: dict[str, Any],
    targets: dict[str, int] | None,
    entries: dict[str, dict[str, Any]],
    bar: Any,
    device: str,
) -> None:
    """Production shards on the executor; entries merged in chunk order, so the manifest does
    not depend on which shard finished first."""
    import functools

    from anonbench.executors import key_range, ray_deref

    executor.start()
    shards = [
        _Shard(
            str(root),
            c,
            {r.key: analyses[r.key] for r, _ in c},
            None if targets is None else {r.key: targets[r.key] for r, _ in c if r.key in targets},
        )
        for c in chunks
    ]
    done: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        for i, res in executor.map(
            _produce_shard,
            functools.partial(ray_deref, _ship_method(method, label)),
            shards,
            key=f"method|{sid}",
            what=f"produce {label}",
            names=[key_range([r.key for r, _ in c]) for c in chunks],
            gpu=device.startswith("cuda"),
        ):
            done[i] = res
            bar.update(len(chunks[i]))
    finally:
        for i in sorted(done):
            entries.update(done[i])


def _read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    p = root / MANIFEST
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged manifest: everything is produced again
    return dict(data.get("images", {}))


def _write_manifest(root: Path, info: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(
        root / MANIFEST,
        json.dumps({"version": STORE_VERSION, **info, "images": entries}, indent=1, default=str),
    )


def export_store(store: OutputStore, records: Sequence[ImageRecord], out: str | Path) -> Path:
    """Writes every record's output (anonymized, or the original where the method found no
    face) as a PNG at the record's relative path under `out`, plus manifest.json."""
    import shutil

    from anonbench.data.images import ImageReadError, read_rgb

    out = Path(out)
    entries = {}
    for r in records:
        e = store.entries.get(r.key)
        if e is None:
            continue
        name = output_name(r.key)
        if e.get("file"):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.root / e["file"], out / name)
        else:
            try:
                _write_png(out / name, read_rgb(r.path))
            except ImageReadError:
                continue
        entries[r.key] = {**e, "file": name}
    _write_manifest(out, store.info, entries)
    return out


def open_folder_store(
    label: str, folder: str | Path, records: Sequence[ImageRecord]
) -> OutputStore:
    """A folder of pre-computed outputs at the records' relative paths (any image suffix, a
    PNG preferred). Records without an output file are leaks: missed, scored as originals."""
    root = Path(folder)
    if not root.is_dir():
        raise AnonbenchError(f"folder method {label!r}: no such folder {root}")
    entries: dict[str, dict[str, Any]] = {}
    found = 0
    for r in records:
        stem = Path(r.key).with_suffix("")
        cands = [root / output_name(r.key), root / r.key] + [
            root / f"{stem.as_posix()}{ext}" for ext in IMAGE_EXTENSIONS
        ]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            entries[r.key] = {"file": None, "missed": True, "faces": None}
        else:
            found += 1
            entries[r.key] = {
                "file": hit.relative_to(root).as_posix(),
                "missed": False,
                "faces": None,
            }
    info: dict[str, Any] = {"folder": str(root.resolve()), "found": found, "expected": len(records)}
    mf = root / MANIFEST
    if mf.is_file():
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
            info["produced_by"] = {k: m.get(k) for k in ("method", "config", "checkpoint_sha256")}
            for k, e in (m.get("images") or {}).items():
                if k in entries and entries[k]["file"]:
                    # our own export: faces the method missed are unchanged images (leaks)
                    entries[k]["missed"] = bool(e.get("missed", False))
                    entries[k]["faces"] = e.get("faces")
        except (OSError, ValueError):
            info["manifest"] = "unreadable"
    return OutputStore(label, root, entries, external=True, info=info)


class FolderMethod(Anonymizer):
    """Pre-computed outputs in a folder (`folder:DIR`): scored, never run."""

    meta = MethodMeta(paper="-", license="-", region="image")

    def __init__(self, folder: str) -> None:
        self.folder = str(folder)

    def config(self) -> dict[str, Any]:
        return {"folder": str(Path(self.folder).resolve())}

    def _generate(self, batch, *, targets, generator):  # type: ignore[no-untyped-def]
        raise AnonbenchError(
            f"folder method ({self.folder}) holds pre-computed outputs and cannot anonymize"
        )
