"""How good a model's samples are: FID, KID and precision/recall in a feature space.

Each metric compares features of generated images G with those of real images R
(`tfvae.feature_network`: the penultimate layer of a classifier trained on the data).

Fréchet distance (FID, Heusel et al. 2017), between Gaussians fitted to the two sets:

    FD = |mu_R - mu_G|^2 + tr(S_R + S_G - 2 (S_R^1/2 S_G S_R^1/2)^1/2)

computed with symmetric eigendecompositions (no complex square roots). It is biased
upwards for small sets, so compare FIDs of equal set sizes only.

Kernel inception distance (KID, Bińkowski et al. 2018): the unbiased estimate of the
squared MMD with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, averaged over
random subsets (100 of 1,000 by default, as in the paper's code; of half the smaller
set when it has fewer than 2,000, so that the subsets differ); the standard error
given is the standard deviation of the subset estimates over sqrt(subsets). KID is
unbiased, so it compares across set sizes, and near 0 it can be slightly negative.

Improved precision and recall (Kynkäänniemi et al. 2019): the real manifold is the
union of balls around each real feature, of radius its distance to its k-th nearest
real neighbour (k = 3); precision is the share of generated features inside it, and
recall the share of real features inside the generated manifold built the same way.
Precision measures fidelity (how many samples look real), recall diversity (how much
of the data the samples cover).

`sample_quality` draws samples from a model and reports all three, the train-vs-test
Fréchet distance of the same feature network as a floor (what a perfect model would
score with the sets used), and, for conditional models, the classifier's accuracy on
samples of each class.

References:
    Heusel, M. et al. (2017). GANs Trained by a Two Time-Scale Update Rule Converge to
        a Local Nash Equilibrium. NeurIPS.
    Bińkowski, M., Sutherland, D. J., Arbel, M. & Gretton, A. (2018). Demystifying MMD
        GANs. ICLR.
    Kynkäänniemi, T., Karras, T., Laine, S., Lehtinen, J. & Aila, T. (2019). Improved
        Precision and Recall Metric for Assessing Generative Models. NeurIPS.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfvae.arguments import check_integer

__all__ = [
    "frechet_distance",
    "frechet_distance_of_moments",
    "kernel_inception_distance",
    "precision_recall",
    "KernelDistance",
    "sample_quality",
    "generate",
]


class KernelDistance(NamedTuple):
    """KID: the mean of the subset estimates and its standard error."""

    value: float
    standard_error: float


def _features(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(
            f"`{name}` must be features of shape (n, d) with n >= 2. Received: shape={array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` holds NaN or Inf values; expected finite features.")
    return array


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features("real", a), _features("generated", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"The two feature sets must have the same dimension. Received: {a.shape[1]} "
            f"and {b.shape[1]}"
        )
    return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_of_moments(mu1, cov1, mu2, cov2) -> float:
    """The Fréchet distance between N(mu1, cov1) and N(mu2, cov2) (see the module docstring).

    Example:

    >>> frechet_distance_of_moments(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    4.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    root = _psd_sqrt(cov1)
    middle = root @ cov2 @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * cross)
    return max(value, 0.0)


def frechet_distance(real, generated) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets `(n, d)`.

    Raises:
        ValueError: for sets of other shapes, of fewer than 2 rows, or not finite.

    Example:

    >>> frechet_distance(network.features(x_test), network.features(samples))
    """
    a, b = _pair(real, generated)
    return frechet_distance_of_moments(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )


def kernel_inception_distance(
    real, generated, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> KernelDistance:
    """KID between two feature sets: the unbiased MMD^2 of the cubic polynomial kernel.

    Args:
        real, generated: features `(n, d)`.
        subsets: how many random subsets the estimate is averaged over.
        subset_size: examples per subset (at most half the smaller set).
        seed: seed of the subsets.

    Returns:
        A `KernelDistance` (value, standard_error).

    Example:

    >>> kid = kernel_inception_distance(real_features, sample_features)
    >>> f"{kid.value:.4f} ± {kid.standard_error:.4f}"
    """
    a, b = _pair(real, generated)
    subsets = check_integer("subsets", subsets)
    m = max(2, min(check_integer("subset_size", subset_size), len(a) // 2, len(b) // 2))
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / dim + 1.0) ** 3
        kyy = (y @ y.T / dim + 1.0) ** 3
        kxy = (x @ y.T / dim + 1.0) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates[i] = within - 2.0 * kxy.mean()
    error = float(estimates.std(ddof=1) / np.sqrt(subsets)) if subsets > 1 else float("nan")
    return KernelDistance(float(estimates.mean()), error)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _radii(points: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """The squared distance of each point to its k-th nearest other point."""
    radii = np.empty(len(points))
    for start in range(0, len(points), chunk):
        d = _squared_distances(points[start : start + chunk], points)
        # Column 0 of the sorted distances is the point itself (0).
        radii[start : start + chunk] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray, chunk: int) -> float:
    inside = 0
    for start in range(0, len(queries), chunk):
        d = _squared_distances(queries[start : start + chunk], manifold)
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / len(queries)


def precision_recall(real, generated, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of two feature sets.

    Args:
        real, generated: features `(n, d)`, each with more than `k` rows.
        k: the neighbour whose distance is each ball's radius.
        chunk: rows per block of pairwise distances (memory: chunk x n floats).

    Returns:
        `(precision, recall)`, each in [0, 1].

    Example:

    >>> precision, recall = precision_recall(real_features, sample_features)
    """
    a, b = _pair(real, generated)
    k = check_integer("k", k)
    if min(len(a), len(b)) <= k:
        raise ValueError(
            f"Precision and recall need more than k={k} examples in each set. "
            f"Received: {len(a)} and {len(b)}"
        )
    precision = _coverage(a, _radii(a, k, chunk), b, chunk)
    recall = _coverage(b, _radii(b, k, chunk), a, chunk)
    return precision, recall


