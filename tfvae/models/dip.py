"""DIP-VAE: the ELBO plus a penalty that pushes a covariance of the codes to the identity.

With mu(x) and Sigma(x) the posterior's mean and (diagonal) covariance, over a batch:

    DIP-VAE-I:  C = Cov_x[mu(x)]
    DIP-VAE-II: C = E_x[Sigma(x)] + Cov_x[mu(x)]     (the covariance of q(z))

    penalty = lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2
    loss(x) = distortion + beta * rate + penalty

with lambda_d = lambda_d_factor * lambda_od (disentanglement_lib's settings: a factor
of 10 for type I and 1 for type II).

References:
    Kumar, A., Sattigeri, P. & Balakrishnan, A. (2018). Variational Inference of
        Disentangled Latent Concepts from Unlabeled Observations. ICLR.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import networks
from tfvae.arguments import check_number
from tfvae.models.vae import VAE

__all__ = ["DIPVAE", "DIP_TYPES", "build"]

#: Which covariance is pushed to the identity: "i" (of the means) or "ii" (of q(z)).
DIP_TYPES = ("i", "ii")


def _covariance(codes: tf.Tensor) -> tf.Tensor:
    """The covariance of the rows of `codes` `(batch, d)` over the batch, `(d, d)`."""
    centred = codes - tf.reduce_mean(codes, axis=0, keepdims=True)
    return tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(codes)[0], codes.dtype)


@keras.saving.register_keras_serializable(package="tfvae")
class DIPVAE(VAE):
    """A VAE whose loss adds DIP-VAE's covariance penalty (type `"i"` or `"ii"`).

    Needs a posterior with a mean and variance (a diagonal Gaussian). Tracks
    `dip_penalty` beside the standard terms.

    Args:
        encoder, decoder, prior, beta, seed: as in `VAE`.
        dip_type: `"i"` or `"ii"`.
        lambda_od: weight of the off-diagonal entries, >= 0.
        lambda_d_factor: lambda_d / lambda_od, >= 0.

    Raises:
        ValueError: for an unknown `dip_type` or a negative weight.

    Example:

    >>> vae = DIPVAE(encoder, decoder, dip_type="ii", lambda_od=10.0, lambda_d_factor=1.0)
    """

    term_names = VAE.term_names + ("dip_penalty",)

    def __init__(
        self,
        encoder,
        decoder,
        dip_type: str = "i",
        lambda_od: float = 10.0,
        lambda_d_factor: float = 10.0,
        **kwargs,
    ):
        if dip_type not in DIP_TYPES:
            raise ValueError(f"`dip_type` must be 'i' or 'ii'. Received: dip_type={dip_type!r}")
        self.dip_type = dip_type
        self.lambda_od = check_number("lambda_od", lambda_od)
        self.lambda_d_factor = check_number("lambda_d_factor", lambda_d_factor)
        super().__init__(encoder, decoder, **kwargs)

    def penalty(self, posterior) -> tf.Tensor:
        """DIP-VAE's penalty on a batch's posterior: a scalar."""
        covariance = _covariance(tf.cast(posterior.mean(), tf.float32))
        if self.dip_type == "ii":
            variance = tf.cast(posterior.variance(), tf.float32)
            covariance += tf.linalg.diag(tf.reduce_mean(variance, axis=0))
        diagonal = tf.linalg.diag_part(covariance)
        off_diagonal = covariance - tf.linalg.diag(diagonal)
        lambda_d = self.lambda_d_factor * self.lambda_od
        return self.lambda_od * tf.reduce_sum(off_diagonal**2) + lambda_d * tf.reduce_sum(
            (diagonal - 1.0) ** 2
        )

    def loss_terms(self, x, y=None, training=False):
        parts = self.elbo_parts(x, y, training=training)
        penalty = tf.broadcast_to(self.penalty(parts.posterior), tf.shape(parts.rate))
        loss = parts.distortion + self.beta * parts.rate + penalty
        return {**self.terms(parts.distortion, parts.rate, loss), "dip_penalty": penalty}

    def get_config(self):
        return {
            **super().get_config(),
            "dip_type": self.dip_type,
            "lambda_od": self.lambda_od,
            "lambda_d_factor": self.lambda_d_factor,
        }


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> DIPVAE:
    """The registry's builder of `"dip_vae_i"` and `"dip_vae_ii"` (`options`: `dip_type`,
    `lambda_od`, `lambda_d_factor`, `beta`, `seed`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return DIPVAE(encoder, decoder, **options)
