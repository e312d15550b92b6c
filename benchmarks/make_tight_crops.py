"""Tight face crops from deep-funneled LFW, and how well face detectors find faces in them.

Makes an identity-folder dataset of `size` x `size` crops, each image cropped to exactly its
largest dlib HOG box (upsample 1, clipped to the image) and resized with cv2.INTER_AREA, next to
a copy of the originals it was made from, so the two forms can be compared:

    OUT/crops/<Name>/<Name>_NNNN.png       (lossless)
    OUT/uncropped/<Name>/<Name>_NNNN.jpg   (the original file, copied)
    OUT/manifest.csv                        (name, file, HOG box in the original, HOG score)
    OUT/skipped.txt                         (originals in which HOG found no face)

    python benchmarks/make_tight_crops.py --lfw ../shared/data/lfw --out /tmp/tight24 \
        --identities 24 --per-identity 12 [--seed 0] [--size 112]

Identities are drawn (seeded) from those with at least `per-identity` images, then
`per-identity` of their images are drawn; both lists are sorted, so a seed gives one dataset.

`--measure` then runs every detector on both forms, on the image as it is and on the image
padded with a border of p% of its side on every side (canvas (1 + 2p) x side; boxes mapped
back), for each border kind, and writes OUT/detection.json and a markdown table
(OUT/detection.md; --name changes the stem): the % of images with at least one face, the
median IoU of the top-scoring box with the whole image (crops) or with the top box found
without padding (uncropped), and the time per image. A "fallback" column is "detect as is;
when nothing is found, detect again on the padded canvas" (computed from the same per-image
results). `--measure-only` skips making.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from anonbench.data.images import read_rgb

Box = tuple[float, float, float, float]

BORDER_KINDS = ("black", "mean", "replicate", "reflect")
BORDERS = (0.10, 0.25, 0.50)
DETECTORS = ("hog-up1", "hog-up2", "retinaface", "mtcnn")


def image_root(lfw: Path) -> Path:
    for sub in ("images_deepfunneled", "lfw-deepfunneled", "lfw", "images", "."):
        if (lfw / sub).is_dir() and any((lfw / sub).iterdir()):
            if sub == "." or any(p.is_dir() for p in (lfw / sub).iterdir()):
                return lfw / sub
    raise SystemExit(f"no identity folders under {lfw}")


def pick(root: Path, identities: int, per_identity: int, seed: int) -> list[tuple[str, Path]]:
    """(name, path) of per_identity images of each of `identities` identities, seeded."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = {n: sorted((root / n).glob("*.jpg")) for n in names}
    eligible = [n for n in names if len(files[n]) >= per_identity]
    if len(eligible) < identities:
        raise SystemExit(
            f"only {len(eligible)} identities have >= {per_identity} images; "
            f"{identities} were asked for"
        )
    rng = random.Random(seed)
    chosen = sorted(rng.sample(eligible, identities))
    out = []
    for n in chosen:
        out += [(n, p) for p in sorted(rng.sample(files[n], per_identity))]
    return out


def largest_hog_box(image: np.ndarray, hog) -> tuple[Box, float] | None:
    faces = hog.detect(image)
    if not faces:
        return None
    h, w = image.shape[:2]
    best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    left, top, right, bottom = best.box
    box = (max(0.0, left), max(0.0, top), min(float(w), right), min(float(h), bottom))
    return box, best.score


def make(args) -> None:
    from anonbench.registry import DETECTORS as REG

    hog = REG.create("dlib-hog", upsample=1)
    root = image_root(Path(args.lfw))
    items = pick(root, args.identities, args.per_identity, args.seed)
    out = Path(args.out)
    for sub in ("crops", "uncropped"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    skipped, rows = [], []
    for name, path in items:
        img = read_rgb(path)
        found = largest_hog_box(img, hog)
        if found is None:
            skipped.append(f"{name}/{path.name}")
            continue
        (left, top, right, bottom), score = found
        # dlib boxes are inclusive pixel corners; crop [left, right] x [top, bottom]
        x0, y0 = round(left), round(top)
        x1, y1 = min(img.shape[1], round(right) + 1), min(img.shape[0], round(bottom) + 1)
        crop = cv2.resize(img[y0:y1, x0:x1], (args.size, args.size), interpolation=cv2.INTER_AREA)
        (out / "crops" / name).mkdir(parents=True, exist_ok=True)
        (out / "uncropped" / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(out / "crops" / name / (path.stem + ".png")),
            cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
        )
        shutil.copyfile(path, out / "uncropped" / name / path.name)
        rows.append((name, path.name, x0, y0, x1, y1, f"{score:.4f}"))
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "file", "x0", "y0", "x1", "y1", "hog_score"])
        w.writerows(rows)
    (out / "skipped.txt").write_text("".join(s + "\n" for s in skipped))
    ids = {r[0] for r in rows}
    print(
        f"picked {args.identities} identities x {args.per_identity} = {len(items)} images "
        f"(seed {args.seed}); cropped {len(rows)} from {len(ids)} identities to "
        f"{args.size}x{args.size}; skipped {len(skipped)} with no HOG face"
        + (": " + ", ".join(skipped) if skipped else "")
    )
    print(f"wrote {out / 'crops'} and {out / 'uncropped'}")


