"""CIAGAN learns to use its identity input (issue 10).

The slow tests train the paper's architecture, small (methods/ciagan/learning.py
LEARNING_CONFIG: 32 px, widths 8), twice with different seeds on synthetic faces whose
identity is known. They check that the target identity changes the face (with the recipe of
the shipped checkpoint, v1, the generator ignores its one-hot and this fails) and that the
identity net's loss falls; and, marked xfail (strict) because no recipe reaches it in this
CPU budget yet, that the same target looks alike across seeds and shows the target's colour.
Numbers: MODEL_CARD.md, "Training recipe v2".

The fast tests pin the recipe's parts: targets never the source's identity, the identity
branch's init that lets the one-hot through, the instrumentation columns, old checkpoints
resuming with the old recipe, and the anonymizer's dtype / compile options.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anonbench.errors import AnonbenchError
from anonbench.methods.ciagan.learning import LEARNING_CONFIG, identity_effect, synthetic_faces
from anonbench.methods.ciagan.model import Generator
from anonbench.methods.ciagan.pretrain import save_partial
from anonbench.methods.ciagan.train import TrainConfig, Trainer
from anonbench.methods.landmark_data import PairSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LEARNING_STEPS = 200


def _train(seed: int, data, steps: int = LEARNING_STEPS) -> tuple[Trainer, list[dict]]:
    tr = Trainer(TrainConfig(**{**LEARNING_CONFIG, "seed": seed}), data, torch.device("cpu"))
    if not tr.pnca_done:
        tr.pretrain_identity()
    return tr, [tr.step() for _ in range(steps)]


def _one_thread_train(seed: int) -> tuple[Trainer, list[dict]]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run outside the per-test thread fixture
    try:
        return _train(seed, synthetic_faces())
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run0() -> tuple[Trainer, list[dict]]:
    """The default recipe trained on 6 synthetic identities x 24 faces, seed 0."""
    return _one_thread_train(0)


@pytest.fixture(scope="module")
def run1() -> tuple[Trainer, list[dict]]:
    return _one_thread_train(1)


def _effect(tr: Trainer, other: Trainer | None = None) -> dict[str, float]:
    """identity_effect on one face of each identity (not the first: the sample grid's)."""
    data = synthetic_faces()
    ids = list(range(data.num_identities))
    src = torch.tensor([int(torch.nonzero(data.labels == c)[1]) for c in ids])
    eff = identity_effect(tr.G, data, src, ids, identity_net=tr.S, other=other.G if other else None)
    print("identity effect", {k: round(v, 4) for k, v in eff.items()})
    return eff


@pytest.mark.slow
def test_identity_input_matters_after_training(run0):
    """The collapse: with recipe v1 the target changes the face by 0.024 (pixels in [0, 1],
    inside the mask) while the face moves 0.46 from the original (ratio 0.05; the shipped
    checkpoint: 0.0001 against 0.176). Recipe v2: 0.31 against 0.46 (0.67). 200 steps."""
    tr, rows = run0
    eff = _effect(tr)
    assert eff["target_diff"] > 0.25 * eff["source_diff"], eff
    # the identity net keeps learning (contrastive loss, first vs last 50 steps)
    first = np.mean([r["identity"] for r in rows[:50]])
    last = np.mean([r["identity"] for r in rows[-50:]])
    assert last < 0.8 * first, (first, last)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="open (issue 10): after a few hundred CPU steps the target changes the face, but not "
    "into the target's look: another training seed changes it more (300 steps: seed_diff 0.42 "
    "> target_diff 0.31) and the face's colour is the target's hardly more often than chance. "
    "Drop this marker when a recipe passes.",
)
def test_same_target_looks_alike_across_seeds(run0, run1):
    eff = _effect(run0[0], run1[0])
    # another target, another face; the same target in a run with another seed: alike
    assert eff["target_diff"] > 2 * eff["seed_diff"], eff
    # the face shows the target: its colour is nearest to the target's real faces
    assert eff["colour_target_acc"] >= 0.5, eff  # chance 1/6


# -- the recipe's parts, fast --------------------------------------------------------------------


def test_targets_are_never_the_source_identity():
    labels = torch.arange(30) // 3
    s = PairSampler(labels, 10)
    g = torch.Generator().manual_seed(0)
    src, tgt = s.sample_different(2000, g)
    assert (labels[src] != labels[tgt]).all()
    # every other identity is drawn, about equally
    counts = torch.bincount(labels[tgt], minlength=10).float()
    assert counts.min() > 0.7 * counts.mean()


def test_trainer_generator_pairs_follow_the_recipe():
    data = synthetic_faces(n_ids=3, per_id=2)
    for sampling, same in (("different", 0.0), ("official", None)):
        cfg = TrainConfig(
            **{**LEARNING_CONFIG, "identity_pretrain": "none", "target_sampling": sampling}
        )
        tr = Trainer(cfg, data, torch.device("cpu"))
        d = tr.draw()
        frac = (data.labels[d["gen_src"]] == data.labels[d["gen_tgt"]]).float().mean().item()
        fake = (data.labels[d["fake_src"]] == data.labels[d["fake_tgt"]]).float().mean().item()
        if same is not None:
            assert frac == fake == same
        else:  # official: at least the second half of every batch is the same identity
            assert frac >= 0.5 and fake >= 0.5


