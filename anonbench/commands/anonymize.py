"""`anonbench anonymize`: anonymize a photo, a folder of photos/videos, or a video with any
registered method (CIAGAN, blur17, ...). Every detected face is replaced; videos are tracked
and their landmarks smoothed over time (see anonbench.methods.ciagan.video)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from anonbench.setaside import SetAside, listing, recover_killed, remove_new

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
    if args.checkpoint and Path(args.checkpoint).is_dir():  # loaders call it "not found"
        raise AnonbenchError(f"--checkpoint {args.checkpoint}: a folder, not a checkpoint file")
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


REPORT = "anonymize_report.json"


def anonymize_inputs(
    method: Any, src: str | Path, out_dir: str | Path, analyzer: Any, mapper: Any, opts: Any
) -> dict[str, Any]:
    """Anonymizes a photo, a video or a folder of them into out_dir (same relative names).
    A bad input (unreadable, empty, over --max-pixels, undecodable video, a broken link) is
    skipped, its partial output removed, and listed under `failed`; the rest goes on. A
    linked subfolder is not followed and is listed under `skipped`. --on-miss fail still
    stops the run (MissedFaceAbort): out_dir is left as it was. Writes
    out_dir/anonymize_report.json atomically and returns the report."""
    import json

    from anonbench.cache import atomic_write_text
    from anonbench.errors import AnonbenchError

    if opts.on_miss not in ("blur", "keep", "fail"):
        raise AnonbenchError(f"--on-miss must be blur, keep or fail, got {opts.on_miss!r}")
    src, out_dir = Path(src), Path(out_dir)
    recover_killed(out_dir)  # a run killed here (SIGKILL, power) is undone first
    items, ours = check_output(src, out_dir)
    failed, skipped = _not_collected(src, items)
    before = listing(out_dir)
    undo = SetAside(out_dir)
    try:
        reports, bad = _anonymize_all(method, items, out_dir, analyzer, mapper, opts, undo)
        report = _report(method, mapper, opts, reports, failed + bad)
        report["skipped"] = skipped  # beside totals, whose set of keys readers compare whole
        report["written"] = _written(out_dir, ours, reports)
        atomic_write_text(out_dir / REPORT, json.dumps(report, indent=2))
    except BaseException:
        # a run that stops leaves nothing half-written: what it replaced is put back
        kept = undo.put_back()
        remove_new(out_dir, before, keep=None if kept else undo.aside)
        raise
    undo.drop()
    return report


def check_output(src: Path, out_dir: Path) -> tuple[list[tuple[Path, str]], set[str]]:
    """Before any work, the input and out_dir: rules 2 and 3 (the input is never written;
    one output per input), and no file this run may write stands in out_dir unless
    anonbench wrote it (its anonymize_report.json lists it). Returns the inputs (path,
    name) and the names anonbench wrote there before (see `_ours`)."""
    from anonbench.errors import AnonbenchError
    from anonbench.methods.ciagan.video import collect_inputs
    from anonbench.safety import refuse_collisions, refuse_overlap

    items = collect_inputs(src)
    refuse_overlap([("--output", out_dir)], [("the input", src)])
    refuse_collisions(((n, o) for _, n in items for o in _output_names(n)), f"--input {src}")
    ours, why = _ours(out_dir)
    names = [REPORT] + [o for _, n in items for o in _output_names(n)]
    _refuse_escapes(out_dir, names)
    # a symlink is never anonbench's (it writes plain files); a folder fails only its input
    taken = [
        n
        for n in names
        if os.path.islink(out_dir / n) or ((out_dir / n).is_file() and n not in ours)
    ]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise AnonbenchError(
            f"{out_dir / taken[0]}{more}: not written by anonbench ({why}), and anonymize "
            "writes there; move it away or choose another --output"
        )
    return items, ours


def _refuse_escapes(out_dir: Path, names: list[str]) -> None:
    """Every output lands inside --output: a linked subfolder there (out/sub -> elsewhere)
    would send the outputs of the input's sub/ folder outside it (rule 1 on each output's
    folder, names from the input's walk taken as they are; the outputs themselves are checked
    as files of the user's by the caller). The error names the link itself."""
    from anonbench.errors import AnonbenchError
    from anonbench.safety import DataRoot

    inside = DataRoot(out_dir, "--output")
    for parent in sorted({n.rpartition("/")[0] for n in names} - {""}):
        if inside.escape(parent) is None:
            continue
        parts = parent.split("/")
        link = next(
            "/".join(parts[:i])
            for i in range(1, len(parts) + 1)
            if inside.escape("/".join(parts[:i])) is not None
        )
        raise AnonbenchError(
            f"{out_dir / link}: a link out of --output {out_dir} (-> "
            f"{os.path.realpath(out_dir / link)}), and anonymize writes there; remove the "
            "link or choose another --output"
        )


