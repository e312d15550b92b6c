"""`anonbench anonymize`: anonymize a photo, a folder of photos/videos, or a video with any
registered method (CIAGAN, blur17, ...). Every detected face is replaced; videos are tracked
and their landmarks smoothed over time (see anonbench.methods.ciagan.video)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "anonymize"
HELP = (
    "anonymize faces in a photo, a folder or a video: "
    "anonbench anonymize --method NAME --input PATH --output DIR"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import math

    from anonbench import argtypes

    parser.add_argument("--method", required=True, help="method name (anonbench ls methods)")
    parser.add_argument("--input", required=True, help="photo, video, or folder of them")
    parser.add_argument("--output", required=True, help="output folder (same relative names)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--identity", type=argtypes.non_negative_int, help="one fake identity K for every face"
    )
    who.add_argument(
        "--mapping",
        choices=["per-camera", "per-source"],
        default="per-camera",
        help="per-camera (default): a new real->fake mapping per input file; per-source: "
        "the same person gets the same fake identity in every file",
    )
    parser.add_argument(
        "--seed", type=argtypes.seed, default=0, help="seed of the identity mapping (>= 0)"
    )
    parser.add_argument("--checkpoint", help="model checkpoint (methods that take one)")
    parser.add_argument("--device", help="cpu, cuda, ... (methods that take one)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator (ciagan on CUDA; bf16 is already its CUDA default)",
    )
    parser.add_argument(
        "--on-miss",
        choices=["blur", "keep", "fail"],
        default="blur",
        help="missed faces (video: frames inside a track without a detection; photo: no "
        "face at all): blur them (default), keep them, or fail",
    )
    # RetinaFace by default: anonymizing is about recall. On short_hamilton_clip.mp4 dlib HOG
    # found no face in 92 of 275 frames, some with plainly visible faces; RetinaFace in 9.
    # (The benchmark protocols keep dlib HOG, as the paper does.)
    parser.add_argument(
        "--analysis-detector",
        "--detector",
        dest="analysis_detector",
        type=argtypes.detector,
        default="retinaface",
        metavar="NAME",
        help="face detector; dlib's 68 landmarks are placed in its boxes, mapped to where dlib "
        "expects them (default retinaface: far fewer missed faces than dlib-hog, the benchmark "
        "protocols' default; anonbench ls detectors)",
    )
    parser.add_argument(
        "--threshold",
        type=argtypes.number(-math.inf),
        help="the detector's score threshold (lower: more faces, more false ones; default: the "
        "detector's own, retinaface 0.5; dlib-hog: its SVM score, 0)",
    )
    parser.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    parser.add_argument(
        "--smooth-lam",
        type=argtypes.non_negative_number,
        help="spline smoothing strength, >= 0 (default: chosen by GCV)",
    )
    parser.add_argument(
        "--max-gap", type=argtypes.non_negative_int, default=10, help="frames a track may miss"
    )
    parser.add_argument(
        "--max-frames", type=argtypes.positive_int, help="process only the first N frames"
    )
    parser.add_argument("--cache-dir", help="face analysis cache (default $ANONBENCH_CACHE)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache face analysis")
    parser.add_argument(
        "--max-pixels",
        type=argtypes.max_pixels,
        help="refuse images whose header declares more pixels than this, before decoding "
        "(default 64000000; 0 = no limit)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _create_method(args: argparse.Namespace) -> Any:
    from anonbench import plugins
    from anonbench.errors import AnonbenchError
    from anonbench.registry import METHODS

    wanted = {"checkpoint": args.checkpoint, "device": args.device}
    if args.compile:
        wanted["compile"] = True
    if args.identity is not None:
        wanted["identity"] = args.identity
    wanted = {k: v for k, v in wanted.items() if v is not None}
    params = plugins.accepted(METHODS, args.method)
    for k in wanted:
        if k not in params and k != "identity":
            flag = f"--{k}" if k != "compile" else "--compile"
            raise AnonbenchError(f"method {args.method!r} takes no {flag}")
    kwargs = {k: v for k, v in wanted.items() if k in params}
    return METHODS.create(args.method, **kwargs)


class MissedFaceAbort(Exception):
    """--on-miss fail and a face was missed: the whole run stops (exit 2), as documented."""


def _atomic_write_image(path: Path, rgb: Any, alpha: Any) -> None:
    """Encodes first, then replaces `path` in one step: never a half-written image."""
    import cv2
    import numpy as np

    from anonbench.cache import atomic_open
    from anonbench.errors import AnonbenchError

    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if alpha is None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        bgr = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    ok, buf = cv2.imencode(path.suffix, bgr, params)
    if not ok:
        raise AnonbenchError(f"cannot encode {path.suffix} image for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())


def process_photo(
    method: Any, src: Path, dst: Path, analyzer: Any, mapper: Any, opts: Any, name: str
) -> dict[str, Any]:
    """One photo, read with read_image (alpha
    kept: written as PNG, `.png` appended to names whose format has no alpha; 16-bit,
    grayscale and CMYK anonymized as 8-bit RGB and reported) and written atomically."""
    from anonbench.data.images import read_image
    from anonbench.methods.ciagan.video import anonymize_faces, blur_whole

    img, alpha, info = read_image(src)
    faces = analyzer(img)
    mapper.new_camera(name)
    if alpha is not None and dst.suffix.lower() not in (".png", ".webp"):
        dst = dst.with_name(dst.name + ".png")
    rep: dict[str, Any] = {"input": str(src), "output": str(dst), "kind": "image"}
    if len(faces) == 0:
        if opts.on_miss == "fail":
            raise MissedFaceAbort(f"{src}: no face detected (--on-miss fail)")
        out = blur_whole(img) if opts.on_miss == "blur" else img
        rep.update(faces=0, missed=1, identities=[])
    else:
        lms, boxes = list(faces.landmarks), list(faces.boxes)
        # per-camera: every photo is its own camera, its faces different people
        reid = mapper.mode == "per-source"
        targets = [mapper.assign(img, b, reid) for b in boxes]
        out = anonymize_faces(method, img, lms, boxes, targets, name)
        rep.update(faces=len(faces), missed=0, identities=targets)
    if info.conversions:
        rep["converted"] = info.conversions
    if alpha is not None:
        rep["alpha"] = "kept"
    _atomic_write_image(dst, out, alpha)
    return rep


def _declared_frames(src: Path) -> int | None:
    """The frame count the container declares (None if it does not say). A video that does
    not open, or whose first frame does not decode, is one AnonbenchError."""
    import cv2

    from anonbench.errors import AnonbenchError

    cap = cv2.VideoCapture(str(src))
    try:
        if not cap.isOpened():
            raise AnonbenchError(f"cannot open video {src} (damaged, truncated or unsupported)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not cap.read()[0]:
            said = f" ({n} declared)" if n > 0 else ""
            raise AnonbenchError(f"cannot decode video {src}: no frame could be read{said}")
    finally:
        cap.release()
    return n if n > 0 else None


def process_movie(
    method: Any, src: Path, dst: Path, analyzer: Any, mapper: Any, opts: Any, name: str
) -> dict[str, Any]:
    """One video (methods.ciagan.video.process_video), with the frames the container declares
    next to the frames decoded: a truncated or damaged file is anonymized up to its last
    readable frame and flagged `truncated`. Container counts can be estimates (MKV, WebM),
    so a shortfall is a warning, not a failure."""
    from anonbench.errors import AnonbenchError
    from anonbench.methods.ciagan.video import process_video
    from anonbench.video_audio import keep_audio

    declared = _declared_frames(src)
    if declared is not None and opts.max_frames is not None:
        declared = min(declared, opts.max_frames)
    try:
        rep = process_video(method, src, dst, analyzer, mapper, opts, name)
    except AnonbenchError as e:
        if opts.on_miss == "fail" and "(--on-miss fail)" in str(e):
            raise MissedFaceAbort(str(e)) from None
        raise
    rep["frames_declared"] = declared
    rep["frames_decoded"] = rep["frames"]
    rep["truncated"] = declared is not None and rep["frames"] < declared
    rep["audio"] = keep_audio(src, Path(rep["output"]))  # OpenCV writes frames only
    if rep["audio"].startswith("failed"):
        import sys

        print(f"anonbench: warning: {src}: sound not kept ({rep['audio']})", file=sys.stderr)
    return rep


def _outputs_of(dst: Path) -> list[Path]:
    return [dst, dst.with_name(dst.name + ".mp4"), dst.with_name(dst.name + ".png")]


def anonymize_inputs(
    method: Any, src: str | Path, out_dir: str | Path, analyzer: Any, mapper: Any, opts: Any
) -> dict[str, Any]:
    """Anonymizes a photo, a video or a folder of them into out_dir (same relative names).
    A bad input (unreadable, empty, over --max-pixels, undecodable video) is skipped, its
    partial output removed, and listed under `failed`; the rest goes on. --on-miss fail still
    stops the run (MissedFaceAbort). Writes out_dir/anonymize_report.json atomically and
    returns the report."""
    import json

    from anonbench.cache import atomic_write_text
    from anonbench.errors import AnonbenchError
    from anonbench.methods.ciagan.video import collect_inputs
    from anonbench.safety import refuse_collisions, refuse_overlap

    if opts.on_miss not in ("blur", "keep", "fail"):
        raise AnonbenchError(f"--on-miss must be blur, keep or fail, got {opts.on_miss!r}")
    src, out_dir = Path(src), Path(out_dir)
    items = collect_inputs(src)
    # rules 2 and 3, before any work: the input is never written; one output per input
    refuse_overlap([("--output", out_dir)], [("the input", src)])
    refuse_collisions(((n, o) for _, n in items for o in _output_names(n)), f"--input {src}")
    before = _listing(out_dir)
    try:
        reports, failed = _anonymize_all(method, items, out_dir, analyzer, mapper, opts)
    except BaseException:
        _remove_new(out_dir, before)  # a run that stops leaves nothing half-written
        raise
    report = _report(method, mapper, opts, reports, failed)
    atomic_write_text(out_dir / "anonymize_report.json", json.dumps(report, indent=2))
    return report


def _output_names(name: str) -> list[str]:
    """Every name an input's output may take: its own; a video not in MP4 gets `.mp4`
    appended (process_video); a BMP with alpha gets `.png` appended (process_photo)."""
    from anonbench.methods.ciagan.video import VIDEO_EXTENSIONS

    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return [name if suffix == ".mp4" else name + ".mp4"]
    return [name] if suffix in (".png", ".webp", ".jpg", ".jpeg") else [name, name + ".png"]


def _listing(out_dir: Path) -> set[Path] | None:
    """What the output folder holds before a run (None: it does not exist)."""
    return set(out_dir.rglob("*")) if out_dir.is_dir() else None


def _remove_new(out_dir: Path, before: set[Path] | None) -> None:
    """Removes the files and folders a stopped run created (files it replaced stay)."""
    import shutil

    if before is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in sorted(set(out_dir.rglob("*")) - before, reverse=True):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _anonymize_all(
    method: Any, items: list[tuple[Path, str]], out_dir: Path, analyzer: Any, mapper: Any, opts: Any
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every input in turn: (reports, failed); a bad input is listed and skipped."""
    from anonbench.errors import AnonbenchError
    from anonbench.methods.ciagan.video import VIDEO_EXTENSIONS

    reports: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for path, name in items:
        dst = out_dir / name
        before = {p: p.stat().st_mtime_ns for p in _outputs_of(dst) if p.exists()}
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                reports.append(process_movie(method, path, dst, analyzer, mapper, opts, name))
            else:
                reports.append(process_photo(method, path, dst, analyzer, mapper, opts, name))
        except MissedFaceAbort:
            raise
        except Exception as e:  # one bad input must not stop the folder
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if not isinstance(e, AnonbenchError):
                msg = f"{type(e).__name__}: {msg}"
            if str(path) not in msg:
                msg = f"{path}: {msg}"
            failed.append({"input": str(path), "error": msg})
            for p in _outputs_of(dst):  # nothing half-written from this input
                if p.exists() and before.get(p) != p.stat().st_mtime_ns:
                    p.unlink()
    return reports, failed