def _code_spread(g: Generator) -> float:
    """How much the 4 x 4 identity code varies between identities, relative to how much it
    varies across the map: std over identities / std over positions."""
    with torch.no_grad():
        z = g.identity(torch.eye(g.num_identities))
    return float(z.std(0).mean() / z.std((2, 3)).mean())


def test_identity_init_lets_the_one_hot_through():
    """PyTorch's default init of the 7 FC layers leaves the one-hot ~1% of the identity code
    (the v1 collapse's root); recipe v2's init makes it comparable to the code itself."""
    from anonbench.methods.ciagan.train import init_identity_branch

    torch.manual_seed(0)
    g = Generator(148, 32, 32)  # paper widths and identity count, small image
    default = _code_spread(g)
    init_identity_branch(g)
    kaiming = _code_spread(g)
    assert default < 0.05 and kaiming > 0.3, (default, kaiming)
    tr = Trainer(
        TrainConfig(**{**LEARNING_CONFIG, "identity_pretrain": "none"}),
        synthetic_faces(n_ids=3, per_id=2),
        torch.device("cpu"),
    )
    assert _code_spread(tr.G) > 0.3  # the default recipe uses it


def test_step_logs_the_instrumentation():
    from anonbench.methods.ciagan.train import LOSS_COLUMNS

    data = synthetic_faces(n_ids=3, per_id=4)
    tr = Trainer(
        TrainConfig(**{**LEARNING_CONFIG, "identity_pretrain": "none"}), data, torch.device("cpu")
    )
    row = tr.step()
    assert list(row) == LOSS_COLUMNS
    assert all(math.isfinite(v) for v in row.values())
    assert row["gen_same_frac"] == 0.0 and 0 <= row["id_same_frac"] <= 1
    assert row["id_dist_same"] > 0 and row["id_dist_diff"] > 0
    assert 0 < row["grad_g_onehot"] <= row["grad_g_identity"] <= row["grad_g_total"]
    assert 0 <= row["gen_out_of_range"] <= 1


def test_old_checkpoints_resume_with_the_old_recipe():
    from anonbench.methods.ciagan.train import LEGACY_RECIPE
    from anonbench.methods.gan_train import merge_resume

    saved = TrainConfig().to_dict()
    for k in LEGACY_RECIPE:
        del saved[k]  # a checkpoint written before the recipe fields existed
    merged = merge_resume(saved, TrainConfig(), set(), LEGACY_RECIPE)
    assert {k: getattr(merged, k) for k in LEGACY_RECIPE} == LEGACY_RECIPE
    new = merge_resume(TrainConfig().to_dict(), TrainConfig(), set(), LEGACY_RECIPE)
    assert new.target_sampling == "different" and new.identity_init == "kaiming"


# -- the anonymizer's precision and compile options ----------------------------------------------


def _faces(n: int = 6):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_ciagan import _batch

    return _batch(n)


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_the_shipped_checkpoint():
    """bf16 autocast against fp32, the shipped generator, 6 faces, 3 targets. Measured on CPU
    (torch 2.14.1, generators sha256 35fc6753 and b899e2e5): mean |diff| inside the mask
    0.0024-0.0034, 99.9th percentile 0.013-0.028, max 0.018-0.044 (pixels in [0, 1]), while
    changing the target identity moves pixels by 0.11-0.21 on average. Bounds are about three
    times those; the single worst pixel is bounded loosely because it moves with every
    retrained checkpoint (35fc6753 put one pixel at 0.044, over the old 0.04 bound). Outside
    the mask nothing may differ."""
    from anonbench.methods.ciagan.anonymizer import CIAGAN

    b = _faces()
    inside = b.masks.expand(-1, 3, -1, -1) > 0
    m32, m16 = CIAGAN(dtype="fp32"), CIAGAN(dtype="bf16")
    assert m32.config()["dtype"] == "fp32" and m16.config()["dtype"] == "bf16"
    assert m32.config()["compile"] is False
    by_target = {}
    for t in (0, 70, 140):
        o32, o16 = m32.anonymize(b, targets=[t] * 6), m16.anonymize(b, targets=[t] * 6)
        by_target[t] = o32
        d = (o32 - o16).abs()[inside]
        assert d.mean() < 0.01 and d.quantile(0.999) < 0.08 and d.max() < 0.15, (t, d.max())
        assert torch.equal(o32[~inside], o16[~inside])
        assert d.max() > 0  # bf16 really ran
        # bf16 must not change a face nearly as much as choosing another identity does
        if t:
            moved = (by_target[t] - by_target[0]).abs()[inside].mean()
            assert d.mean() < 0.1 * moved, (t, d.mean(), moved)


