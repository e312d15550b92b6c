"""Scoring a generator checkpoint on the acceptance metrics of the learned anonymizers (issue
19), through the code paths users run: `anonbench anonymize` for the identity effect and
`anonbench run --protocol celeba` for detection, Recall@1, KID and FID.

- identity effect: the same faces anonymized with `--identity 0` and `--identity 70`; the mean
  |difference| (pixels in [0, 1]) over the pixels that either output changed by more than
  0.02 from the input. Measured on the first six images (by name) of the data folder (the
  probe of the issue) and on one image of each of the first held-out test identities.
- celeba protocol on the default split (seed 0), at most 3 test images per identity (N = 443
  on ../shared/data/celeba): detection by RetinaFace and dlib HOG, dlib-resnet Recall@1, KID
  and FID against the real test images.

Checkpoints are ranked by identity effect, then detection, then KID (`rank`).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anonbench.errors import AnonbenchError

TARGETS = (0, 70)
CHANGED = 0.02  # a pixel counts as changed when an output moved it this far (any channel)
PROBE_IMAGES = 6
PROTOCOL_OPTIONS = {
    "max_per_identity": "3",
    "detectors": "dlib-hog,retinaface",
    "recognizers": "dlib-resnet",
    "landmarkers": "",
    "reversal": "none",
}
COLUMNS = (
    "checkpoint",
    "step",
    "cpu_hours",
    "identity_effect_probe",
    "identity_effect_heldout",
    "det_retinaface",
    "det_dlib_hog",
    "recall1_dlib_resnet",
    "kid",
    "fid",
    "n",
    "seconds",
    "scored_at",
)


@dataclass
class QualityResult:
    """One checkpoint's row of the quality table (percentages for rates)."""

    checkpoint: str
    step: int | None = None
    cpu_hours: float | None = None
    identity_effect_probe: float | None = None
    identity_effect_heldout: float | None = None
    det_retinaface: float | None = None
    det_dlib_hog: float | None = None
    recall1_dlib_resnet: float | None = None
    kid: float | None = None
    fid: float | None = None
    n: int | None = None
    seconds: float | None = None
    scored_at: str = ""
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: ("" if d[k] is None else d[k]) for k in COLUMNS}


def identity_effect(
    a: Sequence[Any], b: Sequence[Any], x: Sequence[Any], changed: float = CHANGED
) -> float:
    """Mean |a - b| over the pixels (all images pooled) where a or b differs from the input x
    by more than `changed` in any channel; images are float arrays in [0, 1], H x W x 3."""
    import numpy as np

    diffs = []
    for ai, bi, xi in zip(a, b, x, strict=True):
        moved = (np.abs(ai - xi).max(-1) > changed) | (np.abs(bi - xi).max(-1) > changed)
        diffs.append(np.abs(ai - bi)[moved].ravel())
    allv = np.concatenate(diffs) if diffs else np.zeros(0)
    return float(allv.mean()) if allv.size else 0.0


def probe_images(root: Path, n: int = PROBE_IMAGES) -> list[Path]:
    """The first n images by name of ROOT/img_align_celeba (or of ROOT)."""
    folder = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    exts = {".jpg", ".jpeg", ".png"}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise AnonbenchError(f"no images in {folder}")
    return files[:n]


def heldout_images(root: Path, n: int, seed: int = 0) -> list[Path]:
    """One image (the first by name) of each of the first n test identities of the celeba
    protocol's split with this seed: faces no training on identity-train has seen."""
    from anonbench.methods.landmark_data import load_records

    recs = load_records(f"celeba:{root}", "identity-test", seed, 0.5)
    first: dict[str, Path] = {}
    for r in sorted(recs, key=lambda r: (r.identity, str(r.path))):
        first.setdefault(r.identity, Path(r.path))
    return [first[k] for k in sorted(first)][:n]


