"""Reversal attacks: the attacker restores each anonymized image before embedding it.

Attacks (`--option reversal=none|wiener|richardson-lucy|all` on lfw and celeba; `learned` on
celeba only, see `LearnedRef`; several attacks comma-separated):
- `wiener`: Wiener deconvolution in the Fourier domain, X = conj(H) Y / (|H|^2 + NSR), with a
  constant noise-to-signal ratio NSR = 1e-3 (8-bit outputs: quantisation noise is small);
- `richardson-lucy`: Richardson-Lucy deconvolution, 30 iterations from the observed image.
Both run per RGB channel on the whole image, reflect-padded by 3 sigma + the kernel radius so
that the circular FFT does not wrap edges into the face; the result is clipped to [0, 255]
and rounded to uint8. The blur only touched the CIAGAN mask region, so pixels outside it are
deconvolved too (mild over-sharpening there); the embedder crops the face anyway.

The point spread function is a Gaussian. For `GaussianBlur` methods the attacker knows it
(Kerckhoffs): the method's kernel size and sigma (sigma 0 = OpenCV's default for the kernel,
0.3 * ((k - 1) / 2 - 1) + 0.8, from OpenCV's fixed table up to k = 9), built by
cv2.getGaussianKernel as the blur was (separable, k x k, sums to 1).
For any other method (pixelation, CIAGAN, folder: outputs) the width is estimated from the
image: the re-blur gradient ratio (Zhuo & Sim 2011): at edge pixels of the reference face box
(Canny on the grey image), the gradient magnitude ratio R between the image and the image
re-blurred with sigma0 = 1 gives sigma = sigma0 / sqrt(R^2 - 1) for a blurred step edge; the
median over the edge pixels, clipped to [0.5, 8], with a kernel of 2 * ceil(3 sigma) + 1.

`RestoredRef` is an `ImageRef` that applies the attack after loading, so the evaluation
(anonbench.evaluate.evaluate_images) runs unchanged; embeddings are cached by the restored
pixels, so each attack caches on its own.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError
from anonbench.produce import ImageRef

ATTACKS = ("wiener", "richardson-lucy")
LEARNED = "learned"  # a restoration network trained per method (anonbench.faces.restoration)
CHOICES = ("none", *ATTACKS, "all")
WIENER_NSR = 1e-3
RL_ITERATIONS = 30
REBLUR_SIGMA = 1.0
SIGMA_RANGE = (0.5, 8.0)


def parse_reversal(value: Any, learned: bool = False) -> list[str]:
    """The attacks named by the `reversal` option, comma-separated (none -> [], all -> the
    classical ones); `learned` is accepted only where the protocol trains restorers."""
    choices = (*CHOICES, LEARNED) if learned else CHOICES
    out: list[str] = []
    for v in (x.strip().lower() for x in str(value or "none").split(",")):
        if v not in choices:
            raise AnonbenchError(f"reversal={value!r}: expected one of {', '.join(choices)}")
        for a in ATTACKS if v == "all" else [] if v == "none" else [v]:
            if a not in out:
                out.append(a)
    return out


def opencv_sigma(kernel: int) -> float:
    """OpenCV's sigma for a kernel size when sigma <= 0 (getGaussianKernel)."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def gaussian_psf(kernel: int, sigma: float) -> np.ndarray:
    """kernel x kernel Gaussian PSF exactly as cv2.GaussianBlur applies it: the outer product
    of cv2.getGaussianKernel(kernel, sigma) (sigma <= 0: OpenCV's default, which for kernels
    up to 9 is OpenCV's fixed table, e.g. 1/64, 13/256, 30/256, ... for 9)."""
    import cv2

    g = cv2.getGaussianKernel(kernel, sigma if sigma > 0 else 0).ravel().astype(np.float64)
    return np.outer(g, g)


