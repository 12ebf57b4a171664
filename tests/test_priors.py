"""tfvae.priors: each prior is a real TFP distribution, its stateful sampler draws from it,
and it round-trips through its config."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_vae

from tfvae import priors


def _priors(encoder):
    return [
        priors.StandardNormal(3),
        priors.MixtureOfGaussians(3, num_components=4),
        priors.VampPrior(3, (8, 8, 1), num_pseudo_inputs=5),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["standard_normal", "mixture", "vamp"])
def test_stateful_samples_follow_the_distribution(index):
    encoder = make_vae(latent_dim=3).encoder
    prior = _priors(encoder)[index]
    prior.build()
    p = prior.distribution(encoder=encoder)
    assert p.event_shape == (3,)
    tf.random.set_seed(0)
    z = prior.stateful_sample(20000, encoder=encoder).numpy()
    draws = p.sample(20000, seed=(1, 2)).numpy()
    # Same first two moments as TFP's own sampler, within Monte-Carlo error.
    np.testing.assert_allclose(z.mean(0), draws.mean(0), atol=0.05)
    np.testing.assert_allclose(z.std(0), draws.std(0), rtol=0.05)
    # And the density of its draws is that of the distribution's own draws.
    assert abs(float(np.mean(p.log_prob(z))) - float(np.mean(p.log_prob(draws)))) < 0.05


def test_mixture_config_round_trip_keeps_the_weights():
    prior = priors.MixtureOfGaussians(3, num_components=4, name="prior")
    prior.build()
    again = priors.MixtureOfGaussians.from_config(prior.get_config())
    again.build()
    again.set_weights(prior.get_weights())
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(again.distribution().log_prob(z), prior.distribution().log_prob(z))
    assert again.get_config() == prior.get_config()


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"`latent_dim` must be an integer >= 1\. Received"):
        priors.StandardNormal(0)
    with pytest.raises(ValueError, match="`num_components` must be an integer >= 1"):
        priors.MixtureOfGaussians(3, num_components=0)
    with pytest.raises(ValueError, match="`num_pseudo_inputs` must be an integer >= 1"):
        priors.VampPrior(3, (8, 8, 1), num_pseudo_inputs=True)
    vamp = priors.VampPrior(3, (8, 8, 1))
    vamp.build()
    with pytest.raises(ValueError, match="built from the encoder"):
        vamp.distribution()


def test_priors_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        prior = priors.MixtureOfGaussians(3)
        prior.build()
        assert prior.distribution().sample(2, seed=(0, 1)).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
