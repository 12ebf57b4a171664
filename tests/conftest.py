"""Shared fixtures: the real MNIST files in ../shared/data, a TFDS folder, small models."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
from pathlib import Path

# XLA's compilation cache (tfvae.compile_cache) in a folder of this session's own, set
# before tfvae is imported; the CLI's subprocesses inherit it.
os.environ.setdefault("TFVAE_XLA_CACHE", tempfile.mkdtemp(prefix="tfvae-xla-cache-"))
# Trained feature networks (tfvae.feature_network) likewise, shared by the session.
os.environ.setdefault("TFVAE_FEATURE_CACHE", tempfile.mkdtemp(prefix="tfvae-features-"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfvae  # noqa: E402
from tfvae import export  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path | None:
    candidates = [os.environ.get("TFVAE_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state (weights, TF and NumPy draws)."""
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of original data files (../shared/data); skips where it is absent."""
    path = _shared_data()
    if path is None:
        pytest.skip(
            "../shared/data (real MNIST files) is not next to this checkout; "
            "set TFVAE_SHARED_DATA to its path to run this test"
        )
    return path


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
    """A TFDS data_dir private to this test session."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture(scope="session")
def mnist_source(shared_data, tfds_dir) -> dict:
    """Keyword arguments of `tfvae.data.load` for MNIST prepared offline from shared data."""
    return {"manual_dir": str(shared_data), "data_dir": tfds_dir, "offline": True}


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits, train and test images, (n, 8, 8, 1) in [0, 1]."""
    x_train, _ = tfvae.data.load_arrays("digits", "train")
    x_test, _ = tfvae.data.load_arrays("digits", "test")
    return x_train, x_test


def make_vae(data_shape=(8, 8, 1), latent_dim=4, network="mlp", likelihood="bernoulli", **kw):
    """A small VAE for fast tests."""
    if network == "mlp":
        encoder = tfvae.networks.mlp_encoder(data_shape, latent_dim, hidden_units=(32,))
        decoder = tfvae.networks.mlp_decoder(latent_dim, data_shape, (32,), likelihood)
    else:
        encoder = tfvae.networks.conv_encoder(data_shape, latent_dim, (8, 16), 32)
        decoder = tfvae.networks.conv_decoder(latent_dim, data_shape, (16, 8), 32, likelihood)
    return tfvae.VAE(encoder, decoder, **kw)


class CountingVAE(tfvae.VAE):
    """Counts how often loss_terms runs in Python, i.e. how often a step is traced."""

    traces = 0

    def loss_terms(self, x, y=None, training=False):
        CountingVAE.traces += 1
        return super().loss_terms(x, y, training=training)


def run_here(*args) -> subprocess.CompletedProcess:
    """`tfvae ARGS` run in this process (`cli.main`), with its exit status and output.

    Much faster than a subprocess (no second TensorFlow import); tests that need the real
    process (its exit status, signals) start one instead.
    """
    from tfvae import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def mnist_shaped(tmp_path_factory):
    """The reference MNIST MLP VAE, with its SavedModel and three .tflite files."""
    folder = tmp_path_factory.mktemp("mnist_export")

    vae = tfvae.VAE(*tfvae.networks.build("mlp", (28, 28, 1), latent_dim=20), seed=0)
    vae.compile()
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    vae.fit(images, batch_size=32, epochs=1, verbose=0)
    export.export_saved_model(vae, folder / "saved_model")
    files = {
        q: export.to_tflite(folder / "saved_model", folder / f"{q}.tflite", quantization=q)
        for q in export.QUANTIZATIONS
    }
    return vae, folder / "saved_model", files
