"""The plan of a run: for each method, the digest of everything its rows depend on and
whether it can be skipped (its rows complete in results.csv, its inputs unchanged)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anonbench.ledger import earlier_methods, rows_complete

if TYPE_CHECKING:
    from anonbench.runner import MethodSpec


@dataclass(frozen=True)
class PlannedMethod:
    """One --methods item: its spec, the built method, the digest of its inputs, its record
    in the latest run.json entry of the protocol ({} when none) and whether it is skipped."""

    spec: MethodSpec
    method: Any  # anonbench.api.Anonymizer
    digest: str
    before: dict[str, Any]
    skip: bool

    @property
    def label(self) -> str:
        return self.spec.label


def _folder_fingerprint(folder: str) -> list[tuple[str, int, int]]:
    root = Path(folder)
    return sorted(
        (f.relative_to(root).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
        for f in root.rglob("*")
        if f.is_file()
    )


def input_digest(
    spec: MethodSpec,
    method: Any,
    ds: Any,
    proto: Any,
    options: dict[str, Any],
    *,
    seed: int,
    embedder: str,
) -> str:
    """sha256 of everything a method's rows depend on: its config and checkpoint sha256 (a
    folder method: its files' names, sizes and times), the data (spec, label, record count),
    the protocol (name, version, options), the seed and the embedder."""
    d = {
        "method": {
            "label": spec.label,
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "config": method.config(),
            "checkpoint_sha256": method.meta.checkpoint_sha256,
            "folder": None if spec.folder is None else _folder_fingerprint(spec.folder),
        },
        "data": {
            "spec": ds.spec,
            "kind": ds.kind,
            "label": ds.label,
            "records": len(ds.records),
            "missing_files": len(ds.missing_files),
            "pairs_file": None if not ds.pairs_file else Path(ds.pairs_file).name,
        },
        "protocol": {"name": proto.name, "version": proto.version, "options": options},
        "seed": seed,
        "embedder": embedder,
    }
    text = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_methods(
    specs: Sequence[MethodSpec],
    built: dict[str, Any],
    ds: Any,
    proto: Any,
    options: dict[str, Any],
    *,
    seed: int,
    embedder: str,
    force: bool,
    prev: dict[str, Any],
    res: Any,
) -> list[PlannedMethod]:
    """Each method in --methods order, with its digest and skip decision (`force`: none is
    skipped). `prev`, `res`: the run.json and results.csv an earlier run left in --out."""
    earlier = earlier_methods(prev, proto.name)
    plan = []
    for spec in specs:
        method = built[spec.label]
        digest = input_digest(spec, method, ds, proto, options, seed=seed, embedder=embedder)
        before = earlier.get(spec.label) or {}
        skip = (
            not force
            and before.get("input_digest") == digest
            and rows_complete(res, spec.label, proto.name, before.get("rows"))
        )
        plan.append(PlannedMethod(spec, method, digest, before, skip))
    return plan
