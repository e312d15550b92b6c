"""The trainers' numeric flags go through anonbench.argtypes like every other command's: a
non-finite or out-of-range value is one line naming the flag, exit 2, before any work (a
`--lr nan` used to pass `lr <= 0` and train on NaN)."""

from __future__ import annotations

import pytest

from anonbench.cli import main

BAD = [
    ("--lr", "nan"),
    ("--lr", "inf"),
    ("--lr", "0"),
    ("--epochs", "0"),
    ("--batch-size", "1.5"),
    ("--seed", "-1"),
    ("--workers", "0"),
    ("--test-fraction", "2"),
    ("--max-minutes", "nan"),
    ("--keep-minutes", "-1"),
    ("--nice", "20"),
    ("--threads", "-2"),
    ("--crop-range", "nan"),
]
FAMILY_BAD = {
    "ciagan": [("--identity-weight", "nan"), ("--critic-iters", "0"), ("--img-size", "x")],
    "pix2pix": [("--lambda-l1", "inf"), ("--ngf", "0")],
    "cyclegan": [("--lambda-cycle", "-1"), ("--pool-size", "nan")],
}
CASES = [(f, flag, v) for f in FAMILY_BAD for flag, v in BAD + FAMILY_BAD[f]]


@pytest.mark.parametrize(("family", "flag", "value"), CASES)
def test_bad_numbers_are_one_line_exit_2_before_any_work(family, flag, value, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", family, "--data", f"prepared:{tmp_path / 'none.npz'}", "--out", str(out)]
    argv += [flag, value] + (["0.5"] if flag == "--crop-range" else [])
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and flag in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()
