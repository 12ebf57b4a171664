"""Imports TensorFlow with its informational start-up lines kept off stderr.

TensorFlow's C++ runtime writes notices at import (absl's pre-init warning, the oneDNN
and CPU-feature notices, "Could not find cuda drivers") straight to file descriptor 2,
whatever `TF_CPP_MIN_LOG_LEVEL` says. They would bury the one-line errors of the
`tfvae` command. This module captures descriptor 2 while TensorFlow is imported and
writes back every line except those informational ones (and "failed call to cuInit"
where the machine has no NVIDIA driver): warnings and errors pass. Set the
environment variable TFVAE_TF_LOGS=1 to see everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

_INFORMATIONAL = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|^I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "
    r"|^To enable the following instructions: .* rebuild TensorFlow"
)
#: ... and, on a machine with no NVIDIA driver, TensorFlow's CUDA build failing to find one.
_INFORMATIONAL_WITHOUT_GPU = re.compile(
    _INFORMATIONAL.pattern + r"|cuda_platform\.cc:\d+\] failed call to cuInit"
)


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Keeps the lines that match `noise` off file descriptor 2 while the block runs.

    What the block writes to descriptor 2 (TensorFlow's C++ logs go straight there)
    is held in a temporary file and written back when the block ends, less the
    lines `noise` matches. Does nothing when TFVAE_TF_LOGS=1 or descriptor 2 cannot
    be duplicated.

    Args:
        noise: the pattern of the lines to drop.
    """
    if os.environ.get("TFVAE_TF_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not noise.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Imports tensorflow, keras and tensorflow_probability, filtering start-up notices."""
    if "tensorflow" in sys.modules:
        import keras  # noqa: F401
        import tensorflow_probability  # noqa: F401

        return
    noise = _INFORMATIONAL if _has_nvidia_driver() else _INFORMATIONAL_WITHOUT_GPU
    with filtered_stderr(noise):
        import keras  # noqa: F401
        import tensorflow
        import tensorflow_probability  # noqa: F401

        # Where TensorFlow looks for GPUs, at the first op: here, so that its
        # "failed call to cuInit" on a machine with no NVIDIA driver is filtered too.
        tensorflow.config.list_physical_devices("GPU")


def _has_nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")
