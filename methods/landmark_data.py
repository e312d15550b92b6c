"""Training data of the landmark-conditioned GANs (CIAGAN, pix2pix, CycleGAN): CIAGAN's official
preprocessing of every image (cached), kept in memory as 144 x 144 uint8 canvases, pair
sampling and the 128 x 128 views made on the training device.

A canvas stacks 5 channels: RGB image, landmark-line alpha, mask (all after the official
Lanczos resize of the 178 x 218 crop to 144 x 144). Views are cut from it with one batched
`grid_sample`: random crops for training, the centre crop [8, 136) for inference (exactly the
canvas pixels at 128 x 128). The official code resamples with PIL Lanczos per image in data
loader workers; bilinear on the device is what makes the data pipeline free (the crop side is
72..144 px resized to 128, so there is little to alias).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anonbench.cache import Cache, atomic_open, file_sha256
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.methods.landmark_input import (
    CANVAS,
    LINE_RGB,
    VIEW,
    VIEW_OFFSET,
    CropTransform,
    crop_face,
    to_canvas,
)

PREP_VERSION = "ciagan-prep/1"


def face_canvas(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, CropTransform]:
    """5 x 144 x 144 uint8 canvas (RGB, lines, mask) of one face, and its crop transform."""
    fc = crop_face(image, landmarks)
    img = to_canvas(fc.image)
    canvas = np.concatenate(
        [img.transpose(2, 0, 1), to_canvas(fc.lines)[None], to_canvas(fc.mask)[None]], 0
    )
    return canvas, fc.transform


# -- preparing a dataset ------------------------------------------------------------------------


DATA_KINDS = ("celeba", "folders", "prepared")


def parse_data_spec(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in DATA_KINDS or not path:
        raise AnonbenchError(
            f"--data expects celeba:PATH, folders:PATH or prepared:FILE.npz, got {spec!r}"
        )
    return kind, Path(path)


def load_records(
    spec: str, split: str = "all", split_seed: int = 0, test_fraction: float = 0.5
) -> list[ImageRecord]:
    """The records of a celeba: or folders: spec. split: all; train/val/test (the dataset's
    own partition); identity-train/identity-test (the seeded identity split that the celeba
    protocol uses with the same seed and fraction, so a model trained on identity-train has
    never seen the protocol's test identities)."""
    kind, path = parse_data_spec(spec)
    if kind == "prepared":
        raise AnonbenchError("prepared data holds faces, not image records")
    if kind == "celeba":
        from anonbench.data.celeba import load_celeba

        records = load_celeba(path).records
    else:
        from anonbench.data.folders import load_identity_folders

        records = load_identity_folders(path)
    if split.startswith("identity-"):
        from anonbench.data.splits import identity_split

        train_ids, test_ids = identity_split(
            [r.identity for r in records], split_seed, test_fraction
        )
        keep = set(train_ids if split == "identity-train" else test_ids)
        records = [r for r in records if r.identity in keep]
    elif split != "all":
        records = [r for r in records if r.split == split]
        if not records:
            raise AnonbenchError(f"no images of split {split!r} in {path}")
    return records


@dataclass
class _PrepState:
    analyzer: object
    cache: Cache
    version: str


def _build_prep_state(cache_dir: str | None, detector: str) -> _PrepState:
    from anonbench.faces.analysis import FaceAnalyzer

    analyzer = FaceAnalyzer(detector=detector)
    cache = Cache(cache_dir) if cache_dir else Cache()
    return _PrepState(analyzer, cache, f"{PREP_VERSION}+{analyzer.version}")


def _prepare_one(state: _PrepState, path: str) -> dict[str, np.ndarray]:
    """The cached preprocessing of one image file (keyed by the file's bytes)."""
    from anonbench.data.images import read_rgb

    digest = file_sha256(path)
    hit = state.cache.get("ciagan-prep", state.version, digest)
    if hit is not None:
        return hit
    img = read_rgb(path)
    faces = state.analyzer(img)  # type: ignore[operator]
    if len(faces) == 0:
        res = {"found": np.array(False)}
    else:  # the official code keeps the first detection; ours are sorted by score
        canvas, _ = face_canvas(img, faces.landmarks[0])
        res = {"found": np.array(True), "canvas": canvas, "landmarks": faces.landmarks[0]}
    state.cache.put("ciagan-prep", state.version, digest, res)
    return res


@dataclass
class TrainData:
    """Prepared faces in memory. canvas: N x 5 x 144 x 144 uint8 (on the training device)."""

    canvas: torch.Tensor
    labels: torch.Tensor  # N int64, index into identity_names
    identity_names: list[str]
    keys: list[str]
    skipped: list[str] = field(default_factory=list)  # images without a detected face
    # how a prepared file was made (data spec, split, seed, detector...); {} otherwise
    source: dict[str, object] = field(default_factory=dict)

    @property
    def num_identities(self) -> int:
        return len(self.identity_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> TrainData:
        return TrainData(
            self.canvas.to(device),
            self.labels,
            self.identity_names,
            self.keys,
            self.skipped,
            self.source,
        )


def _natural(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 62, s)


def prepare(
    records: list[ImageRecord],
    cache_dir: str | None = None,
    workers: int = 1,
    detector: str = "dlib-hog",
    min_images: int = 2,
    progress: bool = True,
) -> TrainData:
    """Runs (or reads from the cache) the official preprocessing of every record."""
    from tqdm.auto import tqdm

    from anonbench.parallel import map_items

    builder = functools.partial(_build_prep_state, cache_dir, detector)
    it = map_items(_prepare_one, builder, [str(r.path) for r in records], workers=workers)
    kept: list[tuple[ImageRecord, np.ndarray]] = []
    skipped: list[str] = []
    for r, res in tqdm(
        zip(records, it, strict=True),
        total=len(records),
        desc="ciagan preprocessing",
        unit="img",
        disable=not progress,
    ):
        if bool(res["found"]):
            kept.append((r, res["canvas"]))
        else:
            skipped.append(r.key)
    counts: dict[str, int] = {}
    for r, _ in kept:
        counts[r.identity] = counts.get(r.identity, 0) + 1
    names = sorted((k for k, v in counts.items() if v >= min_images), key=_natural)
    if len(names) < 2:
        raise AnonbenchError(
            f"CIAGAN training needs at least 2 identities with >= {min_images} images in "
            f"which a face is found; found {len(names)} ({len(kept)} faces, "
            f"{len(skipped)} images without a face)"
        )
    index = {n: i for i, n in enumerate(names)}
    kept = [(r, c) for r, c in kept if r.identity in index]
    return TrainData(
        canvas=torch.from_numpy(np.stack([c for _, c in kept])),
        labels=torch.tensor([index[r.identity] for r, _ in kept], dtype=torch.long),
        identity_names=names,
        keys=[r.key for r, _ in kept],
        skipped=skipped,
    )


# -- prepared data files -----------------------------------------------------------------------
# Preprocessing needs dlib; a GPU machine may not have it. `anonbench train ciagan
# --export-data FILE` writes the prepared faces to one file that `--data prepared:FILE` reads
# anywhere. RGB is stored as JPEG (quality 95; the sources are JPEGs already) to keep the file
# small (about 10 KB a face); the line and mask channels losslessly (zlib).

PACK_FORMAT = "anonbench-ciagan-data/1"


def save_prepared(
    data: TrainData, path: str | Path, source: dict[str, object] | None = None, quality: int = 95
) -> None:
    """Writes data to path (.npz), atomically; source (JSON) records how it was made."""
    import json

    import cv2

    chunks, offsets = [], [0]
    for c in data.canvas.numpy():
        rgb = np.ascontiguousarray(c[:3].transpose(1, 2, 0)[:, :, ::-1])
        ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise AnonbenchError("JPEG encoding failed while writing prepared data")
        chunks.append(buf.ravel())
        offsets.append(offsets[-1] + buf.size)
    with atomic_open(path) as f:
        np.savez_compressed(
            f,
            format=np.array(PACK_FORMAT),
            jpeg=np.concatenate(chunks) if chunks else np.zeros(0, np.uint8),
            offsets=np.array(offsets, np.int64),
            aux=data.canvas[:, 3:5].numpy(),
            labels=data.labels.numpy(),
            identity_names=np.array(data.identity_names, dtype=str),
            keys=np.array(data.keys, dtype=str),
            skipped=np.array(data.skipped, dtype=str),
            source=np.array(json.dumps(source or {})),
        )


def load_prepared(path: str | Path) -> TrainData:
    """Reads a file written by save_prepared; every defect is one AnonbenchError line."""
    import json

    import cv2

    p = Path(path)
    if not p.is_file():
        raise AnonbenchError(
            f"prepared data not found: {p} (write it with `anonbench train ciagan "
            "--data celeba:PATH --export-data FILE`)"
        )
    try:
        with np.load(p, allow_pickle=False) as z:
            fmt = str(z["format"])
            if fmt != PACK_FORMAT:
                raise AnonbenchError(f"{p} is {fmt!r}, not {PACK_FORMAT!r} prepared data")
            arrays = {k: z[k] for k in ("jpeg", "offsets", "aux", "labels", "identity_names")}
            arrays.update({k: z[k] for k in ("keys", "skipped")})
            source = json.loads(str(z["source"])) if "source" in z.files else {}
    except AnonbenchError:
        raise
    except Exception as e:  # not an npz, truncated, a missing array
        raise AnonbenchError(f"cannot read prepared data {p}: {type(e).__name__}: {e}") from None
    jpeg, offsets, aux = arrays["jpeg"], arrays["offsets"], arrays["aux"]
    canvas = np.empty((aux.shape[0], 5, *aux.shape[2:]), np.uint8)
    for i in range(aux.shape[0]):
        img = cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != aux.shape[2:]:
            raise AnonbenchError(f"cannot read prepared data {p}: face {i} is corrupt")
        canvas[i, :3] = img[:, :, ::-1].transpose(2, 0, 1)
    canvas[:, 3:5] = aux
    return TrainData(
        canvas=torch.from_numpy(canvas),
        labels=torch.from_numpy(arrays["labels"].astype(np.int64)),
        identity_names=[str(x) for x in arrays["identity_names"]],
        keys=[str(x) for x in arrays["keys"]],
        skipped=[str(x) for x in arrays["skipped"]],
        source=source,
    )


# -- sampling and views -------------------------------------------------------------------------


class PairSampler:
    """The official siamese sampler: half the pairs from two random identities (which may
    coincide), half from one identity; shuffled. All draws come from one torch.Generator, so
    its state is the whole sampling state (saved in checkpoints for exact resume)."""

    def __init__(self, labels: torch.Tensor, num_identities: int) -> None:
        labels = labels.cpu()
        self.order = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels, minlength=num_identities)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = torch.nonzero(self.counts).flatten()

    def _element(self, cls: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        r = torch.rand(cls.shape[0], generator=gen)
        k = (r * self.counts[cls]).long().clamp_max(self.counts[cls] - 1)
        return self.order[self.offsets[cls] + k]

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(source indices, target indices), n each."""
        half = n // 2
        pick = torch.randint(len(self.present), (n + half,), generator=gen)
        c = self.present[pick]
        c1 = c[:n]
        c2 = torch.cat([c[n:], c1[half:]])  # first half: another random id; rest: the same id
        i1, i2 = self._element(c1, gen), self._element(c2, gen)
        perm = torch.randperm(n, generator=gen)
        return i1[perm], i2[perm]

    def sample_different(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(source indices, target indices), n each, the target's identity never the
        source's (training recipe v2's generator pairs). Needs >= 2 identities."""
        m = len(self.present)
        p1 = torch.randint(m, (n,), generator=gen)
        p2 = (p1 + torch.randint(1, m, (n,), generator=gen)) % m
        i1 = self._element(self.present[p1], gen)
        i2 = self._element(self.present[p2], gen)
        return i1, i2

    def sample_images(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(int(self.counts.sum()), (n,), generator=gen)


def crop_boxes(
    n: int, gen: torch.Generator | None, crop_min: float, crop_max: float, canvas: int = CANVAS
) -> torch.Tensor:
    """n x 4 (left, top, right, bottom) in canvas pixels. With a generator: the official
    random crop, each side moved out independently, the side length between crop_min and
    crop_max of the canvas (official: 0.5 and 0.75); without: the centre crop [8, 136)."""
    if gen is None:
        lo, hi = float(VIEW_OFFSET), float(VIEW_OFFSET + VIEW)
        return torch.tensor([[lo, lo, hi, hi]]).expand(n, 4).clone()
    c = canvas / 2
    a = crop_min * canvas / 2
    d = (crop_max - crop_min) * canvas / 2
    r = torch.rand(n, 4, generator=gen)
    return torch.stack(
        [c - a - d * r[:, 0], c - a - d * r[:, 1], c + a + d * r[:, 2], c + a + d * r[:, 3]], 1
    )


@dataclass
class Views:
    image: torch.Tensor  # B x 3 x S x S float in [0, 1]
    landmarks: torch.Tensor  # B x 3 x S x S, the RGB landmark image
    mask: torch.Tensor  # B x 1 x S x S in {0, 1}


def make_views(canvas: torch.Tensor, boxes: torch.Tensor, size: int) -> Views:
    """Cuts boxes (B x 4, canvas pixels) out of uint8 canvases (B x 5 x C x C) and resizes them
    to size x size (bilinear). A box of exactly size pixels on the pixel grid copies pixels."""
    b, _, hc, wc = canvas.shape
    boxes = boxes.to(canvas.device, torch.float32)
    x = canvas.float() / 255.0
    theta = torch.zeros(b, 2, 3, device=canvas.device)
    theta[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / wc
    theta[:, 0, 2] = (boxes[:, 0] + boxes[:, 2]) / wc - 1
    theta[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / hc
    theta[:, 1, 2] = (boxes[:, 1] + boxes[:, 3]) / hc - 1
    grid = F.affine_grid(theta, [b, 5, size, size], align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    alpha = v[:, 3:4]
    lndm = torch.cat([1 + alpha * (c / 255.0 - 1) for c in LINE_RGB], 1)
    return Views(v[:, :3], lndm, (v[:, 4:5] > 0.2).float())  # official mask threshold
