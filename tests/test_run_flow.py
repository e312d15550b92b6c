"""The run flow's parts (issue 21): one declaration per built-in, the plug-in builder and its
capability attribute, the frozen Resources, warnings through logging, the plan and the
ledger, the --embedder alias. Fast: no images, no dlib models."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from anonbench import registry
from anonbench.api import Option, Resources, RunContext, runs_in_workers
from anonbench.errors import AnonbenchError


def _decorated_names(module: str) -> set[str]:
    """Names passed to a @register_... decorator in the module's source (not imported)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin
    return _decorated_in(Path(spec.origin))


def _decorated_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        for deco in getattr(node, "decorator_list", []):
            if isinstance(deco, ast.Call) and getattr(deco.func, "id", "").startswith("register"):
                if deco.args and isinstance(deco.args[0], ast.Constant):
                    names.add(deco.args[0].value)
    return names


def test_every_builtin_is_declared_once():
    modules = {b.target.split(":")[0] for b in registry.BUILTINS}
    twice = {
        f"{m}: {sorted(n)}"
        for m in sorted(modules)
        if (n := _decorated_names(m) & {b.name for b in registry.BUILTINS})
    }
    assert not twice, f"declared in BUILTINS and by a decorator: {twice}"


def test_no_builtin_source_registers_by_decorator():
    # stricter than the above: built-ins are declared in BUILTINS only, so no module of the
    # installed packages (anonbench, its methods, protocols and reports) decorates anything;
    # the decorators stay for third-party plug-ins
    roots = {
        Path(importlib.util.find_spec(p).origin).parent  # type: ignore[union-attr,arg-type]
        for p in ("anonbench", "anonbench.methods", "anonbench.protocols", "anonbench.reports")
    }
    found = {
        f"{f}: {sorted(n)}"
        for r in roots
        for f in sorted(r.rglob("*.py"))
        if (n := _decorated_in(f))
    }
    assert not found, f"@register_... in built-in sources: {found}"


