"""pix2pix and CycleGAN training on the GAN core: one step changes every network with finite
losses, exact resume (image pools included), the checkpoint is the method's checkpoint, the
reference's learning-rate schedule and image pool, and the CLI from training to anonymizing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from anonbench.methods.cyclegan.options import CycleGANConfig
from anonbench.methods.cyclegan.train import ImagePool
from anonbench.methods.cyclegan.train import Trainer as CycleTrainer
from anonbench.methods.gan_common import save_checkpoint
from anonbench.methods.landmark_data import TrainData
from anonbench.methods.pix2pix.options import Pix2PixConfig
from anonbench.methods.pix2pix.train import Trainer as Pix2PixTrainer
from anonbench.registry import METHODS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
FAMILIES = {
    "pix2pix": (Pix2PixTrainer, Pix2PixConfig),
    "cyclegan": (CycleTrainer, CycleGANConfig),
}
CASES = [(f, v) for f in FAMILIES for v in ("landmarks", "masked")]


def _data(n: int = 8) -> TrainData:
    g = torch.Generator().manual_seed(1)
    canvas = torch.randint(0, 256, (n, 5, 144, 144), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) // 2
    ids = [f"id{i}" for i in range(n // 2)]
    return TrainData(canvas, labels, ids, [str(i) for i in range(n)])


def _trainer(family: str, variant: str, **kw):
    cls, cfg_cls = FAMILIES[family]
    extra = {"pool_size": 3} if family == "cyclegan" else {}
    cfg = cfg_cls(variant=variant, ngf=4, ndf=4, batch_size=2, progress=False, **extra, **kw)
    return cls(cfg, _data(), CPU)


@pytest.mark.parametrize(("family", "variant"), CASES)
def test_one_step_changes_every_network_with_finite_losses(family, variant):
    tr = _trainer(family, variant)
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in tr.nets.items()}
    row = tr.step()
    assert all(np.isfinite(v) for v in row.values())
    assert row["lr"] == pytest.approx(2e-4)
    for n, m in tr.nets.items():
        after = m.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        assert any(not torch.equal(v, before[n][k]) for k, v in after.items()), n
    if family == "cyclegan":  # the identity loss exists only where channels match
        assert (row["idt_a"] > 0) == (variant == "landmarks")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_exact_resume(family, tmp_path):
    """Three steps in one go against one step, a checkpoint, a fresh trainer and two steps:
    weights, optimizer moments, the data RNG and (CycleGAN) the image pools, bit for bit. The
    pools (3 slots, batch 2) are full after two steps, so step 3 draws from them."""
    a = _trainer(family, "landmarks")
    for _ in range(3):
        a.step()
    b = _trainer(family, "landmarks")
    b.step()
    save_checkpoint(b.state_dict(), tmp_path / "last.pt")
    from anonbench.methods.baseline_train import load_checkpoint

    c = _trainer(family, "landmarks")
    c.load_state_dict(load_checkpoint(tmp_path / "last.pt", family), "last.pt")
    rows = [c.step() for _ in range(2)]
    assert c.step_count == 3 and rows[-1]["step"] == 3
    for name in a.nets:
        for k, v in a.nets[name].state_dict().items():
            assert torch.equal(v, c.nets[name].state_dict()[k]), f"{name}.{k}"
    for name in a.optimizers:
        sa, sc = a.optimizers[name].state_dict()["state"], c.optimizers[name].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sc[i]["exp_avg_sq"]) for i in sa)
    assert torch.equal(a.gen.get_state(), c.gen.get_state())
    if family == "cyclegan":
        assert len(a.pool_a.images) == 3
        assert torch.equal(a.pool_a.state(), c.pool_a.state())
        assert torch.equal(a.pool_b.state(), c.pool_b.state())


@pytest.mark.parametrize(("family", "variant"), CASES)
def test_training_checkpoint_is_the_methods_checkpoint(family, variant, tmp_path):
    """OUT/last.pt is read by the registered method, whose generator equals the trained one
    (eval mode: batch-norm running statistics, no dropout)."""
    from anonbench.methods.gan_common import generator_input

    tr = _trainer(family, variant)
    tr.step()
    path = tmp_path / "last.pt"
    save_checkpoint(tr.state_dict(), path)
    name = family if variant == "landmarks" else f"{family}-{variant}"
    m = METHODS.create(name, checkpoint=str(path))
    assert m.config()["ngf"] == 4 and m.meta.checkpoint_sha256
    views = tr.views_at(torch.arange(2), torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2))
    x = generator_input(views, variant)
    g = tr.generator.eval()
    with torch.no_grad():
        assert torch.equal(g(x), m.generator_net(x))
    wrong = "pix2pix" if family == "cyclegan" else "cyclegan"
    with pytest.raises(Exception, match=f"not {wrong}"):
        METHODS.create(wrong, checkpoint=str(path))


def test_learning_rate_schedule_is_the_references_linear_policy():
    """Reference (networks.get_scheduler, 'linear'): lr_l = 1 - max(0, epoch + epoch_count -
    n_epochs) / (n_epochs_decay + 1), epoch_count 1, stepped after each epoch."""
    from anonbench.methods.baseline_train import lr_factor

    for n_const, n_decay in ((100, 100), (3, 2), (1, 1)):
        for epoch in range(n_const + n_decay):
            want = 1.0 - max(0, epoch + 1 - n_const) / float(n_decay + 1)
            assert lr_factor(epoch, n_const + n_decay) == pytest.approx(want)
    tr = _trainer("pix2pix", "landmarks", epochs=4)  # 4 steps per epoch (8 images, batch 2)
    lrs = [tr.step()["lr"] for _ in range(16)]
    assert lrs[:8] == [2e-4] * 8 and lrs[8] == pytest.approx(2e-4 * 2 / 3)
    assert lrs[12:] == [pytest.approx(2e-4 / 3)] * 4
    assert tr.opt_G.param_groups[0]["lr"] == pytest.approx(2e-4 / 3)


def test_image_pool_follows_the_reference():
    pool = ImagePool(2)
    x = torch.arange(3.0).view(3, 1)
    u, j = torch.tensor([0.9, 0.9, 0.9]), torch.tensor([0, 0, 1])
    # not full: the first two are stored and returned; full: p > 0.5 swaps with slot 1
    out = pool.query(x, u, j)
    assert out.flatten().tolist() == [0.0, 1.0, 1.0]
    assert [float(t) for t in pool.images] == [0.0, 2.0]
    out = pool.query(torch.tensor([[5.0], [6.0]]), torch.tensor([0.2, 0.7]), torch.tensor([0, 0]))
    assert out.flatten().tolist() == [5.0, 0.0]  # p <= 0.5 returns the new one
    assert [float(t) for t in pool.images] == [6.0, 2.0]
    assert ImagePool(0).query(x, u, j) is x


def test_trainers_are_listed_with_their_options_without_torch():
    code = (
        "import sys; from anonbench.cli import main; main(['ls', 'trainers']); "
        "print('TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TORCH False" in out.stdout
    for name in ("ciagan", "pix2pix", "cyclegan"):
        assert f"\n  {name} " in out.stdout
    assert "--lambda-l1 (default 100.0)" in out.stdout
    assert "--pool-size (default 50)" in out.stdout
    assert "--variant {landmarks,masked} (default landmarks)" in out.stdout
    for name in ("pix2pix", "cyclegan"):
        h = subprocess.run(
            [sys.executable, "-m", "anonbench", "train", name, "--help"],
            capture_output=True,
            text=True,
        )
        assert h.returncode == 0 and f"anonbench train {name}" in h.stdout


@pytest.mark.slow
def test_cli_train_two_steps_then_anonymize_and_run(tmp_path, fixtures):
    """`anonbench train pix2pix` for 2 steps on an 18-image CelebA fixture, then its last.pt
    through `anonymize --checkpoint` (the face changes, nothing outside the mask does) and
    `run --checkpoint pix2pix=...`; a second train into the same folder refuses, --resume
    continues."""
    import cv2

    from anonbench.cli import main
    from anonbench.data.images import read_rgb
    from anonbench.data.lfw import sample_root
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.faces.mask import ciagan_mask

    out, cache = tmp_path / "p2p", tmp_path / "cache"
    args = ["train", "pix2pix", "--data", f"celeba:{fixtures / 'celeba_small'}"]
    args += ["--out", str(out), "--ngf", "8", "--ndf", "8", "--batch-size", "2"]
    args += ["--cache-dir", str(cache), "--no-progress", "--max-steps", "2"]
    assert main(args) == 0
    assert main(args) == 2  # no silent overwrite
    assert main([*args[:-1], "3", "--resume"]) == 0
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,d_real") and len(rows) == 4
    assert (out / "samples" / "last.png").is_file()

    src = sorted((sample_root() / "images").glob("*/*.jpg"))[0]
    img = read_rgb(src)
    png = tmp_path / "face.png"  # lossless: every pixel outside the mask compares
    cv2.imwrite(str(png), img[..., ::-1])
    anon = tmp_path / "anon"
    a = ["anonymize", "--method", "pix2pix", "--checkpoint", str(out / "last.pt")]
    a += ["--input", str(png), "--output", str(anon), "--detector", "dlib-hog", "--quiet"]
    assert main([*a, "--no-cache"]) == 0
    res = read_rgb(anon / "face.png")
    faces = FaceAnalyzer()(img)
    mask = ciagan_mask(faces.landmarks[0], *img.shape[:2]) > 0
    diff = np.abs(res.astype(int) - img.astype(int)).max(-1)
    assert not diff[~mask].any() and diff[mask].mean() > 5

    run = tmp_path / "run"
    r = ["run", "--methods", "pix2pix", "--protocol", "lfw", "--folds", "2", "--quiet"]
    r += ["--workers", "1", "--cache-dir", str(cache), "--out", str(run)]
    assert main([*r, "--checkpoint", f"pix2pix={out / 'last.pt'}"]) == 0
    import hashlib

    import pandas as pd

    res_csv = pd.read_csv(run / "results.csv")
    rows_p2p = res_csv[res_csv["method"] == "pix2pix"]
    assert len(rows_p2p) and rows_p2p["value"].notna().any()
    sha = hashlib.sha256((out / "last.pt").read_bytes()).hexdigest()
    assert (rows_p2p["checkpoint_sha256"] == sha).all()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fp16_generator_export_loads_as_the_method(family, tmp_path):
    """The generator-only fp16 export (what ships) is about half the generator's bytes and
    gives the trained generator's faces within fp16 rounding."""
    from anonbench.methods.gan_common import export_generator, generator_input

    tr = _trainer(family, "landmarks")
    tr.step()
    full, small = tmp_path / "last.pt", tmp_path / "gen16.pt"
    save_checkpoint(tr.state_dict(), full)
    out = export_generator(full, small)
    assert set(out) >= {"format", "family", "config", "generator", "step", "training"}
    assert all(v.dtype == torch.float16 for v in out["generator"].values() if v.is_floating_point())
    gen_bytes = sum(v.numel() * 4 for v in tr.generator.state_dict().values())
    assert small.stat().st_size < 0.6 * gen_bytes + 20_000
    m = METHODS.create(family, checkpoint=str(small))
    views = tr.views_at(torch.arange(2), torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2))
    x = generator_input(views, "landmarks")
    with torch.no_grad():
        want = tr.generator.eval()(x)
        got = m.generator_net(x)
    assert (want - got).abs().max() < 2e-2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_graphs_are_refused_in_one_line(family):
    """Their steps change the learning rate and (CycleGAN) keep a pool on the host: no graph
    capture, said before any step (whatever the device)."""
    from anonbench.errors import AnonbenchError

    with pytest.raises(AnonbenchError, match=f"--cuda-graphs is not supported by {family}"):
        _trainer(family, "landmarks", cuda_graphs=True)


def test_export_of_a_corrupt_checkpoint_is_one_line(tmp_path):
    from anonbench.methods.gan_common import GanCheckpointError, export_generator

    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GanCheckpointError, match="cannot read GAN checkpoint"):
        export_generator(bad, tmp_path / "out.pt")
