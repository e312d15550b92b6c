from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from anonbench import registry
from anonbench.api import Anonymizer
from anonbench.cli import main
from anonbench.errors import UnknownNameError
from anonbench.registry import Registry


def test_duplicates_and_wrong_types_are_rejected():
    reg: Registry[Anonymizer] = Registry("method", Anonymizer)

    @reg.register("a")
    class A(Anonymizer):
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(A)
    with pytest.raises(TypeError, match="not a Anonymizer"):
        reg.register("b")(int)
    reg.add_lazy("c", "x.y:Z", "lazy")
    with pytest.raises(ValueError, match="already registered"):
        reg.add_lazy("c", "x.y:Z", "lazy")
    with pytest.raises(ValueError, match="module:attr"):
        reg.add_lazy("d", "nocolon", "bad")


def test_typo_suggests_nearest_name():
    with pytest.raises(UnknownNameError, match="did you mean 'blur17'"):
        registry.METHODS.entry("blurr17")
    with pytest.raises(UnknownNameError) as e:
        registry.METHODS.entry("zzzzzz")
    assert "did you mean" not in str(e.value)


def test_variants_fix_parameters():
    assert registry.METHODS.create("blur9").kernel == 9
    assert registry.METHODS.create("blur17").kernel == 17
    assert registry.METHODS.create("pixelate8").grid == 8
    assert registry.METHODS.create("pixelate16").grid == 16


@pytest.mark.parametrize(
    "reg",
    [
        registry.METHODS,
        registry.PROTOCOLS,
        registry.DETECTORS,
        registry.LANDMARKERS,
        registry.EMBEDDERS,
    ],
)
def test_every_lazy_builtin_resolves_to_a_decorated_entry(reg):
    for name in reg.names():
        e = reg.entry(name)
        assert e.factory is not None, name
        assert e.description, name


def test_entry_point_plugins(monkeypatch):
    reg: Registry[Anonymizer] = Registry("method", Anonymizer)
    reg.use_entry_points("anonbench.methods")
    eps = [SimpleNamespace(name="myblur", value="anonbench.methods.classic:GaussianBlur")]
    import importlib.metadata as md

    monkeypatch.setattr(
        md, "entry_points", lambda group: eps if group == "anonbench.methods" else []
    )
    assert "myblur" in reg.names()
    assert reg.create("myblur", kernel=5).kernel == 5


def test_ls_imports_nothing_heavy():
    code = (
        "import sys; from anonbench.cli import main; main(['ls']); "
        "heavy = [m for m in ('torch', 'dlib', 'cv2', 'pandas') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "blur17" in out.stdout and "lfw" in out.stdout and "dlib-resnet" in out.stdout


def test_cli_unknown_names_one_line_exit_2(capsys):
    assert main(["run", "--methods", "blurr17", "--protocol", "lfw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'blur17'" in err
    assert main(["run", "--methods", "blur17", "--protocol", "lwf"]) == 2
    assert "did you mean 'lfw'" in capsys.readouterr().err
    assert main(["run", "--methods", "blur17", "--protocol", "lfw", "--embedder", "dlib"]) == 2
