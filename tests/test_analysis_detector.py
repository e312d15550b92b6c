"""--analysis-detector (issue 24, part 4): any registered detector for the originals'
analysis, with dlib's 68 points placed in its box mapped to where dlib HOG puts it; the
default (dlib-hog) keeps every analysis, store key and run digest of earlier releases.
Fast: a fake detector (no weights), dlib's shipped predictor, the tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from anonbench import runfile
from anonbench.api import FaceDetection
from anonbench.cli import main
from anonbench.errors import AnonbenchError
from anonbench.registry import DETECTORS, METHODS

DEFAULT_VERSION = "dlib-hog/up1/1+dlib-68/1"
# the blur17 store of benchmarks/results/produce_evaluate_acceptance.md, made before the
# option existed: the default's store key must not move
BLUR17_STORE = "e047299dacd51840279b7db1"
FAKE = "test-centre"


class CentreDetector:
    """A fake detector: one face, the central half of the image."""

    name = FAKE
    version = "test-centre/1"

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.device = device

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        h, w = image.shape[:2]
        return [FaceDetection((w / 4, h / 4, 3 * w / 4, 3 * h / 4), 0.9)]

    def detect_batch(self, images):  # type: ignore[no-untyped-def]
        return [self.detect(i) for i in images]


@pytest.fixture
def centre_detector(monkeypatch):
    from anonbench import produce

    DETECTORS.register(FAKE)(CentreDetector)
    produce._analysis_version.cache_clear()  # versions depend on PREDICTOR_BOX, patched here
    yield FAKE
    DETECTORS._entries.pop(FAKE, None)
    produce._analysis_version.cache_clear()


@pytest.fixture
def seen_boxes(monkeypatch):
    """The boxes dlib's predictor is given (it returns zeros: no model needed)."""
    from anonbench.faces.dlib_faces import Dlib68Landmarker

    boxes: list[tuple[float, ...]] = []

    def landmarks(self, image, box):  # type: ignore[no-untyped-def]
        boxes.append(tuple(float(v) for v in box))
        return np.zeros((68, 2), np.float32)

    monkeypatch.setattr(Dlib68Landmarker, "landmarks", landmarks)
    return boxes


def test_the_default_keeps_analyses_store_keys_and_digests():
    from anonbench.evaluate import Originals
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.produce import analysis_version, store_id
    from anonbench.runner import _digested_options

    assert analysis_version() == analysis_version("dlib-hog") == DEFAULT_VERSION
    a = FaceAnalyzer()
    assert (a.version, a.component, a.mapped) == (
        DEFAULT_VERSION,
        "analysis-dlib-hog-dlib-68",
        False,
    )
    box = (10.0, 20.0, 90.0, 100.0)
    assert a.predictor_box(box) == box  # HOG boxes go to the predictor as they are
    assert store_id(METHODS.create("blur17"), "blur17", None, analysis_version()) == BLUR17_STORE
    assert Originals("c").detector == "dlib-hog"
    opts = {"folds": 1}
    s = SimpleNamespace(options=opts, resources=SimpleNamespace(analysis_detector="dlib-hog"))
    assert _digested_options(s) is opts  # run digests of default runs unchanged
    s.resources.analysis_detector, s.analysis = FAKE, "x"
    assert _digested_options(s) == {"folds": 1, "analysis_detector": "x"}


