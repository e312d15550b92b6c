"""`anonbench train pix2pix|cyclegan --init-generator CHECKPOINT`: a lost training folder
continues from the committed export (the CIAGAN trainer has had this since session 7). The
generator starts from the file's weights; a file of another family, variant or width is one
line, before any step."""

from __future__ import annotations

import pytest
import torch
from gan_fixtures import tiny_prepared

from anonbench.cli import main
from anonbench.methods.gan_common import export_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(family, data, out, *extra) -> int:
    argv = ["train", family, "--data", data, "--out", str(out), "--ngf", "4", "--ndf", "4"]
    return main([*argv, "--batch-size", "2", "--max-steps", "1", "--no-progress", *extra])


def _generator(family, path):
    from anonbench.methods.ciagan.checkpoint import read_bytes
    from anonbench.methods.gan_common import parse_checkpoint

    return parse_checkpoint(read_bytes(path), str(path), family)["generator"]


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_warm_start_from_an_export_in_pieces(family, tmp_path, monkeypatch):
    data = tiny_prepared(tmp_path / "faces.npz")
    assert _train(family, data, tmp_path / "a") == 0
    export = tmp_path / "exp" / f"{family}_generator.pt"
    export.parent.mkdir()
    export_generator(tmp_path / "a" / "last.pt", export)
    # shipped weights come in NAME.part* pieces: the warm start reads them joined
    raw = export.read_bytes()
    export.unlink()
    (export.parent / f"{export.name}.part00").write_bytes(raw[: len(raw) // 2])
    (export.parent / f"{export.name}.part01").write_bytes(raw[len(raw) // 2 :])
    seen = {}
    from anonbench.methods import baseline_train

    orig = baseline_train.BaselineTrainer.warm_start

    def spy(self, src):
        orig(self, src)
        seen.update({k: v.detach().clone() for k, v in self.generator.state_dict().items()})

    monkeypatch.setattr(baseline_train.BaselineTrainer, "warm_start", spy)
    assert _train(family, data, tmp_path / "b", "--init-generator", str(export)) == 0
    want = _generator(family, export)
    assert seen.keys() == want.keys()
    for k, v in want.items():  # fp16 export -> fp32 net: the export's values exactly
        assert torch.equal(seen[k], v.to(seen[k].dtype)), k
    # a random start differs (the check above is not vacuous)
    assert _train(family, data, tmp_path / "c") == 0
    fresh = _generator(family, tmp_path / "c" / "last.pt")
    assert any(not torch.equal(fresh[k].float(), want[k].float()) for k in want)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--ngf", "8"], "ngf"),
        (["--variant", "masked"], "variant"),
    ],
)
def test_a_mismatched_generator_is_one_line_before_any_step(extra, says, tmp_path, capsys):
    data = tiny_prepared(tmp_path / "faces.npz")
    assert _train("pix2pix", data, tmp_path / "a") == 0
    capsys.readouterr()
    rc = _train(
        "pix2pix", data, tmp_path / "b", "--init-generator", str(tmp_path / "a" / "last.pt"), *extra
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and says in err[0] and "--init-generator" in err[0]
    assert not (tmp_path / "b").exists()  # a refused start leaves no empty --out behind


def test_another_familys_checkpoint_or_a_missing_file_is_refused(tmp_path, capsys):
    data = tiny_prepared(tmp_path / "faces.npz")
    assert _train("pix2pix", data, tmp_path / "a") == 0
    capsys.readouterr()
    last = str(tmp_path / "a" / "last.pt")
    assert _train("cyclegan", data, tmp_path / "b", "--init-generator", last) == 2
    assert "pix2pix" in capsys.readouterr().err
    assert (
        _train("cyclegan", data, tmp_path / "c", "--init-generator", str(tmp_path / "nope.pt")) == 2
    )
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_a_resume_continues_last_pt_without_the_init_file(family, tmp_path, capsys):
    """--init-generator is for a run's start: a resume needs neither the file nor loads it
    again (the file may be gone, or replaced, by then)."""
    data = tiny_prepared(tmp_path / "faces.npz")
    assert _train(family, data, tmp_path / "a") == 0
    init = tmp_path / "init.pt"
    export_generator(tmp_path / "a" / "last.pt", init)
    assert _train(family, data, tmp_path / "b", "--init-generator", str(init)) == 0
    assert "warm-started" in capsys.readouterr().out
    init.unlink()
    rc = _train(family, data, tmp_path / "b", "--resume", "--max-steps", "2")
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "warm-started" not in out.out and "resumed at step 1" in out.out


def test_a_folder_where_last_pt_should_be_is_refused_first(tmp_path, capsys):
    """It trained, then failed to save with an IsADirectoryError traceback."""
    data = tiny_prepared(tmp_path / "faces.npz")
    (tmp_path / "a" / "last.pt").mkdir(parents=True)
    assert _train("pix2pix", data, tmp_path / "a", "--resume") == 2
    assert "last.pt is not a file" in capsys.readouterr().err
