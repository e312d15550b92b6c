"""`reversal=learned` on the celeba protocol (issue 24 part 3), end to end on the celeba_small
fixture: rows '<recognizer>+learned', the learning curve in the run's folder and run.json, the
restorer cached per method config, the train identities anonymized, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.metrics import reversal as R

SMALL = Path(__file__).parent / "fixtures" / "celeba_small"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(out: Path, cache: Path, capsys, method: str = "blur17", *extra: str) -> tuple[int, str]:
    argv = (
        f"run --methods {method} --protocol celeba --data-root {SMALL} --out {out} "
        f"--cache-dir {cache} --workers 1 --quiet --option detectors=dlib-hog "
        "--option recognizers=pnca,dlib-resnet --option pnca_epochs=1 --option fid=0 "
        "--option landmarkers= --option reversal_minutes=0.01"
    ).split()
    capsys.readouterr()
    rc = main([*argv, *(extra or ("--option", "reversal=learned"))])
    return rc, capsys.readouterr().err


def _restorers(cache: Path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in (cache / "restorer").glob("*.pt")}


def test_parse_reversal_learned_only_where_asked_and_all_stays_classical():
    assert R.parse_reversal("learned", learned=True) == ["learned"]
    assert R.parse_reversal("all", learned=True) == ["wiener", "richardson-lucy"]
    assert R.parse_reversal("Richardson-Lucy, learned,learned", learned=True) == [
        "richardson-lucy",
        "learned",
    ]
    with pytest.raises(R.AnonbenchError, match="expected one of none, wiener, richardson-lucy"):
        R.parse_reversal("learned")  # lfw: no train identities to learn from


def test_method_key_follows_the_method_config():
    from anonbench.registry import METHODS
    from anonbench.scorers.reversal import method_key

    keys = {method_key(METHODS.create(n)) for n in ("blur9", "blur17", "pixelate8")}
    assert len(keys) == 3
    assert method_key(METHODS.create("blur17")) == method_key(METHODS.create("blur17"))


def test_learned_rows_curve_cache_and_errors(tmp_path, capsys):
    cache = tmp_path / "cache"
    rc, err = _run(tmp_path / "a", cache, capsys)
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "a" / "results.csv")
    r1 = df[df["metric"] == "recall_at_1"].set_index("evaluator")
    for ev in ("pnca", "dlib-resnet"):  # a trained attacker and a per-image recognizer
        assert ev + "+learned" in r1.index
        assert r1.loc[ev + "+learned", "n"] == r1.loc[ev, "n"] == 9
        assert "restoration network trained on this method" in r1.loc[ev + "+learned", "note"]
    # the train identities were anonymized too (the restorer's pairs): 9 test + 9 train
    (manifest,) = cache.rglob("manifest.json")
    assert len(json.loads(manifest.read_text())["images"]) == 18
    # the learning curve: in the run's folder and in run.json
    curve = pd.read_csv(tmp_path / "a" / "learned_reversal" / "blur17.csv")
    assert list(curve.columns) == ["step", "cpu_minutes", "val_l1", "val_l1_unrestored"]
    assert curve["step"].iloc[0] == 0 and len(curve) >= 2
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    details = json.dumps(info)
    assert '"learned_reversal"' in details and '"budget_cpu_minutes": 0.01' in details
    # both reversal scorers share one restorer per method
    first = _restorers(cache)
    assert len(first) == 1

    # a second run (another folder, same cache) reuses it and gives the same rows
    rc, err = _run(tmp_path / "b", cache, capsys)
    assert rc == 0, err
    assert _restorers(cache) == first
    df2 = pd.read_csv(tmp_path / "b" / "results.csv")
    cols = ["metric", "evaluator", "value", "n"]
    assert df2[cols].equals(df[cols])
    assert (tmp_path / "b" / "learned_reversal" / "blur17.csv").read_text() == (
        tmp_path / "a" / "learned_reversal" / "blur17.csv"
    ).read_text()

    # another method config trains its own restorer
    rc, err = _run(tmp_path / "c", cache, capsys, "blur9")
    assert rc == 0, err
    assert len(_restorers(cache)) == 2 and set(first) < set(_restorers(cache))

    # a wrong value is one line, exit 2, before any work
    rc, err = _run(tmp_path / "d", cache, capsys, "blur17", "--option", "reversal=deblur")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "learned" in err, err
