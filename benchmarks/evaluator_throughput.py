"""Evaluator throughput: images per second of each detector, recognizer and feature extractor
the protocols run, called one image per network forward (batch_size=1) and batched
(batch_size=32), on the embedded LFW sample (250x250 images, so all of one size). Also records
the largest absolute difference between the batched and the one-at-a-time outputs.

    python benchmarks/evaluator_throughput.py                       # CPU (+ cuda if present)
    python benchmarks/evaluator_throughput.py --device cuda --n 256
    python benchmarks/evaluator_throughput.py --only retinaface,mtcnn --threads 1

Writes <out>.json and <out>.md (default benchmarks/results/evaluator_throughput). Each timing
is one call over all n images, after a warm-up call on two images (weights loaded, kernels
chosen), excluding construction. dlib runs on the CPU whatever the device and per image
whatever the batch size. FaceNet runs with random weights when its weights are absent
(speed does not depend on the values); Proxy-NCA with a net trained for one epoch on the
images themselves (same reason).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Outputs = list[np.ndarray]  # what a run returns, flattened, to compare batch sizes


def _detections(faces_per_image: list) -> Outputs:
    out = []
    for faces in faces_per_image:
        for f in faces:
            out.append(np.asarray(f.box, np.float64))
            out.append(np.asarray([f.score], np.float64))
            if f.landmarks is not None:
                out.append(np.asarray(f.landmarks, np.float64).ravel())
    return out


def _facenet(device: str, batch_size: int) -> tuple[Any, str]:
    from anonbench.errors import MissingWeightsError
    from anonbench.registry import EMBEDDERS

    try:
        return EMBEDDERS.create("facenet-vggface2", device=device, batch_size=batch_size), ""
    except MissingWeightsError:
        pass
    import tempfile

    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    path = Path(tempfile.mkdtemp()) / "random-vggface2.pt"
    torch.save(state, path)
    emb = EMBEDDERS.create(
        "facenet-vggface2", weights=str(path), device=device, batch_size=batch_size
    )
    return emb, "random weights (real ones absent); speed only"


_PNCA_CKPT: dict[str, Any] = {}


def _pnca(images: list[np.ndarray], device: str, batch_size: int) -> tuple[Any, str]:
    from anonbench.faces import pnca

    if "ckpt" not in _PNCA_CKPT:  # public API: train a net briefly (values do not matter)
        labels = [str(i % 8) for i in range(len(images))]
        cfg = pnca.PNCAConfig(epochs=1, batch_size=32)
        _PNCA_CKPT["ckpt"] = pnca.train_pnca(images, labels, cfg, quiet=True)
    emb = pnca.PNCAEmbedder(_PNCA_CKPT["ckpt"], batch_size=batch_size, device=device)
    return emb, "net trained 1 epoch here; speed only"


def evaluators(images: list[np.ndarray]) -> dict[str, Callable[[str, int], tuple[Any, str, str]]]:
    """name -> build(device, batch_size) -> (evaluator, kind, note)."""
    from anonbench.registry import DETECTORS, EMBEDDERS

    def det(name: str) -> Callable[[str, int], tuple[Any, str, str]]:
        return lambda d, b: (DETECTORS.create(name, device=d, batch_size=b), "detector", "")

    def emb(name: str) -> Callable[[str, int], tuple[Any, str, str]]:
        return lambda d, b: (EMBEDDERS.create(name, device=d, batch_size=b), "embedder", "")

    def fid(d: str, b: int) -> tuple[Any, str, str]:
        from anonbench.metrics.fid import FIDFeatureExtractor

        return FIDFeatureExtractor(device=d, batch_size=b), "features", "Inception pool3"

    def facenet(d: str, b: int) -> tuple[Any, str, str]:
        e, note = _facenet(d, b)
        return e, "embedder", note

    def pnca(d: str, b: int) -> tuple[Any, str, str]:
        e, note = _pnca(images, d, b)
        return e, "embedder", note

    return {
        "dlib-hog": det("dlib-hog"),
        "retinaface": det("retinaface"),
        "mtcnn": det("mtcnn"),
        "dlib-resnet": emb("dlib-resnet"),
        "mobilefacenet": emb("mobilefacenet"),
        "facenet-vggface2": facenet,
        "pnca": pnca,
        "fid-inception": fid,
    }


def run_once(ev: Any, kind: str, images: list[np.ndarray], box: tuple) -> Outputs:
    if kind == "detector":
        return _detections(ev.detect_batch(images))
    if kind == "features":
        return [np.asarray(ev.features(images), np.float64)]
    e, fb = ev.embed(images, [box] * len(images))
    return [np.asarray(e, np.float64), np.asarray(fb, np.float64)]


def max_abs_diff(a: Outputs, b: Outputs) -> float | None:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return None  # different faces found: not comparable element by element
    return max((float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True) if x.size), default=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def machine(threads: int) -> dict[str, Any]:
    import torch

    from anonbench.provenance import git_sha

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_sha": git_sha(),
        "load_average_1min_at_start": _load(),
    }


def _load() -> float | None:
    """The machine's 1-minute load average: on a shared machine it says how much the
    timings were disturbed (above the core count, they are)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def markdown(
    info: dict[str, Any], rows: list[dict[str, Any]], n: int, sizes: list[int], repeat: int
) -> str:
    lines = [
        "# Evaluator throughput",
        "",
        f"{n} images of the embedded LFW sample (250x250), one call over all of them per "
        f"timing, best of {repeat}; images/s (wall clock), higher is better; CPU ms/img is the "
        f"process CPU time (all threads) per image. `benchmarks/evaluator_throughput.py`, "
        f"{info['date']}, git {info['git_sha'] or '?'}.",
        "",
        f"Machine: {info['cpu']} ({info['cpu_count']} cores visible, torch on "
        f"{info['torch_threads']} threads), GPU: {info['gpu'] or 'none'}; torch {info['torch']}, "
        f"Python {info['python']}. 1-minute load average {info['load_average_1min_at_start']} "
        f"at the start, {info.get('load_average_1min_at_end')} at the end (above the core "
        "count, other work shared the CPU and the wall-clock numbers are disturbed).",
        "",
        "| evaluator | device | "
        + " | ".join(f"batch {b} img/s" for b in sizes)
        + " | speed-up | "
        + " | ".join(f"CPU ms/img, batch {b}" for b in sizes)
        + " | max abs diff vs batch 1 | note |",
        "|---|---|" + "---:|" * (2 * len(sizes)) + "---:|---:|---|",
    ]
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["evaluator"], r["device"]), {})[r["batch_size"]] = r
    for (name, device), runs in by.items():
        cells, cpu_cells, note = [], [], ""
        for b in sizes:
            r = runs.get(b)
            cells.append(f"{r['images_per_s']:.1f}" if r and r.get("images_per_s") else "-")
            cpu_cells.append(f"{r['cpu_ms_per_image']:.0f}" if r and r.get("seconds") else "-")
            if r and r.get("note"):
                note = r["note"]
        first, last = runs.get(sizes[0]), runs.get(sizes[-1])
        speedup = (
            f"{last['images_per_s'] / first['images_per_s']:.2f}x"
            if first and last and first.get("images_per_s") and last.get("images_per_s")
            else "-"
        )
        diff = last.get("max_abs_diff_vs_batch1") if last else None
        diff_s = "-" if diff is None else f"{diff:.1e}"
        lines.append(
            f"| {name} | {device} | "
            + " | ".join(cells)
            + f" | {speedup} | "
            + " | ".join(cpu_cells)
            + f" | {diff_s} | {note} |"
        )
    lines += [
        "",
        "dlib (dlib-hog, dlib-resnet and the dlib HOG + 68-landmark front end of mobilefacenet) "
        "runs on the CPU and per image whatever the device and batch size; dlib-resnet's "
        "150x150 chips go through dlib's batched call. Detector differences are over boxes "
        "(pixels), scores and landmarks (pixels); embedder differences over L2-normalised "
        "embeddings; FID over pool3 features.",
        "",
    ]
    return "\n".join(lines)


