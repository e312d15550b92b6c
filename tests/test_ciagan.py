"""CIAGAN: preprocessing, networks, one training step, checkpoints and exact resume, the
anonymizer's identity control and mask guarantee, and its errors. Tiny models keep every test
to a few seconds on one CPU thread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anonbench.api import FaceBatch
from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.errors import AnonbenchError
from anonbench.faces.mask import ciagan_mask
from anonbench.methods.ciagan import checkpoint as ckpt_io
from anonbench.methods.ciagan.model import (
    Critic,
    Generator,
    IdentityEncoder,
    IdentityNet,
    ResBlock,
    ResBlockDown,
    ResBlockUp,
)
from anonbench.methods.ciagan.train import TrainConfig, Trainer, contrastive_loss
from anonbench.methods.landmark_data import (
    PairSampler,
    TrainData,
    crop_boxes,
    face_canvas,
    make_views,
)
from anonbench.methods.landmark_input import (
    LINES,
    CropTransform,
    crop_image,
    draw_landmark_lines,
    official_box,
    paste_back,
)

TINY = dict(img_size=32, gen_width=8, critic_width=8, id_width=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _face_landmarks(cx: float = 125, cy: float = 120, s: float = 1.0) -> np.ndarray:
    """A plausible 68-point face (jaw, brows, nose bridge, eye corners, inner lips)."""
    lm = np.zeros((68, 2), np.float64)
    t = np.linspace(np.pi, 2 * np.pi, 17)
    lm[:17] = np.stack([cx + 50 * s * np.cos(t), cy - 10 * s - 60 * s * np.sin(t)], 1)
    lm[17:27] = np.stack([np.linspace(cx - 40 * s, cx + 40 * s, 10), np.full(10, cy - 30 * s)], 1)
    lm[27:31] = np.stack([np.full(4, cx), np.linspace(cy - 20 * s, cy + 5 * s, 4)], 1)
    lm[36:48] = np.stack([np.linspace(cx - 30 * s, cx + 30 * s, 12), np.full(12, cy - 15 * s)], 1)
    lm[39] = (cx - 10 * s, cy - 15 * s)
    lm[42] = (cx + 10 * s, cy - 15 * s)
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    lm[60:68] = np.stack([cx + 15 * s * np.cos(a), cy + 25 * s + 4 * s * np.sin(a)], 1)
    return lm


def _batch(n: int = 2) -> FaceBatch:
    imgs = [read_rgb(p) for p in sorted((sample_root() / "images").glob("*/*.jpg"))[:n]]
    lms = [_face_landmarks(125 + 3 * i, 120) for i in range(n)]
    return FaceBatch(
        images=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255,
        landmarks=torch.from_numpy(np.stack(lms).astype(np.float32)),
        masks=torch.from_numpy(np.stack([ciagan_mask(m, 250, 250) for m in lms])).unsqueeze(1),
        boxes=torch.tensor([[70.0, 60.0, 180.0, 180.0]] * n),
        keys=[f"k{i}" for i in range(n)],
    )


def _tiny_data(n_ids: int = 4, per_id: int = 2) -> TrainData:
    g = torch.Generator().manual_seed(1)
    n = n_ids * per_id
    canvas = torch.randint(0, 256, (n, 5, 144, 144), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) // per_id
    return TrainData(canvas, labels, [f"id{i}" for i in range(n_ids)], [str(i) for i in range(n)])


def _tiny_ckpt(tmp_path: Path, n_ids: int = 50, name: str = "g.pt") -> Path:
    p = tmp_path / name
    ckpt_io.save_atomic(ckpt_io.random_generator_checkpoint(n_ids, 32, 8, seed=3), p)
    return p


# -- preprocessing ------------------------------------------------------------------------------


def test_official_box_formula():
    lm = _face_landmarks()
    lm[39], lm[42] = (100.5, 90.0), (121.0, 91.0)  # centre (110, 90), h = int(5 * 20.5)
    x0, y0, x1, y1 = official_box(lm)
    h = 102
    w = int(h / 218 * 178)
    assert (x0, y0, x1, y1) == (110 - w, 90 - h, 110 + w, 90 + h)
    # a profile face (inner eye corners on top of each other) still gives a usable box
    lm[42] = lm[39] + (0.0, 12.0)
    x0, y0, x1, y1 = official_box(lm)
    assert x1 - x0 > 0 and y1 - y0 >= 2 * 5 * 12 - 2


def test_crop_pads_with_edges_and_paste_back_aligns():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    t = CropTransform(-10, -5, 90, 70, 100, 75)  # leaves the image on every side: 1:1 scale
    ref = np.pad(img, ((5, 10), (10, 10), (0, 0)), mode="edge")
    np.testing.assert_array_equal(crop_image(img, t), ref)
    # paste back: the view of an image, pasted back, lands on the image (shifts do not)
    face = read_rgb(sorted((sample_root() / "images").glob("*/*.jpg"))[0])
    lm = _face_landmarks()
    c, tr = face_canvas(face, lm)
    v = make_views(torch.from_numpy(c[None]), crop_boxes(1, None, 0, 0), 128)
    view = v.image[0].permute(1, 2, 0).numpy()
    full = face.astype(np.float32) / 255
    m = ciagan_mask(lm, 250, 250) > 0
    errs = []
    for dx in (0, 2):
        a = tr.view_affine().copy()
        a[0, 2] += dx * a[0, 0]
        errs.append(np.abs(paste_back(full, view, a) - full)[m].mean())
    assert errs[0] < 0.01 and errs[1] > 2 * errs[0]


def test_landmark_drawing_uses_only_the_official_lines():
    assert len(LINES) == 16 + 3 + 8
    lm = _face_landmarks(89, 110, 0.8)
    base = draw_landmark_lines(lm)
    assert base.shape == (218, 178) and set(np.unique(base)) == {0, 255}
    moved = lm.copy()
    moved[17:27] += 7  # eyebrows, eyes, lower nose and outer lips are not drawn
    moved[31:60] += 7
    np.testing.assert_array_equal(draw_landmark_lines(moved), base)
    jaw = lm.copy()
    jaw[8] += (0, 5)
    assert (draw_landmark_lines(jaw) != base).any()


def test_views_centre_crop_is_exact_and_mask_binary():
    c = np.random.default_rng(0).integers(0, 256, (1, 5, 144, 144), dtype=np.uint8)
    v = make_views(torch.from_numpy(c), crop_boxes(1, None, 0, 0), 128)
    exp = torch.from_numpy(c[0, :3, 8:136, 8:136]).float() / 255
    torch.testing.assert_close(v.image[0], exp, atol=1e-4, rtol=0)  # float grid rounding
    assert set(v.mask.unique().tolist()) <= {0.0, 1.0}
    # line alpha 255 -> blue (0, 0, 1), 0 -> white
    alpha = torch.from_numpy(c[0, 3, 8:136, 8:136]).float() / 255
    torch.testing.assert_close(v.landmarks[0, 0], 1 - alpha, atol=1e-4, rtol=0)
    torch.testing.assert_close(v.landmarks[0, 2], torch.ones_like(alpha))


def test_pair_sampler_half_same_identity():
    labels = torch.arange(40) // 4
    s = PairSampler(labels, 10)
    g = torch.Generator().manual_seed(0)
    src, tgt = s.sample(16, g)
    same = (labels[src] == labels[tgt]).sum().item()
    assert same >= 8  # the second half always, the first half by chance


# -- networks -----------------------------------------------------------------------------------


def test_block_shapes():
    x = torch.randn(2, 6, 32, 32)
    assert ResBlockDown(6, 16)(x).shape == (2, 16, 16, 16)
    assert ResBlockUp(6, 4)(x).shape == (2, 4, 64, 64)
    assert ResBlock(6)(x).shape == x.shape
    onehot = torch.eye(5)[:2]
    assert IdentityEncoder(5, 32, 256)(onehot).shape == (2, 256, 4, 4)
    assert Critic(32, 8)(x).shape == (2, 1)
    assert IdentityNet(7, width=8)(x[:, :3]).shape == (2, 7)
    e = IdentityNet(7, width=8, normalize=True, scale=3.0).eval()(x[:, :3])
    torch.testing.assert_close(e.norm(dim=1), torch.full((2,), 3.0))


def test_generator_layout_matches_table5():
    """Every stage of the paper-size generator (Table 5) and its cost (3.28 GFLOP/image)."""
    from torch.utils.flop_counter import FlopCounterMode

    g = Generator(1200).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for i, blk in enumerate(g.down):
        blk.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(f"down{i}", o.shape[1:]))
    for i, blk in enumerate(g.up):
        blk.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(f"up{i}", o.shape[1:]))
    g.identity.register_forward_hook(lambda m, a, o: shapes.__setitem__("id", o.shape[1:]))
    g.fuse.register_forward_hook(lambda m, a, o: shapes.__setitem__("fuse", o.shape[1:]))
    oh = torch.zeros(1, 1200)
    oh[0, 7] = 1
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = g(torch.rand(1, 6, 128, 128), oh)
    assert out.shape == (1, 3, 128, 128)
    assert [tuple(shapes[f"down{i}"]) for i in range(5)] == [
        (32, 64, 64),
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (256, 4, 4),
    ]
    assert tuple(shapes["id"]) == (256, 4, 4) and tuple(shapes["fuse"]) == (256, 4, 4)
    assert [tuple(shapes[f"up{i}"]) for i in range(5)] == [
        (256, 8, 8),
        (128, 16, 16),
        (64, 32, 32),
        (32, 64, 64),
        (16, 128, 128),
    ]
    assert g.identity.fc[0].in_features == 1200 and len(g.identity.fc) == 14  # 7 x FC + LReLU
    assert abs(fc.get_total_flops() / 1e9 - 3.28) < 0.01


def test_critic_and_identity_net_paper_size():
    c = Critic()
    assert [b.conv1.conv.out_channels for b in c.blocks] == [64, 128, 256, 512, 512]
    assert c.fc1.in_features == 512 * 16 and c.fc1.out_features == 1024
    s = IdentityNet(1200)
    assert s.fc1.out_features == 1024 and s.fc2.out_features == 1200
    assert len(s.layers) == 8  # ResNet-18: 4 stages x 2 basic blocks


def test_contrastive_loss_matches_formula():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    same = torch.tensor([1, 0])
    # same: 0.5 * d^2 = 0.5; different: 0.5 * (3 - 1)^2 = 2
    assert contrastive_loss(a, b, same, 3.0).item() == pytest.approx((0.5 + 2.0) / 2)


# -- training -----------------------------------------------------------------------------------


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, identity_pretrain="none", progress=False, **TINY)
    return TrainConfig(**{**base, **kw})


def test_one_training_step_changes_weights_without_nan():
    tr = Trainer(_cfg(identity_pretrain="pnca", pnca_epochs=1), _tiny_data(), torch.device("cpu"))
    losses = tr.pretrain_identity()
    assert all(np.isfinite(losses))
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in tr_nets(tr)}
    row = tr.step()
    assert all(np.isfinite(v) for v in row.values())
    for n, m in tr_nets(tr):
        after = m.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        changed = [k for k, v in after.items() if not torch.equal(v, before[n][k])]
        assert changed, f"{n} did not change"


def tr_nets(tr: Trainer):
    return [("generator", tr.G), ("critic", tr.D), ("identity", tr.S)]


def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    data, dev = _tiny_data(), torch.device("cpu")
    a = Trainer(_cfg(), data, dev)
    a.step()
    a.step()
    b = Trainer(_cfg(), data, dev)
    b.step()
    ckpt_io.save_atomic(b.state_dict(), tmp_path / "last.pt")
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # tensors and plain types only
    assert raw["num_identities"] == 4 and raw["img_size"] == 32 and raw["step"] == 1
    assert raw["config"]["gen_width"] == 8 and raw["identity_names"] == data.identity_names
    c = Trainer(_cfg(), data, dev)
    c.load_state_dict(ckpt_io.load(tmp_path / "last.pt"))
    c.step()
    for (n, ma), (_, mc) in zip(tr_nets(a), tr_nets(c), strict=True):
        for k, v in ma.state_dict().items():
            assert torch.equal(v, mc.state_dict()[k]), f"{n}.{k} differs after resume"
    sa, sc = a.opt_G.state_dict()["state"], c.opt_G.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sc[i]["exp_avg"]) for i in sa)
    assert torch.equal(a.gen.get_state(), c.gen.get_state())


def test_cli_train_resume_and_cached_preprocessing(tmp_path, fixtures, monkeypatch):
    from anonbench.cli import main

    out, cache = tmp_path / "run", tmp_path / "cache"
    args = [
        "train",
        "ciagan",
        "--data",
        f"celeba:{fixtures / 'celeba_tiny'}",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--img-size",
        "32",
        "--gen-width",
        "8",
        "--critic-width",
        "8",
        "--id-width",
        "8",
        "--pnca-epochs",
        "1",
        "--min-images",
        "1",
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]
    assert main([*args, "--max-steps", "1"]) == 0
    assert (out / "last.pt").is_file() and (out / "pnca_losses.csv").is_file()
    assert json.loads((out / "config.json").read_text())["identity_pretrain"] == "pnca"
    assert main([*args, "--max-steps", "1"]) == 2  # no silent overwrite

    # the second run must not run dlib again: every image comes from the cache
    def no_dlib(self, image):
        raise AssertionError("face analysis ran although the preprocessing is cached")

    monkeypatch.setattr("anonbench.faces.analysis.FaceAnalyzer.__call__", no_dlib)
    assert main([*args, "--max-steps", "2", "--epochs", "3", "--resume"]) == 0
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    ck = ckpt_io.load(out / "last.pt")
    assert ck["step"] == 2 and ck["num_identities"] == 2 and ck["config"]["max_steps"] == 2
    grids = sorted((out / "samples").glob("epoch_*.png"))
    assert grids, "a sample grid per finished epoch"


# -- the anonymizer -----------------------------------------------------------------------------


def test_identity_control_and_seeds(tmp_path):
    from anonbench.methods.ciagan.anonymizer import CIAGAN

    p = _tiny_ckpt(tmp_path)
    m = CIAGAN(checkpoint=str(p))
    assert m.meta.identity_conditioned and len(m.meta.checkpoint_sha256) == 64
    b = _batch()
    o0, o1 = m.anonymize(b, targets=[0, 0]), m.anonymize(b, targets=[1, 1])
    inside = b.masks.expand_as(o0) > 0
    assert (o0 - o1)[inside].abs().mean() > 1e-3  # another identity, another face
    assert torch.equal(o0, m.anonymize(b, targets=[0, 0]))
    # same seed -> identical outputs (per key); a torch.Generator the same way
    assert torch.equal(CIAGAN(str(p), seed=5).anonymize(b), CIAGAN(str(p), seed=5).anonymize(b))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(m.anonymize(b, generator=g1), m.anonymize(b, generator=g2))
    keys = [f"img{i}" for i in range(20)]
    assert CIAGAN(str(p), seed=1).choose_targets(keys) != CIAGAN(str(p), seed=2).choose_targets(
        keys
    )
    assert CIAGAN(str(p), identity=7).choose_targets(keys) == [7] * 20
    with pytest.raises(AnonbenchError, match="out of range"):
        CIAGAN(str(p), identity=50)


def test_outside_mask_pixels_untouched_and_pickling(tmp_path):
    import pickle

    from anonbench.registry import METHODS

    m = METHODS.create("ciagan", checkpoint=str(_tiny_ckpt(tmp_path)))
    b = _batch(3)
    out = m.anonymize(b)
    assert out.shape == b.images.shape and not torch.isnan(out).any()
    outside = b.masks.expand_as(out) == 0
    assert torch.equal(out[outside], b.images[outside])
    assert (out[~outside] - b.images[~outside]).abs().mean() > 0.01
    clone = pickle.loads(pickle.dumps(m))  # worker processes get it without the weights
    assert clone.generator_net is None and torch.equal(clone.anonymize(b), out)


def test_clear_errors_without_or_with_a_bad_checkpoint(tmp_path, monkeypatch):
    from anonbench.methods.ciagan.anonymizer import CIAGAN
    from anonbench.registry import METHODS

    # no shipped checkpoint (a package built without it): one line saying how to get one
    monkeypatch.setattr(
        "anonbench.methods.ciagan.anonymizer.PACKAGE_WEIGHTS", tmp_path / "none" / "g.pt"
    )
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("ciagan")
    msg = str(e.value)
    assert "anonbench train ciagan" in msg and "\n" not in msg
    with pytest.raises(AnonbenchError, match="not found"):
        CIAGAN(checkpoint=str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AnonbenchError, match="cannot read"):
        CIAGAN(checkpoint=str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(AnonbenchError, match="not an anonbench CIAGAN checkpoint"):
        CIAGAN(checkpoint=str(tmp_path / "foreign.pt"))
    ck = ckpt_io.random_generator_checkpoint(5, 32, 8)
    ck["num_identities"] = 7  # header and weights disagree
    ckpt_io.save_atomic(ck, tmp_path / "ids.pt")
    with pytest.raises(AnonbenchError, match="7 identities but the generator was trained for 5"):
        CIAGAN(checkpoint=str(tmp_path / "ids.pt"))
    ck = ckpt_io.random_generator_checkpoint(5, 32, 8)
    ck["config"]["gen_width"] = 16  # wrong shapes
    ckpt_io.save_atomic(ck, tmp_path / "shape.pt")
    with pytest.raises(AnonbenchError) as e:
        CIAGAN(checkpoint=str(tmp_path / "shape.pt"))
    assert "does not fit" in str(e.value) and "\n" not in str(e.value)


def test_exported_fp16_generator_in_pieces_loads(tmp_path):
    from anonbench.methods.ciagan.anonymizer import CIAGAN

    src = _tiny_ckpt(tmp_path)
    ckpt_io.export_generator(src, tmp_path / "half.pt")
    raw = (tmp_path / "half.pt").read_bytes()
    cuts = [0, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
    for i in range(3):  # split, as files come back from a training machine
        (tmp_path / f"split.pt.part{i:02d}").write_bytes(raw[cuts[i] : cuts[i + 1]])
    whole, pieces = CIAGAN(str(tmp_path / "half.pt")), CIAGAN(str(tmp_path / "split.pt"))
    assert whole.meta.checkpoint_sha256 == pieces.meta.checkpoint_sha256
    b = _batch(1)
    full = CIAGAN(str(src)).anonymize(b, targets=[3])
    half = whole.anonymize(b, targets=[3])
    assert (full - half).abs().max() < 0.05  # fp16 weights, fp32 compute


def test_shipped_checkpoint_loads_and_says_what_it_is():
    """The default `ciagan` is the shipped CPU-trained checkpoint: it loads from its piece(s),
    matches the sha256 in its model card, and every result it produces carries the caveat."""
    from anonbench.methods.ciagan.anonymizer import CIAGAN, PACKAGE_WEIGHTS

    card = (PACKAGE_WEIGHTS.parent / "MODEL_CARD.md").read_text()
    m = CIAGAN()
    assert m.meta.checkpoint_sha256 in card
    assert "shipped CPU-trained checkpoint" in m.meta.note and "MODEL_CARD.md" in m.meta.note
    assert "; " not in m.meta.note  # the separator of joined result notes
    assert m.num_identities == 148 and m.img_size == 64
    assert CIAGAN(checkpoint=str(PACKAGE_WEIGHTS)).meta.note  # named explicitly: same file
    b = _batch(1)
    out = m.anonymize(b, targets=[5])
    outside = b.masks.expand_as(out) == 0
    assert torch.equal(out[outside], b.images[outside])
    assert (out[~outside] - b.images[~outside]).abs().mean() > 0.02
    # the identity input matters (the retired demo: 0.0017; D3 step 10,032: 0.206 here)
    other = m.anonymize(b, targets=[70])
    assert (other - m.anonymize(b, targets=[0]))[~outside].abs().mean() > 0.02


def test_shipped_checkpoint_is_recognised_by_content(tmp_path):
    from anonbench.methods.ciagan.anonymizer import CIAGAN, PACKAGE_WEIGHTS

    copy = tmp_path / "elsewhere.pt"  # the same weights, joined and renamed
    copy.write_bytes(ckpt_io.read_bytes(PACKAGE_WEIGHTS))
    assert "shipped CPU-trained checkpoint" in CIAGAN(checkpoint=str(copy)).meta.note
    assert CIAGAN(checkpoint=str(_tiny_ckpt(tmp_path))).meta.note == ""


def test_method_note_reaches_every_result_row(tmp_path, fixtures, capsys):
    import pandas as pd

    from anonbench.cli import main
    from anonbench.runner import _join_notes

    assert _join_notes(None, "") is None
    assert _join_notes("10 folds", "demo") == "10 folds; demo"
    assert _join_notes(None, "demo") == "demo"
    # through `anonbench run`: the shipped checkpoint's caveat is printed and in every row
    args = ["run", "--methods", "ciagan", "--protocol", "lfw", "--quiet", "--workers", "1"]
    args += ["--data-root", str(fixtures / "lfw_tiny"), "--out", str(tmp_path / "run")]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "note: ciagan: shipped CPU-trained checkpoint" in capsys.readouterr().err
    notes = pd.read_csv(tmp_path / "run" / "results.csv")["note"]
    assert len(notes) > 0 and notes.str.contains("shipped CPU-trained checkpoint").all()


# -- prepared data, identity splits, time limits -------------------------------------------------


def test_prepared_data_round_trip(tmp_path):
    from anonbench.methods.landmark_data import load_prepared, save_prepared

    data = _tiny_data(3, 2)
    # smooth images: JPEG keeps them close (random noise would not survive any lossy codec)
    yy, xx = torch.meshgrid(torch.arange(144), torch.arange(144), indexing="ij")
    for i in range(len(data)):
        for c in range(3):
            data.canvas[i, c] = ((xx * (c + 1) + yy * (i + 1)) % 256).to(torch.uint8) // 2 + 60
    data.skipped = ["lost.jpg"]
    save_prepared(data, tmp_path / "d.npz")
    back = load_prepared(tmp_path / "d.npz")
    assert torch.equal(back.canvas[:, 3:], data.canvas[:, 3:])  # lines and mask: lossless
    err = (back.canvas[:, :3].float() - data.canvas[:, :3].float()).abs().mean()
    assert err < 3.0, err
    assert torch.equal(back.labels, data.labels) and back.labels.dtype == torch.long
    assert back.identity_names == data.identity_names and back.keys == data.keys
    assert back.skipped == ["lost.jpg"]
    with pytest.raises(AnonbenchError, match="prepared data not found"):
        load_prepared(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", format=np.array("something-else"))
    with pytest.raises(AnonbenchError, match="not 'anonbench-ciagan-data/1'"):
        load_prepared(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(AnonbenchError, match="cannot read prepared data"):
        load_prepared(tmp_path / "junk.npz")
    z = dict(np.load(tmp_path / "d.npz"))
    z["jpeg"] = np.zeros_like(z["jpeg"])  # every face's bytes destroyed
    np.savez(tmp_path / "corrupt.npz", **z)
    with pytest.raises(AnonbenchError, match="face 0 is corrupt"):
        load_prepared(tmp_path / "corrupt.npz")
    del z["labels"]
    np.savez(tmp_path / "partial.npz", **z)
    with pytest.raises(AnonbenchError, match=r"cannot read prepared data .*labels"):
        load_prepared(tmp_path / "partial.npz")


def test_identity_split_matches_the_celeba_protocol(fixtures):
    from anonbench.data.celeba import load_celeba
    from anonbench.data.splits import identity_split
    from anonbench.methods.landmark_data import load_records

    spec = f"celeba:{fixtures / 'celeba_tiny'}"
    tr = load_records(spec, "identity-train", split_seed=0)
    te = load_records(spec, "identity-test", split_seed=0)
    everything = load_celeba(fixtures / "celeba_tiny").records
    want_tr, want_te = identity_split([r.identity for r in everything], 0, 0.5)
    assert sorted({r.identity for r in tr}) == want_tr
    assert sorted({r.identity for r in te}) == want_te
    assert len(tr) + len(te) == len(everything)


def test_cli_export_data_then_train_from_it(tmp_path, fixtures, capsys):
    from anonbench.cli import main

    npz = tmp_path / "prep.npz"
    tiny = ["--batch-size", "2", "--img-size", "32", "--gen-width", "8", "--critic-width", "8"]
    tiny += ["--id-width", "8", "--pnca-epochs", "1", "--min-images", "1", "--no-progress"]
    data = f"celeba:{fixtures / 'celeba_tiny'}"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "ciagan", "--data", data, "--export-data", str(npz), *cache]) == 0
    assert npz.is_file() and "prepared faces" in capsys.readouterr().out
    base = ["train", "ciagan", "--data", f"prepared:{npz}", *tiny]
    assert main([*base, "--out", str(tmp_path / "a"), "--max-steps", "1"]) == 0
    ck = ckpt_io.load(tmp_path / "a" / "last.pt")
    assert ck["step"] == 1 and ck["num_identities"] == 2
    src = ck["config"]["prepared_source"]  # the checkpoint says how its data was made
    assert src["data"] == data and src["split"] == "all" and src["detector"] == "dlib-hog"
    assert (tmp_path / "a" / "samples" / "last.png").is_file()
    # a time limit stops training and still leaves a checkpoint of what was done
    assert main([*base, "--out", str(tmp_path / "b"), "--max-minutes", "1e-9"]) == 0
    assert "--max-minutes" in capsys.readouterr().out
    assert ckpt_io.load(tmp_path / "b" / "last.pt")["step"] == 0
    # a split only applies when preparing; a missing file is one clear line
    assert main([*base, "--out", str(tmp_path / "c"), "--split", "identity-train"]) == 2
    # a run started from images with --split identity-train resumes from a file prepared
    # with that split (the GPU-machine workflow), and not from one prepared with another
    small = f"celeba:{fixtures / 'celeba_small'}"  # 6 identities: 3 train, 3 test
    split = ["--split", "identity-train"]
    npz_tr = tmp_path / "prep_train.npz"
    export = ["train", "ciagan", "--data", small, *split, "--export-data", str(npz_tr)]
    assert main([*export, *cache]) == 0
    run_d = ["--out", str(tmp_path / "d"), *tiny, *cache]
    assert main(["train", "ciagan", "--data", small, *split, *run_d, "--max-steps", "1"]) == 0
    resume = ["train", "ciagan", "--resume", *run_d, "--max-steps", "2"]
    assert main([*resume, "--data", f"prepared:{npz}"]) == 2  # prepared with split "all"
    assert main([*resume, "--data", f"prepared:{npz_tr}"]) == 0
    assert ckpt_io.load(tmp_path / "d" / "last.pt")["step"] == 2
    missing = ["train", "ciagan", "--data", f"prepared:{tmp_path / 'no.npz'}", "--out", "x"]
    assert main(missing) == 2
    assert "prepared data not found" in capsys.readouterr().err


# -- against the official data (../shared) -------------------------------------------------------


@pytest.mark.shared
def test_preprocessing_agrees_with_the_official_sample(shared_data):
    from anonbench.methods.landmark_input import official_sample_agreement

    r = official_sample_agreement(shared_data / "ciagan_sample")
    assert r["images"] == 150 and r["no_face"] == 0
    assert r["mask_iou"] >= 0.95, r
    assert r["lines_iou_dilated1"] >= 0.9, r


@pytest.mark.shared
def test_video_smoothing_reduces_landmark_jitter(shared_data):
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.methods.ciagan.video import Options, landmark_jitter, track_video

    tv = track_video(
        shared_data / "video" / "short_hamilton_clip.mp4",
        FaceAnalyzer(),
        Options(max_frames=40, progress=False),
    )
    j = landmark_jitter(tv.tracks, tv.smoothed)
    assert tv.frames == 40 and tv.detections >= 15  # the face turns away after ~20
    assert j["displacement_px_smoothed"] < j["displacement_px_raw"], j
    assert j["acceleration_px_smoothed"] < 0.6 * j["acceleration_px_raw"], j


def test_bf16_autocast_step_smoke():
    """The GPU path's mixed precision (bf16 autocast), exercised on the CPU: finite losses."""
    tr = Trainer(
        _cfg(amp="bf16", identity_pretrain="pnca", pnca_epochs=0.5),
        _tiny_data(),
        torch.device("cpu"),
    )
    assert tr.amp
    tr.pretrain_identity()
    row = tr.step()
    assert all(np.isfinite(v) for v in row.values())