def test_dtype_and_compile_options_are_checked():
    from anonbench.methods.ciagan.anonymizer import CIAGAN

    assert CIAGAN().config()["dtype"] == "fp32"  # auto on CPU
    with pytest.raises(AnonbenchError, match="dtype must be one of"):
        CIAGAN(dtype="fp16")
    with pytest.raises(AnonbenchError, match="compile=True needs a CUDA device"):
        CIAGAN(compile=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_bf16_generator_on_cuda():
    from anonbench.methods.ciagan.anonymizer import CIAGAN

    b = _faces(4)
    ref = CIAGAN(device="cuda", dtype="fp32").anonymize(b, targets=[3] * 4)
    out = CIAGAN(device="cuda", dtype="bf16", compile=True).anonymize(b, targets=[3] * 4)
    inside = b.masks.expand(-1, 3, -1, -1) > 0
    d = (ref - out).abs()
    assert d[inside].mean() < 0.005 and d[inside].max() < 0.04
    assert torch.equal(ref[~inside], out[~inside])


def test_init_generator_warm_starts_only_the_generator(tmp_path):
    """--init-generator (a training folder lost with its machine): the generator takes the
    exported weights (fp16 pieces included), the critic is fresh; other data is one line."""
    from anonbench.methods.ciagan import checkpoint as ckpt_io

    data = synthetic_faces(n_ids=3, per_id=2)
    cfg = {**LEARNING_CONFIG, "identity_pretrain": "none"}
    src = Trainer(TrainConfig(**{**cfg, "seed": 5}), data, torch.device("cpu"))
    raw = tmp_path / "raw.pt"
    ckpt_io.save_atomic(
        {
            "format": ckpt_io.FORMAT,
            "format_version": ckpt_io.FORMAT_VERSION,
            "config": TrainConfig(**cfg).to_dict(),
            "num_identities": data.num_identities,
            "img_size": cfg["img_size"],
            "identity_names": list(data.identity_names),
            "step": 7,
            "models": {"generator": src.G.state_dict()},
        },
        raw,
    )
    ckpt_io.export_generator(raw, tmp_path / "g.pt")  # fp16, as committed
    blob = (tmp_path / "g.pt").read_bytes()
    (tmp_path / "g.pt").unlink()
    (tmp_path / "g.pt.part00").write_bytes(blob)
    warm = Trainer(TrainConfig(**cfg), data, torch.device("cpu"))
    warm.warm_start(str(tmp_path / "g.pt"))  # what train() does for a new run
    cold = Trainer(TrainConfig(**cfg), data, torch.device("cpu"))
    for k, v in src.G.state_dict().items():
        w = warm.G.state_dict()[k]
        assert w.dtype == torch.float32
        assert torch.allclose(w, v, atol=1e-2, rtol=1e-2), k
    for k, v in cold.D.state_dict().items():  # the critic is the seed's fresh one
        assert torch.equal(warm.D.state_dict()[k], v), k
    other = synthetic_faces(n_ids=4, per_id=2)
    with pytest.raises(AnonbenchError, match="identities that differ"):
        Trainer(TrainConfig(**cfg), other, torch.device("cpu")).warm_start(str(tmp_path / "g.pt"))


def test_pnca_pretraining_continues_from_its_partial_state(tmp_path, monkeypatch):
    """A training stopped during Proxy-NCA pretraining (no last.pt yet) continues from
    pnca_partial.pt: the losses equal an uninterrupted pretraining's, and the file goes."""
    from anonbench.methods.ciagan import train as ciagan_train

    data = synthetic_faces(n_ids=3, per_id=4)
    cfg = TrainConfig(**{**LEARNING_CONFIG, "pnca_epochs": 10.0, "save_minutes": 1e-9})
    whole = Trainer(cfg, data, torch.device("cpu")).pretrain_identity()
    assert len(whole) >= 4
    partial = tmp_path / ciagan_train.PNCA_PARTIAL
    stopped = Trainer(cfg, data, torch.device("cpu"))
    calls = {"n": 0}
    real_views = stopped.views

    def views(idx, augment=True):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third step
        return real_views(idx, augment)

    monkeypatch.setattr(stopped, "views", views)
    with pytest.raises(KeyboardInterrupt):
        stopped.pretrain_identity(partial=partial)
    assert partial.is_file()
    again = Trainer(cfg, data, torch.device("cpu"))
    assert again.pretrain_identity(partial=partial) == whole
    assert not partial.exists()
    # a partial state of another config is ignored, not loaded
    stopped2 = Trainer(cfg, data, torch.device("cpu"))
    opt = torch.optim.Adam([torch.zeros(1)])
    save_partial(stopped2, partial, 2, torch.zeros(3, 3), opt, [])
    other = Trainer(
        TrainConfig(**{**LEARNING_CONFIG, "pnca_epochs": 10.0}), data, torch.device("cpu")
    )
    assert other.pretrain_identity(partial=partial) == whole
