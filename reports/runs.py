"""Reading run folders for reports: results.csv, run.json, scores/ and examples/.

Reports only read what `anonbench run` wrote; nothing here computes a metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonbench.api import MetricSpec
from anonbench.errors import AnonbenchError
from anonbench.scores import artifact_name

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
    # protocol -> metric -> MetricSpec (installed protocol's, else run.json's; trusted_specs)
    specs: dict[str, dict[str, MetricSpec]]
    warnings: list[str]
    # one line per run folder whose run.json says it did not finish (run_status_note)
    status_notes: list[str] = field(default_factory=list)

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
        """method -> missed/<protocol>/<artifact_name(method)>.csv (keys of faces the method
        missed), if any."""
        out: dict[str, Path] = {}
        for r in self.runs:
            for m in r.methods:
                for name in _artifact_names(str(m), r.methods):
                    p = r.path / "missed" / protocol / f"{name}.csv"
                    if _inside(p, r.path) and p.is_file():
                        out[str(m)] = p
                        break
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
            rows = _read_examples_index(index, self.warnings)
            if not rows:
                continue
            keys = tuple(k for k, _, _ in rows)
            es = sets.setdefault(keys, ExampleSet(protocol, list(keys), [i for _, i, _ in rows]))
            for m in [m for m in r.methods if m in ran]:
                mdir = _example_dir(edir, str(m), r.methods)
                if mdir is None:
                    continue
                files = [mdir / f for _, _, f in rows]
                es.images[m] = [f if _inside(f, mdir) and f.is_file() else None for f in files]
        return list(sets.values())


def _artifact_names(label: str, labels: Sequence[str]) -> list[str]:
    """Where a label's missed list / example folder may be: its artifact_name, then (a run
    written before artifact names) the raw label, unless that is, even case-insensitively,
    another label's artifact name ("^x" is the file name of "X")."""
    own = artifact_name(label)
    others = {artifact_name(str(o)).lower() for o in labels if str(o) != label}
    return [own] + ([label] if label != own and label.lower() not in others else [])


def _example_dir(edir: Path, label: str, labels: Sequence[str]) -> Path | None:
    """examples/<protocol>/<artifact_name(label)>, or the raw label's folder of an older run."""
    for name in _artifact_names(label, labels):
        d = edir / name
        if d.is_dir() and _inside(d, edir):
            return d
    return None


