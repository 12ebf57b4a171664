"""The importance-weighted autoencoder: a tighter bound from k posterior samples.

    L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k,  z_i ~ q(z|x)
    loss(x) = -L_k(x)

L_1 is the ELBO (with a one-sample Monte-Carlo KL) and L_k grows with k towards
log p(x). The reported `distortion`, `rate` and `elbo` are the standard one-sample
ELBO terms, for comparison with a VAE; the bound is reported as `iwae_bound`. beta
does not enter this objective.

References:
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import losses
from tfvae.models.vae import VAE

__all__ = ["IWAE"]


@keras.saving.register_keras_serializable(package="tfvae")
class IWAE(VAE):
    """A VAE trained on the k-sample importance-weighted bound.

    Args:
        encoder, decoder, prior, seed: as in `VAE`.
        k: number of importance samples, >= 1 (k = 1 is the VAE with a Monte-Carlo KL).

    Raises:
        ValueError: if `k < 1`.

    Example:

    >>> iwae = IWAE(encoder, decoder, k=5)
    """

    term_names = VAE.term_names + ("iwae_bound",)

    def __init__(self, encoder, decoder, k: int = 5, **kwargs):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
        super().__init__(encoder, decoder, **kwargs)
        self.k = k

    def log_weights(self, x, y=None, training=False):
        """Returns `(log_weights, posterior, z, log_likelihood)`, the first `(k, batch)`."""
        posterior = self._encode(x, y, training=training)
        z = posterior.sample(self.k, seed=self._posterior_seed(training))  # (k, batch, latent)
        batch = tf.shape(x)[0]
        flat_z = tf.reshape(z, (-1, self.latent_dim))
        repeat = lambda t: tf.tile(t, tf.concat([[self.k], tf.ones_like(tf.shape(t)[1:])], 0))  # noqa: E731
        flat_y = None if y is None else repeat(y)
        likelihood = self._decode(flat_z, flat_y, training=training)
        log_likelihood = tf.reshape(
            tf.cast(likelihood.log_prob(repeat(x)), tf.float32), tf.stack([self.k, batch])
        )
        prior = self.prior_distribution()
        log_prior = tf.cast(prior.log_prob(z), tf.float32)
        log_posterior = tf.cast(posterior.log_prob(z), tf.float32)
        return log_likelihood + log_prior - log_posterior, posterior, z, log_likelihood

    def loss_terms(self, x, y=None, training=False):
        log_w, posterior, z, log_likelihood = self.log_weights(x, y, training=training)
        bound = losses.importance_weighted_bound(log_w)
        distortion = -log_likelihood[0]
        rate = losses.rate(posterior, self.prior_distribution(), z[0])
        return {**self.terms(distortion, rate, loss=-bound), "iwae_bound": bound}

    def get_config(self):
        return {**super().get_config(), "k": self.k}
