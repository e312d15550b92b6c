"""Building passes (anonbench.scorers.base.Pass): one evaluation over the union of the
scorers' needs, for the originals and for each method's output store, through
anonbench.evaluate.evaluate_images (batched, cached by content, sharded by the executor).

Reference boxes are frozen once (:func:`frozen_boxes`) and shared by every pass of a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from anonbench.api import Box, RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.scorers.base import ImageAnalysis, Needs, Pass, SetFeatures


def frozen_boxes(ctx: RunContext, records: Sequence[ImageRecord]) -> dict[str, tuple[Box, bool]]:
    """(reference box, fell back) of each analysed record, after freezing the originals'
    fallback box (anonbench.evaluate.Originals.freeze): images analysed later (a trained
    attacker's train identities) no longer move it."""
    org = ctx.originals
    org.freeze()
    return {r.key: org.reference(r.key) for r in org.readable(records)}


def _analyse(
    ctx: RunContext, items: list[tuple[str, Any, Box]], needs: Needs, desc: str
) -> dict[str, ImageAnalysis]:
    from anonbench.evaluate import evaluate_images, run_kwargs

    res = evaluate_images(
        items, list(needs.detectors), list(needs.embedders), desc=desc, **run_kwargs(ctx)
    )
    return {k: ImageAnalysis.from_dict(v) for k, v in res.items()}


def real_pass(
    ctx: RunContext,
    records: Sequence[ImageRecord],
    needs: Needs,
    boxes: dict[str, tuple[Box, bool]],
    desc: str,
    features: FeatureBank | None = None,
) -> Pass:
    """The pass over the originals of `records` (those with a frozen box); records whose
    original cannot be read are left out of `records` (kept in `images`, with the error)."""
    from anonbench.produce import ImageRef

    recs = [r for r in records if r.key in boxes]
    refs = {r.key: ImageRef(None, str(r.path)) for r in recs}
    items = [(r.key, refs[r.key], boxes[r.key][0]) for r in recs]
    images = _analyse(ctx, items, needs, desc)
    ok = [r for r in recs if not images[r.key].error]
    loader = _loader(refs)
    feats = features.for_loader(loader, needs.features, "real images") if features else {}
    return Pass("real", ok, images, boxes, loader, refs, feats)


def output_pass(
    ctx: RunContext,
    real: Pass,
    method: Any,
    store: Any,
    needs: Needs,
    desc: str,
    features: FeatureBank | None = None,
) -> Pass:
    """The pass over one method's outputs of real.records: the scored records are those
    readable in both passes; `note` is the doubt when most of them had no original face."""
    from anonbench.evaluate import warn_fallback

    refs = {r.key: store.ref(r) for r in real.records}
    items = [(k, refs[k], real.box(k)) for k in real.keys]
    images = _analyse(ctx, items, needs, desc)
    ok = [r for r in real.records if not images[r.key].error]
    no_face = sum(real.fell_back(r.key) for r in ok)
    note = warn_fallback(ctx.quiet, ctx.data.label, no_face, len(ok))
    loader = _loader(refs)
    feats = features.for_loader(loader, needs.features, method.name) if features else {}
    return Pass(method.name, ok, images, real.boxes, loader, refs, feats, method, store, note)


def _loader(refs: dict[str, Any]) -> Callable[[str], np.ndarray]:
    return lambda key: refs[key].load()


class FeatureBank:
    """The shared per-set feature extractors of a run, built once: "inception" (pytorch-fid
    Inception-v3 pool3, FID and KID), cached per set of images by their content."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._extractors: dict[str, Any] = {}

    def _extractor(self, name: str) -> Any:
        if name not in self._extractors:
            if name != "inception":
                raise AnonbenchError(f"unknown feature set {name!r} (inception)")
            from anonbench.metrics.fid import FIDFeatureExtractor

            try:
                self._extractors[name] = FIDFeatureExtractor(
                    device=self.ctx.device, batch_size=self.ctx.batch_size
                )
            except AnonbenchError as e:
                self._extractors[name] = e
        return self._extractors[name]

    def for_loader(
        self, loader: Callable[[str], np.ndarray], names: Sequence[str], label: str = ""
    ) -> dict[str, SetFeatures]:
        """name -> SetFeatures over images read by `loader` (compute raises AnonbenchError
        when the extractor cannot run)."""
        out = {}
        for n in names:
            ext = self._extractor(n)
            if isinstance(ext, AnonbenchError):
                out[n] = SetFeatures(_raiser(ext), "")
            else:
                out[n] = SetFeatures(self._computer(ext, loader, label), ext.weights_source)
        return out

    def _computer(
        self, ext: Any, loader: Callable[[str], np.ndarray], label: str
    ) -> Callable[[Sequence[str]], np.ndarray]:
        from anonbench.cache import Cache, array_digest

        cache = Cache(self.ctx.cache_dir)

        def compute(keys: Sequence[str]) -> np.ndarray:
            images = [loader(k) for k in keys]
            h = hashlib.sha256()
            for im in images:
                h.update(array_digest(im).encode())
            comp, ver = "fid-features", f"{ext.version}/{ext.weights_source}"
            hit = cache.get(comp, ver, h.hexdigest())
            if hit is not None:
                return hit["features"]
            with _bar(len(images), f"FID features: {label}", self.ctx.quiet) as bar:
                f = ext.features(images, on_batch=bar.update)
            cache.put(comp, ver, h.hexdigest(), {"features": f})
            return f

        return compute


def _bar(total: int, desc: str, quiet: bool) -> Any:
    """A progress bar of images done (Inception on a CPU core: minutes for thousands)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, disable=quiet)


def _raiser(e: AnonbenchError) -> Callable[[Sequence[str]], np.ndarray]:
    def compute(keys: Sequence[str]) -> np.ndarray:
        raise e

    return compute


def restored_pass(ctx: RunContext, out: Pass, attack: str, needs: Needs) -> Pass:
    """`out` with every output restored by a reversal attack (anonbench.metrics.reversal)
    before the per-image evaluators of `needs` run on it; same records and frozen boxes, no
    note. An unreadable restored image fails (the same files were just read)."""
    from anonbench.metrics.reversal import restored

    refs = {k: restored(out.refs[k], attack, out.method, out.box(k)) for k in out.keys}
    label = f"{out.label} +{attack}"
    if needs.detectors or needs.embedders:
        items = [(k, refs[k], out.box(k)) for k in out.keys]
        images = _analyse(ctx, items, needs, label)
        bad = sorted(k for k in out.keys if images[k].error)
        if bad:
            raise AnonbenchError(f"reversal {attack}: unreadable {bad[0]}: {images[bad[0]].error}")
    else:
        images = {k: ImageAnalysis() for k in out.keys}
    return Pass(
        label, out.records, images, out.boxes, _loader(refs), refs, {}, out.method, out.store
    )
