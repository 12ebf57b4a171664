"""The terms of the evidence lower bound (ELBO).

For data x, an encoder q(z|x), a decoder p(x|z) and a prior p(z):

    log p(x) >= ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))
                        = -(distortion + rate)

    distortion = -log p(x|z),  z ~ q(z|x)      (one reparameterised sample)
    rate       = KL(q(z|x) || p(z))             (TFP's KL registry; Monte Carlo otherwise)

Both are per-example values in nats. The training objective of a beta-VAE is
`distortion + beta * rate`.

Free bits (Kingma et al. 2016) optimise, instead of the rate, the batch-mean KL of each
latent dimension floored at lambda nats:

    free_bits_rate = sum_j max(lambda, mean_batch KL_j)

The importance-weighted bound (Burda et al. 2016) with k samples z_i ~ q(z|x):

    L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k
    ELBO = L_1 <= L_k <= L_{k+1} <= log p(x)

The total correlation of the aggregate posterior q(z) = E_data[q(z|x)] (Chen et al. 2018),
the part of the rate that beta-TCVAE and FactorVAE penalise:

    TC = E_q(z)[log q(z) - sum_j log q(z_j)]
    log q(z_i) ~ logsumexp_m log q(z_i | x_m) - log(N M)   (minibatch-weighted sampling,
                                                           M examples of a data set of N)

References:
    Kingma, D. P. & Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.
    Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic Backpropagation and
        Approximate Inference in Deep Generative Models. ICML.
    Alemi, A. et al. (2018). Fixing a Broken ELBO. ICML. ("rate" and "distortion".)
    Higgins, I. et al. (2017). beta-VAE. ICLR.
    Kingma, D. P. et al. (2016). Improved Variational Inference with Inverse
        Autoregressive Flow. NeurIPS. (Free bits.)
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
    Chen, R. T. Q., Li, X., Grosse, R. & Duvenaud, D. (2018). Isolating Sources of
        Disentanglement in Variational Autoencoders. NeurIPS. (Total correlation.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    "distortion",
    "rate",
    "rate_per_dimension",
    "free_bits_rate",
    "importance_weighted_bound",
    "monte_carlo_kl",
    "total_correlation",
]


def distortion(likelihood: tfd.Distribution, x: tf.Tensor) -> tf.Tensor:
    """Returns -log p(x|z) per example, in float32 nats.

    Args:
        likelihood: p(x|z), a distribution whose event shape is the shape of one x.
        x: a batch of data.

    Returns:
        A tensor of shape `(batch,)`.

    Example:

    >>> distortion(decoder(z), x)
    """
    return -tf.cast(likelihood.log_prob(tf.cast(x, likelihood.dtype)), tf.float32)


def rate(
    posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor | None = None
) -> tf.Tensor:
    """Returns KL(q(z|x) || p(z)) per example, in float32 nats.

    The analytic KL registered in TFP is used when there is one
    (`tfd.kl_divergence`); otherwise the single-sample Monte-Carlo estimate
    `log q(z|x) - log p(z)` at the sample `z` drawn from the posterior.

    Args:
        posterior: q(z|x) with batch shape `(batch,)`.
        prior: p(z).
        z: a sample of the posterior, needed only when no analytic KL is registered.

    Returns:
        A tensor of shape `(batch,)`.

    Raises:
        ValueError: if no analytic KL is registered and `z` is None.

    Example:

    >>> rate(encoder(x), tfd.MultivariateNormalDiag(tf.zeros(20), tf.ones(20)))
    """
    try:
        kl = tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        if z is None:
            raise ValueError(
                f"No analytic KL is registered between {type(posterior).__name__} and "
                f"{type(prior).__name__}; pass a posterior sample `z` for a Monte-Carlo estimate."
            ) from None
        kl = posterior.log_prob(z) - prior.log_prob(z)
    return tf.cast(kl, tf.float32)


def monte_carlo_kl(
    posterior: tfd.Distribution,
    prior: tfd.Distribution,
    num_samples: int,
    seed: int | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Estimates KL(q || p) by Monte Carlo, with its standard error.

    KL(q || p) = E_q[log q(z) - log p(z)], averaged over `num_samples` draws of q.

    Args:
        posterior: q, any TFP distribution.
        prior: p, a distribution over the same event space.
        num_samples: number of draws, at least 2.
        seed: optional seed for the draws.

    Returns:
        `(estimate, standard_error)`, each with the batch shape of q.

    Raises:
        ValueError: if `num_samples < 2`.

    Example:

    >>> kl, se = monte_carlo_kl(q, p, num_samples=10_000, seed=0)
    """
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"`num_samples` must be an integer >= 2. Received: {num_samples!r}")
    z = posterior.sample(num_samples, seed=seed)
    log_ratio = tf.cast(posterior.log_prob(z) - prior.log_prob(z), tf.float32)
    mean = tf.reduce_mean(log_ratio, axis=0)
    std = tf.math.reduce_std(log_ratio, axis=0)
    return mean, std / tf.sqrt(float(num_samples))


