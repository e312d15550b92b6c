"""Training data of `pnca-face` v2 (issue 24): LFW people with >= 2 images plus the celeba
protocol's default train identities, never its test identities.

Crops are cut exactly as the protocol's `pnca-face` cuts them at test time: the reference box
is the dlib HOG face nearest the image centre (`centre_face_box`, cached `FaceAnalyzer`, the
protocol's rule and cache), and the crop is `face_crop_112(image, box, TRAIN_SIZE)` (same
scale, wider, for augmentation). Images where dlib finds no face are left out (counted).

LFW and CelebA are both celebrity sets, so an LFW person may be a celeba test identity. The
match filter compares mean dlib-resnet descriptors (up to DESCR_PER_LFW per LFW person, up to
DESCR_PER_TEST per celeba test identity, each on the image's reference box) and drops every
LFW person whose mean lies within `threshold` (Euclidean) of a test identity's mean. Each run
measures the threshold on LFW itself (`calibrate`), in the filter's terms: same-person
distances (mean of 3 against the mean of 5 other images of people with >= 8) and the null
(each person's nearest among 150 other LFW people: LFW names are distinct people, so every
such distance below the threshold is a false match). dlib's 0.6 is for single descriptor
pairs; on means it matched every LFW person, so the default is 0.40 (MATCH_THRESHOLD).

Every per-image result (detection, descriptor) is cached by content in the anonbench cache,
so an interrupted preparation resumes where it stopped; the npz is written atomically.
Run it with `benchmarks/pnca_face_v2.py prepare` (see there).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError

LFW_MIN_IMAGES = 2
DESCR_PER_LFW = 3
DESCR_PER_TEST = 5
# dlib's same-person threshold is 0.6 for ONE descriptor pair; means are far less noisy and
# 0.6 on means matched every LFW person to some test identity (measured 2026-12-03: within
# LFW, mean-of-3 vs mean-of-5 of the same person: median 0.237, max of 214 people 0.33; the
# nearest of 150 other people: 1st percentile 0.41, median 0.53). 0.40 keeps all same-person
# pairs below it with room for the CelebA/LFW image shift; see `calibrate`, run every time
MATCH_THRESHOLD = 0.40
NULL_GALLERY = 150  # the null: nearest of this many other LFW people (the celeba test size)
DESCR_COMPONENT = "pnca-face-v2-descr"
DESCR_VERSION = "dlib-resnet-v1/sp5/chip150/pad0.25/jit0/1"


def lfw_people(root: str | Path, min_images: int = LFW_MIN_IMAGES) -> dict[str, list[Path]]:
    """{name: sorted image paths} of the LFW people with >= min_images images. root is the
    LFW folder (holding images_deepfunneled/) or the image folder itself."""
    root = Path(root)
    folder = root / "images_deepfunneled" if (root / "images_deepfunneled").is_dir() else root
    if not folder.is_dir():
        raise AnonbenchError(f"LFW folder not found: {folder}")
    people = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if len(files) >= min_images:
            people[d.name] = files
    if not people:
        raise AnonbenchError(f"no LFW person with >= {min_images} images under {folder}")
    return people


def mean_descriptors(groups: dict[str, list[np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """(names with >= 1 descriptor, their mean descriptors as K x 128)."""
    names = sorted(n for n, v in groups.items() if len(v))
    if not names:
        return [], np.zeros((0, 128), np.float32)
    return names, np.stack([np.mean(groups[n], axis=0) for n in names]).astype(np.float32)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances, len(a) x len(b)."""
    d = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d, 0))


def match_filter(
    lfw_names: Sequence[str],
    lfw_means: np.ndarray,
    test_names: Sequence[str],
    test_means: np.ndarray,
    threshold: float = MATCH_THRESHOLD,
) -> dict[str, tuple[str, float]]:
    """{LFW name: (nearest test identity, distance)} for every LFW person whose mean descriptor
    is within threshold of a test identity's mean: the people to drop."""
    if not len(lfw_names) or not len(test_names):
        return {}
    d = pairwise(lfw_means, test_means)
    j = d.argmin(1)
    return {
        n: (str(test_names[j[i]]), round(float(d[i, j[i]]), 4))
        for i, n in enumerate(lfw_names)
        if d[i, j[i]] < threshold
    }


