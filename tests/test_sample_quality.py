"""tfvae.sample_quality and tfvae.feature_network: each metric against a known answer."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import make_vae
from scipy import linalg

import tfvae
from tfvae import feature_network, sample_quality
from tfvae.sample_quality import (
    frechet_distance,
    frechet_distance_of_moments,
    kernel_inception_distance,
    precision_recall,
)


def gaussian(n, mean, scale, dim=8, seed=0):
    return np.random.default_rng(seed).normal(mean, scale, size=(n, dim))


# ---------------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_moments_has_the_closed_form():
    # Diagonal covariances commute: FD = |dmu|^2 + sum (sigma1 - sigma2)^2.
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    expected = 5.0 + np.sum((s1 - s2) ** 2)
    got = frechet_distance_of_moments(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-10)
    # Non-commuting covariances: against SciPy's matrix square root of the product.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    cross = np.real(linalg.sqrtm(c1 @ c2))
    reference = np.trace(c1) + np.trace(c2) - 2 * np.trace(cross)
    assert frechet_distance_of_moments(np.zeros(5), c1, np.zeros(5), c2) == pytest.approx(
        reference, rel=1e-8
    )


def test_frechet_distance_of_samples():
    real = gaussian(20_000, 0.0, 1.0)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)  # identical sets
    # Two Gaussians: N(0, I) against N(0.5, 4 I) in 8 dimensions: 8 (0.25 + 1) = 10.
    other = gaussian(20_000, 0.5, 2.0, seed=1)
    assert frechet_distance(real, other) == pytest.approx(10.0, rel=0.03)
    # A set shifted further ranks worse.
    near, far = gaussian(5000, 0.2, 1.0, seed=2), gaussian(5000, 1.0, 1.0, seed=3)
    assert frechet_distance(real, near) < frechet_distance(real, far)


# ---------------------------------------------------------------- KID
def test_kernel_inception_distance():
    real = gaussian(3000, 0.0, 1.0)
    same = kernel_inception_distance(real, gaussian(3000, 0.0, 1.0, seed=1), subsets=20)
    # The same distribution: the unbiased estimate is 0 within its error.
    assert abs(same.value) < 4 * same.standard_error + 1e-3
    near = kernel_inception_distance(real, gaussian(3000, 0.3, 1.0, seed=2), subsets=20)
    far = kernel_inception_distance(real, gaussian(3000, 1.0, 1.0, seed=3), subsets=20)
    assert same.value < near.value < far.value
    assert near.value > 10 * near.standard_error  # a real difference is far from 0
    # Against the MMD^2 computed directly over all pairs of two sets: the subset
    # estimates average to it (a U-statistic's subsets are unbiased for the whole).
    x, y = real[:200], gaussian(200, 0.5, 1.0, seed=4)
    k = lambda a, b: (a @ b.T / 8 + 1) ** 3  # noqa: E731
    direct = (
        (k(x, x).sum() - np.trace(k(x, x))) / (200 * 199)
        + (k(y, y).sum() - np.trace(k(y, y))) / (200 * 199)
        - 2 * k(x, y).mean()
    )
    subsets = kernel_inception_distance(x, y, subsets=400, subset_size=1000)
    assert subsets.standard_error > 0  # subsets of half the set differ
    assert abs(subsets.value - direct) < 4 * subsets.standard_error


# ---------------------------------------------------------------- precision / recall
def test_precision_and_recall():
    real = gaussian(2000, 0.0, 1.0, dim=2)
    assert precision_recall(real, real) == (1.0, 1.0)  # identical sets
    # Samples from a small part of the data: all look real, few of the data covered.
    narrow = gaussian(2000, 0.0, 0.2, dim=2, seed=1)
    precision, recall = precision_recall(real, narrow)
    assert precision > 0.95 and recall < 0.5
    # Samples spread far wider: most fall off the data, which they cover.
    wide = gaussian(2000, 0.0, 5.0, dim=2, seed=2)
    precision, recall = precision_recall(real, wide)
    assert precision < 0.3 and recall > 0.8
    # A shifted set ranks worse on both than a fresh set from the same distribution
    # (in 16 dimensions: in 2, the wide balls of a shifted set's outliers still cover
    # most of the data, a known trait of the k-NN manifolds).
    real = gaussian(2000, 0.0, 1.0, dim=16)
    fresh = precision_recall(real, gaussian(2000, 0.0, 1.0, dim=16, seed=3))
    shifted = precision_recall(real, gaussian(2000, 1.0, 1.0, dim=16, seed=4))
    assert min(fresh) > 0.7 and all(s < f - 0.3 for s, f in zip(shifted, fresh))


def test_bad_feature_sets_are_refused():
    good = gaussian(10, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(n, d\).*Received: shape=\(10,\)"):
        frechet_distance(good[:, 0], good)
    with pytest.raises(ValueError, match="same dimension"):
        kernel_inception_distance(good, good[:, :3])
    with pytest.raises(ValueError, match="NaN or Inf"):
        precision_recall(np.full((10, 8), np.nan), good)
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(good[:3], good)


# ---------------------------------------------------------------- the feature network
@pytest.fixture(scope="module")
def digits_network(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    return feature_network.load_feature_network(
        "digits", cache_dir=folder, epochs=30, verbose=False
    )


def test_the_feature_network_classifies_the_digits_and_is_cached(digits_network):
    assert digits_network.test_accuracy >= 0.97
    x_test, y_test = tfvae.data.load_arrays("digits", "test")
    assert np.mean(digits_network.predict_classes(x_test) == y_test) == pytest.approx(
        digits_network.test_accuracy
    )
    features = digits_network.features(x_test[:50])
    assert features.shape == (50, 128) and np.isfinite(features).all()
    again = feature_network.load_feature_network(
        "digits", cache_dir=digits_network.path.parent, epochs=30
    )
    assert again.path == digits_network.path  # loaded, not trained again
    np.testing.assert_allclose(again.features(x_test[:50]), features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "damage",
    ["truncate"] + [pytest.param(d, marks=pytest.mark.slow) for d in ("manifest", "missing_model")],
)
def test_a_damaged_cached_network_is_trained_again(digits_network, tmp_path, damage):
    import shutil

    folder = tmp_path / "cache"
    shutil.copytree(digits_network.path.parent, folder)
    model = folder / digits_network.path.name
    manifest = model.with_suffix(".json")
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        model.unlink()
    with pytest.warns(UserWarning, match="damaged"):
        network = feature_network.load_feature_network(
            "digits", cache_dir=folder, epochs=30, verbose=False
        )
    assert network.test_accuracy >= 0.97
    assert json.loads(manifest.read_text())["test_accuracy"] == network.test_accuracy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # intact again: loads without a warning
        feature_network.load_feature_network("digits", cache_dir=folder, epochs=30)


def test_the_feature_network_refuses_bad_images(digits_network):
    with pytest.raises(ValueError, match=r"shape \(batch, 8, 8, 1\)"):
        digits_network.features(np.zeros((4, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        digits_network.features(np.full((4, 8, 8, 1), 255.0, np.float32))


def test_sample_quality_of_a_model_and_of_the_data_itself(digits_network):
    x_train, _ = tfvae.data.load_arrays("digits", "train")
    x_test, _ = tfvae.data.load_arrays("digits", "test")
    vae = make_vae(latent_dim=4)
    vae.compile()
    vae.fit(x_train, batch_size=64, epochs=3, verbose=0)
    result = sample_quality.sample_quality(vae, digits_network, x_test, x_train, num_samples=360)
    assert result["samples"] == 360
    # An untrained-for-long model is far from the data; the data against itself is not.
    assert result["fid"] > 3 * result["fid_floor"] > 0
    assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert result["kid"] > result["kid_standard_error"] > 0
