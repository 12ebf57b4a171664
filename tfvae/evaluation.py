"""Measures of what a VAE learned: log-likelihood, latent use, anomaly scores.

The importance-sampled estimate of log p(x), the measure VAEs are compared by:

With k samples z_i ~ q(z|x):

    log p(x) ~= L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k

L_k is a lower bound in expectation that rises to log p(x) as k grows (L_1 is the
ELBO). Large k (5,000 in Burda et al.) is computed in chunks of samples, with a
running logsumexp, so memory stays bounded. Bits per dimension are
-L_k / (D log 2) for D values per example.

Latent use: the KL of each dimension, averaged over the data, and the active units.
A dimension j is active when Cov_x(E_q[z_j | x]) > 0.01 (Burda et al. 2016): the
posterior mean moves with the input, so the decoder can read it. A collapsed
dimension has a KL of zero and a constant posterior mean.

Anomaly scores, one per example: the negative ELBO and the reconstruction error
(squared error between x and the reconstruction). Out-of-distribution inputs score high.

References:
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
    Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic Backpropagation and
        Approximate Inference in Deep Generative Models. ICML.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfvae import losses
from tfvae.validation import check_array

__all__ = [
    "LogLikelihood",
    "importance_sampled_log_likelihood",
    "kl_per_dimension",
    "active_units",
    "anomaly_scores",
]


class LogLikelihood(NamedTuple):
    """The estimate over a data set: mean, its standard error, and bits per dimension."""

    nats: float
    standard_error: float
    bits_per_dim: float
    per_example: np.ndarray


def importance_sampled_log_likelihood(
    vae, x, k: int = 5000, batch_size: int = 100, samples_per_pass: int = 500, seed: int = 0
) -> LogLikelihood:
    """Estimates log p(x) per example with k importance samples from q(z|x).

    Args:
        vae: a `tfvae.VAE` with a continuous prior (not a VQ-VAE or hierarchical VAE).
        x: data of shape `(n, *vae.data_shape)`.
        k: importance samples per example, >= 1.
        batch_size: examples per pass.
        samples_per_pass: samples drawn at once (memory is batch x samples x data).
        seed: seed of the draws.

    Returns:
        `LogLikelihood(nats, standard_error, bits_per_dim, per_example)`, where `nats`
        is the mean estimate of log p(x) (negative; -nats is the NLL).

    Raises:
        ValueError: for bad data, `k < 1`, or a model without a continuous prior.

    Example:

    >>> result = importance_sampled_log_likelihood(vae, x_test, k=5000)
    >>> print(f"{-result.nats:.2f} +- {result.standard_error:.2f} nats")
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
    _require(vae, "The importance-sampled log-likelihood")
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    seeds = tf.random.Generator.from_seed(seed)
    prior = vae.prior_distribution()
    per_pass = min(k, samples_per_pass)

    signature = [
        tf.TensorSpec((None,) + vae.data_shape, tf.float32),
        tf.TensorSpec((), tf.int32),
        tf.TensorSpec((2,), tf.int32),
    ]

    @tf.function(input_signature=signature)
    def log_weights(batch, count, pass_seed):
        posterior = vae.encoder(batch)
        z = posterior.sample(count, seed=pass_seed)  # (count, batch, latent)
        flat = tf.reshape(z, (-1, vae.latent_dim))
        tiled = tf.tile(batch, tf.concat([[count], tf.ones_like(tf.shape(batch)[1:])], 0))
        log_likelihood = tf.reshape(vae.decoder(flat).log_prob(tiled), tf.shape(z)[:2])
        return log_likelihood + prior.log_prob(z) - posterior.log_prob(z)

    results = []
    for start in range(0, len(x), batch_size):
        batch = tf.constant(x[start : start + batch_size])
        running = None
        done = 0
        while done < k:
            count = min(per_pass, k - done)
            pass_seed = tf.cast(seeds.make_seeds(1)[:, 0] % (2**31 - 1), tf.int32)
            chunk = tf.reduce_logsumexp(log_weights(batch, tf.constant(count), pass_seed), 0)
            running = chunk if running is None else tf.reduce_logsumexp([running, chunk], 0)
            done += count
        results.append((running - math.log(k)).numpy())
    per_example = np.concatenate(results).astype(np.float64)
    mean = float(per_example.mean())
    error = float(per_example.std(ddof=1) / math.sqrt(len(per_example))) if len(x) > 1 else 0.0
    dims = math.prod(vae.data_shape)
    return LogLikelihood(mean, error, -mean / (dims * math.log(2)), per_example)


