"""Importing TensorFlow without its start-up chatter (used by the command line).

TensorFlow's C++ runtime writes info lines (oneDNN, CUDA probing) straight to file
descriptor 2 before its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL`` does not
stop them; :func:`import_tensorflow` points descriptor 2 at a temporary file while the
library loads and probes its devices, and replays what it caught only if that fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[None]:
    """Send whatever is written to file descriptor 2 to a temporary file; replay it on an error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))


def import_tensorflow(verbose: bool = False) -> ModuleType:
    """``import tensorflow``: quiet unless ``verbose`` (then every C++ log line and the
    expected ``tf.function`` retracing warnings show)."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    already = "tensorflow" in sys.modules
    with contextlib.nullcontext() if already else captured_stderr_fd():
        import tensorflow as tf

        if not already:
            tf.config.list_physical_devices()  # probes CUDA now, while its messages are caught
    tf.get_logger().setLevel("ERROR")  # one retrace per support-size bucket is expected
    return tf
