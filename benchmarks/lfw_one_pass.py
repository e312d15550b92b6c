"""How much more work than one pass does the LFW protocol do on the originals? (issue 21)

Times `anonbench run --methods original --protocol lfw` (one worker, a fresh cache and output
folder each run) against a bare script that, once per distinct image of the same pairs, runs
dlib HOG (upsample 1), the 68 landmarks and the dlib-resnet descriptor, then scores the pairs.
Both are timed as whole processes (interpreter start and imports included on both sides):
wall time, and CPU time (user + system of the child, which a loaded shared CPU disturbs
less). Runs are paired and alternate which side goes first, so a load change on a shared CPU
hits both; the ratio reported is the median of the per-pair ratios, with their range.

    python benchmarks/lfw_one_pass.py --data-root ../shared/data/lfw --pairs 160 --repeats 3 \
        --out benchmarks/results/lfw_one_pass.json

The pairs: the first N/2 matched and the first N/2 mismatched pairs of View 2's fold 1, as one
fold (so the protocol's thresholds are in-sample; that costs nothing measurable).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def write_pairs(data_root: Path, n: int, out: Path) -> Path:
    """A one-fold pairs file of the first n/2 matched and n/2 mismatched pairs of fold 1."""
    from anonbench.data.lfw import read_pairs

    pairs = [p for p in read_pairs(data_root / "pairs.txt") if p.fold == 0]
    half = n // 2
    pos = [p for p in pairs if p.label == 1][:half]
    neg = [p for p in pairs if p.label == 0][:half]
    if len(pos) < half or len(neg) < half:
        raise SystemExit(f"fold 1 has fewer than {half} matched or mismatched pairs")
    lines = [f"1 {half}"]
    lines += [f"{p.name1}\t{p.num1}\t{p.num2}" for p in pos]
    lines += [f"{p.name1}\t{p.num1}\t{p.name2}\t{p.num2}" for p in neg]
    out.write_text("\n".join(lines) + "\n")
    return out


def bare(data_root: Path, pairs_file: Path) -> None:
    """The lower bound: HOG (upsample 1), 68 points and the descriptor once per distinct
    image (the face nearest the centre, or a fixed box when none), then cosine scores."""
    import dlib
    import numpy as np

    from anonbench.data.images import read_rgb
    from anonbench.data.lfw import LFW_FACE_BOX, open_lfw, read_pairs
    from anonbench.faces.dlib_faces import dlib_model_path

    ds = open_lfw(data_root)
    pairs = read_pairs(pairs_file)
    keys = sorted({(p.name1, p.num1) for p in pairs} | {(p.name2, p.num2) for p in pairs})
    hog = dlib.get_frontal_face_detector()
    sp68 = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    rec = dlib.face_recognition_model_v1(
        str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))
    )
    vecs = {}
    for k in keys:
        img = np.ascontiguousarray(read_rgb(ds.image_path(*k)))
        rects = hog(img, 1)
        h, w = img.shape[:2]
        if len(rects):
            r = min(rects, key=lambda r: abs(r.center().x - w / 2) + abs(r.center().y - h / 2))
        else:
            r = dlib.rectangle(*(int(v) for v in LFW_FACE_BOX))
        shape = sp68(img, r)
        v = np.array(rec.compute_face_descriptor(img, shape), np.float32)
        vecs[k] = v / max(float(np.linalg.norm(v)), 1e-12)
    scores = [float(vecs[(p.name1, p.num1)] @ vecs[(p.name2, p.num2)]) for p in pairs]
    print(f"bare: {len(keys)} images, {len(scores)} pairs scored")


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process run to its end."""
    c0, t0 = _cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, _cpu_children() - c0


def _commands(data_root: Path, pairs_file: Path, work: Path, i: int) -> dict[str, list[str]]:
    run = [
        "anonbench", "run", "--methods", "original", "--protocol", "lfw",
        "--data-root", str(data_root), "--option", f"pairs={pairs_file}",
        "--option", "folds=0", "--option", "reversal=none", "--workers", "1",
        "--device", "cpu", "--seed", "0", "--quiet",
        "--out", str(work / f"run{i}"), "--cache-dir", str(work / f"cache{i}"),
    ]  # fmt: skip
    script = [sys.executable, __file__, "--bare", "--data-root", str(data_root)]
    return {"protocol": run, "bare": [*script, "--pairs-file", str(pairs_file)]}


