"""One builder for plug-ins: a registered factory gets the run's resources it asks for.

A plug-in says what it takes from the run by naming the parameters of its constructor
(``device``, ``batch_size``, ``seed``, ``compile``, ``epochs``, ...); the caller offers values
under those names and :func:`build` passes exactly the ones the factory names. A factory
that takes only ``**kwargs`` is offered nothing (it names nothing). Arguments given as
``fixed`` are always passed (a checkpoint, a detection threshold): a factory that does not
take one is the registry's usual one-line error.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from anonbench.api import Resources, runs_in_workers

__all__ = ["accepted", "build", "runs_in_workers"]


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
