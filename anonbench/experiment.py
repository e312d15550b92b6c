"""The Python API: ``anonbench.benchmark(...)`` runs methods through several protocols into
one output folder and returns :class:`Results`; ``anonbench.run_config(path)`` does the same
for a run file. Both go through the run-file checks (anonbench.runfile), so a mistake is one
AnonbenchError naming the argument, before any work.

Exported lazily by the package (``anonbench.benchmark``): importing anonbench stays cheap.
"""

from __future__ import annotations

import os
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
        """Every protocol and method in an output folder's results.csv (`out`: the folder,
        or its results.csv)."""
        from anonbench.results import read_results

        folder = Path(_path("Results.load: out", out))
        if folder.is_file() and folder.name != "results.csv":
            # the results are read again from the run's folder: another file's name would
            # give its methods with the folder's numbers
            raise AnonbenchError(
                f"Results.load: {folder}: give a run folder or its results.csv, not another file"
            )
        df = read_results(folder)
        if not folder.is_dir():  # RUN/results.csv: the run is its folder (report.html beside)
            folder = folder.parent
        protos, methods = dict.fromkeys(df["protocol"]), dict.fromkeys(df["method"])
        return cls(folder, tuple(map(str, protos)), tuple(map(str, methods)))

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
        (default: report.html in it; missing folders are made); returns its path. Checked
        as `anonbench report --html` checks its path: never a folder, never a file of a run."""
        from anonbench.commands.report import check_writable_file
        from anonbench.reports.html import write_report
        from anonbench.safety import refuse_overlap, run_files

        what = "Results.report: path"
        # "" is no file name: the check below calls it the folder it means (.)
        target = Path(_path(what, path)) if path is not None else self.out / "report.html"
        check_writable_file(target, what)
        # results.csv, run.json, scores/...: HTML over them would lose the run
        refuse_overlap([(what, target)], run_files(self.out))
        return write_report([self.out], target)

    def __repr__(self) -> str:
        return (
            f"Results(out={str(self.out)!r}, protocols={list(self.protocols)}, "
            f"methods={list(self.methods)})"
        )


def benchmark(
    methods: str | Sequence[str | Mapping[str, Any]],
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
    (``{"name": "ciagan", "checkpoint": "last.pt"}``); a string is a comma-separated list, as
    ``--methods`` takes it. protocols: a name (or ``"a,b"``), names, or a dict
    name -> that protocol's options (and ``data``), e.g. ``{"lfw": {"folds": 1}}``. data:
    one spec (KIND:PATH or a folder) for every protocol, or a dict protocol -> spec; None:
    the embedded LFW sample. evaluators: e.g. ``{"detectors": ["dlib-hog"]}`` for every
    protocol that takes the option. settings: the other keys of a run file (seed, device,
    batch_size, workers, executor, cache_dir, ...; None: the default). out: default
    runs/<protocols>. A wrong argument is one AnonbenchError line naming it, before any work."""
    from anonbench.runfile import from_dict, run_file

    items = _method_list(methods)
    tables = _protocol_tables(protocols, data)
    folder = _out(f"{_SOURCE}: out", out) if out is not None else None
    d: dict[str, Any] = {
        # None is a setting's default (workers=None: as on the command line)
        **{k: v for k, v in settings.items() if v is not None},
        "out": folder or "runs/" + "+".join(tables),
        "methods": items,
        "protocols": tables,
    }
    if evaluators is not None:
        d["evaluators"] = _evaluator_table(evaluators)
    rf = from_dict(d, source=_SOURCE)
    return _results(rf, run_file(rf, force=force, quiet=quiet))


def run_config(
    path: str | Path, out: str | Path | None = None, *, force: bool = False, quiet: bool = True
) -> Results:
    """Runs a run file (``configs/quick.toml``); `out` replaces its output folder."""
    from anonbench.runfile import load, run_file

    source = _path("run_config: path", path)
    folder = _out("run_config: out", out) if out is not None else None
    rf = load(source)
    if folder is not None:
        rf.settings["out"] = folder
    return _results(rf, run_file(rf, force=force, quiet=quiet))


_SOURCE = "benchmark()"  # how run-file errors name this call