def _report(
    method: Any, mapper: Any, opts: Any, reports: list[dict[str, Any]], failed: list[dict[str, str]]
) -> dict[str, Any]:
    videos = [r for r in reports if r["kind"] == "video"]
    return {
        "method": method.name,
        "meta": dict(method.meta.__dict__),
        "on_miss": opts.on_miss,
        "mapping": mapper.mode if mapper.identity is None else f"fixed:{mapper.identity}",
        "seed": mapper.seed,
        "max_pixels": _max_pixels(),
        "inputs": reports,
        "failed": failed,
        "totals": {
            "images": sum(r["kind"] == "image" for r in reports),
            "videos": len(videos),
            "faces": sum(r.get("faces", r.get("detections", 0)) for r in reports),
            "tracks": sum(r.get("tracks", 0) for r in reports),
            "missed": sum(r["missed"] for r in reports),
            "frames_without_face": sum(r.get("frames_without_face", 0) for r in reports),
            "failed": len(failed),
            "truncated_videos": sum(bool(r.get("truncated")) for r in videos),
            "converted_to_8bit": sum(
                any("-bit -> 8-bit" in c for c in r.get("converted", [])) for r in reports
            ),
        },
    }


def _max_pixels() -> int | None:
    from anonbench.data.images import get_max_pixels

    return get_max_pixels()


