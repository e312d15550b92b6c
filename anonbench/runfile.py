"""Run files: a whole experiment in one TOML file (`anonbench run --config FILE`).

A run file names the methods (registered names with their checkpoints, or folders of
pre-computed outputs under a label), several protocols each with its data and typed options,
the evaluators, the resources (device, batch size, workers, executor), the analysis
detector, the seed and one output folder::

    out = "runs/quick"
    methods = ["original", "blur17", { name = "ciagan", checkpoint = "ckpt/last.pt" }]
    analysis_detector = "retinaface"   # which faces methods anonymize (default dlib-hog)

    [evaluators]            # every protocol that takes the option
    detectors = ["dlib-hog", "retinaface"]

    [protocols.lfw]         # the key names the entry; `protocol = ...` when it differs
    folds = 1               # every other key is one of the protocol's options

:func:`load` parses and validates it before any work; any error is one line naming the file
and the key path (and the line, where one is found), an AnonbenchError (exit 2).
:func:`run_file` runs the protocol entries in order into the one output folder: results.csv
and run.json gather every protocol (a rerun skips what is complete), report.html has a
section per protocol, and productions are shared through the cache. Paths are relative to
the directory `anonbench` runs in, like the flags'.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonbench.argtypes import SEED_MAX
from anonbench.errors import AnonbenchError
from anonbench.runner import RunConfig, default_workers  # no torch at import

# the option names an [evaluators] table may set, and the registry their names come from
EVALUATOR_KEYS = {
    "embedder": "EMBEDDERS",
    "detectors": "DETECTORS",
    "recognizers": "EMBEDDERS",
    "landmarkers": "LANDMARKERS",
}
ENTRY_KEYS = ("protocol", "data", "embedder")  # a protocol entry's own keys; others: options
METHOD_KEYS = ("name", "label", "folder", "checkpoint", "optional", "protocols")


class RunFileError(AnonbenchError):
    """A run file that cannot be run: one line, naming the file and the key path."""


@dataclass(frozen=True)
class Setting:
    """A top-level key of a run file: its TOML type, default and bounds."""

    type: type
    default: Any
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    maximum: int | None = None
    pattern: str | None = None  # a string's whole value matches it (re.fullmatch)
    expected: str = ""  # what the pattern allows, said in the error


# the values --device and a run file's `device` take (anonbench.runner.resolve_device)
DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?"
DEVICE_EXPECTED = "auto, cpu, cuda or cuda:N"

SETTINGS: dict[str, Setting] = {
    "title": Setting(str, ""),  # what the experiment is; free text
    "out": Setting(str, None),  # None: runs/<file name>
    "seed": Setting(int, 0, 0, maximum=SEED_MAX),  # as --seed: numpy and torch take 32 bits
    # checked by its form here (no torch): whether the GPU exists, by the run
    "device": Setting(str, "cpu", pattern=DEVICE_PATTERN, expected=DEVICE_EXPECTED),
    "batch_size": Setting(int, 32, 1),
    "workers": Setting(int, None, 1),  # None: min(2, cores), as on the command line
    "executor": Setting(str, "local", choices=("local", "ray")),
    "ray_address": Setting(str, None),
    "max_retries": Setting(int, 3, 0),
    "compile": Setting(bool, False),
    "cache_dir": Setting(str, None),
    "allow_empty": Setting(bool, False),
    # the detector of the originals' analysis (a registered name; anonbench ls detectors)
    "analysis_detector": Setting(str, "dlib-hog"),
}
# settings that name a registered component: key -> registry (anonbench.registry)
REGISTERED_SETTINGS = {"analysis_detector": "DETECTORS"}
_TOML_TYPE = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


@dataclass
class MethodEntry:
    """One method of a run file: a registered name (with its checkpoint), or a folder of
    pre-computed outputs under a label. `optional`: reported unavailable, not an error, when
    it cannot be built (no checkpoint, no folder). `protocols`: the entries it runs in."""

    label: str
    name: str | None = None
    folder: str | None = None
    checkpoint: str | None = None
    optional: bool = False
    protocols: tuple[str, ...] | None = None  # None: every protocol entry

    @property
    def item(self) -> str:
        """The method as --methods takes it."""
        return self.name if self.name is not None else f"{self.label}=folder:{self.folder}"

    def to_value(self) -> str | dict[str, Any]:
        """As a run file writes it: the bare name when nothing else is set."""
        d: dict[str, Any] = {"name": self.name} if self.name else {"label": self.label}
        for k in ("folder", "checkpoint"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.optional:
            d["optional"] = True
        if self.protocols is not None:
            d["protocols"] = list(self.protocols)
        return self.name if list(d) == ["name"] else d  # type: ignore[return-value]


@dataclass
class ProtocolEntry:
    """One protocol of a run file: its data, its attacker (`embedder`, where the protocol
    does not take it as an option) and its typed options, every declared one."""

    key: str
    protocol: str
    data: str | None = None
    embedder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_value(self) -> dict[str, Any]:
        d: dict[str, Any] = {"protocol": self.protocol}
        if self.data is not None:
            d["data"] = self.data
        if self.embedder is not None:
            d["embedder"] = self.embedder
        return {**d, **self.options}


@dataclass
class RunFile:
    """A validated run file: settings (SETTINGS, defaults filled in), methods, protocols."""

    source: str
    settings: dict[str, Any]
    methods: list[MethodEntry]
    protocols: list[ProtocolEntry]
    unavailable: dict[str, str] = field(default_factory=dict)  # label -> why (run_file)

    def to_dict(self) -> dict[str, Any]:
        """The resolved run file (every option explicit); `from_dict` reads it back."""
        d = {k: v for k, v in self.settings.items() if v not in (None, "")}
        d["methods"] = [m.to_value() for m in self.methods]
        d["protocols"] = {p.key: p.to_value() for p in self.protocols}
        return d

    def to_toml(self) -> str:
        """The resolved run file as TOML (`--print-config`): itself a run file."""
        return f"# resolved from {self.source}\n" + dump_toml(self.to_dict())

    def methods_of(self, entry: ProtocolEntry) -> list[MethodEntry]:
        """The methods that run in a protocol entry (unavailable ones left out)."""
        return [
            m
            for m in self.methods
            if m.label not in self.unavailable and (m.protocols is None or entry.key in m.protocols)
        ]

    def configs(self) -> list[RunConfig]:
        """One RunConfig per protocol entry, in file order, all into the one output folder;
        each records the resolved run file (run.json's config.run_file)."""
        record = {"source": self.source, **self.to_dict(), "unavailable": dict(self.unavailable)}
        return [
            _config(self.settings, e, self.methods_of(e), record)
            for e in self.protocols
            if self.methods_of(e)
        ]


def _config(
    settings: dict[str, Any], e: ProtocolEntry, methods: list[MethodEntry], record: dict
) -> RunConfig:
    s = settings
    return FileRunConfig(
        methods=[m.item for m in methods],
        protocol=e.protocol,
        data=e.data,
        out=s["out"],
        embedder=e.embedder,
        workers=s["workers"] or default_workers(),
        seed=s["seed"],
        cache_dir=s["cache_dir"],
        checkpoints={m.name: m.checkpoint for m in methods if m.name and m.checkpoint},
        options=dict(e.options),
        device=s["device"],
        batch_size=s["batch_size"],
        compile=s["compile"],
        allow_empty=s["allow_empty"],
        executor=s["executor"],
        ray_address=s["ray_address"],
        max_retries=s["max_retries"],
        analysis_detector=s["analysis_detector"],
        run_file=record,
    )


@dataclass
class FileRunConfig(RunConfig):
    """RunConfig with the resolved run file beside it: run.json records config.__dict__, so
    the run file goes into every protocol's entry without the runner knowing of it."""

    run_file: dict[str, Any] = field(default_factory=dict)


# -- reading and validating -------------------------------------------------------------------


def toml_module() -> Any:
    """tomllib, or its backport tomli on Python 3.10 (a dependency there)."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def load(path: str | Path) -> RunFile:
    """Reads and validates a run file; one line (RunFileError) for anything wrong in it.
    Checks names and types only: data folders and checkpoints are checked by the run."""
    tomllib = toml_module()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise RunFileError(f"run file {p}: cannot be read ({why})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RunFileError(f"{p}: not valid TOML: {e}") from None
    return from_dict(data, source=str(p), text=text)


class _Checker:
    """Where errors are reported: the file, and its text to find a key's line in."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.text = text

    def error(self, path: str, message: str) -> RunFileError:
        line = _line_of(self.text, path) if self.text is not None else None
        where = f" (line {line})" if line else ""
        return RunFileError(f"{self.source}: {path}{where}: {message}")

    def typed(self, path: str, value: Any, typ: type) -> Any:
        ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise self.error(path, f"expected {_TOML_TYPE[typ]}, got {_toml_type(value)}")
        return value

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"expected a table, got {_toml_type(value)}")
        return value


