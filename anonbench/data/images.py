"""Image reading: RGB uint8 arrays (H x W x 3); float [0, 1] tensors are made from these.

Every failure is an ImageReadError (an AnonbenchError: one line naming the file): a missing,
empty or undecodable file, and an image whose header declares more pixels than the limit
(default 64 megapixels; `set_max_pixels`, `--max-pixels`, env ANONBENCH_MAX_PIXELS). The
limit is checked on the header (PIL reads it without decoding), before any pixel is decoded.

Grayscale, palette and CMYK images come back as RGB; 16-bit images as 8-bit (the high byte,
as OpenCV converts them); `read_image` also returns the alpha channel, if any.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError

DEFAULT_MAX_PIXELS = 64_000_000
ENV_MAX_PIXELS = "ANONBENCH_MAX_PIXELS"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# the formats whose header PIL reads before OpenCV decodes (trying only these is ~5x faster
# than letting PIL try all it knows); anything else is checked after decoding
_HEADER_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM", "JPEG2000")


class ImageReadError(AnonbenchError):
    """An image file is missing, empty, cannot be decoded or is over the pixel limit."""


class ImageTooLargeError(ImageReadError):
    """The image header declares more pixels than the limit; nothing was decoded."""


def _parse_limit(value: str | int | None) -> int | None:
    if value is None or value == "":
        return DEFAULT_MAX_PIXELS
    try:
        n = int(float(value))
    except (TypeError, ValueError):
        raise AnonbenchError(
            f"max pixels must be a whole number (0 = no limit), got {value!r}"
        ) from None
    if n < 0:
        raise AnonbenchError(f"max pixels must be >= 0 (0 = no limit), got {n}")
    return n or None


def get_max_pixels() -> int | None:
    """The pixel limit now in force (None: no limit)."""
    return _max_pixels


def set_max_pixels(n: int | None) -> None:
    """Sets the pixel limit for every read in this process and in worker processes started
    after this call (it is also put into the environment, ANONBENCH_MAX_PIXELS). None or 0:
    no limit."""
    global _max_pixels
    _max_pixels = _parse_limit(0 if n is None else n)
    os.environ[ENV_MAX_PIXELS] = str(_max_pixels or 0)


_max_pixels: int | None = _parse_limit(os.environ.get(ENV_MAX_PIXELS))

_USE_SETTING = -1


@dataclass
class ImageInfo:
    """What the file was before it became 8-bit RGB."""

    width: int
    height: int
    format: str | None = None  # PIL's name: JPEG, PNG, ...
    mode: str | None = None  # PIL's mode: RGB, RGBA, L, I;16, CMYK, P, ...
    bits: int = 8  # bits per channel in the file
    has_alpha: bool = False
    conversions: list[str] = field(default_factory=list)  # e.g. "16-bit -> 8-bit"


def _mp(n: int) -> str:
    # below 0.1 MP (a small --max-pixels) one decimal would read "0.0 megapixels"
    return f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n:,} pixels"


def _read_bytes(path: str | os.PathLike[str]) -> np.ndarray:
    if not os.path.isfile(path):
        raise ImageReadError(f"image not found: {path}")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None
    if data.size == 0:
        raise ImageReadError(f"cannot decode image: {path}: empty file (0 bytes)")
    return data


def _header(data: np.ndarray, path: object, limit: int | None) -> ImageInfo | None:
    """Size, mode and alpha from the header, without decoding; None if PIL does not know
    the format (OpenCV then tries). Raises ImageTooLargeError over the limit."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes()), formats=_HEADER_FORMATS) as im:
                w, h = im.size
                fmt, mode = im.format, im.mode
                alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
                frames = _frames(im)
    except Image.DecompressionBombError as e:  # over twice PIL's own limit
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = int(m.group(1)) if m else None
        if limit is None or n is None or n > limit:
            size = f"declares {_mp(n)}" if n is not None else "is a decompression bomb"
            lim = f" (limit {_mp(limit)}, --max-pixels)" if limit else ""
            raise ImageTooLargeError(f"{path}: image {size}{lim}; not decoded") from None
        return None
    except Exception:  # unknown or broken header: OpenCV decides
        return None
    if limit is not None and w * h > limit:
        raise ImageTooLargeError(
            f"{path}: image is {w}x{h} ({_mp(w * h)}), over the {_mp(limit)} limit "
            "(--max-pixels); not decoded"
        )
    info = ImageInfo(w, h, fmt, mode, has_alpha=alpha)
    if mode.startswith("I;16") or mode == "I":
        info.bits = 16
    raw = data[:26].tobytes()
    if raw[:8] == _PNG_SIGNATURE and raw[12:16] == b"IHDR" and len(raw) >= 25:
        info.bits = max(8, raw[24])
    if frames > 1:  # GIF, APNG, WebP, multi-page TIFF: the decoders keep the first frame
        info.conversions.append(f"animated ({frames} frames) -> first frame")
    if info.bits > 8:
        info.conversions.append(f"{info.bits}-bit -> 8-bit")
    if mode == "CMYK":
        info.conversions.append("CMYK -> RGB")
    elif mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        info.conversions.append("grayscale -> RGB")
    return info


