"""Building a protocol's evaluators from comma-separated option values: those that can run,
and why the others cannot (weights not on disk: reported as unavailable rows, never
replaced); an unknown name fails the run."""

from __future__ import annotations

from typing import Any

from anonbench.api import RunContext
from anonbench.errors import AnonbenchError, UnknownNameError


def names(value: Any) -> list[str]:
    """The names of a comma-separated option value."""
    return [x.strip() for x in str(value).split(",") if x.strip()]


def available(
    ctx: RunContext, registry: Any, wanted: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(name -> evaluator that can run, name -> why it cannot) for the registry's `wanted`."""
    from anonbench.plugins import evaluator

    ok: dict[str, Any] = {}
    why: dict[str, str] = {}
    for n in wanted:
        try:
            ok[n] = evaluator(registry, n, ctx.device, ctx.batch_size)
        except UnknownNameError:
            raise
        except AnonbenchError as e:
            why[n] = str(e)
    return ok, why


def landmarkers(
    ctx: RunContext, wanted: list[str], detectors: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The landmarkers that can run with their detectors (beyond `detectors`, already built),
    and why the others cannot."""
    from anonbench.registry import DETECTORS, LANDMARKERS
    from anonbench.scorers.utility import landmark_detector

    ok, why = available(ctx, LANDMARKERS, wanted)
    for n, lm in list(ok.items()):
        det = landmark_detector(lm)
        if det not in detectors:
            _, bad = available(ctx, DETECTORS, [det])
            if bad:
                why[n] = bad[det]
                del ok[n]
    return ok, dict(sorted(why.items(), key=lambda kv: wanted.index(kv[0])))