def from_dict(data: Mapping[str, Any], source: str, text: str | None = None) -> RunFile:
    """Validates a run file's parsed content (`source` names it in errors)."""
    c = _Checker(source, text)
    known = set(SETTINGS) | {"methods", "protocols", "evaluators"}
    for key in data:
        if key not in known:
            raise c.error(key, f"unknown key{_hint(key, known)}")
    settings = _settings(c, data, source)
    if "protocols" not in data or not c.table("protocols", data["protocols"]):
        raise c.error("protocols", "no protocol: add a [protocols.NAME] table")
    evaluators = _evaluators(c, data.get("evaluators", {}))
    protocols = [
        _protocol(c, key, c.table(f"protocols.{key}", v), evaluators)
        for key, v in data["protocols"].items()
    ]
    _unused_evaluators(c, evaluators, protocols)
    _one_entry_per_protocol(c, protocols)
    methods = _methods(c, data.get("methods"), [p.key for p in protocols])
    for p in protocols:
        if not any(m.protocols is None or p.key in m.protocols for m in methods):
            raise c.error(f"protocols.{p.key}", "no method runs in it (methods.protocols)")
    return RunFile(source, settings, methods, protocols)


def _one_entry_per_protocol(c: _Checker, protocols: list[ProtocolEntry]) -> None:
    """Two entries of one protocol would write the same scores/, missed/ and examples/ files
    and overwrite each other's skip records in the one output folder (and their rows collide
    when evaluator and data agree): refused until those are keyed by entry."""
    first: dict[str, str] = {}
    for p in protocols:
        if p.protocol in first:
            raise c.error(
                f"protocols.{p.key}",
                f"a second {p.protocol} entry (after protocols.{first[p.protocol]}): one run "
                "folder holds one entry per protocol; run it from its own run file (another out)",
            )
        first[p.protocol] = p.key


