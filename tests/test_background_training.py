"""Training as a long background job (issue 19): --preset cpu, status.json with CPU-hours that
add up across resumes, snapshots for the learning curve, SIGTERM saving a checkpoint; and the
quality command's arithmetic (identity effect against a brute-force loop, ranking)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from gan_fixtures import tiny_prepared

from anonbench.methods import gan_options
from anonbench.methods.gan_train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pix2pix_cfg(tmp_path, **kw):
    from anonbench.methods.pix2pix.options import Pix2PixConfig

    base = dict(
        data=tiny_prepared(tmp_path / "faces.npz"),
        out=str(tmp_path / "run"),
        ngf=4,
        ndf=4,
        batch_size=2,
        progress=False,
    )
    return Pix2PixConfig(**{**base, **kw})


def _family():
    from anonbench.methods.pix2pix.train import FAMILY

    return FAMILY


def test_cpu_preset_sets_the_background_defaults_and_flags_still_win():
    from anonbench.methods.pix2pix import options

    p = options.build_parser()
    gan_options.apply_preset(p, ["--preset", "cpu"], options.PRESETS)
    args = p.parse_args(["--data", "x", "--preset", "cpu", "--ngf", "16"])
    cfg = options.config_from_args(args)
    assert (cfg.threads, cfg.nice, cfg.ndf, cfg.ngf, cfg.preset) == (1, 19, 32, 16, "cpu")
    assert cfg.amp == ("bf16" if gan_options.cpu_has_bf16() else "off")
    assert not cfg.progress and cfg.save_minutes > 0 and cfg.keep_minutes > 0
    p = options.build_parser()
    gan_options.apply_preset(p, [], options.PRESETS)
    cfg = options.config_from_args(p.parse_args(["--data", "x"]))
    assert (cfg.threads, cfg.nice, cfg.ngf, cfg.preset) == (0, 0, 64, "paper")


@pytest.mark.parametrize("bad", [["--threads", "-1"], ["--nice", "25"], ["--keep-minutes", "nan"]])
def test_bad_background_options_are_one_line(bad, tmp_path):
    from anonbench.cli import main

    argv = ["train", "pix2pix", "--data", tiny_prepared(tmp_path / "f.npz")]
    with pytest.raises(SystemExit) as e:  # argparse's one line (anonbench.argtypes), exit 2
        main([*argv, "--out", str(tmp_path / "o"), *bad])
    assert e.value.code == 2
    assert not (tmp_path / "o").exists()


def test_status_file_snapshots_and_cpu_hours_across_a_resume(tmp_path):
    cfg = _pix2pix_cfg(tmp_path, max_steps=2, keep_minutes=1e-9, save_every=1)
    last = train(_family(), cfg)
    out = last.parent
    st = json.loads((out / "status.json").read_text())
    assert st["family"] == "pix2pix" and st["step"] == 2 and st["state"] == "finished"
    assert st["cpu_seconds"] > 0 and st["steps_total"] == 2
    assert st["losses"]["g_l1"]["last"] is not None  # a loss column with its trend entry
    snaps = sorted((out / "snapshots").glob("step_*.pt"))
    assert [p.name for p in snaps][-1] == "step_0000002.pt"
    side = json.loads(snaps[-1].with_suffix(".json").read_text())
    assert side["step"] == 2 and side["cpu_hours"] == pytest.approx(st["cpu_hours"], abs=1e-3)
    # the snapshot is the checkpoint of its step, loadable as the method's checkpoint
    assert torch.load(snaps[-1], weights_only=True)["step"] == 2
    before = st["cpu_seconds"]
    last = train(_family(), _pix2pix_cfg(tmp_path, max_steps=3), resume=True)
    st = json.loads((out / "status.json").read_text())
    assert st["step"] == 3 and st["cpu_seconds"] > before


def test_sigterm_saves_a_checkpoint_and_a_resume_continues(tmp_path, monkeypatch):
    from anonbench.methods.pix2pix.train import Trainer

    step = Trainer.step

    def step_then_term(self):
        row = step(self)
        if self.step_count == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, mid-training
        return row

    monkeypatch.setattr(Trainer, "step", step_then_term)
    last = train(_family(), _pix2pix_cfg(tmp_path, max_steps=5))
    assert torch.load(last, weights_only=True)["step"] == 2
    st = json.loads((last.parent / "status.json").read_text())
    assert (st["state"], st["step"]) == ("stopped", 2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    monkeypatch.setattr(Trainer, "step", step)
    train(_family(), _pix2pix_cfg(tmp_path, max_steps=5), resume=True)
    assert torch.load(last, weights_only=True)["step"] == 5


def test_identity_effect_equals_a_brute_force_loop():
    from anonbench.quality import identity_effect

    rng = np.random.default_rng(0)
    x = [rng.random((5, 4, 3)).astype(np.float32) for _ in range(2)]
    a = [xi.copy() for xi in x]
    b = [xi.copy() for xi in x]
    a[0][1, 1] += 0.5
    b[0][1, 1, 0] -= 0.01  # below the threshold alone; counted since a changed this pixel
    b[1][2, 3, 2] += 0.3
    a[1][0, 0, 1] += 0.015  # changed by neither beyond 0.02: not counted
    want, n = 0.0, 0
    for ai, bi, xi in zip(a, b, x, strict=True):
        for i in range(xi.shape[0]):
            for j in range(xi.shape[1]):
                if max(abs(ai[i, j] - xi[i, j]).max(), abs(bi[i, j] - xi[i, j]).max()) > 0.02:
                    want += float(np.abs(ai[i, j] - bi[i, j]).sum())
                    n += 3
    assert identity_effect(a, b, x) == pytest.approx(want / n, rel=1e-6)
    assert identity_effect(x, x, x) == 0.0


def test_rank_orders_by_identity_effect_then_detection_then_kid():
    from anonbench.quality import rank

    rows = [
        {
            "checkpoint": "a",
            "identity_effect_heldout": "0.01",
            "det_retinaface": "99",
            "det_dlib_hog": "90",
            "kid": "0.01",
        },
        {
            "checkpoint": "b",
            "identity_effect_heldout": "0.08",
            "det_retinaface": "90",
            "det_dlib_hog": "60",
            "kid": "0.20",
        },
        {
            "checkpoint": "c",
            "identity_effect_heldout": "0.08",
            "det_retinaface": "98",
            "det_dlib_hog": "88",
            "kid": "0.30",
        },
        {
            "checkpoint": "d",
            "identity_effect_heldout": "0.08",
            "det_retinaface": "98",
            "det_dlib_hog": "88",
            "kid": "0.05",
        },
        {
            "checkpoint": "e",
            "identity_effect_heldout": "",
            "det_retinaface": "nan",
            "det_dlib_hog": "",
            "kid": "",
        },
    ]
    assert [r["checkpoint"] for r in rank(rows)] == ["d", "c", "b", "a", "e"]


@pytest.mark.parametrize(
    ("minutes_per_step", "want_grids", "want_mid_epoch"), [(1, True, False), (3, True, True)]
)
def test_checkpoints_every_save_minutes_and_grids_at_epoch_ends(
    minutes_per_step, want_grids, want_mid_epoch, tmp_path, monkeypatch
):
    """8 faces at batch 2: 4 steps an epoch. Epochs shorter than --save-minutes 5 (1 min a
    step) checkpoint at epoch ends with their grid; longer ones (3 min a step) also mid-epoch,
    and still write a grid at an epoch end once --save-minutes have passed since the last."""
    import anonbench.methods.gan_train as core
    from anonbench.methods.pix2pix.train import Trainer

    clock = [0.0]
    monkeypatch.setattr(core.time, "monotonic", lambda: clock[0])
    step = Trainer.step

    def timed_step(self):
        clock[0] += 60.0 * minutes_per_step
        return step(self)

    monkeypatch.setattr(Trainer, "step", timed_step)
    fam = _family()
    saved_at: list[int] = []
    real_save = fam.save
    monkeypatch.setattr(fam, "save", lambda st, p: (saved_at.append(st["step"]), real_save(st, p)))
    train(fam, _pix2pix_cfg(tmp_path, max_steps=12, save_minutes=5.0))
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").glob("epoch_*.png"))
    assert bool(grids) == want_grids, grids
    assert any(s % 4 for s in saved_at if s < 12) == want_mid_epoch, saved_at


def test_checkpoint_info_reads_exports_in_pieces_and_their_sidecar(tmp_path):
    """The quality table's step and CPU-h columns for an export: its step from the joined
    NAME.part* pieces, the CPU-hours from the NAME.json that `cpu_training.sh export` writes."""
    from pathlib import Path

    from anonbench.quality import checkpoint_info

    raw = io_bytes({"format": "x", "step": 1234, "generator": {}})
    ckpt = tmp_path / "gen.pt"
    (tmp_path / "gen.pt.part00").write_bytes(raw[:10])
    (tmp_path / "gen.pt.part01").write_bytes(raw[10:])
    assert checkpoint_info(Path(ckpt)) == (1234, None)
    (tmp_path / "gen.json").write_text(json.dumps({"step": 1234, "cpu_hours": 2.5}))
    assert checkpoint_info(Path(ckpt)) == (1234, 2.5)


def io_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_quality_checks_its_checkpoints_and_log_folder_before_scoring(
    tmp_path, capsys, monkeypatch
):
    """A bad --log-to failed after the scoring (15 minutes on real data); a folder given as
    --checkpoint was 'no such file'. Both are one line before any work now."""
    import anonbench.quality as q
    from anonbench.cli import main

    scored = []
    monkeypatch.setattr(q, "score", lambda *a, **k: scored.append(a))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    ckpt = tmp_path / "g.pt"
    ckpt.write_bytes(b"not read: the checks come first")
    base = ["quality", "--method", "pix2pix", "--data-root", str(tmp_path)]
    assert main([*base, "--checkpoint", str(ckpt), "--log-to", str(blocker / "sub")]) == 2
    assert "--log-to" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(tmp_path)]) == 2
    assert "a folder, not a checkpoint file" in capsys.readouterr().err
    assert scored == []
