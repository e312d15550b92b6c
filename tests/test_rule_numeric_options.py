"""Rule 8 of issue 20: every numeric option is validated at parse time, the same way in every
command (one set of argparse type functions, anonbench.argtypes): workers capped at the core
count everywhere, seed >= 0, --max-pixels a whole number >= 0 (0: no limit), the video options,
and the protocols' typed --option values (finite, within the declared bounds).

The cases are generated: every (command, option) pair that exists, with every bad value of the
option, must exit 2 with one line and no traceback, before any work (nothing is created); the
good values parse.
"""

from __future__ import annotations

import argparse
import os

import pytest

from anonbench import argtypes
from anonbench.cli import build_parser, main
from anonbench.errors import AnonbenchError

# the words a command needs before its options parse
BASE = {
    "run": ["run", "--methods", "blur9", "--protocol", "lfw"],
    "produce": ["produce", "--method", "blur9", "--out", "OUT"],
    "anonymize": ["anonymize", "--method", "blur9", "--input", "IN", "--output", "OUT"],
    "quality": ["quality", "--out", "OUT"],
}
NOT_NUMBERS = ["nan", "inf", "-inf", "x", "", "1e999"]
# option -> (commands, bad values, good values -> parsed value)
OPTIONS: dict[str, tuple[tuple[str, ...], list[str], dict[str, object]]] = {
    "--workers": (("run", "produce", "quality"), ["0", "-1", "1.5", *NOT_NUMBERS], {"1": 1}),
    "--heldout": (("quality",), ["0", "-1", "1.5", *NOT_NUMBERS], {"1": 1, "24": 24}),
    "--threshold": (("anonymize",), NOT_NUMBERS, {"-0.5": -0.5, "0": 0.0, "0.9": 0.9}),
    "--seed": (
        ("run", "anonymize"),
        ["-1", "0.5", str(2**32), *NOT_NUMBERS],
        {"0": 0, "7": 7, str(2**32 - 1): 2**32 - 1},
    ),
    "--max-pixels": (
        ("run", "produce", "anonymize"),
        ["-1", "0.5", "-0.5", "1e6.5", *NOT_NUMBERS],
        {"0": 0, "1": 1, "64e6": 64_000_000, "1000000": 1_000_000},
    ),
    "--batch-size": (("run", "produce"), ["0", "-3", "2.5", *NOT_NUMBERS], {"1": 1, "64": 64}),
    "--folds": (("run",), ["0", "-3", "1.5", *NOT_NUMBERS], {"1": 1}),
    "--max-retries": (("run",), ["-1", "0.5", *NOT_NUMBERS], {"0": 0, "3": 3}),
    "--max-frames": (("anonymize",), ["0", "-1", "1.5", *NOT_NUMBERS], {"1": 1, "90": 90}),
    "--smooth-lam": (("anonymize",), ["-1", "-0.1", *NOT_NUMBERS], {"0": 0.0, "2.5": 2.5}),
    "--max-gap": (("anonymize",), ["-1", "0.5", *NOT_NUMBERS], {"0": 0, "10": 10}),
    "--identity": (("anonymize",), ["-1", "0.5", *NOT_NUMBERS], {"0": 0, "3": 3}),
    # not a number, but validated the same way: a registered detector's name (issue 24)
    "--analysis-detector": (
        ("run", "produce", "anonymize"),
        ["retinafce", "", "x"],
        {"retinaface": "retinaface", "dlib-hog": "dlib-hog"},
    ),
}


def _cases(good: bool) -> list[tuple[str, str, str, object]]:
    out = []
    for opt, (commands, bad, ok) in OPTIONS.items():
        for cmd in commands:
            if good:
                out += [(cmd, opt, text, value) for text, value in ok.items()]
            else:
                out += [(cmd, opt, text, None) for text in bad]
    return out


def _argv(tmp_path, cmd: str, opt: str, text: str) -> list[str]:
    words = [str(tmp_path / w) if w in ("OUT", "IN") else w for w in BASE[cmd]]
    return [*words, f"{opt}={text}"]


@pytest.mark.parametrize("cmd, opt, text, _", _cases(good=False))
def test_bad_value_is_one_line_exit_2_before_any_work(tmp_path, capsys, cmd, opt, text, _):
    with pytest.raises(SystemExit) as e:
        main(_argv(tmp_path, cmd, opt, text))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {opt}" in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("cmd, opt, text, value", _cases(good=True))
