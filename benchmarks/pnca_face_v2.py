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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("prepare", help="crops + celeba-test match filter -> npz")
    q.add_argument("--lfw", required=True, help="LFW folder (holding images_deepfunneled/)")
    q.add_argument("--celeba", required=True, help="CelebA folder (the protocol's data)")
    q.add_argument("--out", required=True, help="npz to write (atomically)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--test-fraction", type=float, default=0.5)
    q.add_argument("--threshold", type=float, default=0.6, help="match distance (dlib: 0.6)")
    q.add_argument("--cache-dir", default=None, help="anonbench cache (default as `run`)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(fn=cmd_prepare)
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
