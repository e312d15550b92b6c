"""Identity embedders beyond dlib: five-point alignment, MobileFaceNet, FaceNet.

Tests that need the MobileFaceNet checkpoint (../shared/models, not shipped: it has no license)
skip when it is absent; everything else runs anywhere. The FaceNet weights are not available
here at all: its tests check the wiring with random weights, not accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from anonbench.data.images import read_rgb
from anonbench.data.lfw import LFW_FACE_BOX, sample_root
from anonbench.errors import MissingWeightsError
from anonbench.faces.align import (
    SPHEREFACE_112x96,
    five_points_from_68,
    similarity_transform,
    warp_face,
)
from anonbench.registry import EMBEDDERS

MFN_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/models/mobilefacenet/068.ckpt"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


# -- alignment ---------------------------------------------------------------------------------
def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(50, 200, (5, 2))
    m = _similarity(0.45, 0.3, -12.0, 7.5)
    np.testing.assert_allclose(similarity_transform(src, _apply(m, src)), m, atol=1e-9)


def test_similarity_transform_matches_brute_force_least_squares():
    from scipy.optimize import least_squares

    rng = np.random.default_rng(1)
    src = rng.uniform(60, 190, (5, 2))
    dst = _apply(_similarity(0.6, -0.2, 3.0, -4.0), src) + rng.normal(0, 2.0, (5, 2))

    def residual(p: np.ndarray) -> np.ndarray:
        return (_apply(_similarity(*p), src) - dst).ravel()

    # brute force: numerical minimisation of the squared error from several starts
    best = min(
        (least_squares(residual, [s0, a0, 0, 0]) for s0 in (0.3, 1.0) for a0 in (-1, 0, 1)),
        key=lambda r: r.cost,
    )
    ours = similarity_transform(src, dst)
    np.testing.assert_allclose(ours, _similarity(*best.x), atol=1e-5)
    assert np.sum((_apply(ours, src) - dst) ** 2) <= 2 * best.cost + 1e-8


def test_similarity_transform_rejects_degenerate_input():
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))


def test_warp_face_puts_the_points_on_the_template():
    # bright dots at the template points mapped into a larger image must land back on it
    m = _similarity(2.2, 0.15, 40.0, 25.0)
    src = _apply(m, SPHEREFACE_112x96)
    img = np.zeros((300, 300, 3), np.uint8)
    for x, y in np.round(src).astype(int):
        img[y - 3 : y + 4, x - 3 : x + 4] = 255
    out = warp_face(img, src, SPHEREFACE_112x96, (112, 96))
    assert out.shape == (112, 96, 3)
    for x, y in SPHEREFACE_112x96:
        assert out[round(y), round(x)].min() > 200
    assert out.mean() < 40  # and nowhere much else


def test_five_points_from_68():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = (10, 20)
    lm[42:48] = (30, 20)
    lm[30], lm[48], lm[54] = (20, 30), (12, 40), (28, 40)
    np.testing.assert_allclose(
        five_points_from_68(lm), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]
    )


# -- MobileFaceNet -----------------------------------------------------------------------------
def test_mobilefacenet_architecture_matches_the_reference_layout():
    import torch

    from anonbench.faces.mobilefacenet import N_STATE_TENSORS, build_mobilefacenet

    net = build_mobilefacenet().eval()
    state = net.state_dict()
    assert len(state) == N_STATE_TENSORS == 333
    assert tuple(state["linear7.conv.weight"].shape) == (512, 1, 7, 6)  # global depthwise
    assert tuple(state["blocks.12.conv.0.weight"].shape) == (512, 128, 1, 1)  # expansion 4
    assert tuple(state["linear1.bn.running_mean"].shape) == (128,)
    with torch.inference_mode():
        out = net(torch.zeros(2, 3, 112, 96))
    assert out.shape == (2, 128)


def test_mobilefacenet_missing_weights_is_one_clear_line(monkeypatch, tmp_path):
    from anonbench.faces.mobilefacenet import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # the ../shared default does not exist from here
    with pytest.raises(MissingWeightsError) as e:
        EMBEDDERS.create("mobilefacenet")
    msg = str(e.value)
    assert "\n" not in msg and "068.ckpt" in msg and ENV_VAR in msg
    assert "Xiaoccer/MobileFaceNet_Pytorch" in msg and "model/best/068.ckpt" in msg
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.ckpt"))
    with pytest.raises(MissingWeightsError, match=r"nope\.ckpt"):
        EMBEDDERS.create("mobilefacenet")


def test_mobilefacenet_wrong_checkpoint_is_one_clear_line(tmp_path):
    import torch

    from anonbench.faces.mobilefacenet import (
        WeightsMismatchError,
        build_mobilefacenet,
        load_mobilefacenet,
    )

    state = build_mobilefacenet().state_dict()
    state["conv2.conv.weight"] = torch.zeros(512, 64, 1, 1)  # one tensor of the wrong shape
    path = tmp_path / "wrong.ckpt"
    torch.save({"epoch": 1, "net_state_dict": state}, path)
    with pytest.raises(WeightsMismatchError) as e:
        load_mobilefacenet(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "1 of the wrong shape" in msg and "conv2.conv.weight" in msg
    assert "(512, 64, 1, 1) != (512, 128, 1, 1)" in msg
    del state["conv2.conv.weight"]
    torch.save(state, path)  # a bare state dict with a tensor missing
    with pytest.raises(WeightsMismatchError, match="1 missing"):
        load_mobilefacenet(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="could not be read"):
        load_mobilefacenet(path)


@pytest.fixture(scope="module")
def mfn_weights() -> Path:
    if not MFN_WEIGHTS.is_file():
        pytest.skip(f"MobileFaceNet weights not present ({MFN_WEIGHTS}); they are not shipped")
    return MFN_WEIGHTS


def test_mobilefacenet_checkpoint_loads_strictly(mfn_weights):
    import torch

    from anonbench.faces.mobilefacenet import load_mobilefacenet

    net = load_mobilefacenet(mfn_weights)
    ckpt = torch.load(mfn_weights, map_location="cpu", weights_only=True)["net_state_dict"]
    own = net.state_dict()
    assert list(own) == list(ckpt)  # same keys, same order: strict=True had nothing to forgive
    assert all(torch.equal(own[k], ckpt[k]) for k in own)


def test_mobilefacenet_same_person_closer_than_different_people(mfn_weights):
    emb = EMBEDDERS.create("mobilefacenet", weights=str(mfn_weights))
    assert emb.name == "mobilefacenet" and emb.dim == 128
    root = sample_root() / "images"
    people = ["Andre_Agassi", "Bill_Gates", "Angela_Bassett"]
    paths = [p for name in people for p in sorted((root / name).glob("*.jpg"))[:2]]
    e, fb = emb.embed([read_rgb(p) for p in paths], LFW_FACE_BOX)
    assert e.shape == (6, 128) and e.dtype == np.float32 and not fb.any()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    ident = np.repeat(np.arange(3), 2)
    same = sim[(ident[:, None] == ident[None]) & ~np.eye(6, dtype=bool)]
    diff = sim[ident[:, None] != ident[None]]
    assert same.min() > diff.max(), (same, diff)
    grey = np.full((250, 250, 3), 128, np.uint8)
    e, fb = emb.embed([grey], LFW_FACE_BOX)
    assert fb.tolist() == [True] and np.isfinite(e).all()


# -- FaceNet -----------------------------------------------------------------------------------
def test_facenet_missing_weights_is_one_clear_line(monkeypatch, tmp_path):
    from anonbench.faces.facenet import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty hub and checkpoint dirs
    for name, file in [
        ("facenet-vggface2", "20180402-114759-vggface2.pt"),
        ("facenet-casia", "20180408-102900-casia-webface.pt"),
    ]:
        with pytest.raises(MissingWeightsError) as e:
            EMBEDDERS.create(name)
        msg = str(e.value)
        assert "\n" not in msg and file in msg and ENV_VAR in msg
        assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
        assert f"github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{file}" in msg


@pytest.fixture(scope="module")
def random_facenet_file(tmp_path_factory) -> Path:
    """Random InceptionResnetV1 weights laid out as the VGGFace2 release file (with its
    8631-class logits layer)."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(state, path)
    return path


