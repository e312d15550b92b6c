"""Trained attackers (anonbench.api.TrainedAttacker: Proxy-NCA, its adaptive variant, the
landmark attacker): built from the registry with the run's settings, fitted on the train
identities, and run over (key, ImageRef, reference box) items, batched and cached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.data.records import ImageRecord


def is_trained(evaluator: Any) -> bool:
    """True for a trained attacker (it has `fit` and says what it trains on)."""
    return hasattr(evaluator, "fit") and hasattr(evaluator, "training")


# how a checkpoint's classes name their source (pnca-face v2: `lfw:<Name>`); only these are
# read as prefixes, so a class like `x:7211` never matches a celeba identity 7211
SOURCES = ("lfw:", "celeba:")


def seen_identities(classes: Sequence[str], identities: Sequence[str] | set[str]) -> set[str]:
    """The identities among `identities` a fixed checkpoint was trained on. A class matches
    an identity as it is or without its source prefix (SOURCES), so a dataset built from LFW
    folders is caught too."""
    names = set(classes)
    names |= {c.removeprefix(p) for c in classes for p in SOURCES if c.startswith(p)}
    return names & set(identities)


def refuse_seen_identities(
    attacker: Any, identities: Sequence[str] | set[str], what: str, remedy: str
) -> None:
    """One line when a fixed checkpoint (`classes`) was trained on identities it is now
    tested on: its scores would be inflated (test identities are never seen in training)."""
    from anonbench.errors import AnonbenchError

    seen = seen_identities(getattr(attacker, "classes", ()), identities)
    if seen:
        name = getattr(attacker, "name", "the recognizer")
        where = getattr(attacker, "checkpoint", None)
        who = f"{name} (checkpoint {where})" if where else name
        raise AnonbenchError(
            f"{who} was trained on {len(seen)} {what}, e.g. {sorted(seen)[0]}: its scores "
            f"there would be inflated; {remedy}"
        )


def trained_attacker(name: str, ctx: RunContext, **extra: Any) -> Any:
    """A TrainedAttacker from the registry with the run's device, seed and epochs (option
    pnca_epochs), built by anonbench.plugins.trained_attacker."""
    from anonbench import plugins

    return plugins.trained_attacker(
        name,
        device=ctx.device,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        epochs=int(ctx.options.get("pnca_epochs", 20)),
        **extra,
    )


def trained_attackers(ctx: RunContext, recognizers: dict[str, Any]) -> dict[str, Any]:
    """The trained attackers among `recognizers` (name -> evaluator), rebuilt with the run's
    settings, in the same order; pnca loads the option `identifier` (a trained Proxy-NCA
    checkpoint) when one is given instead of training."""
    out = {}
    for n, ev in recognizers.items():
        if is_trained(ev):
            extra = {}
            if n == "pnca" and ctx.options.get("identifier"):
                extra["checkpoint"] = ctx.options["identifier"]
            out[n] = trained_attacker(n, ctx, **extra)
    return out


def embed_trained(
    ctx: RunContext, attacker: Any, items: Sequence[tuple], desc: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a fitted attacker over (key, ImageRef, box) items, batched, cached; a
    progress bar named `desc` (loading may restore each image: minutes on thousands)."""
    from tqdm.auto import tqdm

    from anonbench.cache import Cache, array_digest
    from anonbench.faces.cached import cached_embeddings

    cache = Cache(ctx.cache_dir)
    embs, fbs = [], []
    step = max(ctx.batch_size, 32)
    with tqdm(
        total=len(items),
        desc=desc or attacker.name,
        unit="img",
        dynamic_ncols=True,
        disable=ctx.quiet,
        leave=False,
    ) as bar:
        for i in range(0, len(items), step):
            chunk = items[i : i + step]
            imgs = [ref.load() for _, ref, _ in chunk]
            e, f = cached_embeddings(
                cache, attacker, imgs, [b for _, _, b in chunk], [array_digest(x) for x in imgs]
            )
            embs.append(e)
            fbs.append(f)
            bar.update(len(chunk))
    if not embs:
        return np.zeros((0, attacker.dim), np.float32), np.zeros(0, bool)
    return np.concatenate(embs), np.concatenate(fbs)


def fit_attacker(
    ctx: RunContext, attacker: Any, records: list[ImageRecord], extra: Sequence[tuple] = ()
) -> None:
    """Fits a trained attacker on real train images (+ extra (key, ImageRef, box, label))."""
    from anonbench.evaluate import real_items

    org = ctx.originals
    org.analyze(records, f"analyse train ({ctx.data.label})")
    ok = org.readable(records)
    images = [ref.load() for _, ref, _ in real_items(ctx, ok)]
    boxes = [org.reference(r.key)[0] for r in ok]
    labels = [r.identity for r in ok]
    for _, ref, box, label in extra:
        images.append(ref.load())
        boxes.append(box)
        labels.append(label)
    attacker.fit(images, boxes, labels, cache_dir=ctx.cache_dir, quiet=ctx.quiet)
