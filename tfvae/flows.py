"""Flow posteriors: q(z|x) made richer by inverse autoregressive flows (IAF).

A diagonal Gaussian base eps ~ N(mu(x), sigma(x)) goes through T autoregressive
steps. Each step is `tfb.Invert(tfb.MaskedAutoregressiveFlow(made_t))`:

    z_i = (eps_i - m_i(eps_<i)) * exp(-s_i(eps_<i))

This is one parallel pass when sampling, and its log-determinant is -sum_i s_i. The
order of the dimensions is reversed between steps, and once more at the end when
needed, so that z_i stays dimension i. m and s come from a MADE (masked
autoencoder) whose weights are Keras 3 weights of the layer: `tfb.AutoregressiveNetwork`
is a Keras 2 layer and is not used. Its output weights start at zero, so the flow starts
as the identity, and s is bounded by tanh.

q(z|x) has no analytic KL from the prior, so the VAE uses the one-sample Monte-Carlo
estimate log q(z|x) - log p(z) at the sample. TFP's bijector cache gives log q(z|x) at
z without inverting the flow.

References:
    Kingma, D. P. et al. (2016). Improved Variational Inference with Inverse
        Autoregressive Flow. NeurIPS.
    Germain, M. et al. (2015). MADE: Masked Autoencoder for Distribution Estimation. ICML.
    Papamakarios, G. et al. (2017). Masked Autoregressive Flow for Density Estimation.
        NeurIPS.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.arguments import check_integer
from tfvae.layers import MultivariateNormalDiag

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["IAFPosterior", "made_masks"]


def made_masks(latent_dim: int, hidden_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the MADE masks `(input -> hidden, hidden -> 2 * latent_dim outputs)`.

    Input i has degree i (1-based); hidden unit h has a degree in [1, latent_dim - 1];
    outputs i and latent_dim + i (shift and log-scale of dimension i) have degree i.
    A connection exists where the degree does not fall (input -> hidden) or strictly
    rises (hidden -> output), so output i depends on inputs 1..i-1 only.
    """
    inputs = np.arange(1, latent_dim + 1)
    hidden = np.arange(hidden_units) % max(1, latent_dim - 1) + 1
    outputs = np.concatenate([inputs, inputs])
    to_hidden = (hidden[np.newaxis, :] >= inputs[:, np.newaxis]).astype(np.float32)
    to_output = (outputs[np.newaxis, :] > hidden[:, np.newaxis]).astype(np.float32)
    return to_hidden, to_output


@keras.saving.register_keras_serializable(package="tfvae")
class IAFPosterior(MultivariateNormalDiag):
    """q(z|x): a diagonal Gaussian followed by `num_flows` inverse autoregressive flows.

    Takes the same `2 * latent_dim` parameters as `MultivariateNormalDiag` (the base
    distribution); the flows' weights belong to this layer.

    Args:
        latent_dim: size of z, >= 2.
        num_flows: number of IAF steps, >= 1.
        hidden_units: width of each step's MADE.
        min_scale: floor of the base distribution's standard deviation.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called):
        A `tfd.TransformedDistribution` with batch shape `(batch,)` and event shape
        `(latent_dim,)`.

    Raises:
        ValueError: for `latent_dim < 2`, `num_flows < 1` or `hidden_units < 1`.

    Example:

    >>> params = keras.layers.Dense(IAFPosterior.params_size(20))(h)
    >>> q = IAFPosterior(20, num_flows=2)(params)
    """

    def __init__(
        self,
        latent_dim: int,
        num_flows: int = 2,
        hidden_units: int = 64,
        min_scale: float = 1e-5,
        **kwargs,
    ):
        super().__init__(latent_dim, min_scale=min_scale, **kwargs)
        for name, value, low in (
            ("latent_dim", latent_dim, 2),
            ("num_flows", num_flows, 1),
            ("hidden_units", hidden_units, 1),
        ):
            check_integer(name, value, low)
        self.num_flows = num_flows
        self.hidden_units = hidden_units

    def build(self, input_shape):
        super().build(input_shape)
        d, h = self.latent_dim, self.hidden_units
        self._masks = made_masks(d, h)
        self.made = []
        for t in range(self.num_flows):
            self.made.append(
                (
                    self.add_weight(
                        name=f"flow_{t}_hidden_kernel", shape=(d, h), initializer="glorot_uniform"
                    ),
                    self.add_weight(name=f"flow_{t}_hidden_bias", shape=(h,), initializer="zeros"),
                    self.add_weight(
                        name=f"flow_{t}_output_kernel", shape=(h, 2 * d), initializer="zeros"
                    ),
                    self.add_weight(
                        name=f"flow_{t}_output_bias", shape=(2 * d,), initializer="zeros"
                    ),
                )
            )

    def _shift_and_log_scale(self, t):
        w1, b1, w2, b2 = self.made[t]
        to_hidden, to_output = (tf.constant(m) for m in self._masks)

        def shift_and_log_scale(x, **kwargs):
            hidden = tf.nn.relu(tf.matmul(x, w1 * to_hidden) + b1)
            out = tf.matmul(hidden, w2 * to_output) + b2
            shift, raw_log_scale = tf.split(out, 2, axis=-1)
            return shift, tf.tanh(raw_log_scale)

        return shift_and_log_scale

    def make_distribution(self, params):
        base = super().make_distribution(params)
        reverse = tfb.Permute(permutation=list(reversed(range(self.latent_dim))))
        steps = []
        for t in range(self.num_flows):
            if t:
                steps.append(reverse)
            steps.append(
                tfb.Invert(
                    tfb.MaskedAutoregressiveFlow(
                        shift_and_log_scale_fn=self._shift_and_log_scale(t)
                    )
                )
            )
        if self.num_flows % 2 == 0:
            steps.append(reverse)  # an even count of reversals: z_i stays dimension i
        # tfb.Chain applies its list last to first.
        return tfd.TransformedDistribution(base, tfb.Chain(list(reversed(steps))))

    def get_config(self):
        return {
            **super().get_config(),
            "num_flows": self.num_flows,
            "hidden_units": self.hidden_units,
        }
