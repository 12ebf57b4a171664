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

A VQ-VAE with a prior over its codes (`fit_sampler("pixelcnn", x)`) has no density
to sample importance weights from, but q(c|x) is a point mass, so its ELBO is
log p(x | z_q(c)) + log p(c): `code_prior_elbo` reports it with the code NLL -log p(c)
(van den Oord et al. 2017 report bits per dimension this way).

`report` gathers all of these for one model and data set, as `tfvae evaluate` prints
them; a measure that does not apply to the model is listed under `not_measured` with
the reason.

Disentanglement (`disentanglement_scores`): the metrics of `tfvae.disentanglement`
(BetaVAE and FactorVAE scores, MIG, DCI, SAP) of the central latents of images whose
ground-truth factors are known (dSprites, `tfvae.dsprites`).

Anomaly scores, one per example: the negative ELBO and the reconstruction error
(squared error between x and the reconstruction). Out-of-distribution inputs score high.

References:
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
    van den Oord, A., Vinyals, O. & Kavukcuoglu, K. (2017). Neural Discrete
        Representation Learning. NeurIPS.
    Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic Backpropagation and
        Approximate Inference in Deep Generative Models. ICML.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfvae import losses, priors
from tfvae.arguments import check_integer
from tfvae.validation import check_array

__all__ = [
    "report",
    "CodePriorElbo",
    "code_prior_elbo",
    "LogLikelihood",
    "importance_sampled_log_likelihood",
    "kl_per_dimension",
    "active_units",
    "anomaly_scores",
    "disentanglement_scores",
    "check_disentanglement_model",
    "representation",
]


class LogLikelihood(NamedTuple):
    """The estimate over a data set: mean, its standard error, and bits per dimension."""

    nats: float
    standard_error: float
    bits_per_dim: float
    per_example: np.ndarray


#: Most values one pass of the importance sampler may hold in one of its tensors (a
#: VampPrior of 500 pseudo-inputs at batch 100 and 500 samples would hold 4 GB).
_PASS_ELEMENTS = 40_000_000


