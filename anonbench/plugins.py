"""One builder for plug-ins: a registered factory gets the run's resources it asks for.

A plug-in says what it takes from the run by naming the parameters of its constructor
(``device``, ``batch_size``, ``seed``, ``compile``, ``epochs``, ...); the caller offers values
under those names and :func:`build` passes exactly the ones the factory names. A factory
that takes only ``**kwargs`` is offered nothing (it names nothing). Arguments given as
``fixed`` are always passed (a checkpoint, a detection threshold): a factory that does not
take one is the registry's usual one-line error.

Every place that builds a plug-in with run settings goes through here: :func:`evaluator`
(detectors, embedders, landmarkers with the device and batch size), :func:`trained_attacker`
(Proxy-NCA and the landmark attackers with epochs and seed too) and :func:`first_accepted`
(a setting a factory may name in several ways, e.g. a detector's threshold). Whether an
evaluator runs in CPU worker processes is its capability attribute ``cpu_workers``
(:func:`runs_in_workers`), never its module's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from anonbench.api import Resources, runs_in_workers

__all__ = [
    "accepted",
    "build",
    "evaluator",
    "first_accepted",
    "runs_in_workers",
    "trained_attacker",
]


def accepted(registry: Any, name: str) -> frozenset[str]:
    """The keyword parameters the factory of `name` declares (empty when it cannot say)."""
    factory = registry.entry(name).factory
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return frozenset()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(n for n, p in params.items() if p.kind in kinds)


def build(
    registry: Any,
    name: str,
    offer: Mapping[str, Any] | Resources | None = None,
    **fixed: Any,
) -> Any:
    """`registry.create(name, ...)` with the offered values its factory takes plus `fixed`.
    `offer`: a mapping, or the run's Resources (its device, batch size and seed)."""
    if isinstance(offer, Resources):
        offer = offer.offer()
    takes = accepted(registry, name) if offer else frozenset()
    kwargs = {k: v for k, v in (offer or {}).items() if k in takes}
    return registry.create(name, **{**kwargs, **fixed})


def first_accepted(registry: Any, name: str, candidates: Sequence[str]) -> str | None:
    """The first of `candidates` that the factory of `name` takes (None: none of them); for a
    setting plug-ins name differently (a detector's ``threshold`` / ``conf_threshold``)."""
    takes = accepted(registry, name)
    return next((c for c in candidates if c in takes), None)


def evaluator(registry: Any, name: str, device: str = "cpu", batch_size: int = 32) -> Any:
    """A detector, embedder or landmarker with the device and batch size it takes."""
    return build(registry, name, {"device": device, "batch_size": batch_size})


def trained_attacker(
    name: str,
    *,
    device: str = "cpu",
    batch_size: int = 32,
    seed: int = 0,
    epochs: int = 20,
    **extra: Any,
) -> Any:
    """A trained attacker (anonbench.api.TrainedAttacker) from the embedders, offered the
    run's device and seed, batches of at least 32, `epochs` and `extra` (a checkpoint, a
    cache folder): each passed only where its factory takes it."""
    from anonbench.registry import EMBEDDERS

    offer = {
        "device": device,
        "batch_size": max(batch_size, 32),
        "epochs": epochs,
        "seed": seed,
        **extra,
    }
    return build(EMBEDDERS, name, offer)
