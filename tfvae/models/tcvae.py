"""beta-TCVAE: a weight beta on the total correlation, the rate's other parts left at 1.

The rate splits into three parts (Chen et al. 2018, eq. 2), with q(z) the aggregate
posterior:

    KL(q(z|x) || p(z)) averaged over x
        = I_q(x; z)                                  (index-code mutual information)
        + KL(q(z) || prod_j q(z_j))                  (total correlation, TC)
        + sum_j KL(q(z_j) || p(z_j))                 (dimension-wise KL)

    loss(x) = distortion + rate + (beta - 1) * TC

The rate is TFP's analytic KL; TC is estimated on each batch by minibatch-weighted
sampling (`tfvae.losses.total_correlation`). beta = 1 is the plain VAE.

References:
    Chen, R. T. Q., Li, X., Grosse, R. & Duvenaud, D. (2018). Isolating Sources of
        Disentanglement in Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import keras

from tfvae import losses, networks
from tfvae.arguments import check_integer
from tfvae.models.vae import VAE

__all__ = ["BetaTCVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class BetaTCVAE(VAE):
    """A VAE whose loss weighs the total correlation of q(z) by beta (default 6).

    Needs a diagonal Gaussian posterior. Tracks `total_correlation` (the per-batch
    estimate) beside the standard terms.

    Args:
        encoder, decoder, prior, seed: as in `VAE`.
        beta: the weight of the total correlation, >= 0 (the rate's other parts
            weigh 1).
        dataset_size: N, the number of training examples, for the estimate's
            constant log(N M); None lets the batch stand for the data set. The
            gradient does not depend on it.

    Raises:
        ValueError: for a posterior that is not a diagonal Gaussian (at the first
            step), or a `dataset_size` that is not a positive integer.

    Example:

    >>> vae = BetaTCVAE(encoder, decoder, beta=6.0, dataset_size=len(x_train))
    """

    term_names = VAE.term_names + ("total_correlation",)

    def __init__(self, encoder, decoder, beta: float = 6.0, dataset_size=None, **kwargs):
        if dataset_size is not None:
            dataset_size = check_integer("dataset_size", dataset_size)
        super().__init__(encoder, decoder, beta=beta, **kwargs)
        self.dataset_size = dataset_size

    def loss_terms(self, x, y=None, training=False):
        parts = self.elbo_parts(x, y, training=training)
        tc = losses.total_correlation(parts.z, parts.posterior, self.dataset_size)
        loss = parts.distortion + parts.rate + (self.beta - 1.0) * tc
        return {**self.terms(parts.distortion, parts.rate, loss), "total_correlation": tc}

    def get_config(self):
        return {**super().get_config(), "dataset_size": self.dataset_size}


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> BetaTCVAE:
    """The registry's builder of `"beta_tcvae"` (`options`: `beta`, `seed`, `dataset_size`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    return BetaTCVAE(encoder, decoder, **options)