def _inside(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def read_csv_rows(path: Path, notes: list[str] | None = None) -> list[dict[str, str]]:
    """The rows of a small CSV file of a run folder (examples.csv, missed/*.csv). A file that
    cannot be read (not UTF-8, malformed, not a file) gives no rows and one line in `notes`."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if isinstance(r, dict)]
    except (OSError, ValueError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        if notes is not None:
            why = " ".join(str(e).split())[:120]
            notes.append(f"{path}: cannot be read ({type(e).__name__}: {why}); left out")
        return []
    return [{str(k): v if isinstance(v, str) else "" for k, v in r.items()} for r in rows]


def read_keys(path: Path, notes: list[str] | None = None) -> list[str]:
    """The `key` column of a missed/<protocol>/<method>.csv (see read_csv_rows)."""
    return [r["key"] for r in read_csv_rows(path, notes) if r.get("key")]


def _read_examples_index(path: Path, notes: list[str] | None = None) -> list[tuple[str, str, str]]:
    rows = read_csv_rows(path, notes)
    out = []
    for r in rows:
        if r.get("key") and r.get("file"):
            out.append((r["key"], r.get("identity") or "", r["file"]))
    return out


def load_run(path: Path, notes: list[str] | None = None) -> RunFolder:
    from anonbench.results import read_results, read_run_json

    path = Path(path)
    if not path.is_dir():
        raise AnonbenchError(f"not a run folder: {path}")
    df = read_results(path)
    refuse_non_numbers(df, path / "results.csv")
    info = read_run_json(path / "run.json")  # one line when it is not a JSON object
    return RunFolder(path, df, valid_info(info, path / "run.json", notes))


# the numeric columns of results.csv: a blank or NaN cell is "not measured", text is an error
NUMERIC_COLUMNS = ("value", "std", "ci_low", "ci_high", "n")


def refuse_non_numbers(df: Any, path: Path) -> None:
    """Every numeric cell of a results table is a number, NaN or blank: one line naming the
    file, row and cell otherwise. A cell such as "banana" would silently become "not
    measured" (and drop out of every table) if it were coerced."""
    import pandas as pd

    for col in NUMERIC_COLUMNS:
        raw = df[col]
        bad = raw.notna() & pd.to_numeric(raw, errors="coerce").isna()
        if bad.any():
            i = df.index[bad][0]
            r = df.loc[i]
            raise AnonbenchError(
                f"{path}: row {i + 1}: {col} {str(raw[i])[:40]!r} is not a number "
                f"(method={r['method']} metric={r['metric']} evaluator={r['evaluator']}); "
                "fix or remove the row"
            )


def run_status_note(run: RunFolder) -> str | None:
    """One line when run.json says the run did not finish (status "interrupted", "failed:
    ...", "running"): its results are partial, naming the methods of its command that have
    no rows. None for a finished run, or one whose run.json records no status (older)."""
    status = run.info.get("status")
    if status is None or status == "finished":
        return None
    cfg = run.info.get("config")
    methods = cfg.get("methods") if isinstance(cfg, dict) else None
    have = {str(m) for m in run.results["method"]}
    missing = [m for m in _labels(methods) if m not in have]
    what = f"; methods of its command with no rows: {', '.join(missing)}" if missing else ""
    return (
        f"{run.path}: the run did not finish (run.json status {status!r}): its results are "
        f"partial{what}"
    )


def _labels(methods: Any) -> list[str]:
    """The result labels of a run.json's --methods items ("mine=folder:DIR" is "mine")."""
    from anonbench.runner import parse_method

    out = []
    for item in methods if isinstance(methods, list) else []:
        try:
            out.append(parse_method(str(item)).label)
        except AnonbenchError:  # a hand-edited item: shown as written
            out.append(str(item))
    return out


# the run.json fields reports read, and their JSON types; anything else is not looked at
RUN_JSON_FIELDS: dict[str, type] = {
    **dict.fromkeys(("config", "protocol", "dataset", "methods", "timings_s"), dict),
    **dict.fromkeys(("versions", "executor"), dict),
    **dict.fromkeys(("anonbench_version", "git_sha", "started_at", "finished_at"), str),
    **dict.fromkeys(("device", "status", "run_id"), str),
    "runs": list,
}


def valid_info(info: dict[str, Any], path: Path, notes: list[str] | None = None) -> dict[str, Any]:
    """run.json without the fields reports read that have the wrong JSON type (a list where
    an object belongs, ...): each left out, with one line in `notes`."""
    out = dict(info)
    for key, want in RUN_JSON_FIELDS.items():
        v = out.get(key)
        if v is not None and not isinstance(v, want):
            del out[key]
            if notes is not None:
                kind = "an object" if want is dict else "a list" if want is list else "a string"
                notes.append(f"{path}: {key!r} is not {kind}; left out of the report")
    return out


def load_runs(paths: list[Path]) -> Bundle:
    """Reads run folders; a row with the same key in a later folder replaces the earlier one."""
    import pandas as pd

    from anonbench.check import trusted_specs
    from anonbench.results import KEY

    if not paths:
        raise AnonbenchError("no run folders given")
    warnings: list[str] = []
    runs = [load_run(Path(p), warnings) for p in paths]
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
    # the installed protocol's specs; run.json's only where it is not installed (a warning)
    specs = {p: trusted_specs(p, ms, infos, warnings) for p, ms in names.items()}
    partial = [n for r in runs if (n := run_status_note(r)) is not None]
    # first among the report's banners: the numbers below them are partial
    return Bundle(runs, allr, specs, partial + warnings, partial)


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
