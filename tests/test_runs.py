"""tfvae.runs: killed, stopped and resumed training runs.

The kill tests run `tfvae train` in real subprocesses (a kill must come from outside).
Every one of them trains the embedded digits with `--deterministic`, so an interrupted
run that is resumed must end bit-identical to the uninterrupted one. The last tests
drive `tfvae.runs.train_run` from Python, as a library user resumes.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import run_here

from tfvae import checkpoints, data, runs
from tfvae.cli import EXIT_INTERRUPTED
from tfvae.config import RunConfig
from tfvae.loading import load_vae

EPOCHS = 3
STEPS_PER_EPOCH = 90  # 1,437 digits in batches of 16
FLAGS = ["--epochs", str(EPOCHS), "--batch-size", "16", "--deterministic", "--latent-dim", "4"]


def command(*args):
    return [sys.executable, "-m", "tfvae", "train", *args]


def environment():
    env = dict(os.environ)
    env.pop(data.MANUAL_DIR_ENV, None)
    return env


def train(*args):
    result = subprocess.run(
        command(*args), capture_output=True, text=True, env=environment(), timeout=600
    )
    return result


def start(*args):
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def wait_for_checkpoint(run_dir, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("ckpt-*")):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no checkpoint appeared")


def final_state(run_dir):
    vae = load_vae(run_dir / "model.keras")
    history = json.loads((run_dir / "history.json").read_text())
    return vae, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = train(*FLAGS, "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return final_state(run_dir)


def assert_same_run(run_dir, uninterrupted):
    vae, history = final_state(run_dir)
    reference, reference_history = uninterrupted
    assert len(history["loss"]) == len(reference_history["loss"]) == EPOCHS
    assert int(vae.optimizer.iterations) == int(reference.optimizer.iterations)
    assert int(vae.optimizer.iterations) == EPOCHS * STEPS_PER_EPOCH
    for a, b in zip(
        vae.weights + vae.optimizer.variables, reference.weights + reference.optimizer.variables
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def wait_for(condition, process, what: str, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before {what}: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"timed out waiting for {what}")


def checkpoint_count(run_dir) -> int:
    return len(list((run_dir / "checkpoints").glob("ckpt-*")))


#: When to SIGKILL `tfvae train`, each a moment that leaves a different run folder behind.
KILL_MOMENTS = {
    # While Python imports TensorFlow: no run folder yet.
    "at_start": lambda run_dir: True,
    # As soon as config.json is there: no checkpoint yet (the resumed run must compile
    # a new model from the config's flags; this raised KeyError: True before).
    "before_the_first_checkpoint": lambda run_dir: (run_dir / "config.json").is_file(),
    # Into the second epoch.
    "mid_epoch": lambda run_dir: checkpoint_count(run_dir) >= 1,
    # The moment the last epoch's checkpoint is renamed into place, before the model,
    # history and pictures are written.
    "right_after_the_last_checkpoint": lambda run_dir: checkpoint_count(run_dir) >= EPOCHS,
}


@pytest.mark.slow  # five subprocess runs (about two minutes); the SIGTERM test below is not slow
@pytest.mark.parametrize("moment", KILL_MOMENTS)
def test_a_run_killed_at_any_moment_resumes_to_the_same_weights(tmp_path, uninterrupted, moment):
    run_dir = tmp_path / "run"
    process = start(*FLAGS, "--output-dir", str(run_dir))
    wait_for(lambda: KILL_MOMENTS[moment](run_dir), process, moment)
    if moment == "mid_epoch":
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    kept = {p.name for p in (run_dir / "checkpoints").glob("ckpt-*")}
    if kept:
        expected = "resuming from"
    elif (run_dir / "config.json").is_file():
        expected = "no checkpoint in"
    else:
        expected = "nothing to resume"

    # `--resume` with the flags (a job scheduler re-runs the same command): it resumes
    # from the newest checkpoint, or starts the run when there is none yet.
    result = train(*FLAGS, "--resume", "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout, result.stdout
    assert kept <= {p.name for p in (run_dir / "checkpoints").glob("ckpt-*")}  # none lost
    assert_same_run(run_dir, uninterrupted)
    if moment == "before_the_first_checkpoint":  # and once more, on a finished run
        again = train("--resume", "--output-dir", str(run_dir))
        assert again.returncode == 0, again.stderr
        assert_same_run(run_dir, uninterrupted)


@pytest.mark.slow  # a killed subprocess and its resume (about 25 s); the in-process one stays
def test_sigterm_writes_a_checkpoint_exits_75_and_resumes_to_the_same_weights(
    tmp_path, uninterrupted
):
    run_dir = tmp_path / "run"
    process = start(*FLAGS, "--output-dir", str(run_dir))
    wait_for_checkpoint(run_dir, process)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_INTERRUPTED == 75, stderr
    assert "stopped by SIGTERM" in stdout and "--resume" in stdout
    path, state = checkpoints.latest_checkpoint(run_dir / "checkpoints")
    assert state["iterations"] == state["epoch"] * STEPS_PER_EPOCH + state["step_in_epoch"]
    assert state["iterations"] > STEPS_PER_EPOCH  # written after the signal, not the first one

    result = train("--resume", "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert_same_run(run_dir, uninterrupted)


def test_resume_of_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a run")
    result = run_here("train", "--resume", "--output-dir", str(tmp_path / "other"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "has no config.json" in result.stderr
    for damaged in ("{not json", "[1, 2]"):
        run_dir = tmp_path / f"damaged{len(damaged)}"
        run_dir.mkdir()
        (run_dir / "config.json").write_text(damaged)
        result = run_here("train", "--resume", "--output-dir", str(run_dir))
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
        assert "run config" in result.stderr
        assert (run_dir / "config.json").read_text() == damaged  # nothing saved is lost


def test_resume_refuses_when_every_checkpoint_is_damaged(tmp_path):
    run_dir = tmp_path / "run"
    result = run_here("train", "--epochs", "1", "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    for model_file in (run_dir / "checkpoints").glob("ckpt-*/model.keras"):
        model_file.write_bytes(b"damaged")
    result = run_here("train", "--resume", "--output-dir", str(run_dir))
    assert result.returncode == 2
    assert "No intact checkpoint" in result.stderr and "Nothing was deleted" in result.stderr
    assert list((run_dir / "checkpoints").glob("ckpt-*"))


def _signal_after_first_checkpoint(run_dir):
    """SIGTERM to this process once the run's first checkpoint exists (a user's ^C)."""

    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if list((run_dir / "checkpoints").glob("ckpt-*")):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_train_run_from_python_stops_on_a_signal_and_resumes_to_the_same_run(tmp_path):
    settings = dict(epochs=3, batch_size=16, latent_dim=4, jit_compile="off", seed=3)
    whole = runs.train_run(RunConfig(output_dir=str(tmp_path / "whole"), **settings))
    assert whole.status == runs.FINISHED and len(whole.history["val_elbo"]) == 3

    config = RunConfig(output_dir=str(tmp_path / "stopped"), **settings)
    watcher = _signal_after_first_checkpoint(tmp_path / "stopped")
    stopped = runs.train_run(config)
    watcher.join()
    assert stopped.status == runs.INTERRUPTED, stopped.message
    assert "stopped by SIGTERM" in stopped.message and stopped.checkpoint.is_dir()
    assert not (tmp_path / "stopped" / "model.keras").exists()
    # Resuming needs only the folder: the settings come from its config.json.
    resumed = runs.train_run(RunConfig(output_dir=config.output_dir), resume=True)
    assert resumed.status == runs.FINISHED
    assert resumed.history.keys() == whole.history.keys()
    assert len(resumed.history["val_elbo"]) == 3
    steps = int(resumed.model.optimizer.iterations.numpy())
    assert steps == int(whole.model.optimizer.iterations.numpy()) == 3 * STEPS_PER_EPOCH
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4)  # no op determinism in this process
    assert (tmp_path / "stopped" / "model.keras").is_file()


def test_train_run_refuses_bad_settings_before_touching_any_folder(tmp_path):
    with pytest.raises(ValueError, match="`epochs` must be an integer >= 1"):
        runs.train_run(RunConfig(epochs=0, output_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="`resume` needs `output_dir`"):
        runs.train_run(RunConfig(), resume=True)
    assert not (tmp_path / "run").exists()
