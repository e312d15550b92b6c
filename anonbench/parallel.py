"""A small process pool for per-image work: each worker builds its state once and uses one
thread (several processes each using every core ran 10-25x slower on 2-core machines). This is
the `local` executor; anonbench.executors also has `ray`, whose workers run worker_setup too."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_STATE: Any = None


def worker_setup() -> None:
    """One thread per worker process (the pool's and Ray's): run once in each worker."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _init(builder: Callable[[], Any]) -> None:
    global _STATE
    worker_setup()
    _STATE = builder()


def _call(args: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    fn, item = args
    return fn(_STATE, item)


def map_items(
    fn: Callable[[Any, Any], Any],
    builder: Callable[[], Any],
    items: Iterable[Any],
    workers: int = 1,
    chunksize: int = 8,
) -> Iterator[Any]:
    """Yields fn(state, item) for each item in order; state = builder() once per worker.
    fn and builder must be picklable (module-level functions, functools.partial)."""
    if workers <= 1:
        state = builder()
        for it in items:
            yield fn(state, it)
        return
    import multiprocessing as mp

    # spawn, not fork: torch's thread pools do not survive a fork reliably
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(builder,)) as pool:
        yield from pool.imap(_call, ((fn, it) for it in items), chunksize=chunksize)
