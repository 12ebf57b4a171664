"""tfvae.plots: every picture is a non-blank PNG of the expected pixel size."""

import matplotlib.image
import numpy as np
import pytest
from conftest import make_vae

import tfvae
from tfvae import plots


@pytest.fixture(scope="module")
def trained(digits):
    vae = make_vae(latent_dim=2, seed=0)
    vae.compile()
    history = vae.fit(digits[0], batch_size=64, epochs=5, validation_data=digits[1], verbose=0)
    return vae, history.history


def mosaic_size(rows, columns, side=8, scale=8, padding=1):
    """Pixels of a mosaic of side x side images: padding between and around, then scaled."""
    return (
        (rows * (side + padding) + padding) * scale,
        (columns * (side + padding) + padding) * scale,
    )


def read(path):
    image = matplotlib.image.imread(path)
    assert image.std() > 0.05, f"{path} looks blank"
    return image.shape[:2]


def test_image_mosaics_have_the_expected_size(trained, digits, tmp_path):
    vae, _ = trained
    x_test = digits[1]
    labels = tfvae.data.load_arrays("digits", "test")[1]
    assert read(plots.plot_samples(vae, tmp_path / "s.png", n=16, seed=0)) == mosaic_size(4, 4)
    assert read(plots.plot_reconstructions(vae, x_test[:16], tmp_path / "r.png")) == mosaic_size(
        4, 8
    )
    interpolation = plots.plot_interpolation(vae, x_test[0], x_test[1], tmp_path / "i.png", steps=6)
    assert read(interpolation) == mosaic_size(1, 8)
    traversal = plots.plot_traversal(vae, x_test[0], tmp_path / "t.png", steps=7)
    assert read(traversal) == mosaic_size(2, 7)
    assert read(plots.plot_manifold(vae, tmp_path / "m.png", n=5)) == mosaic_size(5, 5)
    assert read(plots.plot_latent_map(vae, x_test, labels, tmp_path / "l.png")) == (600, 600)


def test_interpolation_ends_are_the_inputs_and_the_middle_moves(trained, digits, tmp_path):
    vae, _ = trained
    x = digits[1]
    image = matplotlib.image.imread(plots.plot_interpolation(vae, x[0], x[5], tmp_path / "i.png"))
    cell = (8 + 1) * 8  # pixels per image, padding included
    first = image[8 : 8 + 64, 8 : 8 + 64, 0]
    np.testing.assert_allclose(first, np.kron(x[0][..., 0], np.ones((8, 8))), atol=1 / 255)
    middle = [image[8:72, 8 + i * cell : 8 + i * cell + 64, 0] for i in (1, 10)]
    assert np.abs(middle[0] - middle[1]).mean() > 0.01


def test_curves_and_latent_map_for_more_dimensions(trained, digits, tmp_path):
    _, history = trained
    assert read(plots.plot_curves(history, tmp_path / "c.png")) == (600, 800)
    wide = make_vae(latent_dim=5)
    labels = tfvae.data.load_arrays("digits", "test")[1]
    assert read(plots.plot_latent_map(wide, digits[1], labels, tmp_path / "l.png")) == (600, 600)
    with pytest.raises(ValueError, match="needs a 2-D latent. Received: latent_dim=5"):
        plots.plot_manifold(wide, tmp_path / "m.png")
    with pytest.raises(ValueError, match="no loss, elbo"):
        plots.plot_curves({"accuracy": [1.0]}, tmp_path / "x.png")
