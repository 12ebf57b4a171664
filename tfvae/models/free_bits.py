"""Free bits: a floor of lambda nats on the KL of each latent dimension.

    optimised rate = sum_j max(lambda, mean over the batch of KL(q_j || p_j))
    loss(x)        = distortion + beta * optimised rate

Below the floor a dimension's KL gets no gradient, so the optimiser stops pushing
it to zero (no posterior collapse). The reported `rate` stays the true KL; the
floored one is reported as `optimized_rate`.

References:
    Kingma, D. P. et al. (2016). Improved Variational Inference with Inverse
        Autoregressive Flow. NeurIPS.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import losses, networks
from tfvae.arguments import check_number
from tfvae.models.vae import VAE

__all__ = ["FreeBitsVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class FreeBitsVAE(VAE):
    """A VAE whose optimised rate floors the KL of every latent dimension at `free_bits`.

    Needs a diagonal Gaussian posterior and prior (the KL splits over dimensions).

    Args:
        encoder, decoder, prior, beta, seed: as in `VAE`.
        free_bits: lambda, nats per latent dimension, >= 0.

    Raises:
        ValueError: if `free_bits` is negative or not a number.

    Example:

    >>> vae = FreeBitsVAE(encoder, decoder, free_bits=0.25)
    """

    term_names = VAE.term_names + ("optimized_rate",)

    def __init__(self, encoder, decoder, free_bits: float = 0.25, **kwargs):
        free_bits = check_number("free_bits", free_bits)  # nats
        super().__init__(encoder, decoder, **kwargs)
        self.free_bits = free_bits

    def loss_terms(self, x, y=None, training=False):
        parts = self.elbo_parts(x, y, training=training)
        per_dimension = losses.rate_per_dimension(parts.posterior, self.prior_distribution())
        floored = losses.free_bits_rate(per_dimension, self.free_bits)
        optimized_rate = tf.broadcast_to(floored, tf.shape(parts.rate))
        terms = self.terms(parts.distortion, parts.rate, parts.distortion + self.beta * floored)
        return {**terms, "optimized_rate": optimized_rate}

    def get_config(self):
        return {**super().get_config(), "free_bits": self.free_bits}


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> FreeBitsVAE:
    """The registry's builder of `"free_bits"` (`options`: `free_bits`, `beta`, `seed`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return FreeBitsVAE(encoder, decoder, **options)
