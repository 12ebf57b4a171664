"""beta-VAE: the VAE objective with a constant weight beta > 1 on the rate.

    loss(x) = distortion + beta * rate,  beta > 1 (Higgins et al. use beta = 4 and more)

A larger beta presses q(z|x) towards the factorised prior, trading reconstruction
for more disentangled latents. It is the plain `VAE` with another default; the weight
lives in the variable `beta`, so schedules still apply.

References:
    Higgins, I. et al. (2017). beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework. ICLR.
"""

from __future__ import annotations

import keras

from tfvae import networks
from tfvae.models.vae import VAE

__all__ = ["BetaVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class BetaVAE(VAE):
    """A VAE whose rate weight defaults to beta = 4.

    Args:
        encoder, decoder, prior, seed: as in `VAE`.
        beta: the constant weight of the rate, >= 0 (default 4).

    Example:

    >>> vae = BetaVAE(encoder, decoder, beta=8.0)
    """

    def __init__(self, encoder, decoder, prior=None, beta: float = 4.0, seed=None, **kwargs):
        super().__init__(encoder, decoder, prior=prior, beta=beta, seed=seed, **kwargs)


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> BetaVAE:
    """The registry's builder of `"beta_vae"`: the default networks of `tfvae.networks`."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return BetaVAE(encoder, decoder, **options)