def _anonymize(method: str, ckpt: str, files: list[Path], work: Path, target: int) -> list[Path]:
    """`anonbench anonymize --identity target` on copies of files; the outputs, in order."""
    from anonbench.cli import main

    src = work / "in"
    if not src.is_dir():
        src.mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(f, src / f"{i:03d}{f.suffix.lower()}")
    dst = work / f"out_{target}"
    argv = ["anonymize", "--method", method, "--input", str(src), "--output", str(dst)]
    argv += ["--identity", str(target), "--quiet", "--no-cache"]
    if ckpt:
        argv += ["--checkpoint", ckpt]
    if main(argv) not in (0, 1):
        raise AnonbenchError(f"anonymize {method} --identity {target} failed")
    return [dst / p.name for p in sorted(src.iterdir())]


def measure_identity_effect(method: str, ckpt: str, files: list[Path]) -> float:
    """identity_effect of `anonymize --identity 0` against `--identity 70` on files."""
    from anonbench.data.images import read_rgb

    with tempfile.TemporaryDirectory(prefix="anonbench-quality-") as tmp:
        outs = [_anonymize(method, ckpt, files, Path(tmp), t) for t in TARGETS]
        ins = sorted((Path(tmp) / "in").iterdir())
        ok = [i for i, p in enumerate(outs[0]) if p.is_file() and outs[1][i].is_file()]

        def load(p: Path) -> Any:
            return read_rgb(p).astype("float32") / 255.0

        return identity_effect(
            [load(outs[0][i]) for i in ok],
            [load(outs[1][i]) for i in ok],
            [load(ins[i]) for i in ok],
        )


def takes_identity(method: str, ckpt: str) -> bool:
    """Whether the method has an identity input (CIAGAN); pix2pix and CycleGAN do not."""
    from anonbench.registry import METHODS

    kwargs = {"checkpoint": ckpt} if ckpt else {}
    return hasattr(METHODS.create(method, **kwargs), "num_identities")


def protocol_scores(
    method: str, ckpt: str, root: Path, out: Path, workers: int, cache: str | None
) -> dict[str, Any]:
    """`anonbench run --protocol celeba` on the N = 443 subset; the rows this table reads."""
    from anonbench.cli import main

    argv = ["run", "--methods", method, "--protocol", "celeba", "--data-root", str(root)]
    argv += ["--out", str(out), "--workers", str(workers), "--quiet"]
    for k, v in PROTOCOL_OPTIONS.items():
        argv += ["--option", f"{k}={v}"]
    if ckpt:
        argv += ["--checkpoint", f"{method}={ckpt}"]
    if cache:
        argv += ["--cache-dir", cache]
    code = main(argv)
    if code != 0:
        raise AnonbenchError(f"the celeba run for {method} failed (exit {code}); see {out}")
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == method]

    def value(metric: str, evaluator: str | None = None) -> float | None:
        for r in rows:
            if r["metric"] == metric and (evaluator is None or r["evaluator"] == evaluator):
                return float(r["value"]) if r["value"] not in ("", "nan") else None
        return None

    n = next((int(float(r["n"])) for r in rows if r["metric"] == "kid" and r["n"]), None)
    return {
        "det_retinaface": value("detection_rate", "retinaface"),
        "det_dlib_hog": value("detection_rate", "dlib-hog"),
        "recall1_dlib_resnet": value("recall_at_1", "dlib-resnet"),
        "kid": value("kid"),
        "fid": value("fid"),
        "n": n,
    }


def checkpoint_info(ckpt: Path) -> tuple[int | None, float | None]:
    """(step, CPU-hours) of a training checkpoint: a snapshot's sidecar JSON, else the training
    folder's status.json when it is that folder's last.pt, else the step alone."""
    side = ckpt.with_suffix(".json")
    if side.is_file():
        try:
            d = json.loads(side.read_text(encoding="utf-8"))
            return int(d["step"]), float(d["cpu_hours"])
        except (ValueError, KeyError, TypeError):
            pass
    step = None
    try:
        import io

        import torch

        from anonbench.methods.ciagan.checkpoint import read_bytes

        raw = read_bytes(ckpt)  # the file, or its NAME.part* pieces (None: neither)
        if raw is not None:
            head = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            step = int(head.get("step"))
    except Exception:  # a generator-only export may have no step: the column stays empty
        step = None
    from anonbench.methods.gan_status import read_status

    st = read_status(ckpt.parent) if ckpt.name == "last.pt" else {}
    cpu = st.get("cpu_hours") if st.get("step") == step else None
    return step, cpu