def test_facenet_wiring_runs_end_to_end_with_random_weights(random_facenet_file, monkeypatch):
    """Random weights: checks the plumbing (load, detect, crop, embed, fallback), not accuracy."""
    from anonbench.faces.facenet import ENV_VAR

    monkeypatch.setenv(ENV_VAR, str(random_facenet_file))
    emb = EMBEDDERS.create("facenet-vggface2")
    assert emb.name == "facenet-vggface2" and emb.dim == 512
    root = sample_root() / "images"
    paths = sorted((root / "Abdullah_Gul").glob("*.jpg"))[:2]
    grey = np.full((250, 250, 3), 128, np.uint8)
    e, fb = emb.embed([*(read_rgb(p) for p in paths), grey], LFW_FACE_BOX)
    assert e.shape == (3, 512) and e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert fb.tolist() == [False, False, True]


def test_facenet_rejects_the_other_variants_file(random_facenet_file):
    from anonbench.faces.mobilefacenet import WeightsMismatchError

    with pytest.raises(WeightsMismatchError, match="8631-class logits"):
        EMBEDDERS.create("facenet-casia", weights=str(random_facenet_file))


def test_facenet_crop_follows_facenet_pytorch():
    """Our crop equals facenet-pytorch's extract_face on the same box (numpy path)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import extract_face

    from anonbench.faces.facenet import crop_with_margin

    img = read_rgb(sorted((sample_root() / "images").glob("*/*.jpg"))[0])
    box = (70.3, 61.8, 171.2, 190.6)
    ref = extract_face(img, np.array(box), 160, 14)  # 3 x 160 x 160 float, 0..255
    ours = torch.from_numpy(crop_with_margin(img, box, 160, 14)).permute(2, 0, 1).float()
    assert torch.equal(ours, ref)
