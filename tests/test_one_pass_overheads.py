"""Issue 21, "one pass means less work": what `anonbench run --methods original --protocol lfw`
does beyond the dlib work on each image (benchmarks/lfw_one_pass.py) stays small: building a
classic method imports no torch (5-6 s wall on a loaded 2-core machine)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CLASSIC = ["original", "blur17", "blur9", "pixelate16", "pixelate8", "mask"]


def _torch_loaded_after(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('TORCH', 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return "TORCH True" in out.stdout


def test_building_the_classic_methods_imports_no_torch():
    code = f"from anonbench.registry import METHODS\nfor n in {CLASSIC!r}: METHODS.create(n)"
    assert not _torch_loaded_after(code)


@pytest.mark.parametrize("name", ["original", "blur17", "pixelate8"])
def test_classic_methods_still_run_once_torch_is_imported_lazily(name):
    import torch

    from anonbench.api import FaceBatch
    from anonbench.registry import METHODS

    m = METHODS.create(name)
    img = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    batch = FaceBatch(
        images=img,
        landmarks=torch.zeros(2, 68, 2),
        masks=mask,
        boxes=torch.tensor([[4.0, 4.0, 12.0, 12.0]] * 2),
        keys=["a#0", "b#0"],
    )
    out = m.anonymize(batch)
    assert out.shape == img.shape
    outside = mask.expand_as(img) == 0
    assert np.array_equal(out[outside].numpy(), img[outside].numpy())


def test_torch_threads_are_set_when_torch_is_first_imported():
    """The run's torch threads (workers) without importing torch up front."""
    code = (
        "from anonbench.runner import torch_threads\n"
        "torch_threads(3)\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "assert torch.get_num_threads() == 3, torch.get_num_threads()\n"
        "torch_threads(1)\n"
        "assert torch.get_num_threads() == 1"
    )
    assert _torch_loaded_after(code)


def test_original_on_lfw_runs_without_torch(fixtures, tmp_path):
    """`--methods original --protocol lfw`: dlib work only, so no torch import (issue 21's
    one-pass benchmark), and the results are written."""
    argv = [
        "run", "--methods", "original", "--protocol", "lfw",
        "--data-root", str(fixtures / "lfw_tiny"), "--option", "folds=0",
        "--option", "reversal=none", "--workers", "1", "--device", "cpu", "--seed", "0",
        "--quiet", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert not _torch_loaded_after(f"from anonbench.cli import main\nmain({argv!r})")
    rows = (tmp_path / "run" / "results.csv").read_text().splitlines()
    assert len(rows) > 1 and any(",auc," in r for r in rows)


def test_identity_production_stores_nothing_and_hands_out_what_running_it_gives(fixtures, tmp_path):
    """original's outputs are its inputs: production neither calls the method (no torch) nor
    copies the originals; the store hands out the originals, pixel for pixel what running the
    method through torch stores, with the same entries otherwise, is reused as it is on the
    next run, and exports the same bytes."""
    from anonbench.data.datasets import open_dataset
    from anonbench.evaluate import Originals
    from anonbench.methods.classic import Original
    from anonbench.produce import export_store, produce

    class RunThrough(Original):
        identity = False  # anonymize_batch, the torch path, PNGs in the store

    records = open_dataset(str(fixtures / "lfw_tiny"), "lfw").records
    analyses = Originals(str(tmp_path / "cache"), quiet=True).analyze(records, "analyse")

    def store(m, label):
        return produce(m, "original", records, analyses, cache_dir=tmp_path / label, quiet=True)

    a, b = store(Original(), "copied"), store(RunThrough(), "run")
    assert a.entries.keys() == b.entries.keys() == {r.key for r in records}
    assert any(e["file"] for e in b.entries.values())
    assert not any(e["file"] for e in a.entries.values())
    assert not list(a.root.glob("**/*.png"))
    volatile = {"file": None, "sha256": None, "seconds": 0, "identity": True}
    for r in records:
        assert {**a.entries[r.key], **volatile} == {**b.entries[r.key], **volatile}
        assert a.ref(r).path is None and np.array_equal(a.load(r), b.load(r))
    assert a.verify(records) == []
    again = store(Original(), "copied")  # reused: nothing produced again
    assert again.entries == a.entries
    ea, eb = export_store(a, records, tmp_path / "ea"), export_store(b, records, tmp_path / "eb")
    ma, mb = (json.loads((e / "manifest.json").read_text())["images"] for e in (ea, eb))
    for r in records:
        png = Path(r.key).with_suffix(".png")
        assert (ea / png).read_bytes() == (eb / png).read_bytes()
        # every exported file's manifest entry names the sha256 of the bytes written
        digest = hashlib.sha256((ea / png).read_bytes()).hexdigest()
        assert ma[r.key]["sha256"] == mb[r.key]["sha256"] == digest


def test_produce_original_imports_no_torch_and_blur_sets_its_threads(fixtures, tmp_path):
    """`anonbench produce` imports torch only when the method needs it, and then with the
    command's thread count (it used to import torch up front to set threads)."""
    base = ["--data", f"lfw:{fixtures / 'lfw_tiny'}", "--workers", "1", "--device", "cpu"]
    base += ["--quiet", "--cache-dir", str(tmp_path / "cache")]
    argv = ["produce", "--method", "original", "--out", str(tmp_path / "o"), *base]
    assert not _torch_loaded_after(f"from anonbench.cli import main\nmain({argv!r})")
    assert (tmp_path / "o" / "manifest.json").is_file()
    argv = ["produce", "--method", "blur17", "--out", str(tmp_path / "b"), *base]
    code = (
        f"from anonbench.cli import main\nmain({argv!r})\n"
        "import torch\nassert torch.get_num_threads() == 1, torch.get_num_threads()"
    )
    assert _torch_loaded_after(code)
