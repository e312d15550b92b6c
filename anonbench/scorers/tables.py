"""Per-item score files: the values behind a method's results, one CSV per evaluator, at
``scores/<protocol>/<method stem>/<evaluator>.csv`` (names by anonbench.scores.score_file_name,
collision-free; the stem is the method's file name without ``.csv``). Columns: key, identity,
then one column per metric the scorers reported for that evaluator (a row per scored item)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def method_dir(out_dir: str | Path, protocol: str, label: str) -> Path:
    """``scores/<protocol>/<method stem>/``."""
    from anonbench.scores import score_file_name

    return Path(out_dir) / "scores" / protocol / score_file_name(label)[: -len(".csv")]


def write_per_item(
    out_dir: str | Path,
    protocol: str,
    label: str,
    items: Iterable[Mapping[str, Any]],
    identities: Mapping[str, str],
) -> list[Path]:
    """Writes the per-item dicts (key, evaluator, metric columns; anonbench.scorers.base.
    Scorer.per_item) grouped by evaluator, merged on key; returns the files written."""
    import pandas as pd

    from anonbench.scores import score_file_name

    by_ev: dict[str, dict[str, dict[str, Any]]] = {}
    for it in items:
        row = by_ev.setdefault(str(it["evaluator"]), {}).setdefault(str(it["key"]), {})
        row.update({k: v for k, v in it.items() if k not in ("key", "evaluator")})
    files = []
    d = method_dir(out_dir, protocol, label)
    for ev, rows in by_ev.items():
        df = pd.DataFrame.from_dict(rows, orient="index")
        df.insert(0, "identity", [identities.get(k, "") for k in df.index])
        df.index.name = "key"
        d.mkdir(parents=True, exist_ok=True)
        f = d / score_file_name(ev)
        df.to_csv(f, float_format="%.6g")
        files.append(f)
    return files
