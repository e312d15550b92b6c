"""The Python API: ``anonbench.benchmark(...)`` runs methods through several protocols into
one output folder and returns :class:`Results`; ``anonbench.run_config(path)`` does the same
for a run file. Both go through the run-file checks (anonbench.runfile), so a mistake is one
AnonbenchError naming the argument, before any work.

Exported lazily by the package (``anonbench.benchmark``): importing anonbench stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anonbench.errors import AnonbenchError

if TYPE_CHECKING:
    import pandas as pd

    from anonbench.runfile import RunFile


@dataclass(frozen=True)
class Results:
    """What a benchmark run left in its output folder: results.csv, run.json, scores/.
    `protocols` and `methods` are those of the call (the folder may hold earlier ones)."""

    out: Path
    protocols: tuple[str, ...]
    methods: tuple[str, ...]

    @classmethod
    def load(cls, out: str | Path) -> Results:
        """Every protocol and method in an output folder's results.csv."""
        from anonbench.results import read_results

        df = read_results(out)
        protos, methods = dict.fromkeys(df["protocol"]), dict.fromkeys(df["method"])
        return cls(Path(out), tuple(map(str, protos)), tuple(map(str, methods)))

    def to_pandas(self) -> pd.DataFrame:
        """The rows of results.csv of this run's protocols and methods, one per method x
        protocol x metric x evaluator (value, std, ci_low, ci_high, n and provenance)."""
        from anonbench.results import read_results

        df = read_results(self.out)
        keep = df["protocol"].isin(self.protocols) & df["method"].isin(self.methods)
        return df[keep].reset_index(drop=True)

    def table(self, protocol: str | None = None) -> pd.DataFrame:
        """Methods x `metric [evaluator]` columns of values (prefixed `protocol: ` when the
        run has several), methods in run order: a paper's table, e.g. `.to_latex()`."""
        df = self.to_pandas()
        if protocol is not None:
            df = df[df["protocol"] == protocol]
        column = df["metric"] + " [" + df["evaluator"].fillna("-").astype(str) + "]"
        if df["protocol"].nunique() > 1:
            column = df["protocol"] + ": " + column
        wide = df.assign(column=column).pivot_table(
            index="method", columns="column", values="value", aggfunc="first", sort=False
        )
        wide.columns.name = None
        return wide.reindex([m for m in self.methods if m in wide.index])

    def report(self, path: str | Path | None = None) -> Path:
        """Writes the HTML report of the output folder (a section per protocol) to `path`
        (default: report.html in it); returns its path."""
        from anonbench.reports.html import write_report

        return write_report([self.out], Path(path) if path else self.out / "report.html")

    def __repr__(self) -> str:
        return (
            f"Results(out={str(self.out)!r}, protocols={list(self.protocols)}, "
            f"methods={list(self.methods)})"
        )


def benchmark(
    methods: Sequence[str | Mapping[str, Any]],
    protocols: str | Sequence[str] | Mapping[str, Mapping[str, Any]] = "lfw",
    data: str | Path | Mapping[str, str | Path] | None = None,
    out: str | Path | None = None,
    *,
    evaluators: Mapping[str, str | Sequence[str]] | None = None,
    force: bool = False,
    quiet: bool = True,
    **settings: Any,
) -> Results:
    """Runs `methods` through `protocols` into the one folder `out`; returns the Results.

    methods: names (``anonbench ls``), ``LABEL=folder:DIR``, or dicts as in a run file
    (``{"name": "ciagan", "checkpoint": "last.pt"}``). protocols: a name, names, or a dict
    name -> that protocol's options (and ``data``), e.g. ``{"lfw": {"folds": 1}}``. data:
    one spec (KIND:PATH or a folder) for every protocol, or a dict protocol -> spec; None:
    the embedded LFW sample. evaluators: e.g. ``{"detectors": ["dlib-hog"]}`` for every
    protocol that takes the option. settings: the other keys of a run file (seed, device,
    batch_size, workers, executor, cache_dir, ...). out: default runs/<protocols>."""
    from anonbench.runfile import from_dict, run_file

    tables = _protocol_tables(protocols, data)
    d: dict[str, Any] = {
        **settings,
        "out": str(out) if out is not None else "runs/" + "+".join(tables),
        "methods": [m if isinstance(m, str) else dict(m) for m in methods],
        "protocols": tables,
    }
    if evaluators:
        d["evaluators"] = {k: v if isinstance(v, str) else list(v) for k, v in evaluators.items()}
    rf = from_dict(d, source="benchmark()")
    return _results(rf, run_file(rf, force=force, quiet=quiet))


def run_config(
    path: str | Path, out: str | Path | None = None, *, force: bool = False, quiet: bool = True
) -> Results:
    """Runs a run file (``configs/quick.toml``); `out` replaces its output folder."""
    from anonbench.runfile import load, run_file

    rf = load(path)
    if out is not None:
        rf.settings["out"] = str(out)
    return _results(rf, run_file(rf, force=force, quiet=quiet))


def _protocol_tables(
    protocols: str | Sequence[str] | Mapping[str, Mapping[str, Any]],
    data: str | Path | Mapping[str, str | Path] | None,
) -> dict[str, dict[str, Any]]:
    if isinstance(protocols, str):
        protocols = [protocols]
    if isinstance(protocols, Mapping):
        tables = {str(k): dict(v) for k, v in protocols.items()}
    else:
        tables = {str(p): {} for p in protocols}
    if isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - set(tables))
        if unknown:
            raise AnonbenchError(f"benchmark(): data names protocols not run: {unknown}")
        for k, v in data.items():
            tables[str(k)].setdefault("data", str(v))
    elif data is not None:
        for t in tables.values():
            t.setdefault("data", str(data))
    return tables


def _results(rf: RunFile, out: Path) -> Results:
    labels = tuple(m.label for m in rf.methods if m.label not in rf.unavailable)
    return Results(Path(out), tuple(dict.fromkeys(p.protocol for p in rf.protocols)), labels)