def _error(arg: str, message: str) -> AnonbenchError:
    return AnonbenchError(f"{_SOURCE}: {arg}: {message}")


def _got(value: Any) -> str:
    """A wrong value for a message: its type, and the value when short."""
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} ({text})" if len(text) <= 40 else type(value).__name__


def _path(arg: str, value: Any) -> str:
    """A path argument as text; one line for anything that is not a str or os.PathLike."""
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str):
        raise AnonbenchError(f"{arg}: expected a path (str or pathlib.Path), got {_got(value)}")
    return text


def _out(arg: str, value: Any) -> str:
    """An output folder: a path, not "" (which would be the current folder, or silently
    the default: a typo such as an unset variable must not pick the folder)."""
    folder = _path(arg, value)
    if not folder.strip():
        raise AnonbenchError(f"{arg}: an empty path; give a folder (None: the default)")
    return folder


def _names(value: str) -> list[str]:
    """'a, b' -> ['a', 'b'], as --methods and --protocol split their value."""
    return [w.strip() for w in value.split(",") if w.strip()]


def _method_list(methods: Any) -> list[str | dict[str, Any]]:
    """methods as the run file takes them; a string is --methods' comma-separated list."""
    if isinstance(methods, str):
        items: list[Any] = _names(methods)
    elif isinstance(methods, Sequence):
        items = list(methods)
    else:
        raise _error(
            "methods", f"expected a name, a comma-separated string or a list, got {_got(methods)}"
        )
    if not items:
        raise _error("methods", "no method given")
    for i, m in enumerate(items):
        if not isinstance(m, str | Mapping):
            raise _error(f"methods[{i}]", f"expected a name or a dict, got {_got(m)}")
    return [m if isinstance(m, str) else dict(m) for m in items]


def _protocol_tables(protocols: Any, data: Any) -> dict[str, dict[str, Any]]:
    """protocols (and data) as the run file's [protocols] tables, each argument's type
    checked first: a wrong one is one line naming it, never a TypeError from deep inside."""
    if isinstance(protocols, str):
        protocols = _names(protocols)  # as --protocol A,B
    if isinstance(protocols, Mapping):
        tables = {}
        for k, v in protocols.items():
            if not isinstance(k, str):
                raise _error("protocols", f"expected protocol names as keys, got {_got(k)}")
            if not isinstance(v, Mapping):
                raise _error(f"protocols.{k}", f"expected a table of options (dict), got {_got(v)}")
            tables[k] = dict(v)
    elif isinstance(protocols, Sequence):
        for i, p in enumerate(protocols):
            if not isinstance(p, str):
                raise _error(f"protocols[{i}]", f"expected a protocol name, got {_got(p)}")
        tables = {p: {} for p in protocols}
    else:
        raise _error(
            "protocols",
            f"expected a name, a list of names or a dict name -> options, got {_got(protocols)}",
        )
    if not tables:
        raise _error("protocols", "no protocol given")
    if isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - set(tables))
        if unknown:
            raise AnonbenchError(f"{_SOURCE}: data names protocols not run: {unknown}")
        for k, v in data.items():
            tables[str(k)].setdefault("data", _path(f"{_SOURCE}: data.{k}", v))
    elif data is not None:
        spec = _path(f"{_SOURCE}: data", data)
        for t in tables.values():
            t.setdefault("data", spec)
    return tables


def _evaluator_table(evaluators: Any) -> dict[str, str | list[str]]:
    if not isinstance(evaluators, Mapping):
        raise _error(
            "evaluators",
            f"expected a dict such as {{'detectors': ['dlib-hog']}}, got {_got(evaluators)}",
        )
    out: dict[str, str | list[str]] = {}
    for k, v in evaluators.items():
        names = [v] if isinstance(v, str) else v
        if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise _error(f"evaluators.{k}", f"expected a name or a list of names, got {_got(v)}")
        out[str(k)] = v if isinstance(v, str) else list(v)
    return out


def _results(rf: RunFile, out: Path) -> Results:
    labels = tuple(m.label for m in rf.methods if m.label not in rf.unavailable)
    return Results(Path(out), tuple(dict.fromkeys(p.protocol for p in rf.protocols)), labels)