def test_predictor_box_is_mapped_and_the_analysis_keeps_the_detectors_box(
    centre_detector, seen_boxes, monkeypatch
):
    from anonbench.faces import analysis
    from anonbench.produce import analysis_version

    monkeypatch.setitem(analysis.PREDICTOR_BOX, FAKE, (-0.1, 0.1, 0.05, -0.05))
    a = analysis.FaceAnalyzer(FAKE)
    res = a(np.zeros((100, 200, 3), np.uint8))
    assert res.boxes.tolist() == [[50.0, 25.0, 150.0, 75.0]]  # the detector's own box
    # w 100, h 50: l - 10, t + 5, r + 5, b - 2.5
    assert seen_boxes == [(40.0, 30.0, 155.0, 72.5)]
    assert a.version == "test-centre/1+dlib-68/1+pbox-0.1000+0.1000+0.0500-0.0500"
    assert analysis_version(FAKE) == f"{FAKE}:{a.version}"
    # a detector without a measured mapping: its box as it is, and the version says so
    monkeypatch.delitem(analysis.PREDICTOR_BOX, FAKE)
    seen_boxes.clear()
    b = analysis.FaceAnalyzer(FAKE)
    b(np.zeros((100, 200, 3), np.uint8))
    assert seen_boxes == [(50.0, 25.0, 150.0, 75.0)]
    assert b.version.endswith("+pbox-asis") and b.version != a.version


def test_five_points_place_the_predictor_box_where_the_detector_gives_them(
    centre_detector, seen_boxes, monkeypatch
):
    from anonbench.faces import analysis

    # eyes at (40, 40) and (60, 40), mouth corners at (42, 60) and (58, 60): d = 20
    pts = np.array([[40, 40], [60, 40], [50, 50], [42, 60], [58, 60]], np.float32)
    assert analysis.points_box(pts, (0.0, 0.5, 2.0)) == (30.0, 30.0, 70.0, 70.0)
    assert analysis.points_box(pts[:4], (0.0, 0.5, 2.0)) is None  # not 5 points
    assert analysis.points_box(np.full((5, 2), 7.0), (0.0, 0.5, 2.0)) is None  # degenerate

    def detect(self, image):  # type: ignore[no-untyped-def]
        return [FaceDetection((0.0, 0.0, 100.0, 100.0), 0.9, landmarks=pts)]

    monkeypatch.setattr(CentreDetector, "detect", detect)
    monkeypatch.setitem(analysis.PREDICTOR_BOX, FAKE, (-0.1, 0.1, 0.05, -0.05))
    monkeypatch.setitem(analysis.PREDICTOR_BOX_FROM_POINTS, FAKE, (0.0, 0.5, 2.0))
    a = analysis.FaceAnalyzer(FAKE)
    assert a(np.zeros((100, 100, 3), np.uint8)).boxes.tolist() == [[0.0, 0.0, 100.0, 100.0]]
    assert seen_boxes == [(30.0, 30.0, 70.0, 70.0)]  # from the points, not the box
    assert a.version.endswith("/pts+0.0000+0.5000+2.0000")
    # a face without points: the box mapping
    assert a.predictor_box((0.0, 0.0, 100.0, 100.0), None) == (-10.0, 10.0, 105.0, 95.0)


def test_measured_mappings_move_boxes_down_and_make_them_squarer():
    from anonbench.faces.analysis import PREDICTOR_BOX, predictor_box

    for name in ("retinaface", "mtcnn"):
        assert name in DETECTORS
        x0, y0, x1, y1 = predictor_box((0.0, 0.0, 100.0, 120.0), PREDICTOR_BOX[name])
        assert y0 > 0 and y1 < 120  # HOG boxes start lower and end higher
        assert x1 - x0 > 100 and (x1 - x0) / (y1 - y0) > 100 / 120  # wider: squarer


