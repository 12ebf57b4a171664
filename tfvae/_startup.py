"""Imports TensorFlow with its informational start-up lines kept off stderr.

TensorFlow's C++ runtime writes notices at import (absl's pre-init warning, the oneDNN
and CPU-feature notices, "Could not find cuda drivers") straight to file descriptor 2,
whatever `TF_CPP_MIN_LOG_LEVEL` says. They would bury the one-line errors of the
`tfvae` command. This module captures descriptor 2 while TensorFlow is imported and
writes back every line except those informational ones: warnings and errors pass.
Set the environment variable TFVAE_TF_LOGS=1 to see everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_INFORMATIONAL = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|^I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "
    r"|^To enable the following instructions: .* rebuild TensorFlow"
)


def import_tensorflow() -> None:
    """Imports tensorflow, keras and tensorflow_probability, filtering start-up notices."""
    if "tensorflow" in sys.modules or os.environ.get("TFVAE_TF_LOGS") == "1":
        import keras  # noqa: F401
        import tensorflow_probability  # noqa: F401

        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2
        import keras  # noqa: F401
        import tensorflow_probability  # noqa: F401

        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
            import tensorflow_probability  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _INFORMATIONAL.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
