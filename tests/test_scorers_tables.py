"""Per-item score files (anonbench.scorers.tables) from synthetic per_item dicts."""

from __future__ import annotations

import pandas as pd

from anonbench.scorers.tables import method_dir, write_per_item


def test_one_file_per_evaluator_merged_on_key(tmp_path):
    items = [
        {"key": "a.jpg", "evaluator": "dlib-hog", "faces_missed": 0},
        {"key": "b.jpg", "evaluator": "dlib-hog", "faces_missed": 1},
        {"key": "a.jpg", "evaluator": "dlib-hog", "detection_rate": 100.0},
        {"key": "a.jpg", "evaluator": "Net/x", "recall_at_1": 0.0},
    ]
    files = write_per_item(tmp_path, "celeba", "Blur 9", items, {"a.jpg": "7", "b.jpg": "8"})
    d = method_dir(tmp_path, "celeba", "Blur 9")
    assert d == tmp_path / "scores" / "celeba" / "^blur%209"
    assert sorted(f.name for f in files) == ["^net%2Fx.csv", "dlib-hog.csv"]
    hog = pd.read_csv(d / "dlib-hog.csv", dtype={"identity": str})
    assert list(hog.columns) == ["key", "identity", "faces_missed", "detection_rate"]
    assert hog.identity.tolist() == ["7", "8"] and hog.faces_missed.tolist() == [0, 1]
    assert hog.detection_rate.isna().tolist() == [False, True]