def generate(
    vae,
    n: int,
    labels=None,
    seed: int = 0,
    batch_size: int = 1000,
    sampler: str | None = None,
) -> np.ndarray:
    """Draws `n` samples (the means of p(x|z)) from `vae` in batches, as NumPy.

    Args:
        vae: any tfvae model.
        n: how many.
        labels: conditional models: one class per sample (default: the classes in turn).
        seed: seed of the draws (each batch gets its own, derived from it).
        batch_size: samples per call of `vae.sample`.
        sampler: `"prior"`, a sampler fitted to `vae` (`VAE.fit_sampler`), or None
            for `vae.default_sampler`.

    Returns:
        float32 images `(n, *data_shape)`.
    """
    n = check_integer("n", n)
    if vae.is_conditional and labels is None:
        labels = np.arange(n) % vae.num_classes
    out = []
    for i, start in enumerate(range(0, n, batch_size)):
        count = min(batch_size, n - start)
        part = None if labels is None else np.asarray(labels)[start : start + count]
        draws = vae.sample(count, labels=part, seed=seed * 10_007 + i, sampler=sampler)
        out.append(np.asarray(draws))
    return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def sample_quality(
    vae,
    network,
    x_real,
    x_train=None,
    num_samples: int | None = None,
    seed: int = 0,
    k: int = 3,
    sampler: str | None = None,
) -> dict:
    """Samples `vae` and measures the samples against real images `x_real`.

    Args:
        vae: a trained tfvae model.
        network: the `tfvae.feature_network.FeatureNetwork` of the data set.
        x_real: real images (usually the test split), in [0, 1].
        x_train: other real images (the training split): if given, the Fréchet
            distance of `x_real` against as many of them is reported as `fid_floor`.
        num_samples: samples to draw (default: as many as `x_real`).
        seed: seed of the samples and of KID's subsets.
        k: the neighbour of precision and recall.
        sampler: where the latents come from: `"prior"`, a sampler fitted to `vae`,
            or None for `vae.default_sampler`.

    Returns:
        A dict: `sampler` (its name), `fid`, `kid`, `kid_standard_error`, `precision`,
        `recall`, `samples`,
        `fid_floor` (with `x_train`), `feature_test_accuracy`, and for conditional models
        `class_accuracy` (the classifier's accuracy on samples of each class) and
        `mean_class_accuracy`.

    Example:

    >>> network = tfvae.feature_network.load_feature_network("mnist")
    >>> sample_quality(vae, network, x_test, x_train)["fid"]
    """
    sampler = vae.check_sampler(sampler)
    real = network.features(x_real)
    n = check_integer("num_samples", num_samples) if num_samples is not None else len(real)
    labels = np.arange(n) % vae.num_classes if vae.is_conditional else None
    samples = generate(vae, n, labels=labels, seed=seed, sampler=sampler)
    fake = network.features(samples)
    precision, recall = precision_recall(real, fake, k=k)
    kid = kernel_inception_distance(real, fake, seed=seed)
    result = {
        "sampler": sampler,
        "samples": n,
        "fid": frechet_distance(real, fake),
        "kid": kid.value,
        "kid_standard_error": kid.standard_error,
        "precision": precision,
        "recall": recall,
        "feature_test_accuracy": network.test_accuracy,
    }
    if x_train is not None:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(x_train), min(len(x_train), len(real)), replace=False)
        result["fid_floor"] = frechet_distance(real, network.features(np.asarray(x_train)[pick]))
    if labels is not None:
        predicted = network.predict_classes(samples)
        per_class = {
            int(c): float(np.mean(predicted[labels == c] == c)) for c in range(vae.num_classes)
        }
        result["class_accuracy"] = per_class
        result["mean_class_accuracy"] = float(np.mean(list(per_class.values())))
    return result
