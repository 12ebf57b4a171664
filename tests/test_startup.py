"""tfvae._startup: TensorFlow's notices kept off stderr, everything else passed on."""

import os
import re
import subprocess
import sys

from tfvae import _startup

NOISE = re.compile(r"^I\d{4} .*\] notice")


def test_filtered_stderr_drops_the_matching_lines_only_and_keeps_the_order(capfd):
    with _startup.filtered_stderr(NOISE):
        os.write(2, b"first line\n")
        os.write(2, b"I1202 18:00:00.000000 1 file.cc:1] notice: dropped\n")
        os.write(2, b"E1202 18:00:00.000000 1 file.cc:2] an error: kept\n")
    err = capfd.readouterr().err
    assert err == "first line\nE1202 18:00:00.000000 1 file.cc:2] an error: kept\n"


def test_filtered_stderr_passes_everything_with_tfvae_tf_logs(capfd, monkeypatch):
    monkeypatch.setenv("TFVAE_TF_LOGS", "1")
    with _startup.filtered_stderr(NOISE):
        os.write(2, b"I1202 18:00:00.000000 1 file.cc:1] notice: shown\n")
    assert "notice: shown" in capfd.readouterr().err


def test_lines_written_before_an_error_in_the_block_are_not_lost(capfd):
    try:
        with _startup.filtered_stderr(NOISE):
            os.write(2, b"written before the error\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert capfd.readouterr().err == "written before the error\n"


def test_importing_tensorflow_prints_no_start_up_notices():
    code = "from tfvae import _startup; _startup.import_tensorflow()"
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFVAE_TF_LOGS")
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr
    if not _startup._has_nvidia_driver():
        assert "failed call to cuInit" not in done.stderr