def _pass_cap(vae, batch_size: int) -> int:
    """Samples per pass that keep batch x samples x (the largest per-sample tensor) bounded."""
    per_sample = math.prod(vae.data_shape)
    components = getattr(vae.prior, "num_pseudo_inputs", None) or getattr(
        vae.prior, "num_components", None
    )
    if components:
        per_sample = max(per_sample, components * math.prod(vae.latent_shape))
    return max(1, _PASS_ELEMENTS // (batch_size * per_sample))


def importance_sampled_log_likelihood(
    vae,
    x,
    k: int = 5000,
    batch_size: int = 100,
    samples_per_pass: int = 500,
    seed: int = 0,
    labels=None,
) -> LogLikelihood:
    """Estimates log p(x) per example with k importance samples from q(z|x).

    The weights come from the model's own `log_importance_weights` (the joint over
    layers for a hierarchical VAE), so every model with a density is estimated.

    Args:
        vae: a `tfvae.VAE` with a density (every model but the VQ-VAE).
        x: data of shape `(n, *vae.data_shape)`.
        k: importance samples per example, >= 1.
        batch_size: examples per pass.
        samples_per_pass: samples drawn at once (memory is batch x samples x data,
            or x the K components of a mixture prior's K x latent size when larger);
            lowered where one pass would hold more than `_PASS_ELEMENTS` values.
        seed: seed of the draws.
        labels: for a conditional model, one label per example; the estimate is then
            log p(x | y).

    Returns:
        `LogLikelihood(nats, standard_error, bits_per_dim, per_example)`, where `nats`
        is the mean estimate of log p(x) (negative; -nats is the NLL).

    Raises:
        ValueError: for bad data or labels, `k < 1`, or a model without a density.

    Example:

    >>> result = importance_sampled_log_likelihood(vae, x_test, k=5000)
    >>> print(f"{-result.nats:.2f} +- {result.standard_error:.2f} nats")
    """
    k = check_integer("k", k)
    vae.require_density("The importance-sampled log-likelihood")
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    y = vae._label_batch(labels, x)
    seeds = tf.random.Generator.from_seed(seed)
    batch_size = check_integer("batch_size", batch_size)
    per_pass = min(k, check_integer("samples_per_pass", samples_per_pass))
    per_pass = min(per_pass, _pass_cap(vae, batch_size))

    signature = [
        tf.TensorSpec((None,) + vae.data_shape, tf.float32),
        tf.TensorSpec((), tf.int32),
        tf.TensorSpec((2,), tf.int32),
    ]
    if y is not None:
        signature.append(tf.TensorSpec((None,) + y.shape[1:], tf.as_dtype(y.dtype)))

    def weights_of(batch, count, pass_seed, batch_labels=None):
        return vae._importance_sample(batch, batch_labels, count, pass_seed).log_weights

    # One trace for every batch size and sample count.
    log_weights = tf.function(
        weights_of if y is not None else lambda b, c, s: weights_of(b, c, s),
        input_signature=signature,
    )

    results = []
    for start in range(0, len(x), batch_size):
        batch = tf.constant(x[start : start + batch_size])
        batch_labels = () if y is None else (tf.constant(y[start : start + batch_size]),)
        running = None
        done = 0
        while done < k:
            count = min(per_pass, k - done)
            pass_seed = tf.cast(seeds.make_seeds(1)[:, 0] % (2**31 - 1), tf.int32)
            weights = log_weights(batch, tf.constant(count), pass_seed, *batch_labels)
            chunk = tf.reduce_logsumexp(weights, 0)
            running = chunk if running is None else tf.reduce_logsumexp([running, chunk], 0)
            done += count
        results.append((running - math.log(k)).numpy())
    per_example = np.concatenate(results).astype(np.float64)
    mean = float(per_example.mean())
    error = float(per_example.std(ddof=1) / math.sqrt(len(per_example))) if len(x) > 1 else 0.0
    dims = math.prod(vae.data_shape)
    return LogLikelihood(mean, error, -mean / (dims * math.log(2)), per_example)


def _require_gaussian(vae, what: str) -> None:
    """Raises a one-line ValueError when q(z|x) and p(z) are not both diagonal Gaussians."""
    if not vae.has_gaussian_posterior or not isinstance(vae.prior, priors.StandardNormal):
        raise ValueError(
            f"{what} needs a diagonal Gaussian posterior and prior (their KL splits over "
            f"dimensions); {type(vae).__name__}'s {_posterior_kind(vae)} is not one."
        )


def _posterior_kind(vae) -> str:
    if vae.latent_is_discrete:
        return "posterior (a point mass on codes)"
    if vae.prior is None:
        return "posterior (a hierarchy of layers)"
    if vae.has_gaussian_posterior:
        return f"prior ({type(vae.prior).__name__})"
    return f"posterior ({type(vae.encoder.outputs[0]._keras_history.operation).__name__})"


def _batches(x, batch_size, labels=None):
    for start in range(0, len(x), batch_size):
        part = None if labels is None else labels[start : start + batch_size]
        yield tf.constant(x[start : start + batch_size]), part


def kl_per_dimension(vae, x, batch_size: int = 500, labels=None) -> np.ndarray:
    """Returns the KL of each latent dimension, averaged over `x`: shape `(latent_dim,)`.

    Needs a diagonal Gaussian posterior and prior (the KL then splits over dimensions).

    Raises:
        ValueError: for bad data or other posteriors or priors.

    Example:

    >>> kl_per_dimension(vae, x_test).round(2)  # nats per dimension
    """
    _require_gaussian(vae, "The KL per dimension")
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    y = vae._label_batch(labels, x)
    prior = vae.prior_distribution()
    total = np.zeros(vae.latent_dim)
    for batch, batch_labels in _batches(x, batch_size, y):
        posterior = vae._encode(batch, batch_labels)
        total += losses.rate_per_dimension(posterior, prior).numpy().sum(axis=0)
    return total / len(x)


def active_units(vae, x, threshold: float = 0.01, batch_size: int = 500, labels=None):
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
    _require_gaussian(vae, "Active units")
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    y = vae._label_batch(labels, x)
    if len(x) < 2:
        raise ValueError(f"Active units need at least 2 examples. Received: {len(x)}")
    means = np.concatenate(
        [vae._encode(b, part).mean().numpy() for b, part in _batches(x, batch_size, y)]
    )
    variances = means.astype(np.float64).var(axis=0)
    return int((variances > threshold).sum()), variances


def anomaly_scores(vae, x, batch_size: int = 500, labels=None) -> dict[str, np.ndarray]:
    """Returns per-example anomaly scores: `negative_elbo` and `reconstruction_error`.

    The negative ELBO uses one posterior sample per example. The reconstruction error is
    the squared error summed over the example, between x and `vae.reconstruct(x)`.

    Example:

    >>> scores = anomaly_scores(vae, x)
    >>> suspicious = scores["negative_elbo"] > np.quantile(train_scores, 0.99)
    """
    x = check_array(x, vae.data_shape, vae.likelihood.support)
    y = vae._label_batch(labels, x)
    elbo, error = [], []
    axes = tuple(range(1, 1 + len(vae.data_shape)))
    for batch, part in _batches(x, batch_size, y):
        elbo.append(-vae.loss_terms(batch, part)["elbo"].numpy())
        reconstruction = vae._reconstruct(batch, part)
        error.append(np.sum((reconstruction.numpy() - batch.numpy()) ** 2, axis=axes))
    return {"negative_elbo": np.concatenate(elbo), "reconstruction_error": np.concatenate(error)}


class CodePriorElbo(NamedTuple):
    """The ELBO of a VQ-VAE with a fitted prior over codes, means over the examples."""

    code_nll: float  # -log p(c), nats per example
    distortion: float  # -log p(x | z_q(c)), nats per example
    elbo: float  # -(distortion + code_nll)
    bits_per_dim: float  # -elbo / (D log 2)


def code_prior_elbo(vae, x, distortion: float | None = None) -> CodePriorElbo:
    """The ELBO log p(x | z_q(c)) + log p(c) of a VQ-VAE with a fitted PixelCNN prior.

    Args:
        vae: a `tfvae.VQVAE` after `fit_sampler("pixelcnn", ...)`.
        x: data `(n, *vae.data_shape)`.
        distortion: the mean distortion over `x` if already computed (`vae.evaluate`).

    Returns:
        `CodePriorElbo(code_nll, distortion, elbo, bits_per_dim)`.

    Raises:
        ValueError: for a model with no prior over codes fitted.

    Example:

    >>> vqvae.fit_sampler("pixelcnn", x_train)
    >>> code_prior_elbo(vqvae, x_test).bits_per_dim
    """
    if not vae.latent_is_discrete or "pixelcnn" not in vae.fitted_samplers:
        raise ValueError(
            f"The code-prior ELBO needs a VQ-VAE with a fitted PixelCNN prior; "
            f"{type(vae).__name__} has samplers: {', '.join(vae.fitted_samplers) or 'none'}."
        )
    code_nll = float(-np.mean(vae.code_log_prob(x)))
    if distortion is None:
        distortion = vae.evaluate(x, batch_size=500, verbose=0, return_dict=True)["distortion"]
    elbo = -(float(distortion) + code_nll)
    dims = math.prod(vae.data_shape)
    return CodePriorElbo(code_nll, float(distortion), elbo, -elbo / (dims * math.log(2)))


def report(vae, x, labels=None, k: int = 5000) -> dict:
    """Every measure of this module for `vae` on `x`, as a JSON-ready dict.

    Args:
        vae: a trained `tfvae.VAE` (any model).
        x: data of shape `(n, *vae.data_shape)`.
        labels: one per example, for a conditional model (ignored by the others).
        k: importance samples of the log-likelihood.

    Returns:
        A dict with `examples`, `elbo`, `rate`, `distortion` (means, nats),
        `log_likelihood` (and `log_likelihood_of`, `log_likelihood_standard_error`,
        `bits_per_dim`, `k`), `active_units`, `latent_dim`, `kl_per_dimension`, and
        `not_measured`: {measure: why} for those the model has none of (None above);
        for a VQ-VAE with a fitted PixelCNN prior, `code_nll`, `code_prior_elbo` and
        `code_prior_bits_per_dim` too (`code_prior_elbo`); for a model that
        classifies (semi-supervised), `classification_error` and
        `elbo_without_labels` (the bound on log p(x), y summed out; `elbo` is then
        the bound on log p(x, y)).

    Example:

    >>> metrics = report(vae, x_test, k=1000)
    >>> metrics["log_likelihood"], metrics["not_measured"]
    """
    labels = labels if vae.is_conditional else None
    terms = vae.evaluate(
        x, *(() if labels is None else (labels,)), batch_size=500, verbose=0, return_dict=True
    )
    metrics = {
        "examples": int(len(x)),
        "elbo": terms["elbo"],
        "rate": terms["rate"],
        "distortion": terms["distortion"],
        "log_likelihood": None,
        "log_likelihood_of": "log p(x | y)" if vae.is_conditional else "log p(x)",
        "log_likelihood_standard_error": None,
        "bits_per_dim": None,
        "k": None,
        "active_units": None,
        "latent_dim": int(vae.latent_dim),
        "kl_per_dimension": None,
        "not_measured": {},
    }
    try:
        estimate = importance_sampled_log_likelihood(vae, x, k=k, labels=labels)
        metrics.update(
            log_likelihood=estimate.nats,
            log_likelihood_standard_error=estimate.standard_error,
            bits_per_dim=estimate.bits_per_dim,
            k=k,
        )
    except ValueError as error:
        metrics["not_measured"]["log_likelihood"] = str(error)
    if vae.latent_is_discrete and "pixelcnn" in vae.fitted_samplers:
        bound = code_prior_elbo(vae, x, distortion=terms["distortion"])
        metrics.update(
            code_nll=bound.code_nll,
            code_prior_elbo=bound.elbo,
            code_prior_bits_per_dim=bound.bits_per_dim,
        )
    if vae.classifies and labels is not None:
        metrics["classification_error"] = float(np.mean(vae.classify(x) != np.asarray(labels)))
        hidden = np.full(len(x), -1, np.int64)
        metrics["elbo_without_labels"] = vae.evaluate(
            x, hidden, batch_size=500, verbose=0, return_dict=True
        )["elbo"]
    try:
        metrics["active_units"] = active_units(vae, x, labels=labels)[0]
        metrics["kl_per_dimension"] = kl_per_dimension(vae, x, labels=labels).tolist()
    except ValueError as error:
        metrics["not_measured"]["active_units"] = str(error)
    return metrics


def representation(vae, batch_size: int = 1000):
    """Returns images `(n, *image_shape)` -> the central latents `(n, d)` of `vae`, as NumPy
    (the representation the disentanglement metrics score)."""

    def represent(images):
        images = np.asarray(images, np.float32).reshape((-1,) + tuple(vae.data_shape))
        parts = [
            vae.central_latent(images[i : i + batch_size]).numpy()
            for i in range(0, len(images), batch_size)
        ]
        codes = np.concatenate(parts)
        return codes.reshape(len(codes), -1)

    return represent


def check_disentanglement_model(vae, ground_truth) -> None:
    """Raises a one-line ValueError unless `vae` is an unconditional model with
    continuous latents of the ground truth's images."""
    if vae.is_conditional:
        raise ValueError(
            f"Disentanglement needs an unconditional model; {type(vae).__name__} takes labels."
        )
    if vae.latent_is_discrete:
        raise ValueError(
            f"Disentanglement is measured on continuous latents; {type(vae).__name__} has "
            "discrete codes."
        )
    shape = tuple(ground_truth.image_shape)
    if tuple(vae.data_shape) not in (shape, (int(np.prod(shape)),)):
        raise ValueError(
            f"Disentanglement is measured on the ground truth's images of {shape}; the model "
            f"takes {tuple(vae.data_shape)} (train it with --dataset dsprites)."
        )


def disentanglement_scores(vae, ground_truth=None, seed: int = 0, **sizes) -> dict:
    """The disentanglement metrics of a model's central latents on data with known factors.

    Args:
        vae: a trained, unconditional model with continuous latents, of images shaped
            as the ground truth's (64x64x1 for dSprites, or flattened).
        ground_truth: the data and its factors (default: `tfvae.dsprites.open_dsprites()`).
        seed: seed of every draw.
        **sizes: the sample sizes of `tfvae.disentanglement.scores` (`num_train`,
            `num_test`, `num_points`, `num_eval_points`, `batch_size`, `num_trees`);
            the defaults are disentanglement_lib's.

    Returns:
        `tfvae.disentanglement.scores`' dict (with `"mutual_information"`), plus
        `"factor_names"` and `"data"` (`"file"` or `"rendered"`).

    Raises:
        ValueError: for a conditional model, discrete codes, or a model of other data.

    Example:

    >>> tfvae.evaluation.disentanglement_scores(vae, num_points=1000)["mig"]
    """
    from tfvae import data, disentanglement

    ground_truth = ground_truth if ground_truth is not None else data.ground_truth()
    check_disentanglement_model(vae, ground_truth)
    result = disentanglement.scores(ground_truth, representation(vae), seed, **sizes)
    return {
        **result,
        "factor_names": list(ground_truth.factor_names),
        "data": getattr(ground_truth, "source", "given"),
    }
