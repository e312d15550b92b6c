"""README's "Your metric" and "Your protocol" stay runnable: the scorer, its catalog line and
its test are executed as written; the protocol class is built and lists its options."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from anonbench.api import MetricSpec

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Your metric") : text.index("## Protocols and what each")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_walkthroughs_have_their_four_blocks():
    assert len(_blocks()) == 4  # scorer, catalog line, test, protocol


def test_the_metric_walkthrough_runs(tmp_path, monkeypatch):
    from anonbench.metrics import catalog

    scorer, line, test, _ = _blocks()
    spec = eval(line.strip().rstrip(","), {"MetricSpec": MetricSpec})
    monkeypatch.setitem(catalog.CATALOG, spec.name, spec)
    module = types.ModuleType("anonbench.scorers.face_change")
    exec(compile(scorer, "README scorer", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ns: dict = {}
    exec(compile(test, "README test", "exec"), ns)
    ns["test_face_change"](tmp_path)


def test_the_protocol_walkthrough_builds():
    from anonbench.scorers.composed import IdentityProtocol

    ns: dict = {}
    exec(compile(_blocks()[3], "README protocol", "exec"), ns)
    proto = ns["QuickProtocol"]()
    assert isinstance(proto, IdentityProtocol) and proto.name == "quick"
    assert [o.name for o in proto.options][-1] == "detectors"
    with pytest.raises(NotImplementedError):
        IdentityProtocol().scorers(None, None)  # type: ignore[arg-type]