def test_good_value_parses(tmp_path, cmd, opt, text, value):
    args = build_parser().parse_args(_argv(tmp_path, cmd, opt, text))
    assert getattr(args, opt.lstrip("-").replace("-", "_")) == value


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_numeric_option_of_every_command_uses_one_type_function():
    """No command parses a number with bare int/float, and an option shared by commands has
    the same type function in each."""
    types: dict[str, set[object]] = {}
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if not action.option_strings:
                continue
            assert action.type not in (int, float), (name, action.option_strings)
            if getattr(action.type, "__module__", "") == argtypes.__name__:
                types.setdefault(max(action.option_strings, key=len), set()).add(action.type)
    assert all(len(t) == 1 for t in types.values()), types
    # and the generator above covers every numeric option there is
    assert set(types) == set(OPTIONS)


@pytest.mark.parametrize("cmd", ["run", "produce", "quality"])
def test_workers_are_capped_at_the_core_count_everywhere(tmp_path, capsys, cmd):
    cores = os.cpu_count() or 1
    args = build_parser().parse_args(_argv(tmp_path, cmd, "--workers", "10000"))
    assert args.workers == cores
    assert f"--workers 10000 > {cores} cores: using {cores}" in capsys.readouterr().err
    assert argtypes.cap_workers(cores) == cores


# -- protocol options (--option KEY=VALUE) ------------------------------------------------------


def _numeric_protocol_options() -> list[tuple[str, object]]:
    from anonbench.registry import PROTOCOLS

    out = []
    for name in PROTOCOLS.names():
        for opt in getattr(PROTOCOLS.entry(name).factory, "options", ()):
            if opt.type in (int, float):
                out.append((name, opt))
    return out


def _bad_protocol_values(opt) -> list[str]:
    bad = ["nan", "inf", "-inf"]
    if opt.minimum is not None:
        bad += [str(opt.minimum - 1), str(opt.minimum - 3)]
    if opt.maximum is not None:
        bad += [str(opt.maximum + 1)]
    if opt.type is int:
        bad += ["1.5"]
    return bad


PROTOCOL_CASES = [
    (proto, opt, text)
    for proto, opt in _numeric_protocol_options()
    for text in _bad_protocol_values(opt)
]


@pytest.mark.parametrize(
    "proto, opt, text", PROTOCOL_CASES, ids=[f"{p}-{o.name}={t}" for p, o, t in PROTOCOL_CASES]
)
def test_protocol_option_out_of_range_is_refused(proto, opt, text):
    from anonbench.options import parse_options
    from anonbench.registry import PROTOCOLS

    options = PROTOCOLS.entry(proto).factory.options
    with pytest.raises(AnonbenchError, match=f"option {opt.name}="):
        parse_options(options, {opt.name: text}, f"protocol {proto}")
    # its default and its bounds themselves are accepted
    parse_options(options, {opt.name: str(opt.default)}, f"protocol {proto}")


def test_protocol_cases_include_the_listed_one():
    assert any((p, o.name, t) == ("lfw", "folds", "-3") for p, o, t in PROTOCOL_CASES)


@pytest.mark.parametrize("text", ["-3", "nan", "1.5"])
def test_run_option_folds_is_refused_before_any_work(tmp_path, capsys, text):
    out = tmp_path / "out"
    code = main(
        [
            *("run", "--methods", "blur9", "--protocol", "lfw", "--out", str(out)),
            *("--cache-dir", str(tmp_path / "cache"), "--option", f"folds={text}"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"option folds={text}:" in err
    assert list(tmp_path.iterdir()) == []


TRAINER_CASES = [
    (opt, text)
    for opt, bad in {
        "--epochs": ["0", "-1", "1.5", *NOT_NUMBERS],
        "--seed": ["-1", str(2**32), *NOT_NUMBERS],
        "--test-fraction": ["-0.1", "1.5", *NOT_NUMBERS],
    }.items()
    for text in bad
]


@pytest.mark.parametrize("opt, text", TRAINER_CASES)
def test_identifier_trainer_options_the_same_way(tmp_path, capsys, opt, text):
    """`anonbench train identifier` parses its numbers with the same type functions."""
    from anonbench.faces.pnca_options import build_parser as trainer_parser

    parser = trainer_parser()
    for action in parser._actions:
        assert action.type not in (int, float), action.option_strings
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--data", "x", "--out", str(tmp_path / "o"), f"{opt}={text}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {opt}" in err, err
