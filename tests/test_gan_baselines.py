"""pix2pix and CycleGAN baselines: the reference architectures' parameter counts, the 128 px
forward pass, checkpoints (round trip, one-line errors) and the CLI on a real face."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from anonbench.errors import AnonbenchError
from anonbench.methods import gan_common
from anonbench.methods.cyclegan.model import ResnetGenerator, patch_discriminator, resnet_9blocks
from anonbench.methods.pix2pix.model import (
    PatchDiscriminator,
    UnetGenerator,
    count_parameters,
    unet_128,
)
from anonbench.registry import METHODS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ("pix2pix", "pix2pix-masked", "cyclegan", "cyclegan-masked")


def _module(name: str):
    return importlib.import_module(f"anonbench.methods.{name.partition('-')[0]}.anonymizer")


def _variant(name: str) -> str:
    return "masked" if name.endswith("-masked") else "landmarks"


def _save(name: str, path, ngf: int = 8, seed: int = 0) -> dict:
    ckpt = _module(name).random_checkpoint(_variant(name), ngf=ngf, seed=seed)
    gan_common.save_checkpoint(ckpt, path)
    return ckpt


# -- architectures ------------------------------------------------------------------------------

# (network, in -> out channels, ngf/ndf, parameters); the reference's own counts are the first
# three: 6 -> 3 unet_128 41.83M, 3 -> 3 resnet_9blocks 11.38M, PatchGAN (3 channels in) 2.77M
COUNTS = [
    ("unet_128", 6, 3, 64, 41_832_067),  # pix2pix-masked generator
    ("unet_128", 3, 3, 64, 41_828_995),  # pix2pix generator
    ("unet_128", 6, 3, 32, 10_463_043),  # the ngf 32 variant (shippable size)
    ("unet_128", 3, 3, 32, 10_461_507),
    ("resnet_9blocks", 3, 3, 64, 11_378_179),  # cyclegan G_A and G_B
    ("resnet_9blocks", 6, 3, 64, 11_387_587),  # cyclegan-masked G_A (landmarks+masked -> face)
    ("resnet_9blocks", 3, 6, 64, 11_387_590),  # cyclegan-masked G_B (face -> landmarks+masked)
    ("patch_batch", 3, 1, 64, 2_765_633),  # the reference's basic D, batch norm
    ("patch_batch", 6, 1, 64, 2_768_705),  # pix2pix D: landmarks ⊕ face
    ("patch_batch", 9, 1, 64, 2_771_777),  # pix2pix-masked D: landmarks ⊕ masked face ⊕ face
    ("patch_instance", 3, 1, 64, 2_764_737),  # cyclegan D_A / D_B (instance norm: conv biases)
    ("patch_instance", 6, 1, 64, 2_767_809),  # cyclegan-masked D of the 6-channel domain
]


@pytest.mark.parametrize(("net", "cin", "cout", "width", "n"), COUNTS)
def test_parameter_counts_match_the_reference(net, cin, cout, width, n):
    if net == "unet_128":
        m = UnetGenerator(cin, cout, 7, width)
    elif net == "resnet_9blocks":
        m = ResnetGenerator(cin, cout, width)
    else:
        m = PatchDiscriminator(cin, width, 3, net.split("_")[1])
    assert count_parameters(m) == n


def test_forward_at_128_px_gives_faces_in_tanh_range():
    torch.manual_seed(0)
    for g in (unet_128(6), unet_128(3, ngf=32), resnet_9blocks(3), resnet_9blocks(6, ngf=16)):
        g.eval()
        with torch.no_grad():
            y = g(torch.rand(2, g.in_ch, 128, 128) * 2 - 1)
        assert y.shape == (2, 3, 128, 128)
        assert torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1
    d = patch_discriminator(3)
    assert d(torch.rand(2, 3, 128, 128)).shape == (2, 1, 14, 14)  # one logit per 70x70 patch


@torch.no_grad()
def test_init_is_normal_0_02_and_dropout_where_the_reference_has_it():
    g = unet_128(3)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3
    bn = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert abs(float(torch.cat([m.weight for m in bn]).mean()) - 1) < 5e-3
    drop = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    # num_downs - 5 = 2 decoder levels at ngf x 8 above the bottleneck
    assert len(drop) == 2 and all(m.p == 0.5 for m in drop)


# -- the registered methods -----------------------------------------------------------------


def _batch():
    from tests.test_methods import _batch as real_faces

    return real_faces()


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    import hashlib

    path = tmp_path / f"{name}.pt"
    ckpt = _save(name, path, ngf=8, seed=3)
    m = METHODS.create(name, checkpoint=str(path))
    assert m.name == name and m.meta.region == "mask"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.meta.checkpoint_sha256 == sha
    want = {"variant": _variant(name), "ngf": 8, "checkpoint_sha256": sha}
    assert m.config() == {**want, "dtype": "fp32", "compile": False}
    assert "baseline only once trained" in m.meta.note and "; " not in m.meta.note
    with pytest.raises(AnonbenchError, match="needs a CUDA device"):
        METHODS.create(name, checkpoint=str(path), compile=True)
    with pytest.raises(AnonbenchError, match="dtype must be one of"):
        METHODS.create(name, checkpoint=str(path), dtype="fp16")
    # the in-memory net the checkpoint was written from
    mod = _module(name)
    cin = gan_common.VARIANTS[_variant(name)]
    net = mod.generator(cin, 3, 8)
    net.load_state_dict(ckpt["generator"])
    net.eval()
    x = torch.rand(2, cin, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m.generator_net(x), net(x))
    # and the method's whole pipeline: CIAGAN's face view in, pasted into the mask
    batch = _batch()
    out = m.anonymize(batch)
    todo, views, affines = gan_common.face_views(batch)
    with torch.no_grad():
        y = net(gan_common.generator_input(views, _variant(name)))
    ref = gan_common.paste_faces(batch, todo, views, affines, (y + 1) / 2)
    m_ = batch.masks.expand_as(out) > 0
    assert torch.equal(out[m_], ref.clamp(0, 1)[m_])


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_without_weights_one_line_saying_how_to_get_them():
    for name in ("pix2pix-masked", "cyclegan-masked"):  # the landmarks variants ship weights
        with pytest.raises(AnonbenchError) as e:
            METHODS.create(name)
        msg = _one_line(e)
        family = name.partition("-")[0]
        assert msg.startswith(f"no {name} weights: ")
        assert f"anonbench train {family}" in msg and "--checkpoint" in msg


def test_bad_checkpoints_are_one_clear_line(tmp_path):
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("pix2pix", checkpoint=str(tmp_path / "nope.pt"))
    assert _one_line(e).endswith("nope.pt: not found")
    with pytest.raises(AnonbenchError) as e:  # run --checkpoint with a folder said "not found"
        METHODS.create("pix2pix", checkpoint=str(tmp_path))
    assert _one_line(e).endswith(": a folder, not a checkpoint file")
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("ciagan", checkpoint=str(tmp_path))
    assert _one_line(e).endswith(": a folder, not a checkpoint file")

    good = tmp_path / "good.pt"
    _save("pix2pix", good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("pix2pix", checkpoint=str(cut))
    assert "cannot read pix2pix checkpoint" in _one_line(e)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("cyclegan", checkpoint=str(junk))
    assert "cannot read cyclegan checkpoint" in _one_line(e)

    from anonbench.methods.ciagan.checkpoint import random_generator_checkpoint, save_atomic

    ciagan = tmp_path / "ciagan.pt"
    save_atomic(random_generator_checkpoint(4, 32, 8), ciagan)
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("pix2pix", checkpoint=str(ciagan))
    assert "not an anonbench pix2pix checkpoint" in _one_line(e)

    with pytest.raises(AnonbenchError) as e:  # another family
        METHODS.create("cyclegan", checkpoint=str(good))
    assert "is a 'pix2pix' checkpoint, not cyclegan" in _one_line(e)

    with pytest.raises(AnonbenchError) as e:  # another variant
        METHODS.create("pix2pix-masked", checkpoint=str(good))
    assert "--method pix2pix, not pix2pix-masked" in _one_line(e)

    ckpt = _module("pix2pix").random_checkpoint("landmarks", ngf=8)
    ckpt["config"]["ngf"] = 16  # the header disagrees with the weights
    lied = tmp_path / "lied.pt"
    gan_common.save_checkpoint(ckpt, lied)
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("pix2pix", checkpoint=str(lied))
    assert "does not fit" in _one_line(e)


def test_ls_methods_lists_the_four_without_torch():
    code = (
        "import sys; from anonbench.cli import main; main(['ls', 'methods']); "
        "print('TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TORCH False" in out.stdout
    for name in NAMES:
        assert f"  {name} " in out.stdout


def test_cli_anonymize_changes_the_face_and_nothing_outside_the_mask(tmp_path):
    from anonbench.cli import main
    from anonbench.data.images import read_rgb
    from anonbench.data.lfw import sample_root
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.faces.mask import ciagan_mask

    src = sorted((sample_root() / "images").glob("*/*.jpg"))[0]
    img = read_rgb(src)
    png = tmp_path / "face.png"  # lossless in and out: every pixel outside the mask compares
    import cv2

    cv2.imwrite(str(png), img[..., ::-1])
    ckpt = tmp_path / "p2p.pt"
    _save("pix2pix", ckpt, ngf=8)
    out = tmp_path / "out"
    args = ["anonymize", "--method", "pix2pix", "--checkpoint", str(ckpt), "--input", str(png)]
    args += ["--output", str(out), "--detector", "dlib-hog", "--quiet", "--no-cache"]
    assert main(args) == 0
    res = read_rgb(out / "face.png")
    faces = FaceAnalyzer()(img)
    assert len(faces) == 1
    mask = ciagan_mask(faces.landmarks[0], *img.shape[:2]) > 0
    diff = np.abs(res.astype(int) - img.astype(int)).max(-1)
    assert not diff[~mask].any()  # nothing outside the mask changed
    assert diff[mask].mean() > 5  # the face did


def test_bf16_autocast_agrees_with_fp32(tmp_path):
    path = tmp_path / "cg.pt"
    _save("cyclegan", path, ngf=8, seed=1)
    batch = _batch()
    fp32 = METHODS.create("cyclegan", checkpoint=str(path)).anonymize(batch)
    m = METHODS.create("cyclegan", checkpoint=str(path), dtype="bf16")
    assert m.config()["dtype"] == "bf16"
    bf16 = m.anonymize(batch)
    assert (fp32 - bf16).abs().max() < 0.05


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_shipped_weights_load_say_what_they_are_and_match_their_card(tmp_path, family):
    """`pix2pix` / `cyclegan` without --checkpoint: the CPU-trained landmarks weights in the
    package, by content also when copied elsewhere; a checkpoint of your own carries no
    shipped note; the masked variant still ships none."""
    import hashlib
    import importlib

    from anonbench.methods.ciagan.checkpoint import read_bytes

    mod = importlib.import_module(f"anonbench.methods.{family}.anonymizer")
    cls = next(v for v in vars(mod).values() if getattr(v, "family", None) == family)
    shipped = cls.package_weights["landmarks"]
    assert set(cls.package_weights) == {"landmarks"}
    m = METHODS.create(family)
    card = (shipped.parent / "MODEL_CARD.md").read_text()
    assert m.meta.checkpoint_sha256 in card and m.checkpoint == str(shipped)
    assert "shipped CPU-trained checkpoint" in m.meta.note and "; " not in m.meta.note
    assert "CelebA" in m.meta.license
    copy = tmp_path / "copy.pt"
    copy.write_bytes(read_bytes(shipped))
    again = METHODS.create(family, checkpoint=str(copy))
    assert again.meta.checkpoint_sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert "shipped CPU-trained checkpoint" in again.meta.note
    own = tmp_path / "own.pt"
    _save(family, own, ngf=8, seed=3)
    assert "shipped" not in METHODS.create(family, checkpoint=str(own)).meta.note
    # the faces it draws are pasted into the mask and differ from the originals there
    batch = _batch()
    out = m.anonymize(batch)
    inside = batch.masks.expand_as(out) > 0
    assert torch.equal(out[~inside], batch.images[~inside])
    assert (out[inside] - batch.images[inside]).abs().mean() > 0.02
