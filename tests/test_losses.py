"""tfvae.losses and the terms VAE.loss_terms uses in training."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import make_vae
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tfvae import layers, losses, priors
from tfvae.priors import StandardNormal

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None)
EXTREME = st.floats(-1e4, 1e4, allow_nan=False, width=32) | st.sampled_from([-1e4, 0.0, 1e4])

tfd = tfp.distributions


class LogisticPrior(priors.Prior):
    """A prior with no analytic KL from a Gaussian in TFP's registry."""

    def distribution(self, encoder=None):
        return tfd.Independent(tfd.Logistic(tf.zeros(self.latent_dim), 1.0), 1)


def test_rate_used_in_training_equals_the_closed_form_gaussian_kl(digits):
    vae = make_vae(latent_dim=4)
    x = digits[0][:64]
    terms = vae.loss_terms(x, training=True)
    q = vae.encoder(x)
    mu, sigma = q.mean().numpy().astype(np.float64), q.stddev().numpy().astype(np.float64)
    closed_form = 0.5 * np.sum(mu**2 + sigma**2 - np.log(sigma**2) - 1.0, axis=-1)
    np.testing.assert_allclose(terms["rate"].numpy(), closed_form, atol=1e-5)


def test_distortion_used_in_training_equals_binary_cross_entropy_by_hand(digits):
    vae = make_vae(latent_dim=4)
    x = digits[0][:64]
    seed = tf.cast(vae._noise.state.value, tf.int32)  # the seed loss_terms draws next
    terms = vae.loss_terms(x, training=True)
    z = vae.encoder(x).sample(seed=seed)
    logits = vae.decoder(z).distribution.logits.numpy().reshape(64, -1).astype(np.float64)
    flat = x.reshape(64, -1).astype(np.float64)
    bce = np.maximum(logits, 0) - logits * flat + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(terms["distortion"].numpy(), bce.sum(axis=1), atol=1e-4)


def test_loss_and_elbo_combine_the_terms_with_beta(digits):
    vae = make_vae(beta=0.25)
    terms = {k: v.numpy() for k, v in vae.loss_terms(digits[0][:16]).items()}
    np.testing.assert_allclose(terms["loss"], terms["distortion"] + 0.25 * terms["rate"], rtol=1e-6)
    np.testing.assert_allclose(terms["elbo"], -(terms["distortion"] + terms["rate"]), rtol=1e-6)
    assert all(v.shape == (16,) and v.dtype == np.float32 for v in terms.values())


def test_rate_falls_back_to_monte_carlo_when_no_kl_is_registered():
    q = tfd.MultivariateNormalDiag([[0.3, -0.2]], [[0.5, 2.0]])
    p = LogisticPrior(2).distribution()
    with pytest.raises(NotImplementedError):
        tfd.kl_divergence(q, p)
    z = q.sample(seed=[1, 2])
    np.testing.assert_allclose(losses.rate(q, p, z), q.log_prob(z) - p.log_prob(z), rtol=1e-6)
    with pytest.raises(ValueError, match="No analytic KL is registered.*pass a posterior sample"):
        losses.rate(q, p)


def test_vae_with_an_unregistered_prior_trains_on_the_monte_carlo_rate(digits):
    vae = make_vae(latent_dim=3, prior=LogisticPrior(3))
    vae.compile()
    history = vae.fit(digits[0], batch_size=128, epochs=3, verbose=0)
    rates = history.history["rate"]
    assert np.isfinite(history.history["loss"]).all() and all(r > 0 for r in rates)


def test_monte_carlo_kl_agrees_with_the_analytic_kl_within_its_standard_error():
    q = tfd.MultivariateNormalDiag([0.5, -1.0, 0.2], [0.7, 1.3, 0.4])
    p = tfd.MultivariateNormalDiag([0.0, 0.5, 0.0], [1.0, 1.0, 2.0])
    estimate, standard_error = losses.monte_carlo_kl(q, p, num_samples=20_000, seed=7)
    exact = tfd.kl_divergence(q, p).numpy()
    assert 0 < standard_error.numpy() < 0.05
    assert abs(estimate.numpy() - exact) < 3 * standard_error.numpy()
    with pytest.raises(ValueError, match="num_samples"):
        losses.monte_carlo_kl(q, p, num_samples=1)


@st.composite
def decoder_cases(draw):
    batch, pixels = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    logits = draw(arrays(np.float32, (batch, pixels), elements=EXTREME))
    kind = draw(st.sampled_from(["zeros", "ones", "mixed"]))
    bits = draw(arrays(np.float32, (batch, pixels), elements=st.sampled_from([0.0, 1.0])))
    images = {"zeros": np.zeros_like(bits), "ones": np.ones_like(bits), "mixed": bits}[kind]
    return logits, images


@functools.lru_cache
def _likelihood(name, size):
    """One layer per likelihood and size: building one per example is most of the cost."""
    return layers.likelihood_layer(name, (size,))


def finite_with_gradients(make_loss, params):
    params = tf.Variable(params)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(make_loss(params))
    gradient = tape.gradient(loss, params)
    assert loss.dtype == tf.float32
    assert np.isfinite(loss.numpy()), loss.numpy()
    assert np.isfinite(gradient.numpy()).all()


@SETTINGS
@given(decoder_cases(), st.sampled_from(["bernoulli", "continuous_bernoulli"]))
def test_distortion_is_finite_at_extreme_logits(case, likelihood):
    logits, images = case
    layer = _likelihood(likelihood, logits.shape[1])
    finite_with_gradients(lambda p: losses.distortion(layer.make_distribution(p), images), logits)


@SETTINGS
@given(
    st.integers(1, 4).flatmap(
        lambda batch: arrays(
            np.float32,
            (batch, 6),
            elements=st.floats(-1e3, 1e3, allow_nan=False, width=32) | st.sampled_from([-1e3, 1e3]),
        )
    )
)
def test_rate_is_finite_at_extreme_posterior_parameters(params):
    posterior_layer = layers.MultivariateNormalDiag(3)
    prior = StandardNormal(3)
    prior.build()

    def rate(p):
        posterior = posterior_layer.make_distribution(p)
        return losses.rate(posterior, prior.distribution(), posterior.sample(seed=1))

    finite_with_gradients(rate, params)


@SETTINGS
@given(decoder_cases())
def test_gaussian_likelihood_with_learned_scale_is_finite(case):
    raw, images = case
    layer = layers.likelihood_layer("gaussian_learned_scale", (raw.shape[1],))
    layer.build((None, raw.shape[1]))
    layer.raw_scale.assign(np.clip(raw[0], -1e3, 1e3))  # scales from the floor to 1e3
    params = np.clip(raw, -1e3, 1e3)
    finite_with_gradients(lambda p: losses.distortion(layer.make_distribution(p), images), params)
