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

import functools
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
from anonbench.log import warn

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

    def verify(self, records: Sequence[ImageRecord]) -> list[str]:
        """Rule 6, after scoring: the outputs of `records` that vanished or changed since the
        store was opened (their sha256 no longer the one recorded); [] when all are whole."""
        bad = []
        for r in records:
            e = self.entries.get(r.key)
            if not e or not e.get("file"):
                continue
            f = self.root / e["file"]
            try:
                ok = file_sha256(f) == e.get("sha256")
            except OSError:
                ok = False
            if not ok:
                bad.append(str(f))
        return bad


def output_name(key: str) -> str:
    """The output file of a record: its relative path with a .png suffix."""
    return str(Path(key).with_suffix(".png").as_posix())


def analysis_version(detector: str = "dlib-hog") -> str:
    """The analysis an output store was produced from, in its key: for the default detector
    (dlib-hog) the analyzer's version as in every earlier release (existing stores stay
    valid); for another, its name and the analyzer's version (detector, landmarker and the
    predictor-box mapping), so outputs of different analysis detectors never mix."""
    return _analysis_version(detector)


@functools.cache
def _analysis_version(detector: str) -> str:
    from anonbench.faces.analysis import DEFAULT_DETECTOR, FaceAnalyzer

    version = FaceAnalyzer.version_of(detector, "dlib-68")
    return version if detector == DEFAULT_DETECTOR else f"{detector}:{version}"


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


def _write_png(path: Path, img: np.ndarray) -> str:
    """Writes the PNG atomically; returns the sha256 of its bytes (kept in the manifest)."""
    import cv2

    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise AnonbenchError(f"cannot encode PNG for {path}")
    return _write_bytes(path, buf.tobytes())


def _write_bytes(path: Path, data: bytes) -> str:
    from anonbench.cache import atomic_open

    with atomic_open(path) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


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
    identity = getattr(method, "identity", False) is True
    by_shape: dict[tuple[int, ...], list[tuple[ImageRecord, str, np.ndarray]]] = {}
    for item in loaded:
        by_shape.setdefault(item[2].shape, []).append(item)
    for group in by_shape.values():
        t0 = time.perf_counter()
        # the identity (`original`): its outputs are its inputs (anonymize_batch gives these
        # very pixels), taken without the method, torch or a stored copy
        outs = (
            [g[2] for g in group]
            if identity
            else anonymize_batch(
                method,
                [g[2] for g in group],
                [analyses[g[0].key] for g in group],
                [g[0].key for g in group],
                [None if targets is None else targets.get(g[0].key) for g in group],
            )
        )
        per_image = (time.perf_counter() - t0) / len(group)
        for (r, sha, img), out in zip(group, outs, strict=True):
            a = analyses[r.key]
            h, w = img.shape[:2]
            changed = _bbox(np.any(out != img, axis=2))
            # no file where there is no face, nor for the identity: the store hands out the
            # original itself (OutputStore.ref), so nothing is copied, and exports copy it
            name = output_name(r.key) if len(a) and not identity else None
            digest = None if name is None else _write_png(root / name, out)
            entries[r.key] = {
                "source_sha256": sha,
                "sha256": digest,  # of the output file: verified on every read (rule 6)
                "faces": len(a),
                "missed": len(a) == 0,
                "boxes": [[round(float(v), 1) for v in b] for b in a.boxes],
                "regions": _region_boxes(method.meta, a, h, w),
                "changed": changed,
                "file": name,
                "target": None if targets is None else targets.get(r.key),
                "seconds": round(per_image, 5),
            }
            if identity:
                entries[r.key]["identity"] = True
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
    force: bool = False,
    analysis: str | None = None,
) -> OutputStore:
    """Anonymizes the records (reusing what the store already holds) and returns the store.
    `analyses`: key -> FaceAnalysis of the original, or an error string (unreadable: skipped);
    `analysis`: the version of the analysis they come from (analysis_version; None: the
    default detector's), part of the store's key.
    executor: anonbench.executors.Executor; a distributed one (ray) runs chunks as tasks, a GPU
    each when `device` is cuda; otherwise batches run here. Every stored output is verified
    (rule 6): a damaged or missing one is produced again; `force`: the whole store is."""
    analysis = analysis or analysis_version()
    sid = store_id(method, label, targets, analysis)
    root = Path(cache_dir) / "outputs" / sid
    entries = {} if force else _read_manifest(root)
    todo, current, upgraded = _to_produce(root, records, analyses, entries)
    info = {
        "method": label,
        "class": f"{type(method).__module__}.{type(method).__qualname__}",
        "config": method.config(),
        "checkpoint_sha256": method.meta.checkpoint_sha256,
        "region": method.meta.region,
        "analysis": analysis,
        "targets": "default" if targets is None else "explicit",
        "store": sid,
    }
    if upgraded and not todo:
        _write_manifest(root, info, entries)
    _clear_targets(root, [r.key for r, _ in todo])
    if todo:
        job = _Production(method, label, sid, root, info, analyses, targets, entries)
        job.run(
            todo, batch_size=batch_size, quiet=quiet, desc=desc, executor=executor, device=device
        )
    # the records of this call whose original is readable and unchanged; an entry of an
    # original that became unreadable or changed is never handed out (nor exported)
    mine = {
        k: e
        for k, sha in current.items()
        if (e := entries.get(k)) is not None and e.get("source_sha256") == sha
    }
    return OutputStore(label, root, mine, external=False, info=info)


