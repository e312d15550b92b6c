"""FaceNet identity embedder: facenet-pytorch's InceptionResnetV1 (512-d) with its VGGFace2 or
CASIA-WebFace weights, read from disk (facenet-pytorch would download them at run time; here
nothing downloads).

Pipeline as facenet-pytorch's own: MTCNN box (the dataset box when none overlaps) -> the box
grown by `margin` pixels of the final crop -> 160x160 crop (cv2 INTER_AREA, as its
`extract_face` does for arrays; the box is not made square first) -> RGB, (x - 127.5) / 128
(`fixed_image_standardization`) -> the net -> L2 normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anonbench.cache import file_sha256
from anonbench.errors import MissingWeightsError
from anonbench.faces.mask import Box, choose_box, reference_boxes
from anonbench.faces.mobilefacenet import WeightsMismatchError, load_state_checked
from anonbench.registry import DETECTORS

if TYPE_CHECKING:
    from torch import nn

ENV_VAR = "ANONBENCH_FACENET_WEIGHTS"
RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
# pretrained name -> (file name facenet-pytorch uses, classes of its logits layer, short name)
VARIANTS: dict[str, tuple[str, int, str]] = {
    "vggface2": ("20180402-114759-vggface2.pt", 8631, "vggface2"),
    "casia-webface": ("20180408-102900-casia-webface.pt", 10575, "casia"),
}
IMAGE_SIZE = 160


def checkpoint_dirs() -> list[Path]:
    """Where a downloaded checkpoint may already sit: torch hub's folder, and the folder
    facenet-pytorch itself downloads to ($TORCH_HOME/checkpoints, not under hub/)."""
    import torch

    torch_home = Path(
        os.path.expanduser(
            os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
        )
    )
    dirs = [Path(torch.hub.get_dir()) / "checkpoints", torch_home / "checkpoints"]
    return list(dict.fromkeys(dirs))


def resolve_weights(pretrained: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """The argument, else $ANONBENCH_FACENET_WEIGHTS (a file, or a folder holding the file),
    else the torch checkpoint folders; a missing file is one MissingWeightsError line."""
    if pretrained not in VARIANTS:
        raise ValueError(f"pretrained must be one of {sorted(VARIANTS)}, got {pretrained!r}")
    filename = VARIANTS[pretrained][0]
    if weights:
        candidates = [Path(weights).expanduser()]
    else:
        env = os.environ.get(ENV_VAR)
        dirs = checkpoint_dirs()
        if env:
            e = Path(env).expanduser()
            candidates = [e if not e.is_dir() else e / filename]
        else:
            candidates = [d / filename for d in dirs]
    for c in candidates:
        if c.is_file():
            return c
    raise MissingWeightsError(
        f"FaceNet {pretrained} weights not found: {filename} (looked for "
        f"{', '.join(str(c) for c in candidates)}); put it in {checkpoint_dirs()[0]}, pass "
        f"weights=PATH or set {ENV_VAR}; it comes from {RELEASE}{filename}"
    )


def load_facenet(path: Path | str, pretrained: str, device: str = "cpu") -> nn.Module:
    """InceptionResnetV1 in eval mode with the state dict of `path`. The logits layer of the
    file (training classes) is not needed for embeddings, but its size is checked: it tells a
    VGGFace2 file from a CASIA one."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or non-torch file: say which file, in one line
        raise WeightsMismatchError(f"{path} could not be read as a torch checkpoint: {e}") from e
    if not isinstance(state, dict):
        raise WeightsMismatchError(f"{path} holds a {type(state).__name__}, not a state dict")
    classes = VARIANTS[pretrained][1]
    logits = state.get("logits.weight")
    if logits is not None and int(logits.shape[0]) != classes:
        raise WeightsMismatchError(
            f"{path} has a {int(logits.shape[0])}-class logits layer; {pretrained} weights "
            f"have {classes} (is it the other FaceNet checkpoint?)"
        )
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    net = InceptionResnetV1(pretrained=None, classify=False)
    load_state_checked(net, state, path, f"FaceNet InceptionResnetV1 ({pretrained})")
    return net.eval().to(device)


