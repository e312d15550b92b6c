"""Anonymizing photos, folders and videos with any registered method.

Videos (paper, Sec. 3.2): faces are detected in every frame, linked into tracks by box IoU,
and each track's 68 landmarks are smoothed over time with a smoothing spline (scipy; the
smoothing strength chosen per coordinate by generalised cross-validation unless given), which
also fills the frames a track's face was missed in. Every track gets one fake identity
(identity-conditioned methods only). Mappings (paper, Sec. 3.4):

- per-camera: a new real -> fake mapping for every input file (a camera), drawn without
  repetition from a generator seeded by (seed, file name); within a video, a track whose
  dlib-resnet descriptor lies within 0.6 (dlib's same-person threshold) of an earlier track's
  gets that track's identity (a person lost and found again keeps the fake face);
- per-source: one mapping for the whole run: the same re-identification across all files
  (the same person gets the same fake identity everywhere; the paper's caution against
  long-term tracking is why this is not the default).

A miss is a frame inside a track's span without a detection. --on-miss decides: blur (the
smoothed face region is blurred), keep (left as it is, reported), fail (stop before writing).
A photo with no detected face counts as a miss of the whole image (blur: the whole image).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.api import Anonymizer
from anonbench.errors import AnonbenchError
from anonbench.faces.mask import ciagan_mask, iou

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its 128-d face descriptor


# -- tracking and smoothing -------------------------------------------------------------------


@dataclass
class Track:
    tid: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    best_area: float = -1.0
    best_frame: np.ndarray | None = None  # the frame of the largest detection (for mapping)
    best_box: np.ndarray | None = None

    def add(self, f: int, box: np.ndarray, lm: np.ndarray, frame: np.ndarray | None) -> None:
        self.frames.append(f)
        self.boxes.append(np.asarray(box, np.float64))
        self.landmarks.append(np.asarray(lm, np.float64))
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        if frame is not None and area > self.best_area:
            self.best_area, self.best_frame, self.best_box = area, frame, np.asarray(box)


class IoUTracker:
    """Greedy IoU matching of detections to the tracks seen in the last max_gap + 1 frames."""

    def __init__(self, min_iou: float = 0.3, max_gap: int = 10) -> None:
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.tracks: list[Track] = []

    def update(
        self,
        f: int,
        boxes: np.ndarray,
        landmarks: np.ndarray,
        frame: np.ndarray | None = None,
    ) -> list[int]:
        """Adds frame f's detections; returns the track id of each."""
        active = [t for t in self.tracks if f - t.frames[-1] <= self.max_gap + 1]
        pairs = sorted(
            (
                (iou(tuple(t.boxes[-1]), tuple(b)), ti, di)
                for ti, t in enumerate(active)
                for di, b in enumerate(boxes)
            ),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for v, ti, di in pairs:
            if v < self.min_iou:
                break
            if ti in used or di in assigned:
                continue
            used.add(ti)
            assigned[di] = active[ti]
        out = []
        for di in range(len(boxes)):
            t = assigned.get(di)
            if t is None:
                t = Track(len(self.tracks))
                self.tracks.append(t)
            t.add(f, boxes[di], landmarks[di], frame)
            out.append(t.tid)
        return out


def smooth_track(
    frames: np.ndarray, values: np.ndarray, lam: float | None = None, smooth: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Values (T x ...) observed at increasing frames -> (every frame of the span, values
    there): a cubic smoothing spline per coordinate (lam None: chosen by GCV) with 5 or more
    observations, else linear interpolation; smooth=False interpolates only the gaps."""
    from scipy.interpolate import make_smoothing_spline

    frames = np.asarray(frames, np.float64)
    span = np.arange(int(frames[0]), int(frames[-1]) + 1)
    flat = np.asarray(values, np.float64).reshape(len(frames), -1)
    if len(frames) == 1:
        out = np.repeat(flat, len(span), 0)
    elif smooth and len(frames) >= 5:
        if lam is None:
            cols = [make_smoothing_spline(frames, flat[:, j])(span) for j in range(flat.shape[1])]
            out = np.stack(cols, 1)
        else:
            out = make_smoothing_spline(frames, flat, lam=lam)(span)
    else:
        out = np.stack([np.interp(span, frames, flat[:, j]) for j in range(flat.shape[1])], 1)
    return span, out.reshape(len(span), *np.asarray(values).shape[1:])


def landmark_jitter(
    tracks: list[Track], smoothed: dict[int, dict[int, np.ndarray]]
) -> dict[str, float | None]:
    """Mean frame-to-frame landmark displacement (px, over pairs of consecutive frames both
    detected in one track) and mean second difference (acceleration: noise rather than
    motion), raw and smoothed."""
    d_raw, d_s, a_raw, a_s = [], [], [], []
    for t in tracks:
        raw = dict(zip(t.frames, t.landmarks, strict=True))
        sm = smoothed[t.tid]
        for f in t.frames:
            if f + 1 in raw:
                d_raw.append(np.linalg.norm(raw[f + 1] - raw[f], axis=-1).mean())
                d_s.append(np.linalg.norm(sm[f + 1] - sm[f], axis=-1).mean())
            if f + 1 in raw and f + 2 in raw:
                acc = raw[f + 2] - 2 * raw[f + 1] + raw[f]
                acc_s = sm[f + 2] - 2 * sm[f + 1] + sm[f]
                a_raw.append(np.linalg.norm(acc, axis=-1).mean())
                a_s.append(np.linalg.norm(acc_s, axis=-1).mean())

    def mean(v: list[float]) -> float | None:
        return float(np.mean(v)) if v else None

    return {
        "displacement_px_raw": mean(d_raw),
        "displacement_px_smoothed": mean(d_s),
        "acceleration_px_raw": mean(a_raw),
        "acceleration_px_smoothed": mean(a_s),
    }


# -- identity mapping ---------------------------------------------------------------------------


class IdentityMapper:
    """Fake identity per face or track: fixed, per-camera or per-source (see module doc).
    Methods that are not identity-conditioned get None."""

    def __init__(
        self,
        method: Anonymizer,
        mode: str = "per-camera",
        seed: int = 0,
        identity: int | None = None,
        embedder: Any = None,
    ) -> None:
        if mode not in ("per-camera", "per-source"):
            raise AnonbenchError(f"--mapping must be per-camera or per-source, got {mode!r}")
        self.n = int(getattr(method, "num_identities", 0) or 0)
        self.active = bool(method.meta.identity_conditioned) and self.n > 0
        self.mode, self.seed, self.identity = mode, seed, identity
        self._embedder = embedder
        self._order: list[int] = []
        self._gallery: list[tuple[np.ndarray, int]] = []
        if mode == "per-source":
            self._order = list(np.random.default_rng(seed).permutation(max(self.n, 1)))

    def new_camera(self, name: str) -> None:
        """per-camera: a fresh mapping (and gallery) for the input `name`."""
        if self.mode == "per-camera" and self.active:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            self._order = list(rng.permutation(self.n))
            self._gallery = []

    def _next(self) -> int:
        if not self._order:  # more people than identities: start a new round
            rng = np.random.default_rng([self.seed, len(self._gallery)])
            self._order = list(rng.permutation(self.n))
        return int(self._order.pop(0))

    def assign(
        self, image: np.ndarray | None, box: np.ndarray | None, reid: bool = True
    ) -> int | None:
        """The fake identity of the face in box. With reid (and an image), a face within
        SAME_PERSON_DISTANCE of one already in the gallery gets that face's identity."""
        if not self.active:
            return None
        if self.identity is not None:
            return self.identity
        if not reid or image is None or box is None:
            return self._next()
        if self._embedder is None:
            from anonbench.registry import EMBEDDERS

            self._embedder = EMBEDDERS.create("dlib-resnet")
        emb, _ = self._embedder.embed([image], tuple(float(v) for v in box))
        e = emb[0]
        if self._gallery:
            dists = [float(np.linalg.norm(e - g)) for g, _ in self._gallery]
            k = int(np.argmin(dists))
            if dists[k] < SAME_PERSON_DISTANCE:
                return self._gallery[k][1]
        t = self._next()
        self._gallery.append((e, t))
        return t

    @property
    def needs_frames(self) -> bool:
        return self.active and self.identity is None


# -- applying a method to faces ---------------------------------------------------------------


def anonymize_faces(
    method: Anonymizer,
    image: np.ndarray,
    landmarks: list[np.ndarray],
    boxes: list[np.ndarray],
    targets: list[int | None],
    key: str,
) -> np.ndarray:
    """Anonymizes the given faces of an H x W x 3 uint8 image one after the other (so that
    overlapping masks compose); returns uint8."""
    import torch

    from anonbench.api import FaceBatch

    if not landmarks:
        return image
    h, w = image.shape[:2]
    cur = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
    for k, (lm, box, t) in enumerate(zip(landmarks, boxes, targets, strict=True)):
        batch = FaceBatch(
            images=cur,
            landmarks=torch.from_numpy(np.asarray(lm, np.float32)[None]),
            masks=torch.from_numpy(ciagan_mask(lm, h, w))[None, None],
            boxes=torch.from_numpy(np.asarray(box, np.float32)[None]),
            keys=[f"{key}#{k}"],
        )
        cur = method.anonymize(batch, targets=None if t is None else [t])
    out = cur[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _odd(k: float) -> int:
    k = max(int(k), 3)
    return k if k % 2 else k + 1


def blur_faces(image: np.ndarray, landmarks: list[np.ndarray]) -> np.ndarray:
    """The fallback for missed faces: a Gaussian blur (kernel ~ face width / 3, at least
    17) inside each face's mask, dilated by a tenth of the face width for safety."""
    import cv2

    out = image.copy()
    h, w = image.shape[:2]
    for lm in landmarks:
        width = float(np.ptp(np.asarray(lm)[:17, 0]))
        k = _odd(max(17, width / 3))
        m = ciagan_mask(lm, h, w).astype(np.uint8)
        grow = _odd(width / 10)
        m = cv2.dilate(m, np.ones((grow, grow), np.uint8)) > 0
        blurred = cv2.GaussianBlur(out, (k, k), 0)
        out[m] = blurred[m]
    return out


def blur_whole(image: np.ndarray) -> np.ndarray:
    import cv2

    k = _odd(max(image.shape[:2]) / 20)
    return cv2.GaussianBlur(image, (k, k), 0)


# -- inputs ---------------------------------------------------------------------------------------


@dataclass
class Options:
    on_miss: str = "blur"
    smooth: bool = True
    smooth_lam: float | None = None
    max_frames: int | None = None
    min_iou: float = 0.3
    max_gap: int = 10
    progress: bool = True


def _open_video(path: Path) -> Any:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise AnonbenchError(f"cannot open video {path}")
    return cap


def _frames(path: Path, limit: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (index, RGB frame)."""
    import cv2

    cap = _open_video(path)
    try:
        i = 0
        while limit is None or i < limit:
            ok, frame = cap.read()
            if not ok:
                break
            yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


@dataclass
class TrackedVideo:
    tracks: list[Track]
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    detections: int
    # frames in which the detector found no face and no track covers them: a face there (if
    # any) is neither anonymized nor counted as missed, so the report lists them for review
    uncovered: list[int]
    # per frame: [(track id, landmarks, box, detected)]
    faces: dict[int, list[tuple[int, np.ndarray, np.ndarray, bool]]]
    smoothed: dict[int, dict[int, np.ndarray]]


def _ranges(frames: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]: compact frame lists for the JSON report."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def track_video(
    path: Path,
    analyzer: Callable[[np.ndarray], Any],
    opts: Options,
    keep_best_frames: bool = False,
) -> TrackedVideo:
    """Pass 1: detection in every frame, tracking, smoothing."""
    import cv2
    from tqdm.auto import tqdm

    cap = _open_video(path)
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    cap.release()
    if opts.max_frames is not None and total is not None:
        total = min(total, opts.max_frames)
    tracker = IoUTracker(opts.min_iou, opts.max_gap)
    n, det, size = 0, 0, (0, 0)
    bar = tqdm(total=total, desc=f"detect {path.name}", unit="frame", disable=not opts.progress)
    for i, frame in _frames(path, opts.max_frames):
        res = analyzer(frame)
        tracker.update(i, res.boxes, res.landmarks, frame if keep_best_frames else None)
        n, det, size = i + 1, det + len(res), (frame.shape[1], frame.shape[0])
        bar.update(1)
    bar.close()
    faces: dict[int, list[tuple[int, np.ndarray, np.ndarray, bool]]] = {}
    smoothed: dict[int, dict[int, np.ndarray]] = {}
    for t in tracker.tracks:
        span, lms = smooth_track(
            np.array(t.frames), np.stack(t.landmarks), opts.smooth_lam, opts.smooth
        )
        _, boxes = smooth_track(np.array(t.frames), np.stack(t.boxes), smooth=False)
        seen = set(t.frames)
        smoothed[t.tid] = {}
        for f, lm, b in zip(span, lms, boxes, strict=True):
            smoothed[t.tid][int(f)] = lm
            faces.setdefault(int(f), []).append((t.tid, lm, b, int(f) in seen))
    uncovered = [f for f in range(n) if f not in faces]
    return TrackedVideo(tracker.tracks, n, fps, size, det, uncovered, faces, smoothed)


def process_video(
    method: Anonymizer,
    src: Path,
    dst: Path,
    analyzer: Callable[[np.ndarray], Any],
    mapper: IdentityMapper,
    opts: Options,
    name: str,
) -> dict[str, Any]:
    import cv2
    from tqdm.auto import tqdm

    tv = track_video(src, analyzer, opts, keep_best_frames=mapper.needs_frames)
    misses = [(f, tid) for f, fl in tv.faces.items() for tid, _, _, seen in fl if not seen]
    if misses and opts.on_miss == "fail":
        f, tid = min(misses)
        raise AnonbenchError(
            f"{src}: {len(misses)} missed face(s) in tracked spans, first in frame {f} "
            f"(track {tid}) (--on-miss fail)"
        )
    mapper.new_camera(name)
    targets = {t.tid: mapper.assign(t.best_frame, t.best_box) for t in tv.tracks}
    for t in tv.tracks:  # the reference frames are no longer needed
        t.best_frame = None
    if dst.suffix.lower() != ".mp4":  # written as MPEG-4; a.avi -> a.avi.mp4 (no collisions)
        dst = dst.with_name(dst.name + ".mp4")
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), tv.fps, tv.size)
    if not writer.isOpened():
        raise AnonbenchError(f"cannot write video {dst}")
    bar = tqdm(
        total=tv.frames, desc=f"anonymize {src.name}", unit="frame", disable=not opts.progress
    )
    try:
        for i, frame in _frames(src, tv.frames):
            fl = tv.faces.get(i, [])
            hit = [x for x in fl if x[3]]
            out = anonymize_faces(
                method,
                frame,
                [x[1] for x in hit],
                [x[2] for x in hit],
                [targets[x[0]] for x in hit],
                f"{name}@{i}",
            )
            missed = [x[1] for x in fl if not x[3]]
            if missed and opts.on_miss == "blur":
                out = blur_faces(out, missed)
            writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
            bar.update(1)
    finally:
        writer.release()
        bar.close()
    return {
        "input": str(src),
        "output": str(dst),
        "kind": "video",
        "frames": tv.frames,
        "fps": tv.fps,
        "detections": tv.detections,
        "tracks": len(tv.tracks),
        "missed": len(misses),
        "frames_with_miss": len({f for f, _ in misses}),
        "frames_without_face": len(tv.uncovered),
        "frames_without_face_list": _ranges(tv.uncovered),
        "identities": {str(k): v for k, v in targets.items()},
        "jitter": landmark_jitter(tv.tracks, tv.smoothed),
    }


def collect_inputs(src: Path) -> list[tuple[Path, str]]:
    """(path, name relative to the input) for a file or every image/video under a folder."""
    if src.is_file():
        if src.suffix.lower() not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            raise AnonbenchError(f"{src}: not an image or video file ({src.suffix})")
        return [(src, src.name)]
    if src.is_dir():
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
        )
        if not files:
            raise AnonbenchError(f"no images or videos under {src}")
        return [(p, p.relative_to(src).as_posix()) for p in files]
    raise AnonbenchError(f"input not found: {src}")
