"""tfvae.evaluation: the importance-sampled log-likelihood against a closed form."""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import tfvae

tfd = tfp.distributions


def linear_gaussian_vae(weights, bias, noise_scale, encoder_error=0.1):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I); q(z|x) near the exact posterior."""
    data_dim, latent_dim = weights.shape
    decoder_in = keras.Input((latent_dim,))
    mean = keras.layers.Dense(data_dim)(decoder_in)
    decoder = keras.Model(decoder_in, tfvae.IndependentNormal((data_dim,), noise_scale)(mean))
    decoder.layers[1].set_weights([weights.T, bias])
    # The exact posterior: covariance C = (I + W^T W / s^2)^-1 (diagonal here, as the
    # columns of W are orthogonal), mean C W^T (x - b) / s^2. The encoder is made wrong
    # by `encoder_error` in both, so the importance weights vary.
    covariance = np.linalg.inv(np.eye(latent_dim) + weights.T @ weights / noise_scale**2)
    gain = covariance @ weights.T / noise_scale**2 * (1 + encoder_error)
    std = np.sqrt(np.diag(covariance)) * (1 + encoder_error)
    encoder_in = keras.Input((data_dim,))
    params = keras.layers.Dense(2 * latent_dim)(encoder_in)
    encoder = keras.Model(encoder_in, tfvae.MultivariateNormalDiag(latent_dim, 1e-6)(params))
    kernel = np.concatenate([gain.T, np.zeros((data_dim, latent_dim))], axis=1)
    raw_std = np.log(np.expm1(std - 1e-6))
    encoder.layers[1].set_weights([kernel, np.concatenate([-gain @ bias, raw_std])])
    return tfvae.VAE(encoder, decoder, seed=0)


def test_estimate_matches_the_exact_marginal_and_the_elbo_is_below_it():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 2)))
    weights, bias, noise = q * np.array([2.0, 1.0]), rng.normal(size=5), 0.5
    vae = linear_gaussian_vae(weights.astype(np.float32), bias.astype(np.float32), noise)
    marginal = tfd.MultivariateNormalFullCovariance(
        bias, weights @ weights.T + noise**2 * np.eye(5)
    )
    x = marginal.sample(200, seed=[3, 4]).numpy().astype(np.float32)
    exact = marginal.log_prob(x.astype(np.float64)).numpy()

    estimate = tfvae.evaluation.importance_sampled_log_likelihood(vae, x, k=5000, seed=1)
    difference = estimate.per_example - exact
    error = difference.std(ddof=1) / np.sqrt(len(x))
    assert abs(difference.mean()) < 3 * error + 1e-3, (difference.mean(), error)
    assert estimate.per_example.shape == (200,)
    assert estimate.bits_per_dim == pytest.approx(-estimate.nats / (5 * np.log(2)))

    elbo = np.mean([vae.loss_terms(x)["elbo"].numpy() for _ in range(50)], axis=0)
    assert elbo.mean() < exact.mean() - 0.01
    one_sample = tfvae.evaluation.importance_sampled_log_likelihood(vae, x, k=1, seed=2)
    assert one_sample.nats < estimate.nats


def test_bad_arguments():
    vae = tfvae.models.build("vae", (8, 8, 1), latent_dim=2)
    with pytest.raises(ValueError, match="`k` must be an integer >= 1"):
        tfvae.evaluation.importance_sampled_log_likelihood(vae, np.zeros((2, 8, 8, 1)), k=0)
    with pytest.raises(ValueError, match=r"must have shape \(batch, 8, 8, 1\)"):
        tfvae.evaluation.importance_sampled_log_likelihood(vae, np.zeros((2, 64)), k=2)
    with pytest.raises(ValueError, match="needs a density p.x.; VQVAE has none"):
        tfvae.evaluation.importance_sampled_log_likelihood(
            tfvae.models.build("vqvae", (8, 8, 1), latent_dim=2), np.zeros((2, 8, 8, 1)), k=2
        )


def test_active_units_are_exactly_the_dimensions_the_encoder_uses(digits):
    vae = tfvae.models.build("vae", (8, 8, 1), latent_dim=6)
    params = vae.encoder.get_layer("params")
    kernel, bias = params.get_weights()
    ignored = [1, 4]
    kernel[:, :6] *= 20.0  # posterior means that clearly move with x ...
    kernel[:, ignored] = 0.0  # ... except those of z_1 and z_4, which no longer depend on x
    params.set_weights([kernel, bias])
    count, variances = tfvae.evaluation.active_units(vae, digits[1])
    assert count == 4
    assert sorted(np.flatnonzero(variances > 0.01)) == [0, 2, 3, 5]
    assert variances[ignored].max() < 1e-10
    kl = tfvae.evaluation.kl_per_dimension(vae, digits[1])
    assert kl.shape == (6,) and (kl >= 0).all()
    np.testing.assert_allclose(kl.sum(), np.mean(vae.loss_terms(digits[1])["rate"]), rtol=1e-4)


def test_anomaly_scores_rank_noise_above_digits(digits):
    x_train, x_test = digits
    vae = tfvae.models.build("vae", (8, 8, 1), latent_dim=4, seed=0)
    vae.compile()
    vae.fit(x_train, batch_size=64, epochs=20, verbose=0)
    noise = np.random.default_rng(0).random((100, 8, 8, 1)).astype(np.float32)
    normal, odd = (tfvae.evaluation.anomaly_scores(vae, data) for data in (x_test, noise))
    for name in ("negative_elbo", "reconstruction_error"):
        assert normal[name].shape == (360,) and odd[name].shape == (100,)
        assert np.median(odd[name]) > np.quantile(normal[name], 0.9), name


def test_a_mixture_prior_with_many_components_is_estimated_in_bounded_passes(digits):
    # Unbounded, one pass of 100 images x 5000 samples x 1000 components x 20 dims would
    # hold 40 GB; the sampler lowers the samples per pass instead of running out of memory.
    prior = tfvae.priors.VampPrior(20, (8, 8, 1), num_pseudo_inputs=1000)
    vae = tfvae.VAE(
        tfvae.networks.mlp_encoder((8, 8, 1), 20, (16,)),
        tfvae.networks.mlp_decoder(20, (8, 8, 1), (16,)),
        prior=prior,
    )
    x = digits[1][:100]
    cap = tfvae.evaluation._pass_cap(vae, 100)
    assert 100 * cap * 1000 * 20 <= tfvae.evaluation._PASS_ELEMENTS
    huge = tfvae.evaluation.importance_sampled_log_likelihood(vae, x, k=200, samples_per_pass=5000)
    small = tfvae.evaluation.importance_sampled_log_likelihood(vae, x, k=200, samples_per_pass=5)
    assert np.isfinite(huge.per_example).all()
    assert abs(huge.nats - small.nats) < 4 * (huge.standard_error + small.standard_error)
