"""Typed protocol options: `--option key=value` strings become each option's type, defaults
are filled in, and an unknown key or a bad value is one clear error."""

from __future__ import annotations

import pytest

from anonbench import registry
from anonbench.api import MetricSpec, Option, Protocol
from anonbench.cli import main
from anonbench.errors import AnonbenchError
from anonbench.options import describe_option, parse_options

SPECS = (
    Option("detectors", str, "dlib-hog,retinaface,mtcnn", "detectors whose rate is reported"),
    Option("pnca_epochs", int, 30, "Proxy-NCA training epochs"),
    Option("test_fraction", float, 0.5, "share of identities held out for testing"),
    Option("fid", bool, True, "compute FID"),
    Option("identifier", str, None, "a trained Proxy-NCA net (PATH)"),
)
OWNER = "protocol celeba"


def test_strings_become_the_declared_types_and_defaults_fill_in():
    got = parse_options(SPECS, {"pnca_epochs": "5", "test_fraction": "0.25", "fid": "no"}, OWNER)
    assert got == {
        "detectors": "dlib-hog,retinaface,mtcnn",
        "pnca_epochs": 5,
        "test_fraction": 0.25,
        "fid": False,
        "identifier": None,
    }
    assert type(got["pnca_epochs"]) is int and type(got["test_fraction"]) is float
    assert parse_options(SPECS, {}, OWNER) == {o.name: o.default for o in SPECS}


@pytest.mark.parametrize(
    "text, value",
    [("1", True), ("0", False), ("true", True), ("False", False), ("YES", True), ("no", False)],
)
def test_bool_words(text, value):
    assert parse_options(SPECS, {"fid": text}, OWNER)["fid"] is value


def test_typed_values_pass_and_wrong_types_do_not():
    got = parse_options(SPECS, {"fid": False, "pnca_epochs": 7, "test_fraction": 1}, OWNER)
    assert got["fid"] is False and got["pnca_epochs"] == 7 and got["test_fraction"] == 1.0
    with pytest.raises(AnonbenchError, match="expected an integer"):
        parse_options(SPECS, {"pnca_epochs": True}, OWNER)  # a bool is no epoch count
    with pytest.raises(AnonbenchError, match="expected one of 1/0/true/false/yes/no"):
        parse_options(SPECS, {"fid": 1}, OWNER)


def test_unknown_option_suggests_the_nearest():
    with pytest.raises(AnonbenchError) as e:
        parse_options(SPECS, {"detectr": "dlib-hog"}, OWNER)
    assert str(e.value) == (
        "unknown option 'detectr' for protocol celeba; did you mean 'detectors'? "
        "(options: detectors, pnca_epochs, test_fraction, fid, identifier)"
    )
    with pytest.raises(AnonbenchError) as e:
        parse_options(SPECS, {"zzz": "1"}, OWNER)
    assert "did you mean" not in str(e.value) and "(options: detectors," in str(e.value)
    with pytest.raises(AnonbenchError, match="unknown option 'x' for protocol lfw: it takes no"):
        parse_options((), {"x": "1"}, "protocol lfw")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("pnca_epochs", "abc", "option pnca_epochs=abc: expected an integer"),
        ("pnca_epochs", "2.5", "option pnca_epochs=2.5: expected an integer"),
        ("test_fraction", "half", "option test_fraction=half: expected a number"),
        ("fid", "maybe", "option fid=maybe: expected one of 1/0/true/false/yes/no"),
    ],
)
def test_bad_values(key, value, message):
    with pytest.raises(AnonbenchError) as e:
        parse_options(SPECS, {key: value}, OWNER)
    assert str(e.value) == message


def test_a_name_declared_twice_is_a_programming_error():
    with pytest.raises(ValueError, match="declared twice"):
        parse_options((SPECS[0], SPECS[0]), {}, OWNER)


def test_describe_option():
    assert describe_option(SPECS[3]) == "fid (bool, default true): compute FID"
    assert describe_option(SPECS[4]).startswith("identifier (str, default none): ")


class _Typed(Protocol):
    """A protocol with typed options (registered for one test)."""

    name = "typed"
    datasets = ("lfw",)
    metrics = (MetricSpec("leak", False, "leak rate"),)
    options = SPECS


def test_run_and_ls_read_the_protocols_options(monkeypatch, capsys):
    """Through the CLI: `anonbench ls protocols` lists the options, `anonbench run` refuses a
    misspelt one and a badly typed value before any work."""
    monkeypatch.setattr(registry.PROTOCOLS, "_entries", dict(registry.PROTOCOLS._entries))
    registry.PROTOCOLS.register("typed")(_Typed)
    assert main(["ls", "protocols"]) == 0
    out = capsys.readouterr().out
    assert "--option pnca_epochs (int, default 30): Proxy-NCA training epochs" in out
    assert "--option fid (bool, default true): compute FID" in out
    run = ["run", "--methods", "original", "--protocol", "typed", "--option"]
    assert main([*run, "detectr=dlib-hog"]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'detectr' for protocol typed; did you mean 'detectors'?" in err
    assert main([*run, "pnca_epochs=abc"]) == 2
    assert "option pnca_epochs=abc: expected an integer" in capsys.readouterr().err