def calibrate(
    groups: dict[str, list[np.ndarray]],
    threshold: float,
    n_query: int = DESCR_PER_LFW,
    n_ref: int = DESCR_PER_TEST,
    gallery: int = NULL_GALLERY,
    seed: int = 0,
) -> dict[str, Any]:
    """The threshold measured on LFW's distinct people, in the filter's own terms: same person
    = the mean of a person's first n_query descriptors against the mean of the next n_ref
    (people with that many); null = each person's nearest among `gallery` random other
    people (means of the first n_query). The filter's error rates are the shares below."""
    same = [
        float(np.linalg.norm(np.mean(v[:n_query], 0) - np.mean(v[n_query : n_query + n_ref], 0)))
        for v in groups.values()
        if len(v) >= n_query + n_ref
    ]
    names, means = mean_descriptors({k: v[:n_query] for k, v in groups.items()})
    null = np.array([])
    if len(names) > 1:
        d = pairwise(means, means)
        rng = np.random.default_rng(seed)
        k = min(gallery, len(names) - 1)
        others = [np.delete(np.arange(len(names)), i) for i in range(len(names))]
        null = np.array([d[i, rng.choice(o, k, replace=False)].min() for i, o in enumerate(others)])
    q = lambda a, ps: [round(float(np.quantile(a, p)), 4) for p in ps] if len(a) else None  # noqa: E731
    return {
        "threshold": threshold,
        "same_person": f"mean of {n_query} vs mean of {n_ref} other images",
        "same_person_people": len(same),
        "same_person_below": round(float(np.mean(np.array(same) < threshold)), 4) if same else None,
        "same_person_q50_q99_max": q(same, (0.5, 0.99, 1.0)),
        "null": f"nearest of {gallery} other LFW people",
        "null_people": len(null),
        "null_below": round(float(np.mean(null < threshold)), 4) if len(null) else None,
        "null_min_q01_q50": q(null, (0.0, 0.01, 0.5)),
    }


def write_npz_atomic(path: Path, **arrays: Any) -> None:
    """np.savez to a temporary file beside path, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FaceSource:
    """Reads an image, finds its reference box (cached analysis) and, on request, its dlib
    descriptor (cached by image content and box)."""

    def __init__(self, cache_dir: str | None = None) -> None:
        from anonbench.cache import Cache
        from anonbench.faces.analysis import FaceAnalyzer

        self.cache = Cache(cache_dir)
        self.analyzer = FaceAnalyzer(cache=self.cache)

    def box(self, path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
        """(RGB image, reference box or None when dlib finds no face)."""
        from anonbench.data.images import read_rgb
        from anonbench.faces.pnca import centre_face_box

        img = read_rgb(path)
        box, found = centre_face_box(img, self.analyzer)
        return img, (tuple(box) if found else None)

    def descriptor(self, img: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """dlib-resnet descriptor of the face in box (5-point chip, as `dlib-resnet`)."""
        import dlib

        from anonbench.cache import array_digest
        from anonbench.faces.dlib_faces import _dlib_object, _rect

        key = hashlib.sha256(f"{array_digest(img)}|{tuple(box)}".encode()).hexdigest()
        hit = self.cache.get(DESCR_COMPONENT, DESCR_VERSION, key, {"d": (128,)})
        if hit is not None:
            return hit["d"]
        sp5 = _dlib_object("shape", "shape_predictor_5_face_landmarks.dat")
        rec = _dlib_object("recognizer", "dlib_face_recognition_resnet_model_v1.dat")
        chip = dlib.get_face_chip(img, sp5(img, _rect(box)), size=150, padding=0.25)
        d = np.array(rec.compute_face_descriptor(chip), np.float32)
        self.cache.put(DESCR_COMPONENT, DESCR_VERSION, key, {"d": d})
        return d


def _progress(items: list[Any], desc: str, quiet: bool) -> Iterable[Any]:
    if quiet:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, mininterval=20, smoothing=0.05)


def collect(
    src: FaceSource,
    items: Sequence[tuple[str, Path]],
    *,
    size: int,
    n_descr: int = 0,
    desc: str = "",
    quiet: bool = False,
) -> dict[str, Any]:
    """Per (label, path): crop (size px, `face_crop_112`) and box where dlib finds a face;
    the descriptors of each label's first n_descr faces. Returns crops, labels, paths, boxes,
    no_face (paths left out) and descr ({label: [descriptors]})."""
    from anonbench.faces.pnca_face import face_crop_112

    crops, labels, paths, boxes, no_face = [], [], [], [], []
    descr: dict[str, list[np.ndarray]] = {}
    for label, path in _progress(list(items), desc, quiet):
        img, box = src.box(path)
        if box is None:
            no_face.append(str(path))
            continue
        crops.append(face_crop_112(img, box, size))
        labels.append(label)
        paths.append(str(path))
        boxes.append(box)
        got = descr.setdefault(label, [])
        if len(got) < n_descr:
            got.append(src.descriptor(img, box))
    return {
        "crops": np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        "labels": labels,
        "paths": paths,
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "no_face": no_face,
        "descr": descr,
    }


def _filter_lfw(
    lfw: dict[str, Any], test_descr: dict[str, list[np.ndarray]], threshold: float
) -> tuple[dict[str, tuple[str, float]], dict[str, Any], list[int]]:
    """(dropped LFW people, threshold calibration, indices of the LFW images kept)."""
    from collections import Counter

    lfw_names, lfw_means = mean_descriptors({k: v[:DESCR_PER_LFW] for k, v in lfw["descr"].items()})
    test_names, test_means = mean_descriptors(test_descr)
    dropped = match_filter(lfw_names, lfw_means, test_names, test_means, threshold)
    calib = calibrate(lfw["descr"], threshold)
    if len(lfw_names) and len(test_names):
        near = pairwise(lfw_means, test_means).min(1)
        calib["lfw_to_test_nearest_min_q01_q50"] = [
            round(float(np.quantile(near, p)), 4) for p in (0.0, 0.01, 0.5)
        ]
    keep = [i for i, lab in enumerate(lfw["labels"]) if lab not in dropped]
    # a person left with one detected face cannot pull its proxy against anything: left out
    n = Counter(lfw["labels"][i] for i in keep)
    return dropped, calib, [i for i in keep if n[lfw["labels"][i]] >= 2]


def celeba_split(celeba_root: str | Path, seed: int = 0, test_fraction: float = 0.5) -> Any:
    """(records, train identities, test identities) of the celeba protocol's split."""
    from anonbench.data.splits import identity_split, load_identity_dataset

    root = Path(celeba_root)
    if not root.is_dir():
        raise AnonbenchError(f"CelebA folder not found: {root}")
    records = load_identity_dataset(f"celeba:{root}")
    train, test = identity_split([r.identity for r in records], seed, test_fraction)
    return records, train, test