def _ours(out_dir: Path) -> tuple[set[str], str]:
    """The names (relative to out_dir) anonbench wrote there, from its anonymize_report.json,
    and why the others are not its own, for the refusal. A report that is not anonbench's
    (unreadable, another shape) makes every file there foreign, itself included."""
    import json

    from anonbench.errors import AnonbenchError

    path = out_dir / REPORT
    if path.is_dir() and not path.is_symlink():
        raise AnonbenchError(
            f"--output {out_dir}: {path} is a folder, and anonymize writes its report there; "
            "move it away or choose another --output"
        )
    if not path.is_file() or path.is_symlink():
        return set(), f"--output {out_dir} holds no {REPORT} of anonbench's"
    foreign = "not an anonbench anonymize report"
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set(), foreign
    if not (isinstance(rep, dict) and {"method", "inputs", "totals"} <= rep.keys()):
        return set(), foreign
    if not isinstance(rep["inputs"], list):
        return set(), foreign
    why = f"{path} does not list it"
    written = rep.get("written")
    if isinstance(written, list):
        return {REPORT} | {w for w in written if isinstance(w, str)}, why
    # a report from before `written`: its outputs are paths as given then (any cwd), so
    # every tail of them may be the name relative to out_dir
    names = {REPORT}
    for r in rep["inputs"]:
        out = r.get("output") if isinstance(r, dict) else None
        if isinstance(out, str):
            parts = Path(out).parts
            names.update("/".join(parts[i:]) for i in range(len(parts)))
    return names, why


def _written(out_dir: Path, ours: set[str], reports: list[dict[str, Any]]) -> list[str]:
    """What the new report lists as anonbench's: the files earlier runs wrote that are still
    there, and this run's outputs (so a later run may replace them)."""
    from anonbench.safety import plain_relative

    names = {n for n in ours - {REPORT} if plain_relative(n) is None}
    kept = {n for n in names if (out_dir / n).is_file() and not (out_dir / n).is_symlink()}
    for r in reports:
        try:
            kept.add(Path(r["output"]).relative_to(out_dir).as_posix())
        except ValueError:  # not under out_dir: not a file of this folder
            pass
    return sorted(kept)


def _output_names(name: str) -> list[str]:
    """Every name an input's output may take: its own; a video not in MP4 gets `.mp4`
    appended (process_video); a BMP with alpha gets `.png` appended (process_photo)."""
    from anonbench.methods.ciagan.video import VIDEO_EXTENSIONS

    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return [name if suffix == ".mp4" else name + ".mp4"]
    return [name] if suffix in (".png", ".webp", ".jpg", ".jpeg") else [name, name + ".png"]