def test_the_declaration_scan_sees_a_decorator(tmp_path, monkeypatch):
    # the test above would pass vacuously if the scan never found a decorator
    (tmp_path / "decorated_mod.py").write_text(
        "from anonbench.registry import register_method\n"
        "@register_method('blur9', kernel=9)\nclass B: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _decorated_names("decorated_mod") == {"blur9"}


class _Takes:
    def __init__(self, kernel: int = 3, *, device: str = "cpu") -> None:
        self.kernel, self.device = kernel, device


class _Anything:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


def _registry(monkeypatch: pytest.MonkeyPatch) -> registry.Registry:
    reg: registry.Registry = registry.Registry("thing")
    reg.register("takes")(_Takes)
    reg.register("anything")(_Anything)
    return reg


def test_build_passes_only_what_the_factory_names(monkeypatch):
    from anonbench.plugins import accepted, build

    reg = _registry(monkeypatch)
    assert accepted(reg, "takes") == {"kernel", "device"}
    t = build(reg, "takes", {"device": "cuda:1", "batch_size": 8, "seed": 3}, kernel=5)
    assert (t.kernel, t.device) == (5, "cuda:1")
    t = build(reg, "takes", Resources(device="cuda", batch_size=4))
    assert t.device == "cuda"
    # **kwargs names nothing: offered nothing (as the guessing it replaces did)
    assert build(reg, "anything", {"device": "cuda"}).kwargs == {}
    # a fixed argument the factory does not take: one line (it was a TypeError traceback)
    with pytest.raises(AnonbenchError, match="'takes' does not take checkpoint"):
        build(reg, "takes", {}, checkpoint="x")


def test_evaluators_thresholds_and_attackers_build_through_plugins(monkeypatch):
    from anonbench import plugins

    class Attacker:
        def __init__(self, epochs=1, seed=0, batch_size=1, checkpoint=""):
            self.epochs, self.seed, self.batch_size, self.checkpoint = (
                epochs,
                seed,
                batch_size,
                checkpoint,
            )

    class Thresholded:
        def __init__(self, conf_threshold=0.5, device="cpu"):
            self.conf_threshold, self.device = conf_threshold, device

    emb = _registry(monkeypatch)
    emb.register("att")(Attacker)
    emb.register("thr")(Thresholded)
    monkeypatch.setattr("anonbench.registry.EMBEDDERS", emb)
    # device offered, batch_size not taken; a setting named in one of several ways
    assert plugins.evaluator(emb, "thr", "cuda:2", 8).device == "cuda:2"
    assert plugins.first_accepted(emb, "thr", ("threshold", "conf_threshold")) == "conf_threshold"
    assert plugins.first_accepted(emb, "takes", ("threshold",)) is None
    # batches of at least 32; an extra the factory does not take (cache_dir) is dropped
    a = plugins.trained_attacker(
        "att", device="cuda", batch_size=8, seed=3, epochs=7, checkpoint="c", cache_dir="/x"
    )
    assert (a.epochs, a.seed, a.batch_size, a.checkpoint) == (7, 3, 32, "c")


def test_workers_follow_the_capability_not_the_module_name():
    from anonbench.faces.dlib_faces import DlibResNetEmbedder, HOGDetector

    class Elsewhere:  # a dlib-based plug-in outside dlib_faces.py
        cpu_workers = True

    assert runs_in_workers(HOGDetector) and runs_in_workers(DlibResNetEmbedder)
    assert runs_in_workers(Elsewhere()) and not runs_in_workers(object())


def test_resources_are_frozen_and_reach_ctx_attributes():
    r = Resources(device="cuda:0", batch_size=7, workers=2, cache_dir="/c", seed=9, quiet=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.device = "cpu"  # type: ignore[misc]
    ctx = RunContext(data=None, out_dir="o", resources=r, options={"k": 1})
    assert (ctx.device, ctx.batch_size, ctx.workers, ctx.cache_dir, ctx.seed, ctx.quiet) == (
        "cuda:0",
        7,
        2,
        "/c",
        9,
        True,
    )
    # built field by field (protocol tests do): the resources follow the fields
    old = RunContext(data=None, out_dir="o", cache_dir="/d", seed=4, batch_size=3)
    assert old.resources == Resources(cache_dir="/d", seed=4, batch_size=3)
    assert r.evaluation()["cache_dir"] == "/c" and r.evaluation()["workers"] == 2


def test_warnings_keep_their_text_and_stream(capsys):
    from anonbench.log import get_logger, note, warn

    warn("disk nearly full")
    warn("to stdout", stdout=True)
    note("blur9: demo weights", logger=get_logger("runner"))
    out, err = capsys.readouterr()
    assert err == "warning: disk nearly full\nnote: blur9: demo weights\n"
    assert out == "warning: to stdout\n"
    # a program that embeds anonbench silences it like any logger
    get_logger().setLevel(logging.ERROR)
    try:
        warn("hidden")
    finally:
        get_logger().setLevel(logging.INFO)
    assert capsys.readouterr().err == ""


def _res(rows):
    import pandas as pd

    return pd.DataFrame(rows, dtype=str)


def test_plan_skips_only_complete_rows_with_the_same_digest():
    from anonbench.plan import input_digest, plan_methods
    from anonbench.runner import MethodSpec

    method = SimpleNamespace(config=lambda: {"k": 1}, meta=SimpleNamespace(checkpoint_sha256=""))
    ds = SimpleNamespace(
        spec="lfw:x", kind="lfw", label="x", records=[1, 2], missing_files=[], pairs_file=None
    )
    proto = SimpleNamespace(name="lfw", version="1")
    specs = [MethodSpec("a", name="a"), MethodSpec("b", name="b")]
    digest = input_digest(specs[0], method, ds, proto, {}, seed=0, embedder="e")
    key = ["x", "test", "tar", "e"]
    prev = {
        "protocol": {"name": "lfw"},
        "methods": {"a": {"input_digest": digest, "rows": [key]}, "b": {"input_digest": "old"}},
    }
    row = dict(zip(("dataset", "split", "metric", "evaluator"), key, strict=True))
    res = _res(
        [{"method": "a", "protocol": "lfw", **row}, {"method": "b", "protocol": "lfw", **row}]
    )
    kw = {"seed": 0, "embedder": "e", "prev": prev, "res": res}
    built = {"a": method, "b": method}
    plan = plan_methods(specs, built, ds, proto, {}, force=False, **kw)
    assert [(p.label, p.skip) for p in plan] == [("a", True), ("b", False)]
    assert not any(p.skip for p in plan_methods(specs, built, ds, proto, {}, force=True, **kw))
    # another seed, another digest: recomputed
    again = plan_methods(specs, built, ds, proto, {}, force=False, **{**kw, "seed": 1})
    assert not again[0].skip


class _Proto:
    name = "p"
    options = (Option("embedder", str, "dlib-resnet", "the attacker"),)


def test_embedder_flag_is_the_alias_of_a_declared_option():
    from anonbench.runner import RunConfig, _protocol_options

    def cfg(**kw):
        return RunConfig(methods=["original"], protocol="p", **kw)

    assert _protocol_options(_Proto, cfg())[1] == "dlib-resnet"
    opts, emb = _protocol_options(_Proto, cfg(embedder="facenet-casia"))
    assert emb == opts["embedder"] == "facenet-casia"
    opts, emb = _protocol_options(_Proto, cfg(options={"embedder": "pnca"}))
    assert emb == opts["embedder"] == "pnca"
    with pytest.raises(AnonbenchError, match="disagree"):
        _protocol_options(_Proto, cfg(embedder="a", options={"embedder": "b"}))

    class Undeclared:  # the embedder stays the run's (ctx.embedder), options untouched
        name = "q"
        options = ()

    assert _protocol_options(Undeclared, cfg(embedder="x")) == ({}, "x")
    assert _protocol_options(Undeclared, cfg()) == ({}, "dlib-resnet")


def test_the_ledger_records_after_each_method_and_marks_how_a_run_ended(tmp_path):
    import json

    from anonbench.ledger import Ledger, earlier_methods, rows_complete
    from anonbench.results import make_row, read_results

    info = {"run_id": "r1", "status": "running", "protocol": {"name": "lfw"}, "methods": {}}
    info["timings_s"] = {}
    ledger = Ledger(tmp_path, info, prev={})
    ledger.mark("interrupted")  # nothing written yet: nothing to mark, no run.json
    assert not (tmp_path / "run.json").exists()
    row = make_row(method="a", protocol="lfw", dataset="d", split="test", metric="m", value=0.5)
    row["evaluator"], row["n"] = "e", 3.0
    ledger.describe("a", {"input_digest": "x"}, [row])
    ledger.commit("a", [row])
    ledger.mark("interrupted")
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["status"] == "interrupted"
    assert on_disk["methods"]["a"] == {"input_digest": "x", "rows": [["d", "test", "m", "e"]]}
    assert ledger.kept() == "the 1 method(s) finished before it (a)"
    # what the next run's plan reads back
    res = read_results(tmp_path).astype(str)
    before = earlier_methods(on_disk, "lfw")["a"]
    assert rows_complete(res, "a", "lfw", before["rows"])
    assert not rows_complete(res, "a", "lfw", [["d", "test", "other", "e"]])


def test_methods_are_built_with_the_resources_they_take(monkeypatch):
    from anonbench.runner import MethodSpec, build_method

    made = {}

    def fake_build(reg, name, offer, **fixed):
        made.update(name=name, offer=dict(offer), fixed=fixed)
        return SimpleNamespace(name=name)

    monkeypatch.setattr("anonbench.plugins.build", fake_build)
    spec = MethodSpec("mine", name="ciagan")
    m = build_method(spec, Resources(), {"ciagan": "w.pt"})
    # on the CPU without --compile nothing is offered: built as METHODS.create builds it
    assert m.name == "mine" and made["offer"] == {} and made["fixed"] == {"checkpoint": "w.pt"}
    build_method(spec, Resources(device="cuda:0", compile=True))
    assert made["offer"] == {"device": "cuda:0", "compile": True} and made["fixed"] == {}
