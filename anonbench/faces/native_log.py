"""Third-party native log lines kept off the console.

mediapipe's TensorFlow Lite and absl logging write straight to file descriptor 2 from C++ (the
XNNPACK delegate line, absl's "before InitializeLog" notice, `W0000 ... file.cc:N]` warnings),
and no environment variable turns them off (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL do not
reach absl). :func:`filtered_native_stderr` wraps the native calls: fd 2 goes to a temporary
file for their duration, and afterwards everything but those info and warning lines is written
back to stderr, so native errors and anonbench's own warnings still show.
`ANONBENCH_NATIVE_LOGS=1` shows everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

ENV_VAR = "ANONBENCH_NATIVE_LOGS"
# absl / glog info and warning lines (`W0000 00:00:1796241767.191070    9896 file.cc:114] ...`)
# and TensorFlow Lite's own info lines; errors (E, F) are kept
NOISE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "
    r"|INFO: (?:Created TensorFlow Lite|Initialized TensorFlow Lite)"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)
_LOCK = threading.RLock()


def drop_noise(text: str) -> str:
    """`text` without the third-party info and warning lines."""
    return "".join(line for line in text.splitlines(True) if not NOISE.match(line))


@contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Runs the block with fd 2 captured; replays what is not third-party noise."""
    if os.environ.get(ENV_VAR, "") not in ("", "0"):
        yield
        return
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                kept = drop_noise(tmp.read().decode("utf-8", "replace"))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()