def _not_collected(
    src: Path, items: list[tuple[Path, str]]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """What collect_inputs passes over in silence under a folder, so it is never dropped
    unseen: (failed, skipped). An image or video name that is no readable file (a broken
    link) fails like an unreadable image. A linked subfolder is not followed (it may lead
    back into the input, or to the output) and is skipped, with why; so is a subfolder that
    cannot be listed (permissions)."""
    from anonbench.methods.ciagan.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    if not src.is_dir():
        return [], []
    taken = {n for _, n in items}
    failed: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []

    def unreadable(e: OSError) -> None:  # os.walk passes over a folder it cannot list
        why = f"a folder that cannot be listed ({e.strerror or e}), not anonymized"
        skipped.append({"input": str(e.filename), "reason": f"{e.filename}: {why}"})

    for d, dirs, files in os.walk(src, onerror=unreadable):
        for n in sorted(dirs):
            p = Path(d) / n
            rel = p.relative_to(src).as_posix()
            if p.is_symlink() and not any(t.startswith(rel + "/") for t in taken):
                why = f"a linked folder (-> {os.readlink(p)}), not followed; give it as --input"
                skipped.append({"input": str(p), "reason": f"{p}: {why}"})
        for n in sorted(files):
            p = Path(d) / n
            if p.suffix.lower() not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS or p.is_file():
                continue
            if p.is_symlink():
                why = f"a broken symlink (-> {os.readlink(p)})"
            else:
                why = "not a regular file"
            failed.append({"input": str(p), "error": f"{p}: cannot read: {why}"})
    return failed, skipped


def _anonymize_all(
    method: Any,
    items: list[tuple[Path, str]],
    out_dir: Path,
    analyzer: Any,
    mapper: Any,
    opts: Any,
    undo: SetAside,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every input in turn: (reports, failed); a bad input is listed and skipped, and what
    an earlier run wrote for it is put back."""
    from anonbench.errors import AnonbenchError
    from anonbench.methods.ciagan.video import VIDEO_EXTENSIONS

    reports: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for path, name in items:
        dst = out_dir / name
        outputs = [out_dir / o for o in _output_names(name)]
        moved = undo.move_aside(outputs)
        undo.note_added([p for p in outputs if p not in {m[0] for m in moved}])
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
            for p in outputs:  # nothing half-written from this input (the rest was moved)
                if p.is_file():
                    p.unlink()
            undo.put_back(moved)
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
    """Before any work: --output and --cache-dir can be folders that files are written in
    (a file, a path that cannot be made, is one line naming the flag: an unusable cache
    would otherwise fail every input in turn), neither is, contains or lies inside the
    input (rule 2), and --output holds no file of the user's where this run writes."""
    from anonbench.cache import default_cache_dir
    from anonbench.runner import check_writable_dir
    from anonbench.safety import refuse_overlap

    check_writable_dir(args.output, "--output")
    cache = None if args.no_cache else (args.cache_dir or str(default_cache_dir()))
    refuse_overlap([("--output", args.output), ("--cache-dir", cache)], [("the input", args.input)])
    if cache is not None:
        check_writable_dir(cache, "--cache-dir")
    check_output(Path(args.input), Path(args.output))


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
    mapper = IdentityMapper(method, args.mapping, args.seed, args.identity)
    if args.identity is not None and not mapper.active:  # as --device is refused for it
        raise AnonbenchError(
            f"method {args.method!r} takes no --identity (it has no fake identities to choose)"
        )
    cache = Cache(args.cache_dir, enabled=not args.no_cache)
    analyzer = FaceAnalyzer(detector=args.analysis_detector, cache=cache, threshold=args.threshold)
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
    report_path = Path(args.output) / REPORT
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
    for f in rep["skipped"]:
        print(f"anonbench: skipped: {f['reason']}", file=sys.stderr)
    uncovered = (
        f"video frames where no face was found (not anonymized; listed in the report): "
        f"{t['frames_without_face']}; "
        if t.get("frames_without_face")
        else ""
    )
    failed = (
        f"failed inputs (skipped, listed in the report): {t['failed']}; " if t["failed"] else ""
    )
    if rep["skipped"]:
        n = len(rep["skipped"])
        failed += f"folders not anonymized (linked or unreadable, listed in the report): {n}; "
    print(
        f"anonymized {t['faces']} face(s) in {t['images']} image(s) and {t['videos']} video(s)"
        f" ({t['tracks']} track(s)); missed: {t['missed']} (--on-miss {args.on_miss}); "
        f"{uncovered}{failed}report: {report_path}"
    )
    return 1 if t["failed"] or rep["skipped"] else 0
