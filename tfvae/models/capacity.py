"""Capacity-annealed beta-VAE: the rate held near a capacity C that grows during training.

    C(t)    = capacity * min(1, t / capacity_steps)        (t: optimizer steps taken)
    loss(x) = distortion + gamma * |mean over the batch of KL(q(z|x) || p(z)) - C(t)|

gamma is the model's `beta` variable (default 1000, as in disentanglement_lib), so a
large weight holds the rate at C while C rises and the latents take in the factors
one after another. The reported `rate` is the true KL; `capacity` is C(t).

References:
    Burgess, C. P. et al. (2018). Understanding disentangling in beta-VAE.
        arXiv:1804.03599.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import networks
from tfvae.arguments import check_integer, check_number
from tfvae.models.vae import VAE

__all__ = ["CapacityVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class CapacityVAE(VAE):
    """A VAE trained on gamma * |KL - C(t)|, with C(t) rising linearly to `capacity`.

    Args:
        encoder, decoder, prior, seed: as in `VAE`.
        beta: gamma, the weight of |KL - C|, >= 0 (default 1000).
        capacity: C_max, nats, >= 0.
        capacity_steps: optimizer steps over which C rises from 0 to `capacity`.

    Raises:
        ValueError: for a negative capacity or weight, or `capacity_steps` < 1.

    Example:

    >>> vae = CapacityVAE(encoder, decoder, capacity=25.0, capacity_steps=100_000)
    """

    term_names = VAE.term_names + ("capacity",)

    def __init__(
        self,
        encoder,
        decoder,
        beta: float = 1000.0,
        capacity: float = 25.0,
        capacity_steps: int = 100_000,
        **kwargs,
    ):
        self.capacity = check_number("capacity", capacity)
        self.capacity_steps = check_integer("capacity_steps", capacity_steps)
        super().__init__(encoder, decoder, beta=beta, **kwargs)

    def current_capacity(self) -> tf.Tensor:
        """C(t) at the optimizer's step count (`capacity` before any optimizer exists)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None:
            return tf.constant(self.capacity, tf.float32)
        progress = tf.cast(optimizer.iterations, tf.float32) / float(self.capacity_steps)
        return self.capacity * tf.minimum(1.0, progress)

    def loss_terms(self, x, y=None, training=False):
        parts = self.elbo_parts(x, y, training=training)
        capacity = self.current_capacity()
        held = self.beta * tf.abs(tf.reduce_mean(parts.rate) - capacity)
        loss = parts.distortion + held
        terms = self.terms(parts.distortion, parts.rate, loss)
        return {**terms, "capacity": tf.broadcast_to(capacity, tf.shape(parts.rate))}

    def get_config(self):
        return {
            **super().get_config(),
            "capacity": self.capacity,
            "capacity_steps": self.capacity_steps,
        }


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> CapacityVAE:
    """The registry's builder of `"capacity_vae"` (`options`: `capacity`, `capacity_steps`,
    `beta`, `seed`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return CapacityVAE(encoder, decoder, **options)
