"""pnca-face v2 (issue 24): prepare the LFW + celeba-train crops, train as a resumable CPU
background job, score checkpoints on the celeba test identities, export.

    H=~/anonbench-train; mkdir -p $H/logs $H/pnca_v2
    # 1. data (dlib HOG + descriptors, ~1 h on a shared core; cached per image, so a rerun
    #    resumes): $H/pnca_v2/data.npz
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pnca_face_v2.py prepare \\
        --lfw ../shared/data/lfw --celeba ../shared/data/celeba --out $H/pnca_v2/data.npz
    # 2. training (background; SIGTERM saves and stops; --resume continues exactly)
    OMP_NUM_THREADS=1 nohup nice -n 19 python benchmarks/pnca_face_v2.py train \\
        --data $H/pnca_v2/data.npz --out $H/pnca_v2 > $H/logs/pnca_v2.log 2>&1 &
    echo $! > $H/pnca_v2.pid            # add --resume to the same command to continue
    # 3. quality of a checkpoint or snapshot (Recall@1 on all celeba test images, originals)
    OMP_NUM_THREADS=1 python benchmarks/pnca_face_v2.py quality --celeba ../shared/data/celeba \\
        --checkpoint $H/pnca_v2/last.pt --log-to $H/pnca_v2
    # 4. export the fp16 checkpoint pieces the attacker loads (pnca_face_r18.pt.part*)
    python benchmarks/pnca_face_v2.py export --checkpoint $H/pnca_v2/last.pt --out DIR

The training and the quality check are in anonbench/faces/pnca_face_train.py, the data
preparation in anonbench/faces/pnca_face_data.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def cmd_prepare(a: argparse.Namespace) -> int:
    from anonbench.faces.pnca_face_data import prepare

    t0 = time.time()
    meta = prepare(
        a.lfw,
        a.celeba,
        Path(a.out).expanduser(),
        seed=a.seed,
        test_fraction=a.test_fraction,
        threshold=a.threshold,
        cache_dir=a.cache_dir,
        say=_say,
        quiet=a.no_progress,
    )
    brief = {k: v for k, v in meta.items() if k not in ("test_identities",)}
    _say(json.dumps(brief, indent=1))
    _say(f"prepared {a.out} in {(time.time() - t0) / 60:.1f} min")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from anonbench.faces.pnca_face_train import V2Config, train
    from anonbench.methods.gan_status import apply_priority

    apply_priority(a.threads, a.nice)
    keys = {f for f in V2Config.__dataclass_fields__}
    cfg = V2Config(**{k: v for k, v in vars(a).items() if k in keys})
    last = train(cfg, resume=a.resume, progress=not a.no_progress)
    _say(f"checkpoint {last}")
    return 0


def _load_any(path: str) -> tuple[dict, int | None, float | None]:
    """(float state_dict, step, CPU-hours) of a v2 training checkpoint or an exported one."""
    from anonbench.faces import pnca_face as pf
    from anonbench.faces.pnca_face_train import FORMAT

    p = Path(path).expanduser()
    if p.is_file():  # a training checkpoint (last.pt, a snapshot); else an export's pieces
        import torch

        ck = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(ck, dict) and ck.get("format") == FORMAT:
            info = p.with_suffix(".json")  # a snapshot's; last.pt: the run's status.json
            if not info.is_file():
                info = p.parent / "status.json"
            meta = json.loads(info.read_text()) if info.is_file() else {}
            cpu_h = meta.get("cpu_hours") if meta.get("step") == ck["step"] else None
            return ck["state_dict"], int(ck["step"]), cpu_h
    ck, _sha = pf.load_checkpoint(p)
    return ck["state_dict"], ck["config"].get("steps"), None


def _heldout(a: argparse.Namespace) -> tuple[Any, list[str]]:
    """The 112-px celeba test crops, made once and kept in --heldout."""
    import numpy as np

    from anonbench.faces.pnca_face_data import write_npz_atomic
    from anonbench.faces.pnca_face_train import heldout_crops

    held = Path(a.heldout).expanduser()
    if held.is_file():
        with np.load(held) as z:
            return z["crops"], [str(v) for v in z["ids"]]
    crops, ids = heldout_crops(a.celeba, a.cache_dir, a.seed, a.test_fraction)
    write_npz_atomic(held, crops=crops, ids=np.array(ids))
    return crops, ids


def _append_row(folder: str | None, row: dict[str, Any]) -> None:
    import csv

    if not folder:
        return
    log = Path(folder).expanduser() / "quality.csv"
    new = not log.is_file()
    with open(log, "a", newline="") as f:
        w = csv.DictWriter(f, list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def cmd_quality(a: argparse.Namespace) -> int:
    """Scores --checkpoint, or every snapshot step_*.pt of a folder not yet in the log."""
    import csv

    from anonbench.faces.pnca_face_train import embed, recall_at_1

    torch_threads(a.threads)
    crops, ids = _heldout(a)
    ck = Path(a.checkpoint).expanduser()
    todo = [str(ck)]
    if ck.is_dir():
        done = set()
        log = Path(a.log_to or "").expanduser() / "quality.csv"
        if a.log_to and log.is_file():
            with open(log, newline="") as f:
                done = {r["checkpoint"] for r in csv.DictReader(f)}
        todo = [str(p) for p in sorted(ck.glob("step_*.pt")) if str(p) not in done]
    for path in todo:
        t0 = time.time()
        sd, step, cpu_h = _load_any(path)
        r1 = recall_at_1(embed(sd, crops), ids)
        row = {
            "step": step,
            "cpu_hours": cpu_h,
            "recall1_original": round(r1, 2),
            "n": len(ids),
            "identities": len(set(ids)),
            "checkpoint": path,
            "seconds": round(time.time() - t0),
        }
        _say(json.dumps(row))
        _append_row(a.log_to, row)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    import numpy as np

    from anonbench.faces.pnca_face_train import export_v2, load_train_checkpoint

    ck = load_train_checkpoint(a.checkpoint)
    with np.load(Path(ck["config"]["data"]).expanduser()) as z:
        meta = json.loads(str(z["meta"]))
    from anonbench.faces import pnca_face as pf

    sha, pieces = export_v2(ck, meta, Path(a.out).expanduser() / pf.WEIGHTS.name)
    _say(f"step {ck['step']}: {[str(p) for p in pieces]} sha256 {sha}")
    return 0


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("prepare", help="crops + celeba-test match filter -> npz")
    q.add_argument("--lfw", required=True, help="LFW folder (holding images_deepfunneled/)")
    q.add_argument("--celeba", required=True, help="CelebA folder (the protocol's data)")
    q.add_argument("--out", required=True, help="npz to write (atomically)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--test-fraction", type=float, default=0.5)
    q.add_argument(
        "--threshold", type=float, default=0.40, help="match distance of mean descriptors"
    )
    q.add_argument("--cache-dir", default=None, help="anonbench cache (default as `run`)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(fn=cmd_prepare)
    from anonbench.faces.pnca_face_train import V2Config

    d = V2Config("", "")
    t = sub.add_parser("train", help="resumable background training")
    t.add_argument("--data", required=True, help="npz written by `prepare`")
    t.add_argument("--out", required=True, help="run folder (last.pt, status.json, ...)")
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly")
    for k in ("epochs", "batch_size", "cap", "seed"):
        t.add_argument(f"--{k.replace('_', '-')}", type=int, default=getattr(d, k))
    for k in ("lr", "proxy_lr", "weight_decay", "scale", "save_minutes", "keep_minutes"):
        t.add_argument(f"--{k.replace('_', '-')}", type=float, default=getattr(d, k))
    t.add_argument("--threads", type=int, default=1, help="torch threads")
    t.add_argument("--nice", type=int, default=19, help="added to the process niceness")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)
    q = sub.add_parser("quality", help="Recall@1 of a checkpoint on the celeba test identities")
    q.add_argument(
        "--checkpoint",
        required=True,
        help="last.pt, a snapshot, an export, or a snapshots/ folder (those not yet logged)",
    )
    q.add_argument("--celeba", default="../shared/data/celeba")
    q.add_argument(
        "--heldout",
        default="~/anonbench-train/pnca_v2/heldout.npz",
        help="cache of the 112-px test crops (made on first use)",
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--test-fraction", type=float, default=0.5)
    q.add_argument("--cache-dir", default=None)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--log-to", help="run folder: append the row to its quality.csv")
    q.set_defaults(fn=cmd_quality)
    e = sub.add_parser("export", help="fp16 pieces pnca_face_r18.pt.part* for the attacker")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True)
    e.set_defaults(fn=cmd_export)
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
