"""tfvae.flows: the MADE masks and the inverse autoregressive flow posterior."""

import numpy as np
import pytest

import tfvae
from tfvae.flows import IAFPosterior, made_masks


def test_made_masks_are_autoregressive():
    to_hidden, to_output = made_masks(5, 16)
    reach = (to_hidden @ to_output) > 0  # input j reaches output i
    for i in range(5):
        for half in (i, 5 + i):
            assert reach[:, half].tolist() == [j < i for j in range(5)]


def test_iaf_posterior_starts_as_its_base_gaussian_and_is_a_flow():
    layer = IAFPosterior(4, num_flows=2, hidden_units=8)
    params = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    q = layer(params)
    assert len(q.bijector.bijectors) == 4  # two IAF steps, a reversal between and after
    z = q.sample(seed=[1, 2])
    base = tfvae.layers.MultivariateNormalDiag(4)(params)
    np.testing.assert_allclose(q.log_prob(z), base.log_prob(z), atol=1e-5)
    layer.made[0][2].assign(np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32))
    moved = layer(params)
    z = moved.sample(seed=[1, 2])
    assert np.abs(moved.log_prob(z) - base.log_prob(z)).max() > 1e-3
    with pytest.raises(ValueError, match="latent_dim"):
        IAFPosterior(1)