def _to_produce(
    root: Path,
    records: Sequence[ImageRecord],
    analyses: dict[str, Any],
    entries: dict[str, dict[str, Any]],
) -> tuple[list[tuple[ImageRecord, str]], dict[str, str], bool]:
    """(record, sha256 of its original) to produce, key -> sha256 of each readable original,
    and whether a stored entry gained its output digest (the manifest is then rewritten)."""
    todo: list[tuple[ImageRecord, str]] = []
    current: dict[str, str] = {}  # key -> sha256 of the readable original now on disk
    upgraded = False
    for r in records:
        if not hasattr(analyses.get(r.key), "boxes"):
            continue  # unreadable original: the protocol counts it, nothing is exported
        sha = current[r.key] = file_sha256(r.path)
        e = entries.get(r.key)
        if e is None or e.get("source_sha256") != sha:
            todo.append((r, sha))
            continue
        had = e.get("sha256")
        if not _stored_output_ok(root, r.key, e):
            todo.append((r, sha))  # damaged, changed or missing output: produced again
        upgraded |= e.get("sha256") != had
    return todo, current, upgraded


@dataclass
class _Production:
    """One production into the store at `root`: its manifest `entries` grow as chunks end."""

    method: Anonymizer
    label: str
    sid: str
    root: Path
    info: dict[str, Any]
    analyses: dict[str, Any]
    targets: dict[str, int] | None
    entries: dict[str, dict[str, Any]]

    def run(
        self,
        todo: list[tuple[ImageRecord, str]],
        *,
        batch_size: int,
        quiet: bool,
        desc: str | None,
        executor: Any,
        device: str,
    ) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(todo),
            desc=desc or f"produce {self.label}",
            unit="img",
            dynamic_ncols=True,
            disable=quiet,
        )
        step = max(1, batch_size)
        chunks = [todo[i : i + step] for i in range(0, len(todo), step)]
        try:
            if executor is not None and executor.distributed:
                _produce_distributed(
                    executor,
                    self.method,
                    self.label,
                    self.sid,
                    self.root,
                    chunks,
                    self.analyses,
                    self.targets,
                    self.entries,
                    bar,
                    device,
                )
            else:
                self._here(chunks, bar)
        finally:
            # also after a failed shard or Ctrl-C: the finished outputs are kept for a rerun
            bar.close()
            _write_manifest(self.root, self.info, self.entries)

    def _here(self, chunks: list[list[tuple[ImageRecord, str]]], bar: Any) -> None:
        """The chunks in this process; the manifest saved every 30 s (a long production
        interrupted by a crash keeps most of its work)."""
        last_save = time.monotonic()
        for chunk in chunks:
            self.entries.update(
                _produce_chunk(self.method, self.root, chunk, self.analyses, self.targets)
            )
            bar.update(len(chunk))
            if time.monotonic() - last_save > 30:
                _write_manifest(self.root, self.info, self.entries)
                last_save = time.monotonic()