def prepare(
    lfw_root: str | Path,
    celeba_root: str | Path,
    out: Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.5,
    threshold: float = MATCH_THRESHOLD,
    cache_dir: str | None = None,
    size: int | None = None,
    say: Callable[[str], None] = print,
    quiet: bool = False,
) -> dict[str, Any]:
    """Writes out (npz: crops, labels, source, paths, boxes, meta json) and returns meta.
    Labels are `lfw:<Name>` and `celeba:<identity>`."""
    from anonbench.faces import pnca_face as pf

    size = size or pf.TRAIN_SIZE
    people = lfw_people(lfw_root)
    records, train_ids, test_ids = celeba_split(celeba_root, seed, test_fraction)
    src = FaceSource(cache_dir)
    say(f"LFW: {len(people)} people with >= {LFW_MIN_IMAGES} images")
    lfw_items = [(f"lfw:{n}", p) for n, ps in people.items() for p in ps]
    lfw = collect(
        src, lfw_items, size=size, n_descr=DESCR_PER_LFW + DESCR_PER_TEST, desc="lfw", quiet=quiet
    )
    test_set = set(test_ids)
    per_test: dict[str, int] = {}
    test_items = []
    for r in records:  # the first DESCR_PER_TEST images of each test identity
        if r.identity in test_set and per_test.get(r.identity, 0) < DESCR_PER_TEST:
            per_test[r.identity] = per_test.get(r.identity, 0) + 1
            test_items.append((f"celeba:{r.identity}", Path(r.path)))
    test = collect(
        src, test_items, size=16, n_descr=DESCR_PER_TEST, desc="celeba-test", quiet=quiet
    )
    train_set = set(train_ids)
    train_items = [
        (f"celeba:{r.identity}", Path(r.path)) for r in records if r.identity in train_set
    ]
    cel = collect(src, train_items, size=size, desc="celeba-train", quiet=quiet)
    dropped, calib, keep = _filter_lfw(lfw, test["descr"], threshold)
    lfw_kept = sorted({lfw["labels"][i] for i in keep})
    labels = [lfw["labels"][i] for i in keep] + cel["labels"]
    meta = {
        "format": "anonbench-pnca-face-v2-data",
        "crop": pf.CROP_VERSION,
        "size": size,
        "seed": seed,
        "test_fraction": test_fraction,
        "lfw_people_min2": len(people),
        "lfw_images_min2": len(lfw_items),
        "lfw_images_without_face": len(lfw["no_face"]),
        "lfw_people_with_descriptor": len(lfw["descr"]),
        "celeba_test_identities": len(test_ids),
        "celeba_test_identities_with_descriptor": len(test["descr"]),
        "match_threshold": threshold,
        "lfw_dropped_as_celeba_test": dropped,
        "lfw_people_used": len(lfw_kept),
        "lfw_images_used": len(keep),
        "celeba_train_identities": len(train_ids),
        "celeba_train_images": len(train_items),
        "celeba_train_images_without_face": len(cel["no_face"]),
        "identities": len(set(labels)),
        "images": len(labels),
        "calibration": calib,
        "test_identities": list(test_ids),
    }
    assert not set(labels) & {f"celeba:{t}" for t in test_ids}  # never a test identity
    write_npz_atomic(
        out,
        crops=np.concatenate([lfw["crops"][keep], cel["crops"]]),
        labels=np.array(labels),
        source=np.array(["lfw"] * len(keep) + ["celeba"] * len(cel["labels"])),
        paths=np.array([lfw["paths"][i] for i in keep] + cel["paths"]),
        boxes=np.concatenate([lfw["boxes"][keep], cel["boxes"]]),
        meta=np.array(json.dumps(meta)),
    )
    return meta
