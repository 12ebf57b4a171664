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

from tfvae import losses, networks
from tfvae.arguments import check_integer
from tfvae.models.vae import VAE

__all__ = ["IWAE", "build"]


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
        k = check_integer("k", k)
        super().__init__(encoder, decoder, **kwargs)
        self.k = k

    def loss_terms(self, x, y=None, training=False):
        draws = self._importance_sample(x, y, self.k, self._posterior_seed(training), training)
        bound = losses.importance_weighted_bound(draws.log_weights)
        distortion = -draws.log_likelihood[0]
        rate = losses.rate(draws.posterior, self.prior_distribution(), draws.z[0])
        return {**self.terms(distortion, rate, loss=-bound), "iwae_bound": bound}

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> IWAE:
    """The registry's builder of `"iwae"` (`options`: `k`, `beta`, `seed`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return IWAE(encoder, decoder, **options)
