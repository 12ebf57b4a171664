"""The loss stays finite, with finite gradients, at extreme parameters and inputs.

A property-based test (hypothesis, derandomized, a small example budget) over shapes
and values: decoder logits up to +-1e4, raw posterior scales (the log-variance-like
parameters) up to +-1e3, and all-zero, all-one or mixed images.
"""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tfvae import layers, losses
from tfvae.priors import StandardNormal

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None)
EXTREME = st.floats(-1e4, 1e4, allow_nan=False, width=32) | st.sampled_from([-1e4, 0.0, 1e4])


@st.composite
def decoder_cases(draw):
    batch, pixels = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    logits = draw(arrays(np.float32, (batch, pixels), elements=EXTREME))
    kind = draw(st.sampled_from(["zeros", "ones", "mixed"]))
    bits = draw(arrays(np.float32, (batch, pixels), elements=st.sampled_from([0.0, 1.0])))
    images = {"zeros": np.zeros_like(bits), "ones": np.ones_like(bits), "mixed": bits}[kind]
    return logits, images


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
    layer = layers.likelihood_layer(likelihood, (logits.shape[1],))
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
