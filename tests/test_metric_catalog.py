"""The metric catalog: each built-in MetricSpec declared once, with a role; `check` reads it."""

from __future__ import annotations

import dataclasses

import pytest

from anonbench.api import METRIC_ROLES, MetricSpec
from anonbench.check import role
from anonbench.metrics import catalog
from anonbench.registry import PROTOCOLS

BUILTIN = ("celeba", "lfw", "landmark-attack", "faceswap")


def test_builtin_protocols_take_every_spec_from_the_catalog():
    for name in BUILTIN:
        metrics = PROTOCOLS.entry(name).factory.metrics
        assert metrics, name
        for spec in metrics:
            assert spec is catalog.spec(spec.name), (name, spec.name)
            assert spec.role in METRIC_ROLES, (name, spec.name)


def test_shared_metrics_are_one_spec():
    """faces_missed, embedder_no_face and recall_at_1 were declared per protocol."""
    by = {n: {s.name: s for s in PROTOCOLS.entry(n).factory.metrics} for n in BUILTIN}
    assert by["celeba"]["faces_missed"] is by["lfw"]["faces_missed"]
    assert by["celeba"]["embedder_no_face"] is by["lfw"]["embedder_no_face"]
    assert by["celeba"]["recall_at_1"] is by["landmark-attack"]["recall_at_1"]


def test_roles_and_directions_agree():
    """privacy, utility and realism metrics have a direction and a default tolerance; counts
    have neither."""
    for spec in catalog.CATALOG.values():
        if spec.role == "count":
            assert spec.higher_is_better is None and spec.tolerance is None, spec.name
            assert spec.unit == "count" and role(spec) is None, spec.name
        else:
            assert spec.higher_is_better is not None and spec.tolerance is not None, spec.name
            assert role(spec) == spec.role, spec.name
    assert catalog.spec("fid").role == catalog.spec("kid").role == "realism"
    assert catalog.spec("recall_at_1").role == "privacy"
    assert catalog.spec("landmark_nme").role == "utility"


def test_unknown_metric_and_role_fail_clearly():
    with pytest.raises(KeyError, match="no metric 'nope' in the catalog"):
        catalog.spec("nope")
    with pytest.raises(ValueError, match="role 'privcy' is not one of"):
        MetricSpec("x", False, "x", role="privcy")


def test_third_party_spec_without_role_keeps_the_unit_rule():
    """A plug-in's MetricSpec has no role: `check` infers it from direction and unit."""
    assert role(MetricSpec("leak", False, "leak rate", unit="percent")) == "privacy"
    assert role(MetricSpec("dist", False, "a distance")) == "utility"
    assert role(MetricSpec("kept", True, "kept")) == "utility"
    assert role(MetricSpec("n", None, "a count", unit="count")) is None
    assert role(MetricSpec("dist", False, "a distance", role="realism")) == "realism"


def test_run_json_copy_gains_the_role_and_check_trusts_the_installed_one():
    from anonbench.check import trusted_specs

    assert dataclasses.asdict(catalog.spec("fid"))["role"] == "realism"
    forged = dataclasses.asdict(catalog.spec("fid")) | {"role": "privacy"}
    info = {"protocol": {"name": "celeba", "metrics": [forged]}}
    assert trusted_specs("celeba", ["fid"], [info])["fid"].role == "realism"


def test_run_json_role_is_read_back_and_an_unknown_role_is_dropped():
    from anonbench.display import spec_from_dict

    assert spec_from_dict({"name": "x", "role": "realism"}).role == "realism"
    assert spec_from_dict({"name": "x", "role": "bogus"}).role is None
    assert spec_from_dict({"name": "x", "role": 3}).role is None