def crop_with_margin(
    image: np.ndarray, box: Box, image_size: int = IMAGE_SIZE, margin: float = 14
) -> np.ndarray:
    """image_size x image_size crop of box grown by `margin` pixels of the output, clipped to the
    image -- facenet-pytorch's `extract_face` for numpy arrays."""
    import cv2

    h, w = image.shape[:2]
    mx = margin * (box[2] - box[0]) / (image_size - margin)
    my = margin * (box[3] - box[1]) / (image_size - margin)
    left, top = int(max(box[0] - mx / 2, 0)), int(max(box[1] - my / 2, 0))
    right, bottom = int(min(box[2] + mx / 2, w)), int(min(box[3] + my / 2, h))
    if right <= left or bottom <= top:  # a box outside the image: nothing to crop
        return np.zeros((image_size, image_size, 3), np.uint8)
    return cv2.resize(
        image[top:bottom, left:right], (image_size, image_size), interpolation=cv2.INTER_AREA
    )


class FaceNetEmbedder:
    """FaceNet InceptionResnetV1 (facenet-pytorch), 512-d, MTCNN 160x160 crops; weights on disk."""

    name = ""  # set per variant: facenet-vggface2, facenet-casia
    dim = 512

    def __init__(
        self,
        pretrained: str = "vggface2",
        weights: str | None = None,
        detector: str = "mtcnn",
        margin: float = 14,
        min_iou: float = 0.3,
        device: str = "cpu",
        *,
        batch_size: int = 32,
    ) -> None:
        """detector: a registered detector; "mtcnn" (facenet-pytorch's, with its default
        thresholds) gives the boxes these weights expect: taller than dlib HOG's, which matters
        because the box is stretched to a square crop. margin: 14 as in facenet-pytorch's
        examples. device and batch_size apply to the detector too."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pretrained = pretrained
        self.name = f"facenet-{VARIANTS.get(pretrained, ('', 0, pretrained))[2]}"
        self.weights = resolve_weights(pretrained, weights)
        self.sha256 = file_sha256(self.weights)
        self.net = load_facenet(self.weights, pretrained, device)
        self.device = device
        self.batch_size = int(batch_size)
        self.detector = DETECTORS.create(detector, device=device, batch_size=batch_size)
        self.margin = margin
        self.min_iou = min_iou
        # the weights' hash is part of the version: cached embeddings follow the checkpoint
        self.version = (
            f"facenet/{pretrained}/{self.sha256[:12]}/{self.detector.version}"
            f"/m{margin}/iou{min_iou}/1"
        )

    def choose_box(self, image: np.ndarray, reference_box: Box) -> tuple[Box, bool]:
        """The detected face best overlapping reference_box, or reference_box itself."""
        boxes = [f.box for f in self.detector.detect(image)]
        return choose_box(boxes, reference_box, self.min_iou)

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """See anonbench.api.Embedder: `boxes` is one reference box per image, or one box for
        all. Detection is batched (`detect_batch`), the net runs batch_size crops at a time."""
        import torch

        refs = reference_boxes(boxes, len(images))
        out = np.zeros((len(images), self.dim), np.float32)
        fell_back = np.zeros(len(images), bool)
        for start in range(0, len(images), self.batch_size):
            part = [np.ascontiguousarray(img) for img in images[start : start + self.batch_size]]
            crops = []
            found = self.detector.detect_batch(part)
            for j, (img, faces) in enumerate(zip(part, found, strict=True)):
                box, fell_back[start + j] = choose_box(
                    [f.box for f in faces], refs[start + j], self.min_iou
                )
                crops.append(crop_with_margin(img, box, IMAGE_SIZE, self.margin))
            x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float()
            x = (x - 127.5) / 128.0
            with torch.inference_mode():
                e = torch.nn.functional.normalize(self.net(x), dim=1)
            out[start : start + len(part)] = e.cpu().numpy()
        return out, fell_back