def _require(vae, what: str, gaussian_posterior: bool = False) -> None:
    """Raises a ValueError naming why `what` is not defined for this model."""
    if getattr(vae, "prior", None) is None:
        raise ValueError(f"{what} needs a continuous prior p(z); {type(vae).__name__} has none.")
    if getattr(vae, "num_classes", None):
        raise ValueError(f"{what} is not defined here for conditional models (labels needed).")
    if gaussian_posterior and not vae.has_gaussian_posterior:
        layer = vae.encoder.outputs[0]._keras_history.operation
        raise ValueError(
            f"{what} needs a diagonal Gaussian posterior; this one is {type(layer).__name__}."
        )


def _batches(x, batch_size):
    for start in range(0, len(x), batch_size):
        yield tf.constant(x[start : start + batch_size])


def kl_per_dimension(vae, x, batch_size: int = 500) -> np.ndarray:
    """Returns the KL of each latent dimension, averaged over `x`: shape `(latent_dim,)`.

    Needs a diagonal Gaussian posterior and prior (the KL then splits over dimensions).

    Raises:
        ValueError: for bad data or other posteriors or priors.

    Example:

    >>> kl_per_dimension(vae, x_test).round(2)  # nats per dimension
    """
    _require(vae, "The KL per dimension", gaussian_posterior=True)
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    prior = vae.prior_distribution()
    total = np.zeros(vae.latent_dim)
    for batch in _batches(x, batch_size):
        total += losses.rate_per_dimension(vae.encoder(batch), prior).numpy().sum(axis=0)
    return total / len(x)


def active_units(vae, x, threshold: float = 0.01, batch_size: int = 500):
    """Counts the latent dimensions whose posterior mean varies over the data.

    Args:
        vae: a `tfvae.VAE` with a Gaussian posterior.
        x: data, `(n, *data_shape)`, n >= 2.
        threshold: the variance above which a dimension is active (0.01, Burda et al.).
        batch_size: examples per pass.

    Returns:
        `(count, variances)`: the number of active dimensions and Cov_x(E_q[z_j | x])
        for each dimension.

    Example:

    >>> count, variances = active_units(vae, x_test)
    """
    _require(vae, "Active units", gaussian_posterior=True)
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    if len(x) < 2:
        raise ValueError(f"Active units need at least 2 examples. Received: {len(x)}")
    means = np.concatenate([vae.encoder(b).mean().numpy() for b in _batches(x, batch_size)])
    variances = means.astype(np.float64).var(axis=0)
    return int((variances > threshold).sum()), variances


def anomaly_scores(vae, x, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Returns per-example anomaly scores: `negative_elbo` and `reconstruction_error`.

    The negative ELBO uses one posterior sample per example. The reconstruction error is
    the squared error summed over the example, between x and `vae.reconstruct(x)`.

    Example:

    >>> scores = anomaly_scores(vae, x)
    >>> suspicious = scores["negative_elbo"] > np.quantile(train_scores, 0.99)
    """
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    elbo, error = [], []
    axes = tuple(range(1, 1 + len(vae.data_shape)))
    for batch in _batches(x, batch_size):
        elbo.append(-vae.loss_terms(batch)["elbo"].numpy())
        error.append(np.sum((vae(batch).numpy() - batch.numpy()) ** 2, axis=axes))
    return {"negative_elbo": np.concatenate(elbo), "reconstruction_error": np.concatenate(error)}