def _clear_targets(root: Path, keys: Sequence[str]) -> None:
    """Before outputs are (re)written into the store: each target stays inside it (rule 1,
    links resolved), and whatever damaged thing stands where a file goes (a folder) is
    removed (the store is ours: the cache)."""
    import shutil

    from anonbench.safety import DataRoot

    inside = DataRoot(root, "the output store")
    for k in keys:
        f = inside.path(output_name(k), str(root / MANIFEST))
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f)


def _stored_output_ok(root: Path, key: str, e: dict[str, Any]) -> bool:
    """Rule 6, on read: a stored entry's output is at its constructed name, whole (the
    sha256 recorded when it was written) and, for a store written before digests were kept,
    decodable (its digest is then recorded in `e`). An entry without output is ok where the
    output is the original: no face, or the identity method (`original`)."""
    from anonbench.data.images import ImageReadError, read_rgb

    if not e.get("file"):
        return e.get("file") is None and (not e.get("faces") or e.get("identity") is True)
    if e["file"] != output_name(key):
        return False
    f = root / e["file"]
    try:
        digest = file_sha256(f)
    except OSError:
        return False
    if e.get("sha256") is not None:
        return digest == e["sha256"]
    try:
        read_rgb(f, max_pixels=None)
    except ImageReadError:
        return False
    e["sha256"] = digest
    return True


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
    """The entries of a store's manifest. A damaged one (not JSON, the wrong shape) is one
    warning line and an empty store: everything is produced again. Entries that are not
    objects are dropped (produced again)."""
    p = root / MANIFEST
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, dict):
            raise ValueError("no 'images' object")
    except (OSError, ValueError) as e:
        why = type(e).__name__ if not isinstance(e, ValueError) else str(e).splitlines()[0]
        warn(f"{p}: damaged output-store manifest ({why[:80]}); producing again")
        return {}
    return {k: e for k, e in images.items() if isinstance(k, str) and isinstance(e, dict)}