def _spread(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "q1": q[0], "q3": q[2]}  # fmt: skip


def measure(data_root: Path, n: int, repeats: int) -> dict[str, object]:
    """Paired runs, alternating order; per repeat both times (wall, CPU) and their ratios."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pairs_file = write_pairs(data_root, n, work / f"pairs_{n}.txt")
        for i in range(repeats):
            cmds = _commands(data_root, pairs_file, work, i)
            order = ["protocol", "bare"] if i % 2 == 0 else ["bare", "protocol"]
            t = {side: _timed(cmds[side], env) for side in order}
            p, b = t["protocol"], t["bare"]
            runs.append(
                {
                    "order": order,
                    "load": round(os.getloadavg()[0], 2),
                    "protocol": p[0],
                    "bare": b[0],
                    "ratio": p[0] / b[0],
                    "protocol_cpu": p[1],
                    "bare_cpu": b[1],
                    "cpu_ratio": p[1] / b[1],
                }
            )
            print(f"{n} pairs, run {i + 1}: {json.dumps(runs[-1])}", flush=True)
    return {
        "pairs": n,
        "runs": runs,
        "median_ratio": statistics.median(r["ratio"] for r in runs),
        "ratio": _spread([r["ratio"] for r in runs]),
        "cpu_ratio": _spread([r["cpu_ratio"] for r in runs]),
    }


NOTES = "<!-- notes: kept when the script rewrites this file -->"


def _row(m: dict[str, Any], kind: str) -> str:
    p, b, r = ("protocol", "bare", "ratio") if kind == "wall" else (
        "protocol_cpu", "bare_cpu", "cpu_ratio")  # fmt: skip
    s = m[r]
    spread = f"{s['min']:.2f}-{s['max']:.2f}; IQR {s['q1']:.2f}-{s['q3']:.2f}"
    return (
        f"| {m['pairs']} | {kind} | {', '.join(f'{x[p]:.1f}' for x in m['runs'])} "
        f"| {', '.join(f'{x[b]:.1f}' for x in m['runs'])} "
        f"| {', '.join(f'{x[r]:.2f}' for x in m['runs'])} "
        f"| **{s['median']:.2f}x** ({spread}) |"
    )


def _markdown(res: dict[str, Any], notes: str = "") -> str:
    loads = ", ".join(str(r["load"]) for m in res["measurements"] for r in m["runs"])
    lines = [
        "# LFW protocol against one bare pass (issue 21)",
        "",
        f"    {res.get('command', '')}",
        "",
        f"git {res['git_sha']}; load average before: {res['load_before']}; after: "
        f"{res['load_after']}; after each pair: {loads}",
        "",
        "| pairs | time | protocol s | bare s | per-pair ratios | ratio: median (range; IQR) |",
        "|---:|---|---|---|---|---|",
    ]
    for m in res["measurements"]:
        lines += [_row(m, "wall"), _row(m, "cpu")]
    text = "\n".join(lines) + "\n"
    return f"{text}\n{NOTES}\n{notes}" if notes else text


def _old_notes(md: Path) -> str:
    """What follows the notes marker in the results file (analysis written by hand)."""
    text = md.read_text() if md.exists() else ""
    return text.partition(NOTES)[2].lstrip("\n") if NOTES in text else ""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-root", required=True, type=Path)
    p.add_argument("--pairs", default="160", help="comma-separated pair counts (even)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lfw_one_pass.json"))
    p.add_argument("--bare", action="store_true", help="run the bare pass only (internal)")
    p.add_argument("--pairs-file", type=Path)
    a = p.parse_args()
    if a.bare:
        bare(a.data_root, a.pairs_file)
        return
    from anonbench.provenance import git_sha

    res: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "git_sha": git_sha(),
        "load_before": os.getloadavg(),
    }
    res["measurements"] = [measure(a.data_root, int(n), a.repeats) for n in a.pairs.split(",")]
    res["load_after"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    md = a.out.with_suffix(".md")
    md.write_text(_markdown(res, _old_notes(md)))
    print(_markdown(res))


if __name__ == "__main__":
    main()