# ---------------------------------------------------------------------------------------------
# measurement


def pad(image: np.ndarray, frac: float, kind: str) -> tuple[np.ndarray, int, int]:
    h, w = image.shape[:2]
    py, px = round(frac * h), round(frac * w)
    if kind == "black":
        out = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    elif kind == "mean":
        mean = [float(c) for c in image.reshape(-1, 3).mean(0)]
        out = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=mean)
    elif kind == "replicate":
        out = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REPLICATE)
    elif kind == "reflect":
        out = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REFLECT)
    else:
        raise ValueError(kind)
    return out, px, py


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def build_detectors(names: list[str]) -> dict:
    import torch

    torch.set_num_threads(1)
    from anonbench.faces.dlib_faces import HOGDetector

    dets = {}
    for n in names:
        if n == "hog-up1":
            dets[n] = HOGDetector(upsample=1)
        elif n == "hog-up2":
            dets[n] = HOGDetector(upsample=2)
        elif n == "retinaface":
            from anonbench.faces.retinaface import RetinaFaceDetector

            dets[n] = RetinaFaceDetector()
        elif n == "mtcnn":
            from anonbench.faces.mtcnn import MTCNNDetector

            dets[n] = MTCNNDetector()
        else:
            raise SystemExit(f"unknown detector {n}; choose from {', '.join(DETECTORS)}")
    return dets


def conditions(borders: list[float], kinds: list[str]) -> list[tuple[str, float, str]]:
    out = [("none", 0.0, "none")]
    out += [(f"{kind}{round(b * 100)}", b, kind) for b in borders for kind in kinds]
    return out


def detect_all(det, images: list[np.ndarray], conds) -> dict:
    """Per condition: per image [n faces, top box mapped back or None, seconds]."""
    res = {}
    for label, frac, kind in conds:
        rows = []
        for img in images:
            canvas, px, py = (img, 0, 0) if frac == 0 else pad(img, frac, kind)
            t0 = time.perf_counter()
            faces = det.detect(np.ascontiguousarray(canvas))
            dt = time.perf_counter() - t0
            top = None
            if faces:
                b = faces[0].box
                top = (b[0] - px, b[1] - py, b[2] - px, b[3] - py)
            rows.append([len(faces), top, dt])
        res[label] = rows
    return res


def load_form(out: Path, form: str, limit: int | None) -> tuple[list[str], list[np.ndarray]]:
    ext = ".png" if form == "crops" else ".jpg"
    paths = sorted((out / form).glob(f"*/*{ext}"))
    if limit:
        paths = paths[:limit]
    return [f"{p.parent.name}/{p.stem}" for p in paths], [read_rgb(p) for p in paths]


