"""Issue 21, "one pass means less work": what `anonbench run --methods original --protocol lfw`
does beyond the dlib work on each image (benchmarks/lfw_one_pass.py) stays small: building a
classic method imports no torch (5-6 s wall on a loaded 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

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
    import numpy as np
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
