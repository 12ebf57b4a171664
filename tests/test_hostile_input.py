"""Hostile input as a user would try it: sizes too large for the machine, paths that are
files or full, a disk that fills while a checkpoint is written, and errors nobody
foresaw. Each ends in one line (exit 2, or 1 for a true runtime failure), never a
traceback, and nothing already saved is lost."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import run_here

from tfvae import checkpoints, cli, loading

QUICK = ["--epochs", 1, "--latent-dim", 2, "--jit-compile", "off"]


def one_line(result, status=2):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("tfvae "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--latent-dim", 2_000_000_000], "--latent-dim 2000000000"),
        (["--model", "vqvae", "--num-codes", 2_000_000_000], "--num-codes 2000000000"),
        (["--model", "iwae", "--k", 100_000_000], "--k 100000000"),
        (["--batch-size", 1_000_000_000], "--batch-size 1000000000"),
    ],
)
def test_a_size_too_large_for_the_machine_is_one_line_before_anything_is_made(
    flags, named, tmp_path
):
    run = tmp_path / "run"
    line = one_line(run_here("train", "--epochs", 1, *flags, "--output-dir", run))
    assert named in line and "of memory" in line and "more than this machine" in line
    assert not run.exists()  # no half-made run folder


def test_a_log_dir_that_is_a_file_leaves_no_run_folder_and_the_fixed_command_runs(tmp_path):
    log_file = tmp_path / "FILE"
    log_file.write_text("not a folder")
    run = tmp_path / "run"
    line = one_line(run_here("train", *QUICK, "--log-dir", log_file, "--output-dir", run))
    assert "--log-dir" in line and "is a file" in line
    assert not run.exists() and log_file.read_text() == "not a folder"
    result = run_here("train", *QUICK, "--log-dir", tmp_path / "logs", "--output-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]  # the same folder, now free


def test_an_output_dir_under_a_file_or_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "FILE").write_text("x")
    line = one_line(run_here("train", *QUICK, "--output-dir", tmp_path / "FILE" / "run"))
    assert "lies under the file" in line
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        "tfvae.files.shutil.disk_usage", lambda path: usage._replace(free=1_000_000)
    )
    run = tmp_path / "run"
    line = one_line(run_here("train", *QUICK, "--output-dir", run))
    assert "1 MB free" in line and not run.exists()


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_disk_that_fills_during_a_checkpoint_stops_in_one_line_and_resume_continues(
    tmp_path, monkeypatch
):
    run = tmp_path / "run"
    real_fsync = checkpoints._fsync
    calls = {"manifests": 0}

    def fsync_until_full(path):
        if path.name == checkpoints.MANIFEST:
            calls["manifests"] += 1
            if calls["manifests"] == 2:  # the second generation's manifest: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(checkpoints, "_fsync", fsync_until_full)
    flags = ["--epochs", 3, "--latent-dim", 2, "--jit-compile", "off", "--output-dir", run]
    line = one_line(run_here("train", *flags))
    assert "No space left on device" in line and "previous checkpoints are intact" in line
    generations = sorted((run / "checkpoints").glob("ckpt-*"))
    assert len(generations) == 1 and checkpoints.verify_checkpoint(generations[0]) is None
    assert not list((run / "checkpoints").glob(".*partial"))  # the half-written one is gone
    kept = _digests(generations[0])
    monkeypatch.setattr(checkpoints, "_fsync", real_fsync)  # space is back
    result = run_here("train", "--resume", "--output-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout and "epoch 2" in result.stdout
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3
    assert kept == _digests(generations[0]) or not generations[0].exists()  # pruned, not changed


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    result = run_here("train", *QUICK, "--output-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def test_an_unexpected_error_is_one_line_naming_command_and_type_with_the_traceback_saved(
    trained, monkeypatch
):
    def broken(path):
        raise tf.errors.InternalError(None, None, "a kernel failed\n  in a long\n  TF message")

    monkeypatch.setattr(loading, "load_vae", broken)
    before = _digests(trained)
    line = one_line(run_here("evaluate", trained, "--k", 5), status=cli.RUNTIME_ERROR)
    assert line.startswith("tfvae evaluate: unexpected InternalError: a kernel failed in a long")
    log = trained / "tfvae-error.log"
    assert (
        str(log) in line and "Traceback" in log.read_text() and "InternalError" in log.read_text()
    )
    after = _digests(trained)
    after.pop("tfvae-error.log")
    assert after == before
    monkeypatch.setenv("TFVAE_DEBUG", "1")
    result = run_here("evaluate", trained, "--k", 5)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_an_out_of_memory_error_at_run_time_is_one_line_with_exit_1(trained, monkeypatch):
    def exhausted(path):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor of 1.01TiB")

    monkeypatch.setattr(loading, "load_vae", exhausted)
    line = one_line(run_here("plot", trained, "--what", "samples"), status=1)
    assert "out of memory (OOM when allocating tensor of 1.01TiB)" in line
    assert "--batch-size" in line


@pytest.mark.slow  # a second process and a SIGKILL
def test_a_run_killed_before_its_first_checkpoint_resumes_with_jit_compile_off(tmp_path):
    """Issue 9's kill before the first checkpoint, started with --jit-compile off (it
    failed with `KeyError: False`): config.json only, then --resume."""
    run = tmp_path / "run"
    code = (
        "import os, signal, sys\n"
        "from tfvae import checkpoints, cli\n"
        "def die(*args, **kwargs): os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoints.write_checkpoint = die\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    args = ["train", "--epochs", "1", "--latent-dim", "2", "--jit-compile", "off"]
    killed = subprocess.run(
        [sys.executable, "-c", code, *args, "--output-dir", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (run / "config.json").is_file() and not list(run.glob("checkpoints/ckpt-*"))
    assert json.loads((run / "config.json").read_text())["jit_compile"] == "off"
    result = run_here("train", "--resume", "--output-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "starting from the beginning" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["export", "RUN", "--format", "tflite", "--out", "FILE/model.tflite"],
        ["export", "RUN", "--format", "saved_model", "--out", "FILE/saved_model"],
        ["plot", "RUN", "--what", "samples", "--out", "FILE/samples.png"],
        ["sample", "RUN", "--out", "FILE/samples.png"],
    ],
    ids=["tflite", "saved_model", "plot", "sample"],
)
def test_an_output_path_under_a_file_is_one_line_before_the_work(trained, tmp_path, command):
    blocker = tmp_path / "FILE"
    blocker.write_text("x")
    args = [str(a).replace("RUN", str(trained)).replace("FILE", str(blocker)) for a in command]
    line = one_line(run_here(*args))
    assert "lies under the file" in line and blocker.read_text() == "x"
