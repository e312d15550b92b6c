"""The evaluation stage's shared machinery: analysis of the originals, reference faces, and
detectors / recognizers run over (original, output) images.

The reference face of an image is the face the analysis (dlib HOG, or the run's
`--analysis-detector`, + 68 landmarks) detects on its own original: the one nearest the image
centre. Where the original has no detected face, a fallback box is derived from the dataset
itself: the median reference box, in coordinates relative to the image size, frozen
(Originals.freeze) once the scored originals are analysed, so images analysed later (train
identities) do not move it. Nothing here knows a dataset's geometry.

dlib evaluators run in CPU worker processes (one thread each); torch evaluators run in the
main process, batched, on the run's device. With the ray executor (anonbench.executors) both
run on Ray actors, torch ones asking for a GPU on `--device cuda`. Only small results (boxes,
embeddings) travel back from the workers, never whole images.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anonbench.api import Box
from anonbench.cache import Cache, array_digest
from anonbench.data.records import ImageRecord

# a share of originals without a detected face above which a run warns that its attackers
# worked mostly from the fallback box
FALLBACK_WARN = 0.5


@dataclass
class Analysis:
    """The analysis of one original image (small: it crosses process boundaries)."""

    boxes: np.ndarray  # N x 4
    scores: np.ndarray
    landmarks: np.ndarray  # N x 68 x 2
    shape: tuple[int, int]  # (height, width)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def masks(self, height: int, width: int) -> np.ndarray:
        from anonbench.faces.analysis import FaceAnalysis

        return FaceAnalysis(self.boxes, self.scores, self.landmarks).masks(height, width)


def _build_analyzer(cache_dir: str, detector: str = "dlib-hog") -> Any:
    from anonbench.faces.analysis import FaceAnalyzer

    # a torch detector runs with one thread in a worker (anonbench.parallel.worker_setup)
    return FaceAnalyzer(detector, cache=Cache(cache_dir))


def _analyze_chunk(analyzer: Any, items: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    return [_analyze(analyzer, it) for it in items]


def _analyze(analyzer: Any, item: tuple[str, str]) -> tuple[str, Analysis | str]:
    from anonbench.data.images import ImageReadError, read_rgb

    key, path = item
    try:
        img = read_rgb(path)
    except ImageReadError as e:
        return key, str(e)
    a = analyzer(img)
    return key, Analysis(a.boxes, a.scores, a.landmarks, (img.shape[0], img.shape[1]))


def nearest_centre(boxes: np.ndarray, shape: tuple[int, int]) -> int:
    """Index of the box whose centre is nearest the image centre (ties: the larger box)."""
    h, w = shape
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    d = np.hypot((cx - w / 2) / w, (cy - h / 2) / h)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.lexsort((-area, np.round(d, 4)))[0])


@dataclass
class Originals:
    """Analyses and reference faces of a dataset's originals, computed once per run."""

    cache_dir: str
    workers: int = 1
    quiet: bool = False
    analyses: dict[str, Analysis | str] = field(default_factory=dict)
    _fallback_rel: tuple[float, float, float, float] | None = None
    executor: Any = None  # anonbench.executors.Executor; None: the local process pool
    # True after freeze(): later analyses (train identities) no longer move the fallback box,
    # so an original without a face keeps one reference box for the whole run
    frozen: bool = False
    # the analysis detector (registered name); dlib's 68 landmarks are placed in its boxes
    detector: str = "dlib-hog"

    def analyze(self, records: Sequence[ImageRecord], desc: str) -> dict[str, Analysis | str]:
        """Analyses of the records (cached by content on disk and here in memory)."""
        from tqdm.auto import tqdm

        from anonbench.executors import LocalExecutor, chunked, key_range

        todo = [(r.key, str(r.path)) for r in records if r.key not in self.analyses]
        if todo:
            ex = self.executor or LocalExecutor(self.workers)
            builder = functools.partial(_build_analyzer, self.cache_dir, self.detector)
            # the key of the analyzer a worker keeps: one per analysis detector and cache
            key = f"analysis|{self.detector}|{self.cache_dir}"
            chunks = chunked(todo, 8)
            done: dict[int, list[tuple[str, Any]]] = {}
            with tqdm(
                total=len(todo), desc=desc, unit="img", dynamic_ncols=True, disable=self.quiet
            ) as bar:
                try:
                    for i, res in ex.map(
                        _analyze_chunk,
                        builder,
                        chunks,
                        key=key,
                        what=desc,
                        names=[key_range([k for k, _ in c]) for c in chunks],
                    ):
                        done[i] = res
                        bar.update(len(res))
                finally:
                    # in chunk order, whatever order the shards finished in
                    for i in sorted(done):
                        self.analyses.update(done[i])
            if not self.frozen:
                self._fallback_rel = None
        return {r.key: self.analyses[r.key] for r in records}

    def analysis_version(self) -> str:
        """The version of this analysis (detector + landmarker), as output stores key it."""
        from anonbench.produce import analysis_version

        return analysis_version(self.detector)

    def readable(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        """The records whose original was read and analysed (unreadable ones left out)."""
        return [r for r in records if isinstance(self.analyses.get(r.key), Analysis)]

    def errors(self, records: Sequence[ImageRecord]) -> dict[str, str]:
        return {r.key: a for r in records if isinstance(a := self.analyses.get(r.key, ""), str)}

    def fallback_rel(self) -> tuple[float, float, float, float] | None:
        """The median reference box over every analysed original with a face, relative to
        the image size; None when no original has a detected face (then, once frozen, for
        good)."""
        if self._fallback_rel is None and not self.frozen:
            rel = []
            for a in self.analyses.values():
                if isinstance(a, Analysis) and len(a):
                    b = a.boxes[nearest_centre(a.boxes, a.shape)]
                    h, w = a.shape
                    rel.append((b[0] / w, b[1] / h, b[2] / w, b[3] / h))
            if rel:
                m = np.median(np.array(rel, np.float64), axis=0)
                self._fallback_rel = (float(m[0]), float(m[1]), float(m[2]), float(m[3]))
        return self._fallback_rel

    def freeze(self) -> None:
        """Fixes the fallback box to the median over the originals analysed so far (the
        scored ones, at prepare); idempotent."""
        if not self.frozen:
            self.fallback_rel()
            self.frozen = True

    def reference(self, key: str) -> tuple[Box, bool]:
        """(reference box, True when it is the fallback box: no face on the original)."""
        a = self.analyses[key]
        assert isinstance(a, Analysis), a
        if len(a):
            b = a.boxes[nearest_centre(a.boxes, a.shape)]
            return (float(b[0]), float(b[1]), float(b[2]), float(b[3])), False
        h, w = a.shape
        rel = self.fallback_rel() or (0.25, 0.25, 0.75, 0.75)
        return (
            round(rel[0] * w, 1),
            round(rel[1] * h, 1),
            round(rel[2] * w, 1),
            round(rel[3] * h, 1),
        ), True

    def describe(self, records: Sequence[ImageRecord]) -> dict[str, Any]:
        """What run.json records about the reference faces of these records."""
        ok = [r for r in records if isinstance(self.analyses.get(r.key), Analysis)]
        no_face = sum(self.reference(r.key)[1] for r in ok)
        rel = self.fallback_rel()
        return {
            "reference_face": f"analysis face ({self.detector} + dlib-68) nearest the image "
            "centre on the image's own original",
            "fallback_box_relative": None if rel is None else [round(v, 4) for v in rel],
            "fallback_box_rule": "median reference box over the dataset's originals, "
            "relative to the image size"
            if rel is not None
            else "no original face detected: the central half of the image",
            "originals_without_face": no_face,
            "originals": len(ok),
        }


def warn_fallback(ctx_quiet: bool, label: str, no_face: int, n: int) -> str:
    """A note (and a warning line) when most originals had no detected face."""
    if n and no_face / n > FALLBACK_WARN:
        msg = (
            f"no face detected on {no_face}/{n} originals of {label}: the attackers worked "
            "from the fallback box there (doubtful basis)"
        )
        print(f"warning: {msg}")
        return msg
    return ""


# -- evaluators ------------------------------------------------------------------------------


def create_evaluator(registry: Any, name: str, device: str = "cpu", batch_size: int = 32) -> Any:
    """Builds an evaluator, passing device and batch_size where its factory takes them."""
    from anonbench import plugins

    return plugins.evaluator(registry, name, device, batch_size)


def in_workers(evaluator: Any) -> bool:
    """Evaluators declaring `cpu_workers = True` (dlib) run in CPU worker processes."""
    from anonbench.api import runs_in_workers

    return runs_in_workers(evaluator)


def run_kwargs(ctx: Any) -> dict[str, Any]:
    """evaluate_images' settings from a RunContext."""
    return {
        "cache_dir": ctx.cache_dir,
        "workers": ctx.workers,
        "device": ctx.device,
        "batch_size": ctx.batch_size,
        "quiet": ctx.quiet,
        "executor": getattr(ctx, "executor", None),
    }


def real_items(ctx: Any, records: Sequence[ImageRecord]) -> list[tuple[str, Any, Box]]:
    """(key, ImageRef of the original, reference box) items for evaluate_images."""
    from anonbench.produce import ImageRef

    return [
        (r.key, ImageRef(None, str(r.path)), ctx.originals.reference(r.key)[0]) for r in records
    ]


def store_items(ctx: Any, records: Sequence[ImageRecord], store: Any) -> list[tuple[str, Any, Box]]:
    """(key, ImageRef of the method's output, reference box) items for evaluate_images."""
    return [(r.key, store.ref(r), ctx.originals.reference(r.key)[0]) for r in records]


@dataclass
class _EvalState:
    detectors: dict[str, Any]
    embedders: dict[str, Any]
    cache: Cache


def _build_eval_state(
    det_names: list[str],
    emb_names: list[str],
    cache_dir: str,
    device: str = "cpu",
    batch_size: int = 32,
) -> _EvalState:
    from anonbench.registry import DETECTORS, EMBEDDERS

    return _EvalState(
        {n: create_evaluator(DETECTORS, n, device, batch_size) for n in det_names},
        {n: create_evaluator(EMBEDDERS, n, device, batch_size) for n in emb_names},
        Cache(cache_dir),
    )


def _eval_chunk(st: _EvalState, items: list[tuple[str, Any, Box]]) -> list[dict[str, Any]]:
    """Loads a chunk of images and runs the state's evaluators on them."""
    from anonbench.data.images import ImageReadError

    out, imgs, keep = [], [], []
    for key, ref, box in items:
        try:
            imgs.append(ref.load())
            keep.append((key, box))
        except ImageReadError as e:
            out.append({"key": key, "error": str(e)})
    if not imgs:
        return out
    from anonbench.faces.cached import cached_detections, cached_embeddings

    digests = [array_digest(im) for im in imgs]
    dets = {n: cached_detections(st.cache, d, imgs, digests) for n, d in st.detectors.items()}
    embs = {
        n: cached_embeddings(st.cache, e, imgs, [b for _, b in keep], digests)
        for n, e in st.embedders.items()
    }
    for i, (key, _) in enumerate(keep):
        out.append(
            {
                "key": key,
                "error": None,
                "dets": {n: v[i] for n, v in dets.items()},
                "embs": {n: (v[0][i], bool(v[1][i])) for n, v in embs.items()},
            }
        )
    return out


def evaluate_images(
    items: Sequence[tuple[str, Any, Box]],
    detectors: Sequence[str],
    embedders: Sequence[str],
    *,
    cache_dir: str,
    workers: int = 1,
    device: str = "cpu",
    batch_size: int = 32,
    quiet: bool = False,
    desc: str = "evaluate",
    executor: Any = None,
) -> dict[str, dict[str, Any]]:
    """Runs detectors and embedders over items (key, ImageRef, reference box). Returns key ->
    {"error", "dets": {name: N x 4}, "embs": {name: (vector, fell_back)}}. executor:
    anonbench.executors.Executor (None: the local pool of `workers` processes)."""
    from tqdm.auto import tqdm

    from anonbench.executors import LocalExecutor, chunked, key_range
    from anonbench.registry import DETECTORS, EMBEDDERS

    items = list(items)
    results: dict[str, dict[str, Any]] = {
        k: {"key": k, "error": None, "dets": {}, "embs": {}} for k, _, _ in items
    }
    dets = {n: create_evaluator(DETECTORS, n, device, batch_size) for n in detectors}
    embs = {n: create_evaluator(EMBEDDERS, n, device, batch_size) for n in embedders}
    w_dets = [n for n, d in dets.items() if in_workers(d)]
    w_embs = [n for n, e in embs.items() if in_workers(e)]
    main = _EvalState(
        {n: d for n, d in dets.items() if n not in w_dets},
        {n: e for n, e in embs.items() if n not in w_embs},
        Cache(cache_dir),
    )

    def merge(rs: list[dict[str, Any]]) -> None:
        _merge(results, rs)

    ex = executor or LocalExecutor(workers)

    def shards(builder: Any, chunks: list[Any], key: str, what: str, gpu: bool) -> None:
        """Runs the chunks on the executor; results merged by key (any finishing order)."""
        with tqdm(
            total=len(items), desc=what, unit="img", dynamic_ncols=True, disable=quiet
        ) as bar:
            for _, rs in ex.map(
                _eval_chunk,
                builder,
                chunks,
                key=key,
                what=what,
                names=[key_range([k for k, _, _ in c]) for c in chunks],
                gpu=gpu,
            ):
                merge(rs)
                bar.update(len(rs))

    if w_dets or w_embs:
        builder = functools.partial(_build_eval_state, w_dets, w_embs, cache_dir)
        key = f"eval|{w_dets}|{w_embs}|{cache_dir}"
        shards(builder, chunked(items, 8), key, desc, False)
    if main.detectors or main.embedders:
        names = ", ".join([*main.detectors, *main.embedders])
        what = f"{desc} [{names} on {device}]"
        step = max(1, batch_size)
        if ex.distributed:
            # torch evaluators on Ray actors, batched, a GPU each on cuda (Ray assigns the GPU
            # through CUDA_VISIBLE_DEVICES, so a worker's device is plain "cuda")
            dev = "cuda" if device.startswith("cuda") else device
            tn = (list(main.detectors), list(main.embedders))
            builder = functools.partial(_build_eval_state, *tn, cache_dir, dev, batch_size)
            key = f"eval|{tn}|{cache_dir}|{dev}|{batch_size}"
            shards(builder, chunked(items, step), key, what, dev.startswith("cuda"))
        else:
            _in_process(main, items, step, what, quiet, results)
    return results


def _merge(results: dict[str, dict[str, Any]], rs: list[dict[str, Any]]) -> None:
    """Adds chunk results to `results` by key (an error replaces the image's results)."""
    for r in rs:
        cur = results[r["key"]]
        if r["error"]:
            cur["error"] = r["error"]
            continue
        cur["dets"].update(r["dets"])
        cur["embs"].update(r["embs"])


def _in_process(
    state: _EvalState,
    items: list[tuple[str, Any, Box]],
    step: int,
    what: str,
    quiet: bool,
    results: dict[str, dict[str, Any]],
) -> None:
    """Torch evaluators in this process, `step` images a batch (the local executor)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(items), desc=what, unit="img", dynamic_ncols=True, disable=quiet) as bar:
        for i in range(0, len(items), step):
            _merge(results, _eval_chunk(state, items[i : i + step]))
            bar.update(min(step, len(items) - i))


def nanrow(**kw: Any) -> dict[str, Any]:
    return {"value": math.nan, "n": 0, **kw}