_GAUSSIAN = (tfd.MultivariateNormalDiag, tfd.MultivariateNormalLinearOperator)


def rate_per_dimension(posterior: tfd.Distribution, prior: tfd.Distribution) -> tf.Tensor:
    """Returns KL(q_j || p_j) for each latent dimension j, shape `(batch, latent_dim)`.

    Defined for diagonal Gaussian posteriors and priors (the KL then splits over
    dimensions exactly); it sums to `rate(posterior, prior)`.

    Raises:
        ValueError: for other distributions.

    Example:

    >>> rate_per_dimension(encoder(x), prior)  # (batch, 20)
    """
    if not (isinstance(posterior, _GAUSSIAN) and isinstance(prior, _GAUSSIAN)):
        raise ValueError(
            "The KL per dimension needs diagonal Gaussian posterior and prior. Received: "
            f"{type(posterior).__name__} and {type(prior).__name__}"
        )
    q = tfd.Normal(posterior.mean(), posterior.stddev())
    p = tfd.Normal(prior.mean(), prior.stddev())
    return tf.cast(tfd.kl_divergence(q, p), tf.float32)


def free_bits_rate(kl_per_dimension: tf.Tensor, floor: float) -> tf.Tensor:
    """Returns sum_j max(floor, mean over the batch of KL_j): the rate free bits optimise.

    Args:
        kl_per_dimension: `(batch, latent_dim)` KL values, in nats.
        floor: lambda, nats per dimension, >= 0.

    Returns:
        A scalar.
    """
    return tf.reduce_sum(tf.maximum(tf.reduce_mean(kl_per_dimension, axis=0), floor))


def importance_weighted_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """Returns logsumexp(log_weights) - log k over the first axis (the k samples).

    Args:
        log_weights: `(k, batch)` values of log p(x, z_i) - log q(z_i|x).

    Returns:
        `(batch,)` bounds in nats.
    """
    k = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(k)


def total_correlation(
    z: tf.Tensor, posterior: tfd.Distribution, dataset_size: int | None = None
) -> tf.Tensor:
    """Estimates log q(z_i) - sum_j log q_j(z_ij) for each example: its total correlation.

    The aggregate posterior q(z) and its marginals q_j are estimated on the batch by
    minibatch-weighted sampling (Chen et al. 2018): with M examples of a data set of
    N, log q(z_i) ~ logsumexp_m log q(z_i | x_m) - log(N M). The batch mean is the
    estimate of TC; its gradient does not depend on N.

    Args:
        z: one draw of each example's posterior, `(batch, latent_dim)`.
        posterior: q(z|x), a diagonal Gaussian with batch shape `(batch,)`.
        dataset_size: N; None lets the batch stand for the data set
            (log q(z_i) ~ logsumexp_m log q(z_i | x_m) - log M).

    Returns:
        A float32 tensor of shape `(batch,)`, in nats.

    Raises:
        ValueError: for a posterior that is not a diagonal Gaussian.

    Example:

    >>> q = encoder(x)
    >>> tc = total_correlation(q.sample(), q, dataset_size=737_280)
    """
    if not isinstance(posterior, _GAUSSIAN):
        raise ValueError(
            "The total correlation estimate needs a diagonal Gaussian posterior. "
            f"Received: {type(posterior).__name__}"
        )
    z = tf.cast(z, tf.float32)
    loc = tf.cast(posterior.mean(), tf.float32)
    scale = tf.cast(posterior.stddev(), tf.float32)
    # log q(z_i,j | x_m) for every pair of examples (i, m) and dimension j.
    log_q = tfd.Normal(loc[tf.newaxis], scale[tf.newaxis]).log_prob(z[:, tf.newaxis])
    batch = tf.cast(tf.shape(z)[0], tf.float32)
    log_weight = tf.math.log(batch) + (0.0 if dataset_size is None else np.log(dataset_size))
    log_joint = tf.reduce_logsumexp(tf.reduce_sum(log_q, axis=2), axis=1) - log_weight
    log_marginals = tf.reduce_sum(tf.reduce_logsumexp(log_q, axis=1) - log_weight, axis=1)
    return log_joint - log_marginals
