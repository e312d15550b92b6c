from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from anonbench import registry
from anonbench.api import Anonymizer
from anonbench.cli import main
from anonbench.errors import UnknownNameError
from anonbench.registry import DeclarationError, PluginClashError, Registry


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


@pytest.mark.parametrize("builtin", registry.BUILTINS, ids=lambda b: f"{b.kind}:{b.name}")
def test_every_builtin_resolves_to_what_its_one_declaration_names(builtin):
    reg = registry.KINDS[builtin.kind][0]
    e = reg.entry(builtin.name)
    assert f"{e.factory.__module__}:{e.factory.__qualname__}" == builtin.target
    assert e.params == builtin.params and e.description == builtin.description
    assert e.origin == registry.BUILTIN


def _module(tmp_path, monkeypatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


_BLUR = """
    from anonbench.api import Anonymizer

    class Blur(Anonymizer):
        def __init__(self, kernel=3):
            self.kernel = kernel

    class NotAMethod:
        pass

    VALUE = 3
    """


def test_a_declaration_needs_no_decorator_and_keeps_its_params(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, "undecorated_blur", _BLUR)
    reg: Registry[Anonymizer] = Registry("method", Anonymizer)
    reg.add_lazy("blur17", f"{mod}:Blur", "blur, kernel 17", {"kernel": 17})
    assert reg.create("blur17").kernel == 17  # the declared params, not the class default
    assert reg.create("blur17", kernel=5).kernel == 5


def test_a_declaration_its_module_does_not_satisfy_is_an_error(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, "undecorated_blur2", _BLUR)
    reg: Registry[Anonymizer] = Registry("method", Anonymizer)
    reg.add_lazy("gone", f"{mod}:GaussianBlur", "renamed away", {"kernel": 17})
    reg.add_lazy("nomod", "no_such_module_xyz:Blur", "uninstalled")
    reg.add_lazy("wrongtype", f"{mod}:NotAMethod", "not an Anonymizer")
    reg.add_lazy("value", f"{mod}:VALUE", "not callable")
    with pytest.raises(DeclarationError, match=f"declared as {mod}:GaussianBlur, but {mod} has"):
        reg.entry("gone")
    with pytest.raises(DeclarationError, match="there is no module 'no_such_module_xyz'"):
        reg.entry("nomod")
    with pytest.raises(DeclarationError, match="NotAMethod, which is not a Anonymizer"):
        reg.create("wrongtype")
    with pytest.raises(DeclarationError, match="VALUE, which is not callable"):
        reg.entry("value")


def test_a_decorator_must_agree_with_the_declaration():
    class Blur(Anonymizer):
        def __init__(self, kernel: int = 3) -> None:
            self.kernel = kernel

    class Other(Anonymizer):
        pass

    target = f"{Blur.__module__}:{Blur.__qualname__}"
    reg: Registry[Anonymizer] = Registry("method", Anonymizer)
    reg.add_lazy("blur17", target, "blur, kernel 17", {"kernel": 17})
    with pytest.raises(DeclarationError, match=r"declared as .*Blur\(kernel=17\).*kernel=9"):
        reg.register("blur17", kernel=9)(Blur)
    with pytest.raises(DeclarationError, match="declare it once"):
        reg.register("blur17", kernel=17)(Other)
    reg.register("blur17", kernel=17)(Blur)  # the same declaration twice is harmless
    assert reg.create("blur17").kernel == 17


def test_a_broken_declaration_is_one_line_through_the_cli(monkeypatch, capsys):
    monkeypatch.setitem(
        registry.PROTOCOLS._entries,
        "broken",
        registry.Entry("broken", "a protocol renamed away", None, "anonbench.protocols.lfw:Gone"),
    )
    assert main(["run", "--methods", "blur17", "--protocol", "broken"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "declared as anonbench.protocols.lfw:Gone, but anonbench.protocols.lfw has no" in err
    assert main(["ls", "protocols"]) == 0  # the listing goes on and says what is wrong
    out = capsys.readouterr().out
    assert "(options not available: DeclarationError:" in out and "lfw" in out


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


_PLUGIN = """
    from anonbench.api import Anonymizer, MetricSpec, Option, Protocol

    class FancyProtocol(Protocol):
        \"\"\"Fancy: a plug-in protocol.\"\"\"

        name = "fancy"
        datasets = ("lfw",)
        metrics = (MetricSpec("leak", False, "leak rate", tolerance=0.5),)
        options = (
            Option("rounds", int, 3, "how many rounds"),
            Option("strict", bool, False, "fail on the first leak"),
        )

    class FancyDetector:
        name = "fancy-det"
        version = "1"

    class FancyEmbedder:
        name = "fancy-emb"
        version = "1"
        dim = 8

    class FancyLandmarker:
        name = "fancy-lm"
        version = "1"

    def train_main(argv):
        return 0

    class Thing(Anonymizer):
        pass
    """

_REGISTERING = """
    from anonbench.api import Anonymizer
    from anonbench.registry import register_method

    @register_method("fancy-blur", kernel=5)
    class FancyBlur(Anonymizer):
        def __init__(self, kernel=3):
            self.kernel = kernel
    """

_CLASHING = """
    from anonbench.api import Protocol
    from anonbench.registry import register_protocol

    @register_protocol("lfw")
    class MyLFW(Protocol):
        name = "lfw"
    """


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A fake installed distribution 'fancy-anon': returns group -> its entry points (fill
    them in), served through a monkeypatched importlib.metadata.entry_points. The global
    registries are copied, so nothing registered here outlives the test."""
    for name, src in [
        ("fancy_plugin", _PLUGIN),
        ("fancy_registering", _REGISTERING),
        ("fancy_clashing", _CLASHING),
    ]:
        _module(tmp_path, monkeypatch, name, src)
    for reg, _group in registry.KINDS.values():
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "_entry_points_loaded", False)
        monkeypatch.setattr(reg, "_entry_point_error", None)
    eps: dict[str, list[SimpleNamespace]] = {}
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps.get(group, []))
    yield eps
    for name in ("fancy_plugin", "fancy_registering", "fancy_clashing"):
        sys.modules.pop(name, None)


def _ep(name: str, value: str, dist: str = "fancy-anon") -> SimpleNamespace:
    return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=dist))


def test_every_kind_has_an_entry_point_group(plugins, capsys):
    plugins.update(
        {
            "anonbench.methods": [_ep("mymod", "fancy_registering")],
            "anonbench.protocols": [_ep("fancy", "fancy_plugin:FancyProtocol")],
            "anonbench.detectors": [_ep("fancy-det", "fancy_plugin:FancyDetector")],
            "anonbench.embedders": [_ep("fancy-emb", "fancy_plugin:FancyEmbedder")],
            "anonbench.landmarkers": [_ep("fancy-lm", "fancy_plugin:FancyLandmarker")],
            "anonbench.trainers": [_ep("fancy-train", "fancy_plugin:train_main")],
        }
    )
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    sections = dict((k, v) for k, v in zip(registry.KINDS, out.split(":\n")[1:], strict=False))
    assert "fancy-blur" in sections["methods"] and "fancy-det" in sections["detectors"]
    for name in ("fancy", "fancy-emb", "fancy-lm", "fancy-train"):
        assert name in out
    # the plug-in protocol's typed options, under it
    lines = out.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.split()[:1] == ["fancy"])
    assert lines[i + 1].strip() == "--option rounds (int, default 3): how many rounds"
    assert lines[i + 2].strip() == "--option strict (bool, default false): fail on the first leak"
    assert registry.METHODS.create("fancy-blur").kernel == 5  # the decorator's params
    assert registry.PROTOCOLS.create("fancy").name == "fancy"
    assert registry.TRAINERS.entry("fancy-train").factory(["x"]) == 0
    assert registry.EMBEDDERS.create("fancy-emb").dim == 8


@pytest.mark.parametrize(
    "group, ep, message",
    [
        (
            "anonbench.methods",
            _ep("blur17", "fancy_plugin:Thing"),
            "plug-in 'fancy-anon' (entry point anonbench.methods: blur17 = fancy_plugin:Thing) "
            "clashes with the built-in method 'blur17' (anonbench.methods.classic:GaussianBlur)",
        ),
        (
            "anonbench.detectors",
            _ep("retinaface", "fancy_plugin:FancyDetector"),
            "clashes with the built-in detector 'retinaface' "
            "(anonbench.faces.retinaface:RetinaFaceDetector)",
        ),
        (
            "anonbench.protocols",
            _ep("myprotos", "fancy_clashing"),
            "plug-in 'fancy-anon' (entry point anonbench.protocols: myprotos = fancy_clashing) "
            "registers protocol 'lfw' (fancy_clashing:MyLFW), which clashes with the built-in "
            "protocol 'lfw' (anonbench.protocols.lfw:LFWVerification)",
        ),
    ],
)
def test_a_plugin_clashing_with_a_builtin_is_a_one_line_error(plugins, capsys, group, ep, message):
    plugins[group] = [ep]
    assert main(["ls"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    # every later lookup says so again; the built-in is not replaced
    reg = next(r for r, g in registry.KINDS.values() if g == group)
    with pytest.raises(PluginClashError):
        reg.names()
    assert (
        registry.PROTOCOLS._entries["lfw"].lazy_target == "anonbench.protocols.lfw:LFWVerification"
    )


def test_two_plugins_with_one_name_is_an_error(plugins, capsys):
    plugins["anonbench.methods"] = [
        _ep("thing", "fancy_plugin:Thing"),
        _ep("thing", "other_pkg:Thing", dist="other-anon"),
    ]
    assert main(["ls", "methods"]) == 2
    err = capsys.readouterr().err
    assert "plug-in 'other-anon' (entry point anonbench.methods: thing = other_pkg:Thing)" in err
    assert "clashes with method 'thing' of plug-in 'fancy-anon'" in err


def test_an_argument_the_factory_does_not_take_is_one_line(capsys):
    """`--checkpoint blur9=...` (blur has no weights) was a TypeError traceback; a factory
    with **kwargs still takes anything."""
    from anonbench.cli import main
    from anonbench.errors import AnonbenchError
    from anonbench.registry import METHODS, Registry

    with pytest.raises(AnonbenchError, match=r"method 'blur9' does not take checkpoint \(it takes"):
        METHODS.create("blur9", checkpoint="x.pt")
    with pytest.raises(AnonbenchError, match="it takes no arguments"):
        METHODS.create("original", checkpoint="x.pt")
    r: Registry = Registry("thing")
    r.register("any")(lambda **kw: dict(kw))
    assert r.create("any", checkpoint="x") == {"checkpoint": "x"}
    args = ["run", "--methods", "blur9", "--checkpoint", "blur9=/etc/passwd", "--protocol", "lfw"]
    assert main(args) == 2
    assert "does not take checkpoint" in capsys.readouterr().err


def test_wrapped_factories_and_fixed_values_in_the_message():
    """A functools.wraps wrapper that adds a keyword takes it (the wrapped signature alone
    does not name it); a variant's fixed values are not offered as what it takes."""
    import functools

    from anonbench.errors import AnonbenchError
    from anonbench.registry import METHODS, Registry

    def inner(a: int = 1) -> int:
        return a

    @functools.wraps(inner)
    def wrapper(*args, device="cpu", **kwargs):
        return (device, inner(*args, **kwargs))

    r: Registry = Registry("thing")
    r.register("w")(wrapper)
    assert r.create("w", device="cuda") == ("cuda", 1)
    with pytest.raises(AnonbenchError) as e:
        METHODS.create("blur9", checkpoint="x")
    assert "kernel" not in str(e.value)  # fixed by the blur9 variant
