"""RetinaFace (our implementation, shipped weights) and the MTCNN adapter on real faces."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anonbench.api import Detector, FaceDetection
from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.errors import AnonbenchError, MissingWeightsError
from anonbench.faces import retinaface as rf
from anonbench.faces.mask import iou
from anonbench.registry import DETECTORS

DETECTOR_NAMES = ["retinaface", "mtcnn"]


def _face_images() -> list[Path]:
    lfw = sorted((sample_root() / "images").glob("*/*.jpg"))[:5]
    celeba = sorted((Path(__file__).parent / "fixtures/celeba_tiny/img_align_celeba").glob("*.jpg"))
    assert len(lfw) == 5 and len(celeba) == 4
    return lfw + celeba


FACES = _face_images()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    return {name: DETECTORS.create(name) for name in DETECTOR_NAMES}


@pytest.fixture(scope="module")
def hog() -> Detector:
    return DETECTORS.create("dlib-hog")


def test_state_dict_matches_the_network_exactly():
    net = rf.build_net()
    sd = rf.load_state_dict(rf.resolve_weights())
    assert len(sd) == 300
    assert set(sd) == set(net.state_dict())
    result = net.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # the loaded values really are the checkpoint's (not left at initialisation)
    assert torch.equal(net.state_dict()["ClassHead.2.conv1x1.bias"], sd["ClassHead.2.conv1x1.bias"])


def test_module_prefix_is_stripped(tmp_path):
    sd = rf.load_state_dict(rf.resolve_weights())
    path = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    det = rf.RetinaFaceDetector(weights=str(path))
    assert det.detect(read_rgb(FACES[0]))


def test_registry_builds_detectors(detectors):
    assert isinstance(detectors["retinaface"], rf.RetinaFaceDetector)
    for name, det in detectors.items():
        assert isinstance(det, Detector) and det.name == name and det.version


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("path", FACES, ids=lambda p: p.stem)
def test_real_face_matches_dlib_hog(detectors, hog, name, path):
    img = read_rgb(path)
    hog_faces = hog.detect(img)
    assert hog_faces, "fixture image without a HOG face"
    faces = detectors[name].detect(img)
    matching = [f for f in faces if iou(f.box, hog_faces[0].box) >= 0.5]
    assert len(matching) == 1, [(f.box, f.score) for f in faces]
    face = matching[0]
    assert isinstance(face, FaceDetection) and 0.9 < face.score <= 1.0
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)

    lm = face.landmarks
    assert lm is not None and lm.shape == (5, 2) and lm.dtype == np.float32
    left, top, right, bottom = face.box
    assert np.all((lm[:, 0] > left) & (lm[:, 0] < right))
    assert np.all((lm[:, 1] > top) & (lm[:, 1] < bottom))
    # order: eye, eye, nose, mouth corner, mouth corner (upright faces)
    eyes_y, nose_y, mouth_y = lm[:2, 1].max(), lm[2, 1], lm[3:, 1].min()
    assert eyes_y < nose_y < mouth_y
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]


def test_retinaface_golden_output(detectors):
    # Values from this implementation, which matched biubug6's own code (Face-Detector-1MB @
    # 2b07565, run once outside the project) to 3e-5 px on 24 images. A changed preprocessing
    # (e.g. RGB fed as BGR moves these by 1.5-4 px) or decoding fails here.
    assert FACES[0].name == "Abdel_Madi_Shabneh_0001.jpg"
    face = detectors["retinaface"].detect(read_rgb(FACES[0]))[0]
    assert face.box == pytest.approx((78.14, 68.04, 167.39, 187.29), abs=0.25)
    assert face.score == pytest.approx(0.99875, abs=1e-3)
    golden = [
        (104.09, 109.5),  # eye
        (147.99, 111.5),  # eye
        (127.09, 138.66),  # nose
        (105.03, 153.69),  # mouth corner
        (142.54, 155.58),  # mouth corner
    ]
    np.testing.assert_allclose(face.landmarks, golden, atol=0.25)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_two_faces_side_by_side(detectors, name):
    # a non-square input with faces in both halves: catches x / y mix-ups and broken sorting
    a, b = read_rgb(FACES[0]), read_rgb(FACES[1])
    img = np.concatenate([a, b], axis=1)
    faces = detectors[name].detect(img)
    big = [f for f in faces if f.score > 0.9 and f.box[2] - f.box[0] > 60]
    assert len(big) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in big)
    assert centres[0] < a.shape[1] < centres[1]
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("shape", [(250, 250, 3), (218, 178, 3)])
def test_blank_grey_image_has_no_face(detectors, name, shape):
    assert detectors[name].detect(np.full(shape, 128, np.uint8)) == []


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_float_image_is_refused(detectors, name):
    # a float image in [0, 1] would silently find nothing
    with pytest.raises(ValueError, match="uint8"):
        detectors[name].detect(np.full((64, 64, 3), 0.5, np.float32))


@pytest.mark.parametrize("height,width", [(250, 250), (218, 178), (37, 61)])
def test_prior_count_matches_formula_and_network(height, width):
    expected = sum(
        math.ceil(height / s) * math.ceil(width / s) * 2 for s in (8, 16, 32)
    )  # two anchor sizes per cell on each level
    if (height, width) == (250, 250):
        assert expected == 32 * 32 * 2 + 16 * 16 * 2 + 8 * 8 * 2 == 2688
    assert rf.prior_count(height, width) == expected
    priors = rf.prior_boxes(height, width)
    assert priors.shape == (expected, 4)
    with torch.no_grad():
        loc, cls, ldm = rf.build_net()(torch.zeros(1, 3, height, width))
    assert loc.shape == (1, expected, 4) and cls.shape == (1, expected, 2)
    assert ldm.shape == (1, expected, 10)


def test_prior_order_follows_the_heads():
    p = rf.prior_boxes(250, 250)
    # first cell of level 1 (stride 8): both anchor sizes, then the next column
    assert p[:3].tolist() == [[4, 4, 10, 10], [4, 4, 20, 20], [12, 4, 10, 10]]
    start = 32 * 32 * 2  # first prior of level 2 (stride 16)
    assert p[start].tolist() == [8, 8, 32, 32]
    assert p[-1].tolist() == [7 * 32 + 16, 7 * 32 + 16, 256, 256]


def test_decoding_zero_offsets_gives_the_anchor():
    priors = torch.tensor([[50.0, 60.0, 20.0, 40.0]])
    box = rf.decode_boxes(torch.zeros(1, 4), priors, (0.1, 0.2))
    assert box.tolist() == [[40.0, 40.0, 60.0, 80.0]]
    shifted = rf.decode_boxes(torch.tensor([[1.0, -1.0, 0.0, 0.0]]), priors, (0.1, 0.2))
    assert torch.allclose(shifted, torch.tensor([[42.0, 36.0, 62.0, 76.0]]))
    pts = rf.decode_landmarks(torch.ones(1, 10), priors, (0.1, 0.2))
    assert pts.shape == (1, 5, 2) and torch.allclose(pts[0, 0], torch.tensor([52.0, 64.0]))


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(rf.WEIGHTS_ENV, raising=False)
    packaged = rf.resolve_weights()
    with pytest.raises(MissingWeightsError, match=r"nowhere_weights\.pth"):
        rf.RetinaFaceDetector(weights=str(tmp_path / "nowhere_weights.pth"))
    monkeypatch.setenv(rf.WEIGHTS_ENV, str(tmp_path / "env_weights.pth"))
    with pytest.raises(MissingWeightsError, match=r"env_weights\.pth"):
        rf.RetinaFaceDetector()
    # an explicit path wins over the environment variable
    assert rf.RetinaFaceDetector(weights=str(packaged)).weights == packaged


def test_packaged_weights_have_license_and_hash():
    folder = Path(rf.__file__).parent / "weights" / "retinaface"
    assert (folder / "LICENSE").read_text().startswith("MIT License")
    sha = "ed6fa7d45a5179f03cb5ce82c73b0c6711372968e53782e88395acee88d319e1"
    assert sha in (folder / "README.md").read_text()
    assert rf._sha256(folder / rf.WEIGHTS_FILE) == sha


def test_mtcnn_without_facenet_pytorch_says_how_to_install(monkeypatch):
    from anonbench.faces.mtcnn import MTCNNDetector

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import now raises ImportError
    with pytest.raises(AnonbenchError, match=r"pip install facenet-pytorch==2\.5\.3"):
        MTCNNDetector()


@pytest.mark.shared
@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_celeba_detection_rate(shared_data, detectors, name):
    files = sorted((shared_data / "celeba" / "img_align_celeba").glob("*.jpg"))[::20][:300]
    assert len(files) == 300
    found = sum(bool(detectors[name].detect(read_rgb(f))) for f in files)
    assert found / len(files) >= 0.99, f"{name}: {found}/{len(files)}"
