"""The generic GAN training core: CIAGAN's training through it is bit-identical to the trainer
before the extraction (a golden file made by that trainer), on one CPU thread."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GOLDEN = Path(__file__).parent / "fixtures" / "ciagan_golden_3steps.json"
TINY = dict(img_size=32, gen_width=8, critic_width=8, id_width=8)


def _tiny_prepared(path: Path) -> str:
    from anonbench.methods.landmark_data import TrainData, save_prepared

    g = torch.Generator().manual_seed(1)
    canvas = torch.randint(0, 256, (8, 5, 144, 144), generator=g, dtype=torch.uint8)
    labels = torch.arange(8) // 2
    data = TrainData(canvas, labels, [f"id{i}" for i in range(4)], [str(i) for i in range(8)])
    save_prepared(data, path, {"split": "all"})
    return f"prepared:{path}"


def _ciagan_run(tmp_path: Path) -> dict:
    """3 steps of `anonbench train ciagan`'s training function, Proxy-NCA pretraining
    included, on tiny models and 8 random 'faces'."""
    from anonbench.methods.ciagan.train import TrainConfig, train

    spec = _tiny_prepared(tmp_path / "tiny.npz")
    cfg = TrainConfig(
        data=spec,
        out=str(tmp_path / "run"),
        batch_size=2,
        identity_pretrain="pnca",
        pnca_epochs=1,
        max_steps=3,
        progress=False,
        **TINY,
    )
    last = train(cfg)
    state = torch.load(last, weights_only=True)
    with open(tmp_path / "run" / "losses.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    tensors: dict[str, str] = {}
    _digests({k: state[k] for k in ("models", "optimizers", "rng")}, "", tensors)
    return {"digests": tensors, "step": state["step"], "losses": rows}


def _digests(obj, where: str, out: dict[str, str]) -> None:
    """sha256 of every tensor (dtype, shape, bytes) and repr of every other leaf, by path: a
    small golden file that still names the first tensor that differs."""
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h = hashlib.sha256(f"{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[where] = h.hexdigest()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _digests(v, f"{where}.{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _digests(v, f"{where}[{i}]", out)
    else:
        out[where] = repr(obj)


def test_ciagan_training_is_bit_identical_to_before_the_extraction(tmp_path):
    got = _ciagan_run(tmp_path)
    if os.environ.get("ANONBENCH_WRITE_GOLDEN") == "1":  # only by hand, from the old trainer
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    assert got["step"] == want["step"] == 3
    assert got["losses"] == want["losses"]
    differ = [k for k in want["digests"] if got["digests"].get(k) != want["digests"][k]]
    assert not differ and set(got["digests"]) == set(want["digests"]), differ[:5]