def _evaluator_rows(
    name: str, device: str, build: Any, images: list[Any], sizes: list[int], repeat: int
) -> list[dict[str, Any]]:
    """One row per batch size of one evaluator on one device: the best of `repeat` timings,
    and how far its outputs are from the first batch size's; a build or run that fails is a
    "skipped" row (an API that moved, weights missing) and ends the evaluator's rows."""
    from anonbench.data.lfw import LFW_FACE_BOX

    rows: list[dict[str, Any]] = []
    reference: Outputs | None = None
    for b in sizes:
        row: dict[str, Any] = {"evaluator": name, "device": device, "batch_size": b}
        try:
            ev, kind, note = build(device, b)
            run_once(ev, kind, images[:2], LFW_FACE_BOX)  # warm-up
            sync(device)
            walls, cpus = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                out = run_once(ev, kind, images, LFW_FACE_BOX)
                sync(device)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            secs = min(walls)
        except Exception as e:  # an API that moved, weights missing: skip, say why
            row["note"] = f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
            if os.environ.get("ANONBENCH_DEBUG"):
                traceback.print_exc()
            rows.append(row)
            print(f"{name:18s} {device:6s} batch {b:3d}: {row['note']}", flush=True)
            break
        if reference is None:
            reference = out
        row.update(
            kind=kind,
            n_images=len(images),
            seconds=round(secs, 4),
            seconds_all=[round(w, 4) for w in walls],
            images_per_s=round(len(images) / secs, 2),
            cpu_ms_per_image=round(1000 * min(cpus) / len(images), 2),
            max_abs_diff_vs_batch1=max_abs_diff(out, reference),
            note=note,
        )
        rows.append(row)
        print(
            f"{name:18s} {device:6s} batch {b:3d}: {row['images_per_s']:8.1f} img/s "
            f"(diff vs first {row['max_abs_diff_vs_batch1']})",
            flush=True,
        )
        del ev
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default=None, help="comma list; default cpu, plus cuda if present")
    p.add_argument("--n", type=int, default=64, help="images (default 64)")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="timings per cell; the best is kept")
    p.add_argument("--only", default="", help="comma list of evaluators")
    p.add_argument("--out", default="benchmarks/results/evaluator_throughput")
    a = p.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)

    from anonbench.data.images import read_rgb
    from anonbench.data.lfw import sample_root

    paths = sorted((sample_root() / "images").glob("*/*.jpg"))[: a.n]
    images = [read_rgb(q) for q in paths]
    devices = (
        a.device.split(",")
        if a.device
        else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    builders = evaluators(images)
    names = [s for s in a.only.split(",") if s] or list(builders)
    info = machine(a.threads)
    rows: list[dict[str, Any]] = []
    for device in devices:
        for name in names:
            rows += _evaluator_rows(name, device, builders[name], images, sizes, a.repeat)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info["load_average_1min_at_end"] = _load()
    doc = {
        "machine": info,
        "n_images": len(images),
        "batch_sizes": sizes,
        "repeat": a.repeat,
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(info, rows, len(images), sizes, a.repeat))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