def estimate_sigma(img: np.ndarray, box: Any = None) -> float:
    """Gaussian blur width of an image by the re-blur gradient ratio at Canny edges of the
    box (the whole image when None); see the module docstring."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float64)
    if box is not None:
        h, w = grey.shape
        x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            grey = grey[y0:y1, x0:x1]
    edges = cv2.Canny(np.clip(grey, 0, 255).astype(np.uint8), 20, 60) > 0
    if edges.sum() < 10:
        return SIGMA_RANGE[1]  # no edges: as blurred as we allow

    def grad(a: np.ndarray) -> np.ndarray:
        gx = cv2.Sobel(a, cv2.CV_64F, 1, 0, ksize=3)
        gy = cv2.Sobel(a, cv2.CV_64F, 0, 1, ksize=3)
        return np.hypot(gx, gy)

    g0 = grad(grey)
    g1 = grad(cv2.GaussianBlur(grey, (0, 0), REBLUR_SIGMA, borderType=cv2.BORDER_REFLECT_101))
    sel = edges & (g1 > 1e-6)
    ratio = g0[sel] / g1[sel]
    ratio = ratio[ratio > 1.0 + 1e-3]
    if ratio.size == 0:
        return SIGMA_RANGE[1]
    sig = REBLUR_SIGMA / np.sqrt(ratio**2 - 1)
    return float(np.clip(np.median(sig), *SIGMA_RANGE))


def _pad(kernel: int, sigma: float) -> int:
    return int(kernel // 2 + math.ceil(3 * sigma))


def wiener(img: np.ndarray, psf: np.ndarray, nsr: float = WIENER_NSR) -> np.ndarray:
    """Wiener deconvolution of an H x W x C uint8 (or float 0-255) image; uint8 out."""
    k = psf.shape[0]
    p = _pad(k, k / 6)
    x = np.pad(np.asarray(img, np.float64), ((p, p), (p, p), (0, 0)), mode="reflect")
    hh, ww = x.shape[:2]
    full = np.zeros((hh, ww))
    full[:k, :k] = psf
    full = np.roll(full, (-(k // 2), -(k // 2)), axis=(0, 1))  # centre at (0, 0)
    h = np.fft.rfft2(full)
    g = np.conj(h) / (np.abs(h) ** 2 + nsr)
    out = np.stack(
        [np.fft.irfft2(np.fft.rfft2(x[..., c]) * g, s=(hh, ww)) for c in range(x.shape[2])],
        axis=-1,
    )
    return np.clip(np.rint(out[p:-p, p:-p]), 0, 255).astype(np.uint8)


def richardson_lucy(
    img: np.ndarray, psf: np.ndarray, iterations: int = RL_ITERATIONS
) -> np.ndarray:
    """Richardson-Lucy deconvolution (per channel, from the observed image); uint8 out."""
    from scipy.signal import fftconvolve

    k = psf.shape[0]
    p = _pad(k, k / 6)
    x = np.pad(np.asarray(img, np.float64) / 255.0, ((p, p), (p, p), (0, 0)), mode="reflect")
    flip = psf[::-1, ::-1]
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        obs = x[..., c]
        est = obs.copy()
        for _ in range(iterations):
            conv = fftconvolve(est, psf, mode="same")
            est = est * fftconvolve(obs / np.maximum(conv, 1e-6), flip, mode="same")
        out[..., c] = est
    return np.clip(np.rint(out[p:-p, p:-p] * 255.0), 0, 255).astype(np.uint8)


def known_kernel(method: Any) -> tuple[int, float] | None:
    """(kernel, sigma) of a Gaussian-blur method (sigma 0 = OpenCV's default for the kernel,
    as the method used it), or None (not a blur: estimate)."""
    from anonbench.methods.classic import GaussianBlur

    if not isinstance(method, GaussianBlur):
        return None
    cfg = method.config()
    k = int(cfg["kernel"])
    return k, float(cfg.get("sigma") or 0.0)


def restore(
    img: np.ndarray, attack: str, kernel: int = 0, sigma: float = 0.0, box: Any = None
) -> np.ndarray:
    """The attack applied to an H x W x 3 uint8 image with a Gaussian PSF (kernel, sigma);
    kernel 0: sigma estimated from the image (estimate_sigma over `box`)."""
    if kernel <= 0:
        sigma = estimate_sigma(img, box)
        kernel = 2 * math.ceil(3 * sigma) + 1
    psf = gaussian_psf(kernel, sigma)
    if attack == "wiener":
        return wiener(img, psf)
    if attack == "richardson-lucy":
        return richardson_lucy(img, psf)
    raise AnonbenchError(f"unknown reversal attack {attack!r} ({', '.join(ATTACKS)})")


@dataclass(frozen=True)
class RestoredRef(ImageRef):
    """An ImageRef whose image the attacker restores after loading (see the module
    docstring); kernel 0 = estimate the Gaussian width over `box`."""

    attack: str = "wiener"
    kernel: int = 0
    sigma: float = 0.0
    box: tuple[float, float, float, float] | None = None

    def load(self) -> np.ndarray:
        return restore(super().load(), self.attack, self.kernel, self.sigma, self.box)


def restored(ref: ImageRef, attack: str, method: Any, box: Any) -> RestoredRef:
    """`ref` (a store's ImageRef) restored by `attack` with what the attacker knows."""
    kk = known_kernel(method)
    k, s = kk if kk is not None else (0, 0.0)
    return RestoredRef(
        ref.path,
        ref.fallback,
        ref.like,
        attack=attack,
        kernel=k,
        sigma=s,
        box=tuple(float(v) for v in box) if box is not None else None,
    )


@dataclass(frozen=True)
class LearnedRef(ImageRef):
    """An ImageRef restored by a trained restorer (anonbench.faces.restoration) after
    loading: `checkpoint` is the cached restorer file, `box` the reference face box."""

    checkpoint: str = ""
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def load(self) -> np.ndarray:
        return _restorer(self.checkpoint).restore(super().load(), self.box)


@functools.lru_cache(maxsize=4)
def _restorer(path: str) -> Any:
    """One loaded restorer per file and process (evaluation workers load it once)."""
    from anonbench.faces.restoration import load_restorer

    return load_restorer(path)
