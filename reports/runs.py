"""Reading run folders for reports: results.csv, run.json, scores/ and examples/.

Reports only read what `anonbench run` wrote; nothing here computes a metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonbench.api import MetricSpec
from anonbench.errors import AnonbenchError

# Rows that are references, not anonymizers: shown, never marked "best".
REFERENCE_METHODS = ("original", "chance")


@dataclass
class RunFolder:
    path: Path
    results: Any  # pandas DataFrame with anonbench.results.COLUMNS
    info: dict[str, Any]  # run.json ({} when absent)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.results["method"]))


@dataclass
class ExampleSet:
    """The same faces for several methods: rows of (key, identity) and one file per method."""

    protocol: str
    keys: list[str]
    identities: list[str]
    images: dict[str, list[Path | None]] = field(default_factory=dict)  # method -> files


@dataclass
class Bundle:
    """Every run folder of a report, with their results merged."""

    runs: list[RunFolder]
    results: Any  # merged DataFrame; a later folder's row replaces an earlier one's
    # protocol -> metric -> MetricSpec (run.json, else the registered protocol's)
    specs: dict[str, dict[str, MetricSpec]]
    warnings: list[str]

    def spec(self, protocol: str, metric: str) -> MetricSpec | None:
        """The metric's MetricSpec; None for a metric nobody declared."""
        return self.specs.get(protocol, {}).get(metric)

    def groups(self) -> list[tuple[str, str, str, str]]:
        """(protocol, protocol_version, dataset, split) in order of appearance."""
        cols = ["protocol", "protocol_version", "dataset", "split"]
        seen = dict.fromkeys(tuple(str(x) for x in r) for r in self.results[cols].to_numpy())
        return list(seen)  # type: ignore[arg-type]

    def scores_files(self, protocol: str, dataset: str) -> dict[str, Path]:
        """method -> its per-pair scores file, for the methods run on this protocol/dataset
        (named by anonbench.scores.score_file_name, as the protocols write them)."""
        from anonbench.scores import score_file

        out: dict[str, Path] = {}
        for r in self.runs:
            df = r.results
            sel = df[(df["protocol"] == protocol) & (df["dataset"] == dataset)]
            for m in dict.fromkeys(sel["method"]):
                p = score_file(r.path, protocol, str(m))
                # the name comes from a results file: never follow it out of the run folder
                if _inside(p, r.path) and p.is_file():
                    out[str(m)] = p
        return out

    def missed_files(self, protocol: str) -> dict[str, Path]:
        """method -> missed/<protocol>/<method>.csv (keys of faces the method missed), if any."""
        out: dict[str, Path] = {}
        for r in self.runs:
            for m in r.methods:
                p = r.path / "missed" / protocol / f"{m}.csv"
                if _inside(p, r.path) and p.is_file():
                    out[str(m)] = p
        return out

    def example_sets(self, protocol: str, dataset: str) -> list[ExampleSet]:
        """Example grids for a protocol and dataset; runs over the same faces share a grid."""
        sets: dict[tuple[str, ...], ExampleSet] = {}
        for r in self.runs:
            df = r.results
            ran = set(df[(df["protocol"] == protocol) & (df["dataset"] == dataset)]["method"])
            if not ran:
                continue
            edir = r.path / "examples" / protocol
            index = edir / "examples.csv"
            if not (_inside(index, r.path) and index.is_file()):
                continue
            rows = _read_examples_index(index)
            if not rows:
                continue
            keys = tuple(k for k, _, _ in rows)
            es = sets.setdefault(keys, ExampleSet(protocol, list(keys), [i for _, i, _ in rows]))
            methods = [
                m for m in r.methods if m in ran and (edir / m).is_dir() and _inside(edir / m, edir)
            ]
            for m in methods:
                files = [edir / m / f for _, _, f in rows]
                es.images[m] = [f if _inside(f, edir / m) and f.is_file() else None for f in files]
        return list(sets.values())


def _inside(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _read_examples_index(path: Path) -> list[tuple[str, str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if r.get("key") and r.get("file"):
            out.append((r["key"], r.get("identity") or "", r["file"]))
    return out


def load_run(path: Path) -> RunFolder:
    from anonbench.results import read_results

    path = Path(path)
    if not path.is_dir():
        raise AnonbenchError(f"not a run folder: {path}")
    df = read_results(path)
    info: dict[str, Any] = {}
    rj = path / "run.json"
    if rj.is_file():
        try:
            info = json.loads(rj.read_text(encoding="utf-8"))
        except ValueError as e:
            raise AnonbenchError(f"{rj}: not valid JSON ({e})") from None
    return RunFolder(path, df, info if isinstance(info, dict) else {})


def load_runs(paths: list[Path]) -> Bundle:
    """Reads run folders; a row with the same key in a later folder replaces the earlier one."""
    import pandas as pd

    from anonbench.display import run_metric_specs
    from anonbench.results import KEY

    if not paths:
        raise AnonbenchError("no run folders given")
    runs = [load_run(Path(p)) for p in paths]
    warnings: list[str] = []
    frames = []
    for r in runs:
        df = r.results.copy()
        df["_run"] = str(r.path)
        frames.append(df)
    allr = pd.concat(frames, ignore_index=True)
    for c in [*KEY, "protocol_version"]:
        allr[c] = allr[c].map(lambda v: "" if _isnan(v) else str(v))
    allr["value"] = pd.to_numeric(allr["value"], errors="coerce")
    for c in ("std", "ci_low", "ci_high", "n"):
        allr[c] = pd.to_numeric(allr[c], errors="coerce")
    dup = allr.duplicated(KEY, keep="last")
    if dup.any():
        warnings.append(
            f"{int(dup.sum())} result rows appear in more than one run folder; "
            "the later folder's rows are shown"
        )
    allr = allr[~dup].reset_index(drop=True)

    names: dict[str, list[str]] = {}
    for proto, metric in zip(allr["protocol"], allr["metric"], strict=True):
        names.setdefault(proto, []).append(metric)
    infos = [r.info for r in runs]  # a later folder's run.json wins, as its rows do
    specs = {p: run_metric_specs(p, infos, ms) for p, ms in names.items()}
    return Bundle(runs, allr, specs, warnings)


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def is_sample(dataset: str) -> bool:
    """The embedded sample sets are tagged '<name>-sample' by their loaders."""
    return dataset.endswith("-sample") or dataset == "sample"


def write_shared_text(path: Path, text: str) -> Path:
    """Writes atomically, then gives the file the umask's usual mode: a report is meant to be
    shared (served by CI, opened by colleagues), not private like the temp file it came from."""
    import os

    from anonbench.cache import atomic_write_text

    atomic_write_text(path, text)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return Path(path)