# suffixes whose formats can hold several frames (a JPEG cannot; MPO counts as one picture)
_MULTI_FRAME_SUFFIXES = (".gif", ".png", ".apng", ".webp", ".tif", ".tiff")


def declared_frames(path: str | os.PathLike[str]) -> int:
    """The frame count the file's header declares, without decoding (1 for a format that
    cannot animate, or a file PIL cannot open: reading it later says what is wrong)."""
    if not str(path).lower().endswith(_MULTI_FRAME_SUFFIXES):
        return 1
    from PIL import Image

    try:
        with Image.open(path, formats=_HEADER_FORMATS) as im:
            return _frames(im)
    except Exception:
        return 1


def _frames(im: Any) -> int:
    """The frame count an image's header declares (1 when it does not say). A phone's MPO
    JPEG (the photo, then its preview or depth image) is one picture, not an animation."""
    if getattr(im, "format", None) == "MPO":
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1) or 1))
    except Exception:  # a damaged later frame: the first one is what is decoded
        return 1


def _decode(data: np.ndarray, path: object, flags: int) -> np.ndarray:
    import cv2

    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "OpenCV error"
        raise ImageReadError(f"cannot decode image: {path} ({msg})") from None
    if img is None:
        raise ImageReadError(f"cannot decode image: {path}")
    return img


def _check_decoded(img: np.ndarray, path: object, limit: int | None) -> None:
    h, w = img.shape[:2]
    if limit is not None and w * h > limit:
        raise ImageTooLargeError(
            f"{path}: image is {w}x{h} ({_mp(w * h)}), over the {_mp(limit)} limit (--max-pixels)"
        )


def _limit(max_pixels: int | None) -> int | None:
    return _max_pixels if max_pixels == _USE_SETTING else (max_pixels or None)


def read_rgb(path: str | os.PathLike[str], max_pixels: int | None = _USE_SETTING) -> np.ndarray:
    """RGB uint8 H x W x 3 (EXIF orientation applied, as OpenCV does). `max_pixels`: the
    limit for this call (None or 0: none); by default the process-wide one."""
    import cv2

    limit = _limit(max_pixels)
    data = _read_bytes(path)
    _header(data, path, limit)
    img = _decode(data, path, cv2.IMREAD_COLOR)
    _check_decoded(img, path, limit)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(
    path: str | os.PathLike[str], max_pixels: int | None = _USE_SETTING
) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """(RGB uint8 H x W x 3, alpha uint8 H x W or None, ImageInfo). Without alpha the RGB is
    exactly read_rgb's; with alpha both come from one decode of the stored pixels (no EXIF
    rotation: PNG and WebP rarely carry one). 16-bit channels keep their high byte."""
    import cv2

    limit = _limit(max_pixels)
    data = _read_bytes(path)
    info = _header(data, path, limit)
    alpha = None
    rgb = None
    if info is None or info.has_alpha:
        raw = _decode(data, path, cv2.IMREAD_UNCHANGED)
        _check_decoded(raw, path, limit)
        if raw.dtype != np.uint8:
            if info is not None and raw.dtype == np.uint16 and info.bits == 8:
                info.bits = 16
                info.conversions.append("16-bit -> 8-bit")
            if raw.dtype == np.uint16:
                raw = (raw >> 8).astype(np.uint8)
            else:  # float / 32-bit images: let OpenCV's colour path decide
                raw = None
        if raw is not None and raw.ndim == 3 and raw.shape[2] in (2, 4):
            alpha = np.ascontiguousarray(raw[..., -1])
            if raw.shape[2] == 4:
                rgb = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB)
            else:
                rgb = cv2.cvtColor(raw[..., 0], cv2.COLOR_GRAY2RGB)
    if rgb is None:
        img = _decode(data, path, cv2.IMREAD_COLOR)
        _check_decoded(img, path, limit)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if info is None:
        info = ImageInfo(rgb.shape[1], rgb.shape[0])
    info.has_alpha = alpha is not None
    return rgb, alpha, info


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> float32 in [0, 1]."""
    return img.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float H x W x 3 in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