def _check_paths(args: argparse.Namespace) -> None:
    """Before any work: --output can be a folder (an existing file is one line), and neither
    it nor --cache-dir is, contains or lies inside the input (rule 2)."""
    from anonbench.cache import default_cache_dir
    from anonbench.runner import check_writable_dir
    from anonbench.safety import refuse_overlap

    check_writable_dir(args.output, "--output")
    cache = None if args.no_cache else (args.cache_dir or str(default_cache_dir()))
    refuse_overlap([("--output", args.output), ("--cache-dir", cache)], [("the input", args.input)])


def run(args: argparse.Namespace) -> int:
    import sys

    from anonbench.cache import Cache
    from anonbench.data.images import set_max_pixels
    from anonbench.errors import AnonbenchError
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.methods.ciagan.video import IdentityMapper, Options

    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    _check_paths(args)
    method = _create_method(args)
    method.name = args.method
    cache = Cache(args.cache_dir, enabled=not args.no_cache)
    analyzer = FaceAnalyzer(detector=args.analysis_detector, cache=cache, threshold=args.threshold)
    mapper = IdentityMapper(method, args.mapping, args.seed, args.identity)
    opts = Options(
        on_miss=args.on_miss,
        smooth=not args.no_smooth,
        smooth_lam=args.smooth_lam,
        max_frames=args.max_frames,
        max_gap=args.max_gap,
        progress=not args.quiet,
    )
    try:
        rep = anonymize_inputs(method, args.input, args.output, analyzer, mapper, opts)
    except MissedFaceAbort as e:
        raise AnonbenchError(str(e)) from None
    t = rep["totals"]
    report_path = Path(args.output) / "anonymize_report.json"
    for r in rep["inputs"]:
        if r.get("truncated"):
            print(
                f"anonbench: warning: {r['input']}: {r['frames_declared']} frames declared, "
                f"{r['frames_decoded']} decoded (truncated or damaged; anonymized up to the "
                "last readable frame)",
                file=sys.stderr,
            )
        for c in r.get("converted", []):
            if c.startswith("animated"):  # the output is a still: say so, one line
                print(
                    f"anonbench: warning: {r['input']}: {c.removesuffix(' -> first frame')}: "
                    f"only the first frame was anonymized and written to {r['output']}",
                    file=sys.stderr,
                )
    if t["converted_to_8bit"]:
        print(
            f"anonbench: note: {t['converted_to_8bit']} input(s) with 16-bit channels were "
            "anonymized and written in 8 bits (listed in the report)",
            file=sys.stderr,
        )
    for f in rep["failed"]:
        print(f"anonbench: skipped: {f['error']}", file=sys.stderr)
    uncovered = (
        f"video frames where no face was found (not anonymized; listed in the report): "
        f"{t['frames_without_face']}; "
        if t.get("frames_without_face")
        else ""
    )
    failed = (
        f"failed inputs (skipped, listed in the report): {t['failed']}; " if t["failed"] else ""
    )
    print(
        f"anonymized {t['faces']} face(s) in {t['images']} image(s) and {t['videos']} video(s)"
        f" ({t['tracks']} track(s)); missed: {t['missed']} (--on-miss {args.on_miss}); "
        f"{uncovered}{failed}report: {report_path}"
    )
    return 1 if t["failed"] else 0