def test_cuda_graphs_need_cuda():
    with pytest.raises(AnonbenchError, match="--cuda-graphs needs --device cuda"):
        Trainer(TrainConfig(cuda_graphs=True, **TINY), _tiny_data(), torch.device("cpu"))


def test_warm_up_leaves_no_trace():
    """The CUDA-graph path warms up on real inputs before capture; afterwards weights,
    buffers (spectral-norm vectors, batch-norm statistics) and optimizer state must be as if
    it never ran: the next step equals a fresh trainer's, bit for bit (CPU)."""
    kw = dict(TINY, batch_size=2, identity_pretrain="none")
    a = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    b = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    a.step()  # both continue from a state with optimizer moments, and from fresh
    b.step()
    da, db = a.draw(), b.draw()
    b.warm_up(db, 2)
    assert torch.equal(a.compute(da), b.compute(db))
    for na, nb in ((a.G, b.G), (a.D, b.D), (a.S, b.S)):
        for (k, x), y in zip(na.state_dict().items(), nb.state_dict().values(), strict=True):
            assert torch.equal(x, y), k
    for oa, ob in ((a.opt_G, b.opt_G), (a.opt_D, b.opt_D), (a.opt_S, b.opt_S)):
        for sa, sb in zip(oa.state.values(), ob.state.values(), strict=True):
            assert all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])) for k in sa)
    fresh_a = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    fresh_b = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    d1, d2 = fresh_a.draw(), fresh_b.draw()
    fresh_b.warm_up(d2, 2)  # optimizer state born in warm-up is reset to a fresh one's
    assert torch.equal(fresh_a.compute(d1), fresh_b.compute(d2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_step_within_the_eager_noise():
    """A captured graph per step against the eager step, from the same start (GPU machines).
    Two eager runs already differ (cuDNN/TF32 algorithms; Adam's early steps are sign-like and
    amplify that), so the graph may differ from eager by a small multiple of eager-vs-eager."""
    kw = dict(TINY, batch_size=2, identity_pretrain="none", device="cuda", amp="off")
    dev = torch.device("cuda")
    runs = [Trainer(TrainConfig(cuda_graphs=g, **kw), _tiny_data(), dev) for g in (0, 0, 1)]
    keys = ("identity", "critic", "gen_gan", "gen_identity")
    eager_gap = graph_gap = 0.0
    for _ in range(3):
        r0, r1, rg = (t.step() for t in runs)
        eager_gap = max(eager_gap, *(abs(r0[k] - r1[k]) for k in keys))
        graph_gap = max(graph_gap, *(abs(r0[k] - rg[k]) for k in keys))
    assert graph_gap <= 5 * eager_gap + 1e-4, (graph_gap, eager_gap)


def test_resume_follows_this_runs_optimizer_mode():
    """A checkpoint saved with --cuda-graphs (capturable Adam, step counts on the GPU) resumes
    in an eager run, and the reverse: the loaded optimizers take this run's mode."""
    kw = dict(TINY, batch_size=2, identity_pretrain="none")
    a = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    a.step()
    state = a.state_dict()
    for opt in state["optimizers"].values():  # as a graph run would have saved it
        for g in opt["param_groups"]:
            g["capturable"] = True
    b = Trainer(TrainConfig(**kw), _tiny_data(), torch.device("cpu"))
    b.load_state_dict(state)
    for opt in (b.opt_G, b.opt_D, b.opt_S):
        assert all(g["capturable"] is False for g in opt.param_groups)
        assert all(st["step"].device.type == "cpu" for st in opt.state.values())
    row = b.step()  # would fail on CPU with capturable=True
    assert math.isfinite(row["critic"]) and b.step_count == 2
