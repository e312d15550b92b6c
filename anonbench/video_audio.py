"""The sound of an anonymized video: the original's audio stream muxed into the output.

OpenCV writes frames only, so `anonbench anonymize` would drop a video's sound. After the
frames are written, :func:`keep_audio` copies the original's first audio stream into the
output with the ffmpeg binary that imageio-ffmpeg ships (a dependency): the video stream is
copied as written, the audio copied as is when MP4 players take its codec (AAC, MP3, AC-3,
ALAC, Opus), else re-encoded to AAC; `-shortest` trims it to the frames written
(`--max-frames`). The output is replaced in one step, never left half-written.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
# codecs MP4 players take as they are; others (PCM, Vorbis, ...) are re-encoded to AAC
MP4_AUDIO = ("aac", "mp3", "ac3", "eac3", "alac", "opus")


def ffmpeg_exe() -> str:
    """imageio-ffmpeg's ffmpeg binary."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def audio_codec(path: Path | str) -> str | None:
    """The codec of the file's first audio stream (None: it has none)."""
    r = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    m = _AUDIO.search(r.stderr)
    return m.group(1) if m else None


def _mux(video: Path, source: Path, out: Path, audio: list[str]) -> subprocess.CompletedProcess:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video)]
    cmd += ["-i", str(source), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio]
    cmd += ["-shortest", "-f", "mp4", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=3600)


def keep_audio(source: Path | str, output: Path | str) -> str:
    """Muxes `source`'s first audio stream into the video `output` (replaced in one step).
    Returns what the report records: "none" (the source has no sound), "copied <codec>",
    "re-encoded <codec> -> aac", or "failed: <ffmpeg's last line>" (the silent output stays)."""
    source, output = Path(source), Path(output)
    codec = audio_codec(source)
    if codec is None:
        return "none"
    tmp = output.with_name(f".{output.name}.audio-{os.getpid()}.mp4")
    try:
        r, how = None, f"copied {codec}"
        if codec in MP4_AUDIO:
            r = _mux(output, source, tmp, ["-c:a", "copy"])
        if r is None or r.returncode != 0:
            r = _mux(output, source, tmp, ["-c:a", "aac", "-b:a", "192k"])
            how = f"re-encoded {codec} -> aac"
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
            return f"failed: {last}"
        os.replace(tmp, output)
        return how
    finally:
        tmp.unlink(missing_ok=True)