def test_outputs_of_another_detector_never_mix(centre_detector, fixtures, tmp_path):
    from anonbench.data.datasets import open_dataset
    from anonbench.evaluate import Originals
    from anonbench.produce import produce

    ds = open_dataset(f"folders:{fixtures / 'identity_folders'}")
    cache = str(tmp_path / "c")
    method = METHODS.create("blur17")
    stores = {}
    for det in ("dlib-hog", FAKE):
        org = Originals(cache, 1, True, detector=det)
        analyses = org.analyze(ds.records, "analyse")
        stores[det] = produce(
            method,
            "blur17",
            ds.records,
            analyses,
            cache_dir=cache,
            quiet=True,
            analysis=org.analysis_version(),
        )
    fake, hog = stores[FAKE], stores["dlib-hog"]
    assert hog.root.name == BLUR17_STORE and hog.info["analysis"] == DEFAULT_VERSION
    assert fake.root != hog.root and fake.info["analysis"].startswith(f"{FAKE}:")
    assert all(e["faces"] == 1 and not e["missed"] for e in fake.entries.values())
    assert (Path(cache) / "outputs" / fake.root.name / "manifest.json").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--methods", "blur17", "--protocol", "lfw"],
        ["produce", "--method", "blur17"],
        ["anonymize", "--method", "blur17", "--input", "IN"],
    ],
)
def test_an_unknown_detector_is_one_line_exit_2_nothing_created(argv, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "c"
    argv = [a.replace("IN", str(tmp_path)) for a in argv]
    where = ["--output", str(out)] if argv[0] == "anonymize" else ["--out", str(out)]
    with pytest.raises(SystemExit) as e:  # argparse's exit, at parse time: before any work
        main([*argv, *where, "--cache-dir", str(cache), "--analysis-detector", "retinafce"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.count("\n") == 1 and "unknown detector 'retinafce'" in err
    assert "did you mean 'retinaface'?" in err
    assert not out.exists() and not cache.exists()


def _file(**settings) -> runfile.RunFile:
    return runfile.from_dict(
        {**settings, "methods": ["blur17"], "protocols": {"lfw": {}}}, source="t.toml"
    )


def test_run_file_key_analysis_detector():
    assert _file().settings["analysis_detector"] == "dlib-hog"
    rf = _file(analysis_detector="retinaface")
    assert [c.analysis_detector for c in rf.configs()] == ["retinaface"]
    again = runfile.from_dict(runfile.toml_module().loads(rf.to_toml()), source="again")
    assert again.settings["analysis_detector"] == "retinaface"  # --print-config keeps it
    flagged = runfile.with_flags(rf, {"analysis_detector": "mtcnn"})  # the flag wins
    assert flagged.configs()[0].analysis_detector == "mtcnn"
    assert runfile.with_flags(rf, {"analysis_detector": None}).settings["analysis_detector"] == (
        "retinaface"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("retinafce", "t.toml: analysis_detector: unknown detector 'retinafce'; did you mean"),
        (3, "t.toml: analysis_detector: expected a string, got a number (3)"),
    ],
)
def test_a_bad_run_file_detector_is_one_line(value, message):
    with pytest.raises(AnonbenchError) as e:
        _file(analysis_detector=value)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_run_records_its_analysis_detector_and_never_skips_across_them(
    centre_detector, fixtures, tmp_path, capsys
):
    from anonbench import runner

    out = tmp_path / "run"

    def run(det: str) -> dict:
        cfg = runner.RunConfig(
            methods=["blur17"],
            protocol="lfw",
            data=f"lfw:{fixtures / 'lfw_tiny'}",
            out=str(out),
            cache_dir=str(tmp_path / "c"),
            quiet=True,
            analysis_detector=det,
        )
        runner.run(cfg)
        return json.loads((out / "run.json").read_text())

    info = run(FAKE)
    assert info["config"]["analysis_detector"] == FAKE
    assert info["analysis"]["detector"] == FAKE
    assert info["analysis"]["version"].startswith(f"{FAKE}:")
    assert info["methods"]["blur17"]["store"]["analysis"] == info["analysis"]["version"]
    # faces_missed is counted over the faces the analysis detector chose: named after it
    res = pd.read_csv(out / "results.csv")
    assert set(res.loc[res["metric"] == "faces_missed", "evaluator"]) == {FAKE}
    capsys.readouterr()
    info = run("dlib-hog")  # another detector: computed again, not skipped
    assert "skipped blur17" not in capsys.readouterr().out
    assert info["analysis"] == {"detector": "dlib-hog", "version": DEFAULT_VERSION}
    assert info["methods"]["blur17"]["store"]["analysis"] == DEFAULT_VERSION
    run("dlib-hog")  # the same detector again: skipped
    assert "skipped blur17" in capsys.readouterr().out
