"""MobileFaceNet identity embedder (Chen et al., 2018), with the CASIA-WebFace checkpoint of
Xiaoccer/MobileFaceNet_Pytorch (128-d; its author reports 99.30% LFW 10-fold accuracy).

The architecture code is ours; its state-dict keys are those of the reference checkpoint so that
it loads strictly. The checkpoint has no license: it is read from disk by path, never shipped.
Pipeline: dlib HOG box (the dataset box when none overlaps) -> dlib 68 landmarks -> 5 points ->
similarity warp onto the SphereFace 112x96 template -> RGB, (x - 127.5) / 128 -> the net on the
crop and on its mirror image, the two outputs summed (the reference evaluation concatenates
them; the sum keeps 128-d and gives the same flip invariance) -> L2 normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anonbench.cache import file_sha256
from anonbench.errors import AnonbenchError, MissingWeightsError
from anonbench.faces.align import SPHEREFACE_112x96, five_points_from_68, warp_face
from anonbench.faces.mask import Box, choose_box, reference_boxes

if TYPE_CHECKING:
    import torch
    from torch import nn

ENV_VAR = "ANONBENCH_MOBILEFACENET_WEIGHTS"
DEFAULT_RELATIVE = Path("..") / "shared" / "models" / "mobilefacenet" / "068.ckpt"
SOURCE = "Xiaoccer/MobileFaceNet_Pytorch, model/best/068.ckpt"
INPUT_SIZE = (112, 96)  # height, width
# (expansion t, output channels c, repeats n, first stride s), as in the MobileFaceNets paper
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
N_STATE_TENSORS = 333  # keys in the reference checkpoint's state dict


class WeightsMismatchError(AnonbenchError):
    """A checkpoint whose tensors do not fit the architecture."""


def _build_modules() -> tuple[type, type, type]:
    """Defines the torch modules on first use, so importing this file does not import torch."""
    from torch import nn

    class ConvBN(nn.Module):
        """Conv (no bias) -> BatchNorm -> PReLU unless linear; attribute names fix the keys."""

        def __init__(
            self,
            cin: int,
            cout: int,
            kernel: int | tuple[int, int],
            stride: int = 1,
            padding: int = 0,
            depthwise: bool = False,
            linear: bool = False,
        ) -> None:
            super().__init__()
            groups = cin if depthwise else 1
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.prelu = None if linear else nn.PReLU(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.bn(self.conv(x))
            return x if self.prelu is None else self.prelu(x)

    class InvertedResidual(nn.Module):
        """MobileNetV2 bottleneck with PReLU: expand 1x1, depthwise 3x3, project 1x1 (linear).
        One Sequential named `conv` (indices 0-7) to match the reference keys."""

        def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
            super().__init__()
            mid = cin * expansion
            self.residual = stride == 1 and cin == cout
            self.conv = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False),
                nn.BatchNorm2d(mid),
                nn.PReLU(mid),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
                nn.BatchNorm2d(mid),
                nn.PReLU(mid),
                nn.Conv2d(mid, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return x + y if self.residual else y

    class MobileFaceNet(nn.Module):
        """112x96 RGB, normalised (x - 127.5) / 128 -> 128-d embedding (not normalised)."""

        def __init__(self, embedding_dim: int = 128) -> None:
            super().__init__()
            self.conv1 = ConvBN(3, 64, 3, 2, 1)
            self.dw_conv1 = ConvBN(64, 64, 3, 1, 1, depthwise=True)
            blocks: list[nn.Module] = []
            cin = 64
            for t, c, n, s in BOTTLENECKS:
                for i in range(n):
                    blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            self.blocks = nn.Sequential(*blocks)
            self.conv2 = ConvBN(cin, 512, 1)
            # global depthwise conv over the whole 7x6 map (the paper's GDConv)
            self.linear7 = ConvBN(512, 512, (7, 6), depthwise=True, linear=True)
            self.linear1 = ConvBN(512, embedding_dim, 1, linear=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.blocks(self.dw_conv1(self.conv1(x)))
            x = self.linear1(self.linear7(self.conv2(x)))
            return x.flatten(1)

    return ConvBN, InvertedResidual, MobileFaceNet


@cache
def _classes() -> tuple[type, type, type]:
    return _build_modules()


def build_mobilefacenet() -> nn.Module:
    """A randomly initialised MobileFaceNet (eval mode is left to the caller)."""
    return _classes()[2]()


def resolve_weights(weights: str | os.PathLike[str] | None) -> Path:
    """The argument, else $ANONBENCH_MOBILEFACENET_WEIGHTS, else ../shared/models/... (relative
    to the working directory); a missing file is a MissingWeightsError naming all three."""
    chosen = weights or os.environ.get(ENV_VAR) or DEFAULT_RELATIVE
    path = Path(chosen).expanduser()
    if path.is_file():
        return path.resolve()  # absolute: worker processes must not depend on the cwd
    raise MissingWeightsError(
        f"MobileFaceNet weights not found: {path} (pass weights=PATH or set {ENV_VAR}; "
        f"the file is 068.ckpt from {SOURCE}; it has no license, so anonbench does not ship it)"
    )


def load_state_checked(
    model: nn.Module, state: Mapping[str, Any], path: Path | str, what: str
) -> None:
    """load_state_dict(strict=True), with a mismatch reported as one line that says which
    tensors are missing, unexpected or of the wrong shape (torch's message spans many)."""
    own = model.state_dict()
    # a BatchNorm step counter is unused at inference; older checkpoints lack it (torch fills
    # it in too when the dict has no version metadata)
    state = {
        **{k: v for k, v in own.items() if k.endswith("num_batches_tracked")},
        **dict(state),
    }
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:

        def few(xs: list[str]) -> str:
            return ", ".join(xs[:3]) + (f", ... ({len(xs)} in all)" if len(xs) > 3 else "")

        parts = [
            f"{len(missing)} missing ({few(missing)})" if missing else "",
            f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
            f"{len(wrong)} of the wrong shape ({few(wrong)})" if wrong else "",
        ]
        raise WeightsMismatchError(
            f"{path} is not a {what} checkpoint: " + "; ".join(p for p in parts if p)
        )
    model.load_state_dict(state, strict=True)


def load_mobilefacenet(path: Path | str, device: str | torch.device = "cpu") -> nn.Module:
    """MobileFaceNet in eval mode with the weights of `path` (a dict with `net_state_dict`,
    as the reference training script saves, or a bare state dict)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or non-torch file: say which file, in one line
        raise WeightsMismatchError(f"{path} could not be read as a torch checkpoint: {e}") from e
    state = ckpt.get("net_state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{path} holds a {type(ckpt).__name__}, not a state dict")
    net = build_mobilefacenet()
    load_state_checked(net, state, path, "MobileFaceNet")
    return net.eval().to(device)


class MobileFaceNetEmbedder:
    """MobileFaceNet (CASIA-WebFace), 128-d, 5-point aligned 112x96 crops; weights by path."""

    name = "mobilefacenet"
    dim = 128

    def __init__(
        self,
        weights: str | None = None,
        upsample: int = 1,
        min_iou: float = 0.3,
        device: str = "cpu",
        *,
        batch_size: int = 32,
    ) -> None:
        from anonbench.registry import DETECTORS, LANDMARKERS

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights = resolve_weights(weights)
        self.sha256 = file_sha256(self.weights)
        self.device = device
        self.batch_size = int(batch_size)
        self.net = load_mobilefacenet(self.weights, device)
        # dlib: on the CPU whatever the device
        self.detector = DETECTORS.create("dlib-hog", upsample=upsample)
        self.landmarker = LANDMARKERS.create("dlib-68")
        self.min_iou = min_iou
        # the weights' hash is part of the version: cached embeddings follow the checkpoint
        self.version = f"mobilefacenet/{self.sha256[:12]}/up{upsample}/iou{min_iou}/flipsum/1"

    def choose_box(self, image: np.ndarray, reference_box: Box) -> tuple[Box, bool]:
        """The detected face best overlapping reference_box, or reference_box itself."""
        return choose_box([f.box for f in self.detector.detect(image)], reference_box, self.min_iou)

    def align(
        self, image: np.ndarray, reference_box: Box, found: list[Box] | None = None
    ) -> tuple[np.ndarray, bool]:
        """112 x 96 x 3 uint8 RGB crop of the chosen face, and whether the reference box was
        used. found: the detector's boxes in this image, when already known."""
        image = np.ascontiguousarray(image)
        if found is None:
            box, fell_back = self.choose_box(image, reference_box)
        else:
            box, fell_back = choose_box(found, reference_box, self.min_iou)
        points = five_points_from_68(self.landmarker.landmarks(image, box))
        return warp_face(image, points, SPHEREFACE_112x96, INPUT_SIZE), fell_back

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """N x 112 x 96 x 3 uint8 RGB aligned crops -> N x 128 L2-normalised float32; the net
        runs on the device, batch_size crops at a time."""
        import torch

        out = np.zeros((len(crops), self.dim), np.float32)
        for start in range(0, len(crops), self.batch_size):
            part = np.ascontiguousarray(crops[start : start + self.batch_size])
            x = torch.from_numpy(part).to(self.device).permute(0, 3, 1, 2).float()
            x = (x - 127.5) / 128.0
            with torch.inference_mode():
                # mirror image too, as the reference evaluation does; summed to stay 128-d
                e = self.net(x) + self.net(torch.flip(x, dims=[3]))
                e = torch.nn.functional.normalize(e, dim=1)
            out[start : start + len(part)] = e.cpu().numpy()
        return out

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """See anonbench.api.Embedder: `boxes` is one reference box per image, or one box for
        all. Images are processed batch_size at a time: dlib detection, landmarks and the
        warp on the CPU, then one forward (crop and mirror) on the device."""
        refs = reference_boxes(boxes, len(images))
        out = np.zeros((len(images), self.dim), np.float32)
        fell_back = np.zeros(len(images), bool)
        for start in range(0, len(images), self.batch_size):
            part = images[start : start + self.batch_size]
            found = self.detector.detect_batch(part)
            crops = []
            for j, (img, faces) in enumerate(zip(part, found, strict=True)):
                crop, fell_back[start + j] = self.align(
                    img, refs[start + j], [f.box for f in faces]
                )
                crops.append(crop)
            out[start : start + len(part)] = self.embed_crops(np.stack(crops))
        return out, fell_back