def score(
    method: str,
    ckpt: str,
    root: Path,
    out: Path,
    heldout: int = 24,
    workers: int = 1,
    cache: str | None = None,
) -> QualityResult:
    """The quality row of one checkpoint (see the module docstring)."""
    t0 = time.monotonic()
    res = QualityResult(checkpoint=ckpt or "(shipped weights)")
    if ckpt:
        res.step, res.cpu_hours = checkpoint_info(Path(ckpt))
    if takes_identity(method, ckpt):
        res.identity_effect_probe = measure_identity_effect(method, ckpt, probe_images(root))
        files = heldout_images(root, heldout)
        res.identity_effect_heldout = measure_identity_effect(method, ckpt, files)
    else:
        res.notes.append(f"{method} has no identity input: no identity effect")
    for k, v in protocol_scores(method, ckpt, root, out / "run", workers, cache).items():
        setattr(res, k, v)
    res.seconds = round(time.monotonic() - t0, 1)
    res.scored_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    return res


def append_log(path: Path, res: QualityResult) -> None:
    """Adds the row to a quality.csv (a training folder's, read by its status.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # --log-to was checked before the scoring
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        if new:
            w.writeheader()
        w.writerow(res.row())


# what rank and format_table read of a row; a file without them is not a quality.csv
RANK_COLUMNS = (
    "checkpoint",
    "identity_effect_probe",
    "identity_effect_heldout",
    "det_retinaface",
    "det_dlib_hog",
    "kid",
)
# the columns format_table formats as numbers: text there is an error, not a crash
NUMBER_COLUMNS = COLUMNS[COLUMNS.index("cpu_hours") : COLUMNS.index("fid") + 1]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a quality.csv (append_log), checked: one line naming the file (and the
    missing columns, or the row) when it cannot be read or is not a quality table."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnonbenchError(f"cannot read {path}: {e}") from None
    missing = [c for c in RANK_COLUMNS if c not in names]
    if missing:
        raise AnonbenchError(
            f"{path}: not an anonbench quality file (missing columns {', '.join(missing)})"
        )
    for i, r in enumerate(rows, start=2):  # file lines: the header is line 1
        for c in NUMBER_COLUMNS:
            v = r.get(c)
            if v not in (None, "") and not _is_number(v):
                raise AnonbenchError(f"{path}: line {i}: {c} {str(v)[:40]!r} is not a number")
    return rows


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _num(v: Any, default: float) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return default
    return x if x == x else default


def rank(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best first: identity effect (held-out, else probe), then the lower detection rate of
    the two detectors, then KID (lower is better)."""

    def key(r: Mapping[str, Any]) -> tuple[float, float, float]:
        ide = _num(r.get("identity_effect_heldout"), _num(r.get("identity_effect_probe"), 0.0))
        det = min(_num(r.get("det_retinaface"), 0.0), _num(r.get("det_dlib_hog"), 0.0))
        return (-round(ide, 2), -round(det, 0), _num(r.get("kid"), float("inf")))

    return sorted(rows, key=key)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of quality rows, in the given order."""
    head = (
        "| checkpoint | step | CPU-h | id effect (probe) | id effect (held-out) | det RetinaFace % "
        "| det dlib-HOG % | R@1 dlib-resnet % | KID | FID | N |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v: Any, fmt: str) -> str:
        return format(float(v), fmt) if v not in (None, "") else "n/a"

    for r in rows:
        lines.append(
            f"| {Path(str(r['checkpoint'])).name} | {r.get('step') or ''} | "
            f"{f(r.get('cpu_hours'), '.2f')} | {f(r.get('identity_effect_probe'), '.4f')} | "
            f"{f(r.get('identity_effect_heldout'), '.4f')} | {f(r.get('det_retinaface'), '.1f')} | "
            f"{f(r.get('det_dlib_hog'), '.1f')} | {f(r.get('recall1_dlib_resnet'), '.1f')} | "
            f"{f(r.get('kid'), '.4f')} | {f(r.get('fid'), '.1f')} | {r.get('n') or ''} |"
        )
    return "\n".join(lines)