def summarise(form: str, images, res: dict) -> dict:
    """Found %, median IoU (with the whole crop / with the unpadded top box), ms per image."""
    summ = {}
    base = res["none"]
    for label, rows in res.items():
        found = [r[0] > 0 for r in rows]
        ious = []
        for img, r, b in zip(images, rows, base, strict=True):
            if r[1] is None:
                continue
            if form == "crops":
                h, w = img.shape[:2]
                ious.append(iou(r[1], (0.0, 0.0, float(w), float(h))))
            elif b[1] is not None:
                ious.append(iou(r[1], b[1]))
        row = {
            "found_pct": 100.0 * float(np.mean(found)),
            "mean_faces": float(np.mean([r[0] for r in rows])),
            "median_iou": float(np.median(ious)) if ious else None,
            "ms": 1000.0 * float(np.mean([r[2] for r in rows])),
        }
        if label != "none":  # fallback: pad only when the unpadded pass found nothing
            fb = [b[0] > 0 or r[0] > 0 for r, b in zip(rows, base, strict=True)]
            row["fallback_found_pct"] = 100.0 * float(np.mean(fb))
            row["fallback_ms"] = 1000.0 * float(
                np.mean(
                    [b[2] + (r[2] if b[0] == 0 else 0.0) for r, b in zip(rows, base, strict=True)]
                )
            )
            if form == "uncropped":  # images whose detections padding changes
                row["lost_pct"] = 100.0 * float(
                    np.mean([b[0] > 0 and r[0] == 0 for r, b in zip(rows, base, strict=True)])
                )
                row["count_changed_pct"] = 100.0 * float(
                    np.mean([b[0] != r[0] for r, b in zip(rows, base, strict=True)])
                )
        summ[label] = row
    return summ


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown(summary: dict, n: dict) -> str:
    lines = []
    for form, per_det in summary.items():
        iou_what = "whole crop" if form == "crops" else "unpadded top box"
        lines.append(f"\n### {form} (n = {n[form]})\n")
        head = "| detector | condition | found % | fallback found % | median IoU vs " + iou_what
        head += " | mean faces | ms/img | fallback ms/img |"
        extra = form == "uncropped"
        if extra:
            head += " lost % | count changed % |"
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for det, rows in per_det.items():
            for label, r in rows.items():
                line = (
                    f"| {det} | {label} | {r['found_pct']:.1f} | "
                    f"{fmt(r.get('fallback_found_pct'), '.1f')} | {fmt(r['median_iou'], '.2f')} | "
                    f"{r['mean_faces']:.2f} | {r['ms']:.1f} | {fmt(r.get('fallback_ms'), '.1f')} |"
                )
                if extra:
                    line += (
                        f" {fmt(r.get('lost_pct'), '.1f')} | "
                        f"{fmt(r.get('count_changed_pct'), '.1f')} |"
                    )
                lines.append(line)
    return "\n".join(lines) + "\n"


def measure(args) -> None:
    out = Path(args.out)
    dets = build_detectors(args.detectors.split(","))
    borders = [float(b) for b in args.borders.split(",")]
    kinds = args.kinds.split(",")
    summary, raw, n = {}, {}, {}
    for form in args.forms.split(","):
        keys, images = load_form(out, form, args.limit)
        n[form] = len(images)
        summary[form], raw[form] = {}, {}
        form_kinds = kinds if form == "crops" else args.uncropped_kinds.split(",")
        for name, det in dets.items():
            t0 = time.perf_counter()
            res = detect_all(det, images, conditions(borders, form_kinds))
            summary[form][name] = summarise(form, images, res)
            raw[form][name] = {lab: [[r[0], r[1]] for r in rows] for lab, rows in res.items()}
            print(
                f"{form} {name}: {time.perf_counter() - t0:.0f} s; "
                + ", ".join(
                    f"{lab} {s['found_pct']:.0f}%" for lab, s in summary[form][name].items()
                ),
                flush=True,
            )
        raw[form]["_keys"] = keys
    import torch

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "torch_threads": torch.get_num_threads(),
        "n": n,
    }
    (out / f"{args.name}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "per_image": raw}, indent=1)
    )
    md = markdown(summary, n)
    (out / f"{args.name}.md").write_text(md)
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lfw", default="../shared/data/lfw")
    p.add_argument("--out", required=True)
    p.add_argument("--identities", type=int, default=24)
    p.add_argument("--per-identity", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--measure", action="store_true", help="run the detector sweep afterwards")
    p.add_argument("--measure-only", action="store_true", help="sweep an existing OUT")
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--borders", default=",".join(str(b) for b in BORDERS))
    p.add_argument("--kinds", default=",".join(BORDER_KINDS))
    p.add_argument("--uncropped-kinds", default=",".join(BORDER_KINDS))
    p.add_argument("--forms", default="crops,uncropped")
    p.add_argument("--name", default="detection", help="OUT/NAME.json and OUT/NAME.md")
    p.add_argument("--limit", type=int, default=None, help="first N images of each form")
    a = p.parse_args()
    if not a.measure_only:
        make(a)
    if a.measure or a.measure_only:
        measure(a)


if __name__ == "__main__":
    main()
