"""Executors: where the shards of a run's two stages run (`anonbench run --executor`).

A stage is cut into shards (a chunk of records for one method, or a chunk of images for one
set of evaluators); an executor runs `fn(state, chunk)` for every chunk, where `state =
builder()` is built once per worker (the method, the dlib models), and hands back each shard's
small result (manifest entries, boxes, embeddings; never whole images: workers read and write
images on the shared paths themselves). Callers merge results by record key, so the order in
which shards finish never changes a number.

- `local` (default): today's process pool (anonbench.parallel) for dlib work; torch methods and
  evaluators stay batched in the main process.
- `ray`: every shard is a Ray task on the run's actors: one actor per CPU of the cluster
  (asking for that CPU; dlib and image work) and, for torch methods and evaluators on
  `--device cuda`, one per GPU (asking for `num_gpus=1`). Actors live for the whole run and
  keep what they built by key (the analyzer, the dlib models, the method fetched once from the
  object store), so weights load once per worker, not once per shard, and a run pays the
  workers' start-up once, not once per stage. A shard whose worker died (process killed, node
  lost) is retried by Ray (`--max-retries`: actor restarts and task retries); after them the
  run stops with one line naming the shard (ShardError) and keeps what finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from anonbench.errors import AnonbenchError

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install -e '.[ray]' (or pip install 'ray>=2.9')"
DEFAULT_RETRIES = 3
# a local instance keeps its object store small: only small results cross it
LOCAL_OBJECT_STORE = 200 * 1024**2
# shards in flight per actor: one running, one queued, so an actor never waits on the parent
_IN_FLIGHT = 2


class ShardError(AnonbenchError):
    """A shard failed (its worker died more often than the retries allow, or it raised): one
    line naming the stage and the shard; exit 1."""

    exit_code = 1


def require_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise AnonbenchError(f"--executor ray needs the ray extra: {RAY_INSTALL}") from None
    return ray


def create_executor(
    name: str,
    *,
    workers: int = 1,
    address: str | None = None,
    max_retries: int = DEFAULT_RETRIES,
) -> Executor:
    """The executor a run asked for (checked; ray imported now, started on first use)."""
    if name not in EXECUTORS:
        raise AnonbenchError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    if address and name != "ray":
        raise AnonbenchError("--ray-address needs --executor ray")
    if max_retries < 0:
        raise AnonbenchError(f"--max-retries must be >= 0, got {max_retries}")
    if name == "ray":
        require_ray()
        return RayExecutor(address=address, num_cpus=workers, max_retries=max_retries)
    return LocalExecutor(workers)


class Executor:
    """Runs shards: `map` yields (chunk index, fn(state, chunk)) as shards finish."""

    name = "local"
    # False: torch work (production, torch evaluators) stays batched in the main process
    distributed = False

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        builder: Callable[[], Any],
        chunks: Sequence[Any],
        *,
        key: str,
        what: str,
        names: Sequence[str] | None = None,
        gpu: bool = False,
    ) -> Iterator[tuple[int, Any]]:
        """fn and builder must be picklable (module-level functions, functools.partial).
        key: identifies builder's state (a worker reuses the state it built for a key); what:
        the stage, and names: one per chunk, for error messages; gpu: the shard needs a GPU."""
        raise NotImplementedError

    def start(self) -> Any:
        """Starts what the executor runs on (nothing for local)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What run.json records about the executor."""
        return {"name": self.name}

    def close(self) -> None:
        """Releases workers (and a Ray instance this executor started)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """A process pool per map call (anonbench.parallel.map_items), in chunk order."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def map(self, fn, builder, chunks, *, key, what, names=None, gpu=False):
        from anonbench.parallel import map_items

        yield from enumerate(map_items(fn, builder, chunks, workers=self.workers, chunksize=1))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers}


# -- ray ----------------------------------------------------------------------------------------

# states an actor keeps at once (the analyzer, a set of evaluators, a method or two): the least
# recently used one is dropped beyond that
_MAX_STATES = 4


class _Worker:
    """A Ray actor: one per CPU of the cluster (or per GPU for torch shards on cuda), alive for
    the whole run. It keeps the states it built (the analyzer, the dlib models, a method) by
    key, so weights load once per worker and per run, whichever stage asks for them. A state is
    built on the first call that needs it, not in the constructor, so a failure to build it is
    the error of a shard (with its message) rather than an actor that died."""

    def __init__(self, cwd: str | None = None) -> None:
        from anonbench.parallel import worker_setup

        worker_setup()
        # the driver's working folder, where it exists on this node (a shared filesystem
        # mounted at the same path): relative --data and --cache-dir paths then resolve as
        # they do in the parent
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        self.states: dict[str, Any] = {}

    def run(
        self, key: str, builder: Callable[[], Any], fn: Callable[[Any, Any], Any], chunk: Any
    ) -> Any:
        state = self.states.pop(key, None)
        if state is None:
            while len(self.states) >= _MAX_STATES:
                self.states.pop(next(iter(self.states)))
            state = builder()
        self.states[key] = state  # most recently used last
        return fn(state, chunk)

    def pid(self) -> int:
        return os.getpid()


def ray_deref(holder: list[Any]) -> Any:
    """The object behind an ObjectRef kept in a one-item list (Ray resolves only top-level
    arguments, so the list defers the fetch to a builder that runs once per worker)."""
    import ray

    return ray.get(holder[0])


class RayExecutor(Executor):
    """Shards as calls on Ray actors, on a local instance or a cluster (see module doc)."""

    name = "ray"
    distributed = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int = 2,
        max_retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.address = address
        self.num_cpus = max(1, int(num_cpus))
        self.max_retries = int(max_retries)
        self._owned = False  # this executor started (or joined) Ray and shuts it down
        self._started = False
        self._pools: dict[str, list[Any]] = {}  # "cpu" / "gpu" -> actors
        self._pending: list[Any] = []

    # lifecycle

    def start(self) -> Any:
        """Starts a local instance (num_cpus, no dashboard, small object store) or joins the
        cluster at `address`; returns the ray module. Idempotent."""
        ray = require_ray()
        if self._started:
            return ray
        # offline and quiet: no usage-stats prompt or upload
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
        if ray.is_initialized():
            pass  # the caller's Ray (a script or test that initialised it): used, never shut
        elif self.address:
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
            except Exception as e:  # ConnectionError, ValueError, RuntimeError across versions
                why = f"{e} {e.__cause__ or ''}".lower()
                hint = (
                    "the cluster uses token authentication (ray start's default in recent "
                    "Ray): set RAY_AUTH_MODE=token here and give this machine the cluster's "
                    "token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
                    if "token" in why or "authenticat" in why
                    else "is `ray start --head` running there?"
                )
                raise AnonbenchError(
                    f"--ray-address {self.address}: cannot join the Ray cluster "
                    f"({_one_line(e)}); {hint}"
                ) from None
            self._owned = True  # a driver connection: shutdown leaves, the cluster stays
        else:
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE,
                log_to_driver=False,
                logging_level="ERROR",
            )
            self._owned = True
        self._started = True
        return ray

    def close(self) -> None:
        """Cancels shards still running, kills this run's actors and shuts down (or leaves)
        the Ray instance this executor started."""
        if not self._started:
            return
        import ray

        self._cancel()
        for kind in list(self._pools):
            self._drop_pool(kind)
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "address": self.address or "local",
            "max_retries": self.max_retries,
        }
        if not self.address:
            d["num_cpus"] = self.num_cpus
        if self._started:
            import ray

            res = ray.cluster_resources()
            d["cluster"] = {k: res[k] for k in ("CPU", "GPU") if k in res}
            d["nodes"] = sum(1 for n in ray.nodes() if n.get("Alive"))
            d["actors"] = {k: len(v) for k, v in self._pools.items()}
        return d

    # shards

    def _slots(self, gpu: bool) -> int:
        import ray

        res = ray.cluster_resources()
        n = int(res.get("GPU", 0) if gpu else res.get("CPU", 0))
        if n < 1:
            kind = "GPU" if gpu else "CPU"
            raise AnonbenchError(
                f"--executor ray: the Ray cluster has no {kind}"
                + (" (--device cuda asks for one per torch shard)" if gpu else "")
            )
        return n

    def _drop_pool(self, kind: str) -> None:
        import ray

        for a in self._pools.pop(kind, []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already dead: nothing to release
                pass

    def _cancel(self) -> None:
        import ray

        for ref in self._pending:
            try:
                ray.cancel(ref)
            except Exception:  # already finished or its actor is gone
                pass
        self._pending = []

    def _actors(self, gpu: bool) -> list[Any]:
        """The run's actors of a kind, one per CPU (per GPU), grown when the cluster grew.
        CPU actors ask for one CPU each (dlib and per-image work run there); GPU actors for
        one GPU and no CPU, so they can live beside the CPU pool on a small GPU node."""
        import ray

        kind = "gpu" if gpu else "cpu"
        pool = self._pools.setdefault(kind, [])
        want = self._slots(gpu)
        if len(pool) < want:
            cls = ray.remote(_Worker).options(
                num_cpus=0 if gpu else 1,
                num_gpus=1 if gpu else 0,
                max_restarts=self.max_retries,
                max_task_retries=self.max_retries,
                scheduling_strategy="SPREAD",
            )
            pool += [cls.remote(os.getcwd()) for _ in range(want - len(pool))]
        return pool

    def actor_pids(self) -> list[int]:
        """The process ids of the run's CPU actors (tests kill one to check the retries)."""
        ray = self.start()
        return ray.get([a.pid.remote() for a in self._actors(False)])

    def map(self, fn, builder, chunks, *, key, what, names=None, gpu=False):
        ray = self.start()
        chunks = list(chunks)
        if not chunks:
            return
        actors = self._actors(gpu)
        load = [0] * len(actors)
        limit = _IN_FLIGHT * len(actors)
        owner: dict[Any, tuple[int, int]] = {}
        nxt = 0
        try:
            while nxt < len(chunks) or owner:
                while nxt < len(chunks) and len(owner) < limit:
                    a = min(range(len(actors)), key=lambda j: load[j])
                    load[a] += 1
                    ref = actors[a].run.remote(key, builder, fn, chunks[nxt])
                    owner[ref] = (nxt, a)
                    nxt += 1
                self._pending = list(owner)
                # a timeout, so Ctrl-C reaches Python between waits
                done, _ = ray.wait(list(owner), num_returns=1, timeout=0.5)
                for ref in done:
                    i, a = owner.pop(ref)
                    load[a] -= 1
                    yield i, self._result(ray, ref, what, i, len(chunks), names)
            self._pending = []
        except BaseException:
            # Ctrl-C, a failed shard or a consumer that stopped: nothing keeps running (actor
            # calls cannot be interrupted, so the actors go; the next map starts new ones)
            self._pending = list(owner)
            self._cancel()
            self._drop_pool("gpu" if gpu else "cpu")
            raise

    def _result(
        self, ray: Any, ref: Any, what: str, i: int, n: int, names: Sequence[str] | None
    ) -> Any:
        """A finished shard's result, or one line naming the shard."""
        from ray import exceptions as rex

        shard = f"{what}: shard {i + 1}/{n}" + (f" ({names[i]})" if names else "")
        try:
            return ray.get(ref)
        except rex.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, AnonbenchError):
                raise type(cause)(*cause.args) from None  # one line, as in the main process
            if isinstance(cause, BaseException):
                raise ShardError(
                    f"{shard} failed: {type(cause).__name__}: {_one_line(cause)}"
                ) from None
            raise ShardError(f"{shard} failed: {_one_line(e)}") from None
        except (rex.RayActorError, rex.WorkerCrashedError, rex.ObjectLostError) as e:
            raise ShardError(
                f"{shard} failed after {self.max_retries} retries: its worker died "
                f"({type(e).__name__}: {_one_line(e)})"
            ) from None
        except rex.RayError as e:
            raise ShardError(f"{shard} failed: {type(e).__name__}: {_one_line(e)}") from None


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """items in consecutive chunks of `size` (the last may be shorter)."""
    size = max(1, int(size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def key_range(keys: Sequence[str]) -> str:
    """A shard's name in messages: its first and last record key."""
    if not keys:
        return "empty"
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"
