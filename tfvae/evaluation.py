"""The importance-sampled estimate of log p(x), the measure VAEs are compared by.

With k samples z_i ~ q(z|x):

    log p(x) ~= L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k

L_k is a lower bound in expectation that rises to log p(x) as k grows (L_1 is the
ELBO). Large k (5,000 in Burda et al.) is computed in chunks of samples, with a
running logsumexp, so memory stays bounded. Bits per dimension are
-L_k / (D log 2) for D values per example.

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

from tfvae.validation import check_array

__all__ = ["LogLikelihood", "importance_sampled_log_likelihood"]


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
    if getattr(vae, "prior", None) is None:
        raise ValueError(
            f"{type(vae).__name__} has no continuous prior p(z); this estimator needs one."
        )
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
