"""tfvae.callbacks: TensorBoard images and latent diagnostics, read back from event files."""

import warnings

import keras
import numpy as np
import pytest
from conftest import make_vae
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfvae
from tfvae.callbacks import LatentDiagnostics, PosteriorCollapseWarning, TensorBoardImages


def tensors(folder):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return events


def test_images_and_latent_summaries_are_written(digits, tmp_path):
    x_train, x_test = digits
    vae = make_vae(latent_dim=4)
    vae.compile()
    history = vae.fit(
        x_train,
        batch_size=64,
        epochs=4,
        verbose=0,
        callbacks=[
            TensorBoardImages(tmp_path, x_test[:8], every=2),
            LatentDiagnostics(tmp_path, x_test, every=1),
        ],
    )
    images = tensors(tmp_path / "images")
    assert {"reconstructions", "samples"} <= set(images.Tags()["tensors"])
    written = images.Tensors("reconstructions")
    assert [e.step for e in written] == [1, 3]  # epochs 2 and 4
    # An image summary holds [width, height, PNG bytes]; 16 8x8 images at scale 2.
    width, height, png = written[-1].tensor_proto.string_val
    assert png.startswith(b"\x89PNG") and int(width) > 16 and int(height) > 16

    latent = tensors(tmp_path / "latent")
    assert {"beta", "active_units", "kl_per_dimension"} <= set(latent.Tags()["tensors"])
    assert len(latent.Tensors("active_units")) == 4
    assert len(history.history["active_units"]) == 4


def test_collapse_is_warned_about_once_and_a_healthy_model_is_not(digits, tmp_path):
    x_train, x_test = digits
    keras.utils.set_random_seed(0)
    collapsing = make_vae(latent_dim=4, beta=500.0)
    collapsing.compile()
    with pytest.warns(PosteriorCollapseWarning, match="Posterior collapse") as caught:
        collapsing.fit(
            x_train,
            batch_size=64,
            epochs=6,
            verbose=0,
            callbacks=[LatentDiagnostics(tmp_path, x_test)],
        )
    assert len([w for w in caught if w.category is PosteriorCollapseWarning]) == 1

    keras.utils.set_random_seed(1)
    healthy = make_vae(latent_dim=4, seed=0)
    healthy.compile()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        history = healthy.fit(
            x_train,
            batch_size=32,
            epochs=10,
            verbose=0,
            callbacks=[LatentDiagnostics(tmp_path / "h", x_test)],
        )
    assert history.history["active_units"][-1] > 0
    assert not [w for w in seen if w.category is PosteriorCollapseWarning]


def _fit_per_epoch(vae, x_train, epochs, callback):
    """Trains as `tfvae train` does: one `fit` call per epoch."""
    for epoch in range(epochs):
        vae.fit(
            x_train,
            batch_size=64,
            initial_epoch=epoch,
            epochs=epoch + 1,
            verbose=0,
            callbacks=[callback],
        )


def test_a_run_split_over_fit_calls_is_judged_at_its_end(digits, tmp_path):
    x_train, x_test = digits
    # A healthy model has no active unit after its first epochs: no false alarm for a
    # run of one fit per epoch, where each fit ends after one epoch.
    keras.utils.set_random_seed(1)
    healthy = make_vae(latent_dim=4, seed=0)
    healthy.compile()
    diagnostics = LatentDiagnostics(tmp_path / "h", x_test, run_epochs=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _fit_per_epoch(healthy, x_train, 3, diagnostics)
    assert diagnostics._last[1] > 0
    assert not [w for w in seen if w.category is PosteriorCollapseWarning]

    # A collapsing one is warned about once (its units fall to 0 across the fit calls).
    keras.utils.set_random_seed(0)
    collapsing = make_vae(latent_dim=4, beta=500.0)
    collapsing.compile()
    diagnostics = LatentDiagnostics(tmp_path / "c", x_test, run_epochs=6)
    with pytest.warns(PosteriorCollapseWarning, match="Posterior collapse") as caught:
        _fit_per_epoch(collapsing, x_train, 6, diagnostics)
    assert len([w for w in caught if w.category is PosteriorCollapseWarning]) == 1
    assert diagnostics._last[1] == 0


def test_bad_settings():
    with pytest.raises(ValueError, match="every"):
        TensorBoardImages("logs", np.zeros((2, 8, 8, 1)), every=0)
    assert tfvae.callbacks.LatentDiagnostics("logs", np.zeros((2, 8, 8, 1))).every == 1
    with pytest.raises(ValueError, match="run_epochs"):
        LatentDiagnostics("logs", np.zeros((2, 8, 8, 1)), run_epochs=0)