def _write_manifest(root: Path, info: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(
        root / MANIFEST,
        json.dumps({"version": STORE_VERSION, **info, "images": entries}, indent=1, default=str),
    )


def export_store(store: OutputStore, records: Sequence[ImageRecord], out: str | Path) -> Path:
    """Writes every record's output (anonymized, or the original where the method found no
    face) as a PNG at the record's relative path under `out`, plus manifest.json. Outputs are
    copied only when their bytes still have the recorded sha256 (rule 6); what an earlier
    export to `out` wrote for records no longer exported (unreadable or changed original, or
    gone from the data) is removed, so `folder:` never scores it. An export that fails leaves
    `out` as it was: the files it added are removed and the earlier export's files it
    replaced are put back (by the next export, if this one was killed outright)."""
    from anonbench.setaside import SetAside, recover_killed

    out = Path(out)
    recover_killed(out, "--out")
    targets = export_targets(records, out)
    earlier = _exported_keys(out)
    entries = {}
    todo = [r for r in records if r.key in store.entries]
    aside = SetAside(out)
    try:
        # one journal write for the run's new outputs, before any is written
        moved = {p for p, _ in aside.move_aside([targets[r.key] for r in todo])}
        aside.note_added([targets[r.key] for r in todo if targets[r.key] not in moved])
        for r in todo:
            e = store.entries[r.key]
            digest = _export_one(store, r, e, targets[r.key])
            if digest is not None:
                entries[r.key] = {**e, "file": output_name(r.key), "sha256": digest}
        aside.move_aside(_earlier_outputs(out, earlier - set(entries), targets))
        _write_manifest(out, store.info, entries)
    except BaseException:
        aside.undo()
        raise
    aside.drop()
    return out


def _earlier_outputs(out: Path, keys: set[str], targets: dict[str, Path]) -> list[Path]:
    """The files an earlier export wrote for `keys` (read from its manifest, so each checked
    against rule 1: a key that would lead outside `out` is passed over)."""
    from anonbench.safety import ContainmentError, DataRoot

    inside, found = DataRoot(out, "--out"), []
    for k in sorted(keys):
        try:
            dst = targets.get(k) or inside.path(output_name(k), f"{out / MANIFEST}")
        except ContainmentError:
            continue
        if dst.exists() or dst.is_symlink():
            found.append(dst)
    return found


def _export_one(store: OutputStore, r: ImageRecord, e: dict[str, Any], dst: Path) -> str | None:
    """Writes one record's output to `dst`; its sha256, or None when its original is now
    unreadable (nothing written)."""
    from anonbench.data.images import ImageReadError, read_rgb

    if e.get("file"):
        try:
            data = (store.root / e["file"]).read_bytes()
        except OSError:
            data = b""
        if hashlib.sha256(data).hexdigest() != e.get("sha256"):
            raise AnonbenchError(
                f"{store.root / e['file']}: the stored output changed or vanished after "
                "it was verified; run produce again"
            )
        return _write_bytes(dst, data)
    try:  # no face, or the identity: the original's pixels, and their file's digest
        return _write_png(dst, read_rgb(r.path))
    except ImageReadError:
        return None


def export_targets(records: Sequence[ImageRecord], out: str | Path) -> dict[str, Path]:
    """key -> where export_store writes its output; rule 1, checked before anything is
    written (the produce command checks before any work): each stays inside `out`, links
    resolved."""
    from anonbench.safety import DataRoot

    inside = DataRoot(out, "--out")
    return {r.key: inside.path(output_name(r.key), f"--out {out}") for r in records}


def check_export_out(out: str | Path, targets: dict[str, Path]) -> None:
    """Before any work: export_store may write into `out`. Its manifest.json, when there, is
    a file and one an earlier export wrote; without one, no file stands where an output
    goes (anonbench writes outputs only beside its manifest, so those are a user's); and no
    folder stands where an output goes. One line otherwise; a user's file is never
    overwritten, and a folder in the manifest's place never leaves outputs without one."""
    from anonbench.setaside import recover_killed

    out = Path(out)
    recover_killed(out, "--out")  # a killed export's new files are not a user's
    mf = out / MANIFEST
    ours = False
    if mf.is_symlink() or mf.exists():
        if not mf.is_file():
            raise AnonbenchError(f"--out {out}: {mf} is not a file; move it away")
        if not _is_export_manifest(mf):
            raise AnonbenchError(
                f"{mf}: not an anonbench manifest, and produce writes manifest.json there; "
                "move it away or choose another --out"
            )
        ours = True
    for dst in targets.values():
        if dst.is_dir():
            raise AnonbenchError(f"--out {out}: {dst} is a folder where an output goes")
    taken = [] if ours else [p for p in targets.values() if p.is_file() or p.is_symlink()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise AnonbenchError(
            f"{taken[0]}{more}: not written by anonbench (--out {out} holds no manifest.json "
            "of an earlier produce), and produce writes there; move it away or choose "
            "another --out"
        )


def _is_export_manifest(mf: Path) -> bool:
    """Whether `mf` is a manifest anonbench wrote (_write_manifest: the store version, the
    method and an object of images)."""
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(m, dict)
        and m.get("version") == STORE_VERSION
        and isinstance(m.get("method"), str)
        and isinstance(m.get("images"), dict)
    )


def _exported_keys(out: Path) -> set[str]:
    """The keys an earlier export listed in out/manifest.json (empty when none is readable)."""
    try:
        images = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("images")
    except (OSError, ValueError, AttributeError):
        return set()
    return {k for k in images if isinstance(k, str)} if isinstance(images, dict) else set()


def open_folder_store(
    label: str, folder: str | Path, records: Sequence[ImageRecord]
) -> OutputStore:
    """A folder of pre-computed outputs at the records' relative paths (any image suffix, a
    PNG preferred). Records without an output file, or whose file does not decode, are leaks:
    missed, scored as originals. Every candidate path stays inside the folder (rule 1); the
    sha256 of each output is kept, so `verify` finds one changed while it was scored."""
    from anonbench.data.images import ImageReadError, read_rgb
    from anonbench.safety import DataRoot

    root = Path(folder)
    if not root.is_dir():
        raise AnonbenchError(f"folder method {label!r}: no such folder {root}")
    inside = DataRoot(root, f"the outputs of {label!r}")
    entries: dict[str, dict[str, Any]] = {}
    found = undecodable = 0
    for r in records:
        stem = Path(r.key).with_suffix("").as_posix()
        names = [output_name(r.key), r.key] + [f"{stem}{ext}" for ext in IMAGE_EXTENSIONS]
        hit = next((n for n in names if inside.path(n, f"--methods {label}").is_file()), None)
        entries[r.key] = {"file": None, "missed": True, "faces": None}
        if hit is None:
            continue
        try:
            read_rgb(root / hit)
            digest = file_sha256(root / hit)
        except (ImageReadError, OSError):
            undecodable += 1  # a leak: the original is scored in its place
            entries[r.key]["undecodable"] = hit
            continue
        found += 1
        entries[r.key] = {"file": hit, "missed": False, "faces": None, "sha256": digest}
    info: dict[str, Any] = {"folder": str(root.resolve()), "found": found, "expected": len(records)}
    if undecodable:
        info["undecodable"] = undecodable
    mf = root / MANIFEST
    if mf.is_file():
        info["produced_by"] = _apply_folder_manifest(mf, entries)
    return OutputStore(label, root, entries, external=True, info=info)


def check_folder_manifest(folder: str | Path) -> None:
    """Before any work: a `folder:` method's manifest.json, if any, has the right shape."""
    mf = Path(folder) / MANIFEST
    if mf.is_file():
        _apply_folder_manifest(mf, {})


def _apply_folder_manifest(mf: Path, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Reads an export's manifest.json (ours): faces the method missed are unchanged images
    (leaks). Validated: an object with an `images` object of objects, `missed` a boolean and
    `faces` a count; anything else is one AnonbenchError line naming the file (and key)."""
    from anonbench.data.text import read_text_utf8

    try:
        m = json.loads(read_text_utf8(mf))
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0] if isinstance(e, ValueError) else e.strerror
        raise AnonbenchError(f"{mf}: not a readable JSON manifest ({why})") from None
    images = m.get("images") if isinstance(m, dict) else None
    if not isinstance(images, dict):
        raise AnonbenchError(f"{mf}: not an output manifest (an object with 'images' expected)")
    for k, e in images.items():
        if not isinstance(e, dict):
            raise AnonbenchError(f"{mf}: images[{k!r}] is not an object")
        missed, faces = e.get("missed", False), e.get("faces")
        if not isinstance(missed, bool):
            raise AnonbenchError(
                f"{mf}: images[{k!r}].missed is {missed!r}, not true or false (a JSON boolean)"
            )
        if faces is not None and (isinstance(faces, bool) or not isinstance(faces, int)):
            raise AnonbenchError(f"{mf}: images[{k!r}].faces is {faces!r}, not a count")
        if k in entries and entries[k]["file"]:
            entries[k]["missed"] = missed
            entries[k]["faces"] = faces
    return {k: m.get(k) for k in ("method", "config", "checkpoint_sha256")}


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