def _settings(c: _Checker, data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, s in SETTINGS.items():
        if key not in data:
            out[key] = s.default
            continue
        v = c.typed(key, data[key], s.type)
        if s.minimum is not None and v < s.minimum:
            raise c.error(key, f"expected an integer >= {s.minimum}, got {v}")
        if s.maximum is not None and v > s.maximum:
            raise c.error(key, f"expected an integer <= {s.maximum}, got {v}")
        if s.type is str and key != "title" and not v.strip():
            # "" would silently mean the default (runs/<file>, the embedded sample, ...)
            raise c.error(key, "expected a non-empty string (leave the key out for the default)")
        if s.choices and v not in s.choices:
            raise c.error(key, f"expected one of {', '.join(s.choices)}, got {v!r}")
        if s.pattern and not re.fullmatch(s.pattern, v.strip()):
            raise c.error(key, f"expected {s.expected}, got {v!r}")
        if key in REGISTERED_SETTINGS:
            _registered(c, key, v)
        out[key] = v
    if out["out"] is None:  # one folder for every protocol, named after the file
        out["out"] = f"runs/{Path(source).stem or 'run'}"
    return out


def _registered(c: _Checker, key: str, name: str) -> None:
    from anonbench import registry

    reg = getattr(registry, REGISTERED_SETTINGS[key])
    if name not in reg:
        raise c.error(key, f"unknown {reg.kind} {name!r}{_hint(name, reg.names())}")


def _evaluators(c: _Checker, value: Any) -> dict[str, str]:
    table = c.table("evaluators", value)
    out = {}
    for key, v in table.items():
        if key not in EVALUATOR_KEYS:
            raise c.error(f"evaluators.{key}", f"unknown evaluator key{_hint(key, EVALUATOR_KEYS)}")
        out[key] = _names(c, f"evaluators.{key}", v, key)
    return out


def _names(c: _Checker, path: str, value: Any, key: str) -> str:
    """An evaluator list (a string or a list of strings) as the option's comma string, each
    name checked against its registry."""
    from anonbench import registry

    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise c.error(path, f"expected a string or a list of strings, got {_toml_type(value)}")
    reg = getattr(registry, EVALUATOR_KEYS[key])
    for name in (n.strip() for n in value.split(",")):
        if name and name not in reg:
            raise c.error(path, f"unknown {reg.kind} {name!r}{_hint(name, reg.names())}")
    return value


def _unused_evaluators(c: _Checker, evaluators: Mapping[str, str], protocols: list) -> None:
    for key in evaluators:
        if key != "embedder" and not any(key in _declared(p.protocol) for p in protocols):
            raise c.error(f"evaluators.{key}", "no protocol of this file takes it")


def _declared(protocol: str) -> dict[str, Any]:
    """name -> Option of a registered protocol."""
    from anonbench.registry import PROTOCOLS

    return {o.name: o for o in getattr(PROTOCOLS.entry(protocol).factory, "options", ())}


def _protocol(
    c: _Checker, key: str, table: dict[str, Any], evaluators: Mapping[str, str]
) -> ProtocolEntry:
    from anonbench.registry import PROTOCOLS

    path = f"protocols.{key}"
    name = c.typed(f"{path}.protocol", table.get("protocol", key), str)
    if name not in PROTOCOLS:
        where = f"{path}.protocol" if "protocol" in table else path
        raise c.error(where, f"unknown protocol {name!r}{_hint(name, PROTOCOLS.names())}")
    declared = _declared(name)
    data = table.get("data")
    if data is not None:
        data = c.typed(f"{path}.data", data, str)
        if not data.strip():  # "" would silently mean the embedded sample
            raise c.error(
                f"{path}.data", "expected a non-empty string (leave it out for the sample)"
            )
    given = {k: v for k, v in table.items() if k not in ENTRY_KEYS}
    embedder = table.get("embedder", evaluators.get("embedder"))
    if embedder is not None:
        embedder = _names(c, f"{path}.embedder", embedder, "embedder")
        if "embedder" in declared:  # the protocol's own option (lfw): one place for it
            given.setdefault("embedder", embedder)
            embedder = None
    for k, v in evaluators.items():
        if k in declared and k != "embedder":
            given.setdefault(k, v)
    options = _options(c, path, name, declared, given)
    return ProtocolEntry(key, name, data, embedder, options)


def _options(
    c: _Checker, path: str, protocol: str, declared: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Every declared option of the protocol, typed: TOML values must have the option's
    type (a list of strings is a comma-separated string option)."""
    from anonbench.options import parse_options

    typed = {}
    for k, v in given.items():
        opt = declared.get(k)
        if opt is None:
            known = list(declared) + list(ENTRY_KEYS)
            raise c.error(
                f"{path}.{k}",
                f"protocol {protocol} takes no option {k!r}"
                f"{_hint(k, known)} (options: {', '.join(declared) or 'none'})",
            )
        if k in EVALUATOR_KEYS:
            v = _names(c, f"{path}.{k}", v, k)
        elif opt.type is str and isinstance(v, list) and all(isinstance(x, str) for x in v):
            v = ",".join(v)
        elif opt.type in _TOML_TYPE:
            v = c.typed(f"{path}.{k}", v, opt.type)
        typed[k] = v
        try:  # ranges, and the types TOML has no word for (parsed from strings)
            typed[k] = parse_options([opt], {k: v}, f"protocol {protocol}")[k]
        except AnonbenchError as e:
            raise c.error(f"{path}.{k}", str(e)) from None
    return parse_options(list(declared.values()), typed, f"protocol {protocol}")


def _methods(c: _Checker, value: Any, entries: list[str]) -> list[MethodEntry]:
    if value is None:
        raise c.error("methods", 'no methods: add methods = ["original", ...]')
    if not isinstance(value, list) or not value:
        raise c.error("methods", f"expected a non-empty list, got {_toml_type(value)}")
    out = [_method(c, f"methods[{i}]", v, entries) for i, v in enumerate(value)]
    seen: set[str] = set()
    for i, m in enumerate(out):
        if m.label in seen:
            raise c.error(f"methods[{i}]", f"the label {m.label!r} is given twice")
        seen.add(m.label)
    return out


def _method(c: _Checker, path: str, value: Any, entries: list[str]) -> MethodEntry:
    from anonbench.registry import METHODS
    from anonbench.runner import parse_method

    if isinstance(value, str):  # as --methods takes it: NAME, folder:DIR, LABEL=folder:DIR
        try:
            spec = parse_method(value)
        except AnonbenchError as e:
            raise c.error(path, str(e)) from None
        value = {"name": spec.name} if spec.name else {"label": spec.label, "folder": spec.folder}
    t = c.table(path, value)
    for k in t:
        if k not in METHOD_KEYS:
            raise c.error(f"{path}.{k}", f"unknown method key{_hint(k, METHOD_KEYS)}")
    f = {
        k: c.typed(f"{path}.{k}", t[k], str)
        for k in ("name", "label", "folder", "checkpoint")
        if k in t
    }
    for k, v in f.items():
        if not v.strip():
            raise c.error(f"{path}.{k}", "expected a non-empty string")
    if ("name" in f) == ("folder" in f):
        raise c.error(path, "give either name (a registered method) or folder (outputs)")
    if "name" in f:
        if "label" in f:
            raise c.error(
                f"{path}.label",
                "only a folder method takes a label (a registered method is labelled by its name)",
            )
        if f["name"] not in METHODS:
            raise c.error(
                f"{path}.name", f"unknown method {f['name']!r}{_hint(f['name'], METHODS.names())}"
            )
    elif "checkpoint" in f:
        raise c.error(f"{path}.checkpoint", "a folder method takes no checkpoint")
    label = f.get("name") or f.get("label") or Path(f["folder"].rstrip("/")).name
    try:
        parse_method(f"{label}=folder:x")  # the label rules of --methods
    except AnonbenchError as e:
        raise c.error(path, str(e)) from None
    protos = None
    if "protocols" in t:
        protos = tuple(
            c.typed(f"{path}.protocols[{i}]", p, str)
            for i, p in enumerate(_list(c, f"{path}.protocols", t["protocols"]))
        )
        for p in protos:
            if p not in entries:
                raise c.error(f"{path}.protocols", f"no protocol entry {p!r} in this file")
        if not protos:  # the method would silently never run
            raise c.error(f"{path}.protocols", "an empty list: name the entries it runs in")
    optional = c.typed(f"{path}.optional", t.get("optional", False), bool)
    return MethodEntry(label, f.get("name"), f.get("folder"), f.get("checkpoint"), optional, protos)


def _list(c: _Checker, path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise c.error(path, f"expected a list, got {_toml_type(value)}")
    return value


def _hint(key: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return (
        "a table"
        if isinstance(value, dict)
        else "a list"
        if isinstance(value, list)
        else (type(value).__name__)
    )


_KEY_LINE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\- ]+?)\s*=""")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")


def _line_of(text: str, path: str) -> int | None:
    """Best effort: the line of a key path in the TOML text (its longest prefix found; list
    indices are not followed). TOML parsers give no positions for valid files."""
    want = [p for p in re.split(r"\.|\[\d+\]", path) if p]
    best, best_len = None, 0
    table: list[str] = []
    for no, line in enumerate(text.splitlines(), 1):
        h = _HEADER.match(line)
        if h:
            table = [s.strip().strip("\"'") for s in h.group(1).split(".")]
            found = table
        else:
            m = _KEY_LINE.match(line)
            if not m:
                continue
            found = table + [s.strip().strip("\"'") for s in m.group(1).split(".")]
        n = len(found)
        if n > best_len and found == want[:n]:
            best, best_len = no, n
    return best


# -- writing ---------------------------------------------------------------------------------


def dump_toml(d: Mapping[str, Any]) -> str:
    """A run file's dict as TOML: scalars and lists first, then one [a.b] table per nested
    table (tomllib reads it back as `d`). None values are left out (TOML has no null)."""
    lines: list[str] = []
    _dump_table(d, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(d: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    if prefix and not all(isinstance(v, dict) for v in d.values()):
        lines += ["", f"[{'.'.join(_toml_key(p) for p in prefix)}]"]
    for k, v in d.items():
        if v is None or isinstance(v, dict):
            continue
        if isinstance(v, list) and any(isinstance(x, dict) for x in v):
            items = "".join(f"  {_toml_value(x)},\n" for x in v)
            lines.append(f"{_toml_key(k)} = [\n{items}]")
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            _dump_table(v, [*prefix, k], lines)


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None
        )
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


# -- running ----------------------------------------------------------------------------------


def check_available(rf: RunFile) -> dict[str, str]:
    """label -> why, for the optional methods that cannot be built (no checkpoint, a missing
    folder); the run goes on without them and says so. Builds them once on the CPU."""
    from anonbench.plugins import build
    from anonbench.registry import METHODS
    from anonbench.runner import refuse_imageless_folder

    out = {}
    for m in rf.methods:
        if not m.optional:
            continue
        if m.folder is not None:
            if not Path(m.folder).is_dir():
                out[m.label] = f"no such folder {m.folder}"
                continue
            try:  # a folder with no image would fail the run's checks (nothing to score)
                refuse_imageless_folder(m.label, m.folder)
            except AnonbenchError as e:
                out[m.label] = str(e)
            continue
        try:
            build(
                METHODS, str(m.name), {}, **({"checkpoint": m.checkpoint} if m.checkpoint else {})
            )
        except AnonbenchError as e:
            out[m.label] = str(e)
    return out


def run_file(rf: RunFile, *, force: bool = False, quiet: bool = False) -> Path:
    """Runs every protocol entry of a run file in order into its one output folder; returns
    the folder. Optional methods that cannot be built are reported unavailable, one line
    each, and recorded in run.json (config.run_file.unavailable)."""
    from anonbench import runner
    from anonbench.log import note

    rf.unavailable = check_available(rf)
    for label, why in rf.unavailable.items():
        note(f"{label}: unavailable, left out of this run ({why})")
    for e in rf.protocols:
        if not rf.methods_of(e):
            note(f"protocol {e.key}: every method of it is unavailable; left out")
    configs = rf.configs()
    if not configs:
        raise RunFileError(f"{rf.source}: no method left to run (all unavailable)")
    entries = [e for e in rf.protocols if rf.methods_of(e)]  # configs() keeps these, in order
    for e, cfg in zip(entries, configs, strict=True):
        cfg.force, cfg.quiet = force, quiet
        try:  # all of them before any work: the last entry's mistake is not found hours in
            runner.check(cfg)
        except AnonbenchError as err:
            raise RunFileError(f"{rf.source}: protocols.{e.key}: {err}") from None
    out = Path(rf.settings["out"])
    for i, cfg in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] protocol {cfg.protocol}: {', '.join(cfg.methods)}")
        out = runner.run(cfg)
    print(f"run file {rf.source}: {len(configs)} protocol run(s) in {out}")
    return out


# -- the command line: `anonbench run --config FILE [flags]` ----------------------------------

# flags that replace a setting of the file when given (argparse dest -> run-file key)
SETTING_FLAGS = (
    "out",
    "seed",
    "device",
    "batch_size",
    "workers",
    "executor",
    "ray_address",
    "max_retries",
    "cache_dir",
    "analysis_detector",
)


def with_flags(rf: RunFile, flags: Mapping[str, Any]) -> RunFile:
    """The run file with the command-line flags given applied; flags win. `flags`: argparse
    dest -> value, None (or absent, or an empty list) for a flag not given. --protocol picks
    entries (or adds a protocol), --methods replaces the list (keeping the file's entry of a
    method it names), --option [ENTRY.]KEY=VALUE sets one entry's option or every entry's
    that takes KEY."""
    refuse_option_conflicts(flags)
    device = flags.get("device")
    if device is not None and not re.fullmatch(DEVICE_PATTERN, str(device).strip()):
        raise AnonbenchError(f"--device {device!r}: expected {DEVICE_EXPECTED}")
    d = rf.to_dict()
    for key in SETTING_FLAGS:
        if flags.get(key) is not None:
            d[key] = flags[key]
    for key in ("compile", "allow_empty"):  # switches: a flag can only turn them on
        if flags.get(key):
            d[key] = True
    if flags.get("protocol"):
        _select_protocols(d, str(flags["protocol"]))
    if flags.get("methods"):
        d["methods"] = _flag_methods(rf, str(flags["methods"]))
    _flag_data(d, flags)
    for item in flags.get("checkpoint") or ():
        _flag_checkpoint(d, item)
    options = [f"{k}={flags[k]}" for k in ("folds", "pairs") if flags.get(k) is not None]
    for item in [*options, *(flags.get("option") or ())]:
        _flag_option(d, item)
    return from_dict(d, source=rf.source)


def refuse_option_conflicts(flags: Mapping[str, Any]) -> None:
    """--folds and --pairs set the option of their name: an --option [ENTRY.]KEY=VALUE giving
    it another value is refused, one line, rather than one of them silently kept."""
    for key in ("folds", "pairs"):
        value = flags.get(key)
        if value is None:
            continue
        for item in flags.get("option") or ():
            name, sep, given = item.partition("=")
            if sep and name.strip().rpartition(".")[2] == key and not _same(given, value):
                raise AnonbenchError(
                    f"--{key} {value} and --option {item.strip()} disagree; give one of them"
                )


def _same(given: str, value: Any) -> bool:
    """Whether an --option's text says `value` (2 and "02" agree)."""
    given = given.strip()
    if isinstance(value, int):
        try:
            return int(given) == value
        except ValueError:
            return False
    return given == str(value).strip()


def _select_protocols(d: dict[str, Any], value: str) -> None:
    """--protocol A,B: the file's entries named A and B (by key or protocol), or new ones."""
    from anonbench.registry import PROTOCOLS

    entries: dict[str, Any] = d["protocols"]
    chosen: dict[str, Any] = {}
    for want in (w.strip() for w in value.split(",") if w.strip()):
        keys = [k for k, v in entries.items() if want in (k, v.get("protocol"))]
        if not keys and want not in PROTOCOLS:
            raise AnonbenchError(
                f"--protocol {want}: neither an entry of this run file nor a protocol "
                f"(entries: {', '.join(entries)}; protocols: {', '.join(PROTOCOLS.names())})"
            )
        for k in keys or [want]:
            chosen[k] = entries.get(k, {"protocol": want})
    d["protocols"] = chosen
    kept = []
    for m in d["methods"]:  # a method limited to entries left out goes with them
        if isinstance(m, dict) and "protocols" in m:
            m["protocols"] = [p for p in m["protocols"] if p in chosen]
            if not m["protocols"]:
                continue
        kept.append(m)
    d["methods"] = kept


def _flag_methods(rf: RunFile, value: str) -> list[Any]:
    from anonbench.registry import METHODS
    from anonbench.runner import parse_method

    by_label = {m.label: m for m in rf.methods}
    out: list[Any] = []
    for item in (m.strip() for m in value.split(",") if m.strip()):
        spec = parse_method(item)
        if spec.name is not None and spec.name not in METHODS:
            raise AnonbenchError(f"--methods: unknown method {spec.name!r}")
        known = by_label.get(spec.label)
        same = known is not None and (known.name, known.folder) == (spec.name, spec.folder)
        value_ = known.to_value() if same and known is not None else item
        if isinstance(value_, dict):
            value_.pop("protocols", None)  # named on the command line: runs everywhere
        out.append(value_)
    return out


def _flag_data(d: dict[str, Any], flags: Mapping[str, Any]) -> None:
    if flags.get("data") is not None:
        if len(d["protocols"]) != 1:
            raise AnonbenchError(
                f"--data with a run file of {len(d['protocols'])} protocols: pick one with "
                "--protocol, or give each its data in the file"
            )
        next(iter(d["protocols"].values()))["data"] = str(flags["data"])
    if flags.get("embedder") is not None:
        for entry in d["protocols"].values():
            entry["embedder"] = str(flags["embedder"])


def _flag_checkpoint(d: dict[str, Any], item: str) -> None:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise AnonbenchError(f"--checkpoint expects METHOD=PATH, got {item!r}")
    for i, m in enumerate(d["methods"]):
        if m == name or (isinstance(m, dict) and m.get("name") == name):
            d["methods"][i] = {**({"name": m} if isinstance(m, str) else m), "checkpoint": path}
            return
    raise AnonbenchError(f"--checkpoint {item}: {name} is not among the methods of this run")


def _flag_option(d: dict[str, Any], item: str) -> None:
    """--option [ENTRY.]KEY=VALUE, converted to the option's type here (messages name the
    flag); without ENTRY, every entry whose protocol takes KEY."""
    from anonbench.options import parse_options

    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise AnonbenchError(f"--option expects [PROTOCOL.]KEY=VALUE, got {item!r}")
    entry, dot, name = key.rpartition(".")
    entries: dict[str, Any] = d["protocols"]
    if dot and entry not in entries:
        raise AnonbenchError(f"--option {item}: no protocol {entry!r} in this run")
    targets = [entry] if dot else list(entries)
    hit = False
    for k in targets:
        protocol = entries[k].get("protocol", k)
        opt = _declared(protocol).get(name)
        if opt is None:
            if dot:
                raise AnonbenchError(f"--option {item}: protocol {protocol} takes no {name!r}")
            continue
        try:
            entries[k][name] = parse_options([opt], {name: value}, f"protocol {protocol}")[name]
        except AnonbenchError as e:
            raise AnonbenchError(f"--option {item}: {e}") from None
        hit = True
    if not hit:
        raise AnonbenchError(f"--option {item}: no protocol of this run takes {name!r}")


def from_flags(flags: Mapping[str, Any]) -> RunFile:
    """The run file of a plain `anonbench run --methods ... --protocol ...` (for
    --print-config: what the flags would run, as a file)."""
    if not flags.get("methods") or not flags.get("protocol"):
        raise AnonbenchError("give --config FILE, or --methods and --protocol")
    protocols = [w.strip() for w in str(flags["protocol"]).split(",") if w.strip()]
    d: dict[str, Any] = {
        "methods": ["original"],  # replaced by --methods
        "protocols": {p: {"protocol": p} for p in protocols},
    }
    if flags.get("out") is None:  # the runner's default: runs/<protocol>-<data>
        data = flags.get("data")
        label = "lfw-sample" if not data else Path(str(data).partition(":")[2] or data).name
        d["out"] = f"runs/{protocols[0]}-{label}"
    return with_flags(from_dict(d, source="the command line"), flags)


def command(flags: Mapping[str, Any]) -> int:
    """`anonbench run --config FILE` (flags override it) and `--print-config`."""
    import shutil
    import tempfile

    rf = load(flags["config"]) if flags.get("config") else from_flags(flags)
    if flags.get("config"):
        rf = with_flags(rf, flags)
    if flags.get("print_config"):
        print(rf.to_toml(), end="")
        return 0
    if not flags.get("no_cache"):
        run_file(rf, force=bool(flags.get("force")), quiet=bool(flags.get("quiet")))
        return 0
    rf.settings["cache_dir"] = tempfile.mkdtemp(prefix="anonbench-nocache-")
    try:
        run_file(rf, force=bool(flags.get("force")), quiet=bool(flags.get("quiet")))
    finally:  # the temporary cache goes however the run ends
        shutil.rmtree(rf.settings["cache_dir"], ignore_errors=True)
    return 0
