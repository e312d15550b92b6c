"""landmark-attack and faceswap protocols on the small real CelebA fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from anonbench.api import Anonymizer, MethodMeta, RunContext
from anonbench.cli import main
from anonbench.data.celeba import load_celeba
from anonbench.data.images import read_rgb
from anonbench.registry import METHODS, PROTOCOLS

ROOT = Path(__file__).parent / "fixtures" / "celeba_small"


@pytest.mark.parametrize("attacker", ["pnca-landmarks", "pnca-landmark-points"])
def test_landmark_attack_runs_and_blackout_defeats_it(tmp_path, attacker):
    rc = main(
        [
            "run",
            "--methods",
            "original,mask",
            "--protocol",
            "landmark-attack",
            "--data-root",
            str(ROOT),
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--workers",
            "1",
            "--quiet",
            "--option",
            "pnca_epochs=3",
            "--option",
            f"attacker={attacker}",
        ]
    )
    assert rc == 0
    df = pd.read_csv(tmp_path / "o" / "results.csv")
    r = df.query("metric == 'recall_at_1' and evaluator == @attacker").set_index("method")
    assert 0 <= r.loc["original", "value"] <= 100
    # a black face has no landmarks: every query is a miss
    missing = df.query("metric == 'landmarks_missing'").set_index("method")
    assert missing.loc["mask", "value"] == missing.loc["mask", "n"] > 0
    assert r.loc["mask", "value"] == 0.0
    assert missing.loc["original", "value"] == 0


def test_landmark_attack_refuses_an_unknown_attacker(tmp_path, capsys):
    argv = ["run", "--methods", "original", "--protocol", "landmark-attack", "--data-root"]
    argv += [str(ROOT), "--out", str(tmp_path / "o"), "--quiet", "--option", "attacker=pnca"]
    assert main(argv) != 0
    assert "attacker='pnca'" in capsys.readouterr().err


class SwapOracle(Anonymizer):
    """A face swapper: pastes a real image of the target identity into the face mask."""

    meta = MethodMeta(identity_conditioned=True)

    def __init__(self, faces: dict[str, np.ndarray]) -> None:
        self.name = "swap-oracle"
        self.target_labels = sorted(faces)
        self.faces = faces

    def _generate(self, batch, *, targets, generator):
        imgs = [self.faces[self.target_labels[t]] for t in targets]
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def _ctx(tmp_path, proto):
    from anonbench.data.datasets import open_dataset
    from anonbench.evaluate import Originals
    from anonbench.options import parse_options

    cache = str(tmp_path / "c")
    return RunContext(
        data=open_dataset(f"celeba:{ROOT}"),
        out_dir=str(tmp_path),
        cache_dir=cache,
        options=parse_options(proto.options, {}, proto.name),
        quiet=True,
        originals=Originals(cache, quiet=True),
    )


def _score(proto, method, ctx):
    from anonbench.produce import produce

    records = proto.records(method, ctx)
    store = None
    if records:
        analyses = ctx.originals.analyze(records, "a")
        store = produce(
            method,
            method.name,
            records,
            analyses,
            cache_dir=ctx.cache_dir,
            targets=proto.targets(method, ctx),
            quiet=True,
        )
    return proto.evaluate(method, store, ctx)


def test_faceswap_flags_a_face_swapper_and_skips_others(tmp_path):
    from anonbench.protocols.celeba import load_split

    ds = load_celeba(ROOT)
    proto = PROTOCOLS.create("faceswap")
    ctx = _ctx(tmp_path, proto)
    train_ids = load_split(ctx).train_ids
    faces = {}
    for r in ds.records:  # last image of each train identity is the one pasted
        if r.identity in train_ids:
            faces[r.identity] = read_rgb(r.path)
    rows = _score(proto, SwapOracle(faces), ctx)
    by = {r["evaluator"]: r for r in rows}
    assert by["chance"]["value"] == pytest.approx(100 / len(faces))
    assert by["dlib-resnet"]["value"] > 2 * by["chance"]["value"]  # swapping is caught
    blur = METHODS.create("blur17")
    blur.name = "blur17"
    skipped = _score(proto, blur, ctx)
    assert len(skipped) == 1 and "not identity-conditioned" in skipped[0]["note"]
    assert np.isnan(skipped[0]["value"])
    # a method whose target identities the data does not hold: a skip row, not an error
    elsewhere = SwapOracle({"x1": faces[train_ids[0]], "x2": faces[train_ids[0]]})
    row = _score(proto, elsewhere, ctx)
    assert len(row) == 1 and "holds real images of 0" in row[0]["note"]


def test_faceswap_trains_pnca_on_the_train_identities(tmp_path):
    """`recognizers=pnca` (the paper's P-NCA, as configs/ciagan-cvpr2020.toml's evaluators
    give it): trained on the train identities, then scored; it stopped the paper run with
    "pnca: call fit() (or give a checkpoint) before embed()"."""
    from anonbench.options import parse_options
    from anonbench.protocols.celeba import load_split

    ds = load_celeba(ROOT)
    proto = PROTOCOLS.create("faceswap")
    ctx = _ctx(tmp_path, proto)
    ctx.options = {**parse_options(proto.options, {"recognizers": "pnca"}, proto.name)}
    ctx.options["pnca_epochs"] = 2  # the plumbing, not the attacker's strength
    train_ids = load_split(ctx).train_ids
    faces = {r.identity: read_rgb(r.path) for r in ds.records if r.identity in train_ids}
    rows = _score(proto, SwapOracle(faces), ctx)
    by = {r["evaluator"]: r for r in rows}
    assert set(by) == {"pnca", "chance"}
    assert by["pnca"]["n"] > 0 and 0 <= by["pnca"]["value"] <= 100
