"""The `tfvae` command, run as a user runs it: in a subprocess."""

import json
import os
import subprocess
import sys

import keras
import matplotlib.image
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfvae
from tfvae import data

SCALARS = {"epoch_loss", "epoch_distortion", "epoch_rate", "epoch_elbo"}


def run(*args, cwd=None, env=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop(data.MANUAL_DIR_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "tfvae", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=600,
    )


def scalar_tags(folder):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return set(events.Tags()["tensors"]), events


def test_train_on_the_embedded_default_writes_a_complete_run(tmp_path):
    result = run("train", "--epochs", "3", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    assert "validation ELBO" in result.stdout
    expected = {
        "model.keras",
        "config.json",
        "history.json",
        "samples.png",
        "reconstructions.png",
        "logs",
    }
    assert expected <= {p.name for p in run_dir.iterdir()}

    vae = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    assert isinstance(vae, tfvae.VAE) and vae.data_shape == (8, 8, 1)
    x_test, _ = data.load_arrays("digits", "test")
    assert np.isfinite(vae.evaluate(x_test, verbose=0, return_dict=True)["elbo"])

    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "digits" and config["epochs"] == 3
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["val_elbo"]) == 3

    for name, shape in [("samples.png", (8, 8)), ("reconstructions.png", (8, 8))]:
        image = matplotlib.image.imread(run_dir / name)
        assert image.shape[0] >= 8 * shape[0] and image.std() > 0.05  # not blank

    for split in ("train", "validation"):
        tags, events = scalar_tags(run_dir / "logs" / split)
        assert SCALARS <= tags, tags
        assert len(events.Tensors("epoch_elbo")) == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "no_such_set"], "Unknown data set 'no_such_set'"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer, received '0'"),
        (["--batch-size", "x"], "argument --batch-size: expected a positive integer"),
        (["--beta", "-1"], "argument --beta: expected a number >= 0"),
        (["--learning-rate", "nan"], "argument --learning-rate: expected a number > 0"),
        (["--likelihood", "poisson"], "argument --likelihood: invalid choice: 'poisson'"),
        (["--network", "rnn"], "argument --network: invalid choice: 'rnn'"),
        (["--manual-dir", "/no/such/folder"], "--manual-dir '/no/such/folder' does not exist"),
        (["--dataset", "digits", "--split", "valid"], "Unknown split 'valid' for 'digits'"),
    ],
)
def test_bad_flags_give_one_clear_line_and_a_nonzero_exit(args, message):
    result = run("train", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfvae") and message in lines[0]


def test_offline_with_no_data_says_what_to_do(tmp_path):
    result = run("train", "--dataset", "mnist", "--offline", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'mnist' is not prepared" in lines[0] and "--manual-dir" in lines[0]


def test_an_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "model.keras").write_text("precious")
    result = run("train", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr
    assert (tmp_path / "model.keras").read_text() == "precious"


def test_help_lists_every_flag():
    result = run("train", "--help")
    assert result.returncode == 0
    for flag in [
        "--dataset",
        "--manual-dir",
        "--network",
        "--latent-dim",
        "--likelihood",
        "--beta",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--seed",
        "--output-dir",
        "--log-dir",
        "--offline",
        "--binarize",
    ]:
        assert flag in result.stdout
