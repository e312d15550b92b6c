"""Run files (anonbench.runfile): the shipped ones validate, every mistake is one line naming
the file and the key path, the resolved form reads back the same, and a run file with two
protocols runs into one folder (one results.csv, one run.json recording the run file)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from anonbench import runfile
from anonbench.errors import AnonbenchError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FIXTURES = Path(__file__).parent / "fixtures"

GOOD = """\
title = "two protocols on the fixtures"
seed = 0
workers = 1
methods = ["original", "blur17"]

[evaluators]
detectors = ["dlib-hog"]
landmarkers = "dlib-68"

[protocols.lfw]
folds = 1

[protocols.celeba]
data = "celeba:DATA"
recognizers = ["dlib-resnet"]
"""


def _write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("name", ["quick.toml", "ci.toml", "ciagan-cvpr2020.toml"])
def test_the_shipped_run_files_validate(name):
    rf = runfile.load(CONFIGS / name)
    assert rf.protocols and rf.methods
    # every protocol entry becomes a RunConfig into the file's one folder
    assert {c.out for c in rf.configs()} == {rf.settings["out"]}


def test_the_paper_file_covers_its_tables():
    rf = runfile.load(CONFIGS / "ciagan-cvpr2020.toml")
    assert [p.protocol for p in rf.protocols] == ["celeba", "landmark-attack", "faceswap", "lfw"]
    labels = [m.label for m in rf.methods]
    for m in ("original", "blur9", "blur17", "pixelate8", "pixelate16", "mask", "ciagan"):
        assert m in labels
    # both GAN baselines ship weights: plain methods, not optional
    assert not [m.label for m in rf.methods if m.optional]
    assert "pix2pix" in labels and "cyclegan" in labels
    celeba = rf.protocols[0]
    assert celeba.options["detectors"] == "dlib-hog,retinaface" and celeba.options["fid"] is True


def test_resolved_form_reads_back_the_same(tmp_path):
    rf = runfile.load(_write(tmp_path, GOOD))
    again = runfile.from_dict(runfile.toml_module().loads(rf.to_toml()), source="again")
    assert again.to_dict() == rf.to_dict()
    # evaluators reach the protocols that take them, every option explicit and typed
    lfw, celeba = rf.protocols
    assert "detectors" not in lfw.options and lfw.options["folds"] == 1
    assert celeba.options["detectors"] == "dlib-hog" and celeba.options["landmarkers"] == "dlib-68"
    assert celeba.options["recognizers"] == "dlib-resnet" and celeba.options["fid"] is True
    assert rf.settings["out"] == "runs/exp"  # default: named after the file


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("seedd = 1\n", "seedd (line 1): unknown key; did you mean 'seed'?"),
        ('seed = "zero"\n', "seed (line 1): expected an integer, got a string ('zero')"),
        ("workers = 0\n", "workers (line 1): expected an integer >= 1"),
        ('executor = "slurm"\n', "executor (line 1): expected one of local, ray"),
        # checked when the file is loaded (--print-config too), not when the run starts
        ('device = "tpu"\n', "device (line 1): expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("[protocols.lfw]\ndetectr = 1\n", "protocols.lfw.detectr (line 3): protocol lfw takes"),
        ('[protocols.lfw]\nfolds = "one"\n', "protocols.lfw.folds (line 3): expected an integer"),
        ("[protocols.lfw]\nfolds = -1\n", "protocols.lfw.folds (line 3): option folds=-1"),
        ('[protocols.lfw]\nembedder = "dlb"\n', "protocols.lfw.embedder (line 3): unknown "),
        ("[protocols.lfv]\n", "protocols.lfv (line 2): unknown protocol 'lfv'; did you mean"),
        ('[evaluators]\ndetectors = "hog"\n', "evaluators.detectors (line 4): unknown detector"),
        ('[evaluators]\nlandmarkers = "dlib-68"\n', "no protocol of this file takes it"),
        # numpy and torch seeds take 32 bits: the KID step would fail hours in
        ("seed = 4294967296\n", "seed (line 1): expected an integer <= 4294967295"),
        # "" silently meant the default folder / the embedded sample
        ('out = ""\n', "out (line 1): expected a non-empty string"),
        ('[protocols.lfw]\ndata = ""\n', "protocols.lfw.data (line 3): expected a non-empty"),
        # values only the protocol understands, refused with the others (they failed at the
        # protocol's start, after the earlier protocols had run)
        ('[protocols.lfw]\nreversal = "bogus"\n', "protocols.lfw.reversal (line 3): reversal="),
        (
            "[protocols.celeba]\ntest_fraction = 1.0\n",
            "protocols.celeba.test_fraction (line 3): option test_fraction=1: expected a number "
            "between 0 and 1",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_file_and_key(tmp_path, change, where):
    base = 'methods = ["original"]\n'
    if not change.startswith("[protocols."):
        base += "[protocols.lfw]\n"
    p = _write(tmp_path, change + base if not change.startswith("[") else base + change)
    with pytest.raises(AnonbenchError) as e:
        runfile.load(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}: ")
    assert where in msg, msg


@pytest.mark.parametrize(
    ("methods", "where"),
    [
        (
            '["orignal"]',
            "methods[0].name (line 1): unknown method 'orignal'; did you mean 'original'?",
        ),
        ('[{ name = "ciagan", label = "x" }]', "methods[0].label (line 1): only a folder method"),
        ('[{ folder = "d", checkpoint = "c" }]', "methods[0].checkpoint (line 1): a folder method"),
        (
            '[{ name = "blur9", protocols = ["celeba"] }]',
            "methods[0].protocols (line 1): no protocol",
        ),
        ('["blur9", "blur9"]', "methods[1] (line 1): the label 'blur9' is given twice"),
        (
            '[{ name = "blur9", optional = "yes" }]',
            "methods[0].optional (line 1): expected true or",
        ),
        ("[]", "methods (line 1): expected a non-empty list"),
        ('[{ name = "blur9", protocols = [] }]', "methods[0].protocols (line 1): an empty list"),
        ('[{ name = "" }]', "methods[0].name (line 1): expected a non-empty string"),
    ],
)
def test_method_mistakes_name_the_list_item(tmp_path, methods, where):
    p = _write(tmp_path, f"methods = {methods}\n[protocols.lfw]\n")
    with pytest.raises(AnonbenchError) as e:
        runfile.load(p)
    assert where in str(e.value), str(e.value)


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path):
    p = _write(tmp_path, 'methods = ["original"]\n[protocols.lfw]\nfolds = \n')
    with pytest.raises(AnonbenchError) as e:
        runfile.load(p)
    assert str(e.value).startswith(f"{p}: not valid TOML: ") and "line 3" in str(e.value)


def test_a_run_file_needs_protocols_and_methods(tmp_path):
    with pytest.raises(AnonbenchError, match="protocols: no protocol"):
        runfile.load(_write(tmp_path, 'methods = ["original"]\n'))
    with pytest.raises(AnonbenchError, match="methods: no methods"):
        runfile.load(_write(tmp_path, "[protocols.lfw]\n"))


def test_method_subsets_and_one_entry_per_protocol(tmp_path):
    text = (
        'methods = ["original", { name = "blur9", protocols = ["celeba"] }]\n'
        "[protocols.lfw]\n[protocols.celeba]\nfid = false\n"
    )
    rf = runfile.load(_write(tmp_path, text))
    a, b = rf.configs()
    assert (a.protocol, b.protocol) == ("lfw", "celeba")
    assert a.methods == ["original"] and b.methods == ["original", "blur9"]
    # a second lfw entry (another embedder) would overwrite the first's scores/lfw/ files and
    # skip records in the one folder: refused, naming both entries
    two = (
        'methods = ["original"]\n[protocols.lfw]\n[protocols.lfw-mmod]\nprotocol = "lfw"\n'
        'embedder = "dlib-resnet-mmod"\n'
    )
    with pytest.raises(AnonbenchError, match=r"protocols.lfw-mmod \(line 3\): a second lfw entry"):
        runfile.load(_write(tmp_path, two))


def test_optional_methods_that_cannot_be_built_are_unavailable(tmp_path):
    text = (
        'methods = ["original", { name = "cyclegan-masked", optional = true },'
        ' { label = "mine", folder = "no/such/dir", optional = true }]\n[protocols.lfw]\n'
    )
    rf = runfile.load(_write(tmp_path, text))
    gone = runfile.check_available(rf)
    assert set(gone) == {"cyclegan-masked", "mine"}
    assert "cyclegan-masked weights" in gone["cyclegan-masked"]
    assert "no such folder" in gone["mine"]
    rf.unavailable = gone
    (cfg,) = rf.configs()
    assert cfg.methods == ["original"]
    assert cfg.run_file["unavailable"] == gone  # recorded in run.json


def test_two_protocols_run_into_one_folder(tmp_path, capsys):
    """lfw_tiny (lfw) and celeba_small (celeba, cheap options) from one run file: one
    results.csv with both protocols, run.json recording the run file for each, a report with
    a section per protocol; the rerun skips everything; cyclegan-masked (optional, no weights) is
    reported unavailable and the run goes on."""
    text = GOOD.replace("DATA", str(FIXTURES / "celeba_small")).replace(
        "[protocols.lfw]\n", f'[protocols.lfw]\ndata = "lfw:{FIXTURES / "lfw_tiny"}"\n'
    )
    text = text.replace('"blur17"]', '"blur17", { name = "cyclegan-masked", optional = true }]')
    text += "max_per_identity = 2\npnca_epochs = 1\nfid = false\nkid = false\n"
    p = _write(tmp_path, f'out = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n' + text)
    out = runfile.run_file(runfile.load(p), quiet=True)
    assert out == tmp_path / "run"
    res = pd.read_csv(out / "results.csv")
    assert set(res["protocol"]) == {"lfw", "celeba"}
    assert set(res["method"]) == {"original", "blur17"}
    info = json.loads((out / "run.json").read_text())
    runs = info["runs"]
    assert [r["protocol"]["name"] for r in runs] == ["lfw", "celeba"]
    for r in runs:
        assert r["config"]["run_file"]["source"] == str(p)
        assert "cyclegan-masked" in r["config"]["run_file"]["unavailable"]
    html = (out / "report.html").read_text()
    assert "<h2>lfw" in html and "<h2>celeba" in html
    assert "cyclegan-masked: unavailable" in capsys.readouterr().err
    runfile.run_file(runfile.load(p), quiet=True)
    assert capsys.readouterr().out.count("skipped ") == 4  # 2 methods x 2 protocols


def test_every_entry_is_checked_before_the_first_runs(tmp_path):
    """A mistake in the second entry (missing data, a method that takes no checkpoint) is one
    line naming the entry before anything runs; it was found after the first protocol ran."""
    lfw = f'[protocols.lfw]\ndata = "lfw:{FIXTURES / "lfw_tiny"}"\nfolds = 1\n'
    head = f'out = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\nworkers = 1\n'
    bad_data = '[protocols.celeba]\ndata = "celeba:/no/such/folder"\n'
    p = _write(tmp_path, head + 'methods = ["original"]\n' + lfw + bad_data)
    with pytest.raises(AnonbenchError) as e:
        runfile.run_file(runfile.load(p), quiet=True)
    assert str(e.value).startswith(f"{p}: protocols.celeba: data root not found")
    methods = 'methods = ["original", { name = "blur9", checkpoint = "x.pt" }]\n'
    p = _write(tmp_path, head + methods + lfw)
    with pytest.raises(AnonbenchError, match="method 'blur9' does not take checkpoint"):
        runfile.run_file(runfile.load(p), quiet=True)
    assert not (tmp_path / "run").exists()


PAPER = CONFIGS / "ciagan-cvpr2020.toml"


def test_flags_override_the_file():
    rf = runfile.load(PAPER)
    x = runfile.with_flags(
        rf,
        {
            "protocol": "lfw",
            "data": "lfw:DIR",
            "seed": 3,
            "workers": 1,
            "checkpoint": ["cyclegan=cg/last.pt"],
            "option": ["lfw.folds=2"],
            "compile": False,  # a switch not given leaves the file's value
        },
    )
    assert [p.key for p in x.protocols] == ["lfw"]
    assert x.protocols[0].data == "lfw:DIR" and x.protocols[0].options["folds"] == 2
    assert (x.settings["seed"], x.settings["workers"]) == (3, 1)
    assert x.settings["device"] == "auto"  # not given: the file's
    cg = next(m for m in x.methods if m.label == "cyclegan")
    assert cg.checkpoint == "cg/last.pt"  # the file's entry, with weights
    # --option KEY without an entry: every entry that takes it
    y = runfile.with_flags(rf, {"option": ["pnca_epochs=2"], "methods": "original,mask"})
    assert [p.options.get("pnca_epochs") for p in y.protocols] == [2, 2, 2, None]
    assert [m.label for m in y.methods] == ["original", "mask"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"option": ["lfw.fid=0"]}, "--option lfw.fid=0: protocol lfw takes no 'fid'"),
        ({"option": ["celeba.fid=maybe"]}, "--option celeba.fid=maybe: option fid=maybe"),
        ({"option": ["nosuch=1"]}, "--option nosuch=1: no protocol of this run takes"),
        ({"option": ["lfv.folds=1"]}, "--option lfv.folds=1: no protocol 'lfv' in this run"),
        ({"data": "x"}, "--data with a run file of 4 protocols"),
        ({"checkpoint": ["mask2=a"]}, "--checkpoint mask2=a: mask2 is not among the methods"),
        ({"methods": "orignal"}, "--methods: unknown method 'orignal'"),
        ({"protocol": "lfv"}, "--protocol lfv: neither an entry of this run file nor a"),
        ({"device": "tpu"}, "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
        ({"folds": 2, "option": ["lfw.folds=1"]}, "--folds 2 and --option lfw.folds=1 disagree"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_flag(flags, message):
    with pytest.raises(AnonbenchError) as e:
        runfile.with_flags(runfile.load(PAPER), flags)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_print_config_prints_a_run_file(capsys):
    flags = {"methods": "original,blur17", "protocol": "lfw", "option": ["folds=2"]}
    assert runfile.command({**flags, "print_config": True}) == 0
    text = capsys.readouterr().out
    rf = runfile.from_dict(runfile.toml_module().loads(text), source="printed")
    assert rf.to_dict() == runfile.from_flags(flags).to_dict()
    assert rf.protocols[0].options["folds"] == 2 and rf.settings["out"] == "runs/lfw-lfw-sample"


def test_dump_toml_reads_back_tricky_values():
    d = {
        "title": 'quotes " and \\ backslash, tab\t, ünïcode ✓',
        "seed": 0,
        "compile": False,
        "methods": ["original", {"label": "a b", "folder": "C:\\out\\dp2"}],
        "protocols": {"lfw": {"protocol": "lfw", "folds": 1, "x": 0.25, "names": ["a", "b"]}},
    }
    assert runfile.toml_module().loads(runfile.dump_toml(d)) == d


def test_methods_as_an_array_of_tables(tmp_path):
    text = '[[methods]]\nname = "original"\n[[methods]]\nname = "blur9"\n[protocols.lfw]\n'
    rf = runfile.load(_write(tmp_path, text))
    assert [m.item for m in rf.methods] == ["original", "blur9"]


# -- the command line (anonbench run --config FILE) -------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('seedd = 1\nmethods = ["original"]\n[protocols.lfw]\n', "seedd (line 1): unknown key"),
        ('seed = "0"\nmethods = ["original"]\n[protocols.lfw]\n', "seed (line 1): expected an"),
        ('methods = ["original"]\n[protocols.lfw]\nfid = true\n', "protocols.lfw.fid (line 3)"),
    ],
)
def test_cli_a_bad_run_file_is_one_line_and_exit_2(tmp_path, capsys, text, key):
    from anonbench.cli import main

    p = _write(tmp_path, text)
    assert main(["run", "--config", str(p), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"anonbench: error: {p}: {key}"), err
    assert not (tmp_path / "run").exists()


def test_cli_print_config_applies_the_flags(capsys):
    from anonbench.cli import main

    argv = ["run", "--config", str(CONFIGS / "quick.toml"), "--print-config"]
    assert main([*argv, "--workers", "1", "--option", "lfw.folds=1", "--seed", "2"]) == 0
    rf = runfile.from_dict(runfile.toml_module().loads(capsys.readouterr().out), "printed")
    assert (rf.settings["workers"], rf.settings["seed"]) == (1, 2)
    assert rf.settings["batch_size"] == 32 and rf.settings["out"] == "runs/quick"  # the file's
    assert rf.protocols[0].options["folds"] == 1
    assert main(["run", "--protocol", "lfw"]) == 2  # no --config: --methods is needed
    assert "--methods and --protocol, or --config" in capsys.readouterr().err


def test_cli_runs_a_run_file(tmp_path, capsys):
    from anonbench.cli import main

    text = f'methods = ["original", "blur17"]\n[protocols.lfw]\ndata = "lfw:{FIXTURES}/lfw_tiny"\n'
    p = _write(tmp_path, text)
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["run", "--config", str(p), "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    assert main([*argv, "--option", "lfw.folds=1", "--workers", "1"]) == 0
    info = json.loads((out / "run.json").read_text())
    rf = info["config"]["run_file"]
    assert rf["source"] == str(p) and rf["protocols"]["lfw"]["folds"] == 1
    assert rf["out"] == str(out) and info["config"]["options"]["folds"] == 1
    # a plain run takes --option PROTOCOL.KEY too, for its one protocol
    plain = [
        "run",
        "--methods",
        "original",
        "--protocol",
        "lfw",
        "--data",
        f"lfw:{FIXTURES}/lfw_tiny",
    ]
    plain += ["--option", "lfw.folds=1", "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    assert main(plain) == 0
    assert "skipped original" in capsys.readouterr().out
