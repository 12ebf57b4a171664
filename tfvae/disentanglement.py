"""Disentanglement metrics: how well a representation's dimensions line up with known factors.

With codes c (the posterior means, `(n, d)`) of images whose ground-truth factors v
(`(n, K)`, integer indices) are known:

    MIG  = 1/K sum_k (I(c_j(1); v_k) - I(c_j(2); v_k)) / H(v_k)
           (j(1), j(2): the codes of highest and second-highest mutual information
           with v_k; each code discretised into 20 equal-width bins)
    DCI  = from R_jk, the importance of code j for predicting v_k (gradient-boosted
           trees): disentanglement = sum_j rho_j (1 - H_K(P_j.)), completeness =
           sum_k rho_k (1 - H_d(P_.k)), informativeness = the trees' test accuracy
    SAP  = 1/K sum_k (S_(1)k - S_(2)k), S_jk the test accuracy of a linear SVM
           predicting v_k from c_j alone
    BetaVAE score   = accuracy of a logistic regression naming the factor k held fixed
           across pairs of batches, from the mean |c(x) - c(x')| over a batch
    FactorVAE score = accuracy of the majority-vote classifier naming the factor held
           fixed in a batch from the code of least normalised variance

The sample sizes default to disentanglement_lib's (Locatello et al. 2019): MIG on
10,000 points; DCI and SAP trained on 10,000 and tested on 5,000; BetaVAE and
FactorVAE scores on 10,000 training and 5,000 evaluation points of batches of 64,
FactorVAE's normalising variances on 10,000 points, dimensions with a variance below
0.05 pruned.

References:
    Higgins, I. et al. (2017). beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework. ICLR. (BetaVAE score.)
    Kim, H. & Mnih, A. (2018). Disentangling by Factorising. ICML. (FactorVAE score.)
    Chen, R. T. Q. et al. (2018). Isolating Sources of Disentanglement in VAEs. NeurIPS. (MIG.)
    Eastwood, C. & Williams, C. K. I. (2018). A Framework for the Quantitative
        Evaluation of Disentangled Representations. ICLR. (DCI.)
    Kumar, A., Sattigeri, P. & Balakrishnan, A. (2018). Variational Inference of
        Disentangled Latent Concepts from Unlabeled Observations. ICLR. (SAP.)
    Locatello, F. et al. (2019). Challenging Common Assumptions in the Unsupervised
        Learning of Disentangled Representations. ICML. (disentanglement_lib.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "mutual_information_matrix",
    "mig",
    "dci",
    "sap",
    "beta_vae_score",
    "factor_vae_score",
    "scores",
    "METRICS",
]

#: The metrics `scores` computes, in the order tables list them.
METRICS = (
    "beta_vae_score",
    "factor_vae_score",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "sap",
)

Represent = Callable[[np.ndarray], np.ndarray]


def _check_pair(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise ValueError(
            "`codes` and `factors` must be (n, d) and (n, K) arrays of the same n >= 2. "
            f"Received: shapes {codes.shape} and {factors.shape}"
        )
    if not np.isfinite(codes).all():
        raise ValueError("`codes` hold NaN or Inf values.")
    return codes, factors.astype(np.int64)


def _discretised(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Each column cut into `num_bins` equal-width bins over its range (as
    disentanglement_lib's histogram discretiser)."""
    out = np.zeros(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def mutual_information_matrix(codes, factors, num_bins: int = 20) -> np.ndarray:
    """I(c_j; v_k) in nats, each code discretised into `num_bins` bins: `(d, K)`.

    Example:

    >>> m = mutual_information_matrix(codes, factors)  # m[j, k]
    """
    from sklearn.metrics import mutual_info_score

    codes, factors = _check_pair(codes, factors)
    binned = _discretised(codes, num_bins)
    return np.array(
        [
            [mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
            for j in range(codes.shape[1])
        ]
    )


def _entropies(factors: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(f, f) for f in factors.T])


def mig(codes, factors, num_bins: int = 20) -> float:
    """The mutual information gap (Chen et al. 2018), in [0, 1].

    Args:
        codes: `(n, d)` representations.
        factors: `(n, K)` integer factor values; a factor that never varies is left out.
        num_bins: bins of each code's discretisation.

    Returns:
        The MIG, a float.

    Raises:
        ValueError: for arrays of the wrong shape, fewer than 2 codes, or NaN codes.

    Example:

    >>> mig(codes, factors)
    """
    codes, factors = _check_pair(codes, factors)
    return _gap(mutual_information_matrix(codes, factors, num_bins), factors)


def _gap(information: np.ndarray, factors: np.ndarray) -> float:
    """MIG from the mutual-information matrix `(d, K)` of codes and `factors`."""
    if len(information) < 2:
        raise ValueError(f"MIG needs at least 2 codes. Received: {len(information)}")
    entropy = _entropies(factors)
    varying = entropy > 0
    top = np.sort(information, axis=0)[::-1]
    return float(np.mean((top[0] - top[1])[varying] / entropy[varying]))


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of distributions along `axis`, in units of log(their size)."""
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    return -(p * np.log(p)).sum(axis=axis) / np.log(p.shape[axis])


def dci(
    codes_train, factors_train, codes_test, factors_test, seed: int = 0, num_trees: int = 100
) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    One `sklearn.ensemble.GradientBoostingClassifier` per factor gives the importance
    of each code; with `num_trees=100` (its default) the setting of disentanglement_lib.
    Its cost grows with the number of classes: on dSprites (113 classes in all) and
    10,000 points it takes minutes on 2 cores, so a CPU budget may use fewer trees.

    Returns:
        `{"dci_disentanglement", "dci_completeness", "dci_informativeness"}`: the
        first two in [0, 1], the last the mean test accuracy.

    Example:

    >>> dci(codes[:10_000], factors[:10_000], codes[10_000:], factors[10_000:])
    """
    from sklearn.ensemble import GradientBoostingClassifier

    codes_train, factors_train = _check_pair(codes_train, factors_train)
    codes_test, factors_test = _check_pair(codes_test, factors_test)
    d, num_factors = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((d, num_factors))
    accuracy = []
    for k in range(num_factors):
        if len(np.unique(factors_train[:, k])) < 2:
            continue
        trees = GradientBoostingClassifier(n_estimators=num_trees, random_state=seed)
        trees.fit(codes_train, factors_train[:, k])
        importance[:, k] = np.abs(trees.feature_importances_)
        accuracy.append(np.mean(trees.predict(codes_test) == factors_test[:, k]))
    total = importance.sum() or 1.0
    per_code = 1.0 - _normalised_entropy(importance, axis=1) if num_factors > 1 else np.ones(d)
    per_factor = 1.0 - _normalised_entropy(importance, axis=0) if d > 1 else np.ones(num_factors)
    return {
        "dci_disentanglement": float(np.sum(per_code * importance.sum(1) / total)),
        "dci_completeness": float(np.sum(per_factor * importance.sum(0) / total)),
        "dci_informativeness": float(np.mean(accuracy)) if accuracy else 0.0,
    }


def sap(codes_train, factors_train, codes_test, factors_test) -> float:
    """The separated attribute predictability (Kumar et al. 2018), factors as discrete.

    S_jk is the test accuracy of `sklearn.svm.LinearSVC(C=0.01, class_weight="balanced")`
    predicting factor k from code j alone (disentanglement_lib's setting).

    Example:

    >>> sap(codes[:10_000], factors[:10_000], codes[10_000:], factors[10_000:])
    """
    from sklearn.svm import LinearSVC

    codes_train, factors_train = _check_pair(codes_train, factors_train)
    codes_test, factors_test = _check_pair(codes_test, factors_test)
    d, num_factors = codes_train.shape[1], factors_train.shape[1]
    if d < 2:
        raise ValueError(f"SAP needs at least 2 codes. Received: {d}")
    score = np.zeros((d, num_factors))
    for k in range(num_factors):
        if len(np.unique(factors_train[:, k])) < 2:
            continue
        for j in range(d):
            classifier = LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(codes_train[:, j : j + 1], factors_train[:, k])
            score[j, k] = np.mean(
                classifier.predict(codes_test[:, j : j + 1]) == factors_test[:, k]
            )
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def _codes_of(ground_truth, represent: Represent, factors: np.ndarray, chunk: int = 4096):
    """The codes of the images of `factors`, computed `chunk` images at a time."""
    out = [
        np.asarray(represent(ground_truth.images(factors[i : i + chunk])))
        for i in range(0, len(factors), chunk)
    ]
    codes = np.concatenate(out).astype(np.float64)
    if codes.ndim != 2 or not np.isfinite(codes).all():
        raise ValueError(
            "The representation must give finite (n, d) codes. "
            f"Received: shape {codes.shape}, finite: {bool(np.isfinite(codes).all())}"
        )
    return codes


def _fixed_factor_batches(ground_truth, rng, num_points: int, batch_size: int, pairs: bool):
    """Factors of `num_points` batches, each with one factor k held fixed: `(k, factors)`
    with factors `(num_points, batch, K)` (twice as many batches for pairs)."""
    held = rng.integers(ground_truth.num_factors, size=num_points)
    copies = 2 if pairs else 1
    factors = ground_truth.sample_factors(num_points * copies * batch_size, rng)
    factors = factors.reshape(num_points, copies, batch_size, -1)
    rows = np.arange(num_points)
    if pairs:  # both batches of a pair share factor k, example by example
        factors[rows, 1, :, held] = factors[rows, 0, :, held]
    else:  # every example of the batch shares the first one's factor k
        factors[rows, 0, :, held] = factors[rows, 0, :1, held]
    return held, factors


def beta_vae_score(
    ground_truth,
    represent: Represent,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
) -> float:
    """The BetaVAE score (Higgins et al. 2017): a logistic regression's eval accuracy.

    Args:
        ground_truth: the data with its factors (`tfvae.dsprites.DSprites`):
            `num_factors`, `sample_factors(n, rng)` and `images(factors)`.
        represent: maps a batch of images to codes `(n, d)` (the posterior means).
        seed: seed of the sampled factors and the classifier.
        batch_size, num_train, num_eval: the protocol's sizes.

    Returns:
        The accuracy, in [0, 1] (chance: 1 / K).

    Example:

    >>> beta_vae_score(sprites, lambda x: vae.central_latent(x).numpy())
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)

    def points(n):
        held, factors = _fixed_factor_batches(ground_truth, rng, n, batch_size, pairs=True)
        codes = _codes_of(ground_truth, represent, factors.reshape(-1, factors.shape[-1]))
        codes = codes.reshape(n, 2, batch_size, -1)
        return np.abs(codes[:, 0] - codes[:, 1]).mean(axis=1), held

    features, labels = points(num_train)
    model = LogisticRegression(random_state=seed, max_iter=1000).fit(features, labels)
    features, labels = points(num_eval)
    return float(model.score(features, labels))


def factor_vae_score(
    ground_truth,
    represent: Represent,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
) -> float:
    """The FactorVAE score (Kim & Mnih 2018): the majority-vote classifier's accuracy.

    Codes are divided by their standard deviation over `num_variance_estimate`
    points; codes whose standard deviation is below `prune_threshold` are left out
    (disentanglement_lib prunes on the standard deviation); 0 when none is left.

    Returns:
        The accuracy, in [0, 1] (chance: about 1 / K).

    Example:

    >>> factor_vae_score(sprites, lambda x: vae.central_latent(x).numpy())
    """
    rng = np.random.default_rng(seed)
    spread = _codes_of(
        ground_truth, represent, ground_truth.sample_factors(num_variance_estimate, rng)
    ).std(axis=0, ddof=1)
    active = spread >= prune_threshold
    if not active.any():
        return 0.0

    def votes(n):
        held, factors = _fixed_factor_batches(ground_truth, rng, n, batch_size, pairs=False)
        codes = _codes_of(ground_truth, represent, factors.reshape(-1, factors.shape[-1]))
        codes = codes.reshape(n, batch_size, -1)[:, :, active] / spread[active]
        quietest = np.argmin(codes.var(axis=1, ddof=1), axis=1)
        table = np.zeros((int(active.sum()), ground_truth.num_factors), np.int64)
        np.add.at(table, (quietest, held), 1)
        return table

    classifier = np.argmax(votes(num_train), axis=1)
    table = votes(num_eval)
    return float(table[np.arange(len(classifier)), classifier].sum() / table.sum())


def scores(
    ground_truth,
    represent: Represent,
    seed: int = 0,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    num_points: int = 10_000,
    num_eval_points: int = 5_000,
    batch_size: int = 64,
    num_trees: int = 100,
) -> dict[str, float]:
    """Every metric of `METRICS` for one representation, with the stated sample sizes.

    Args:
        ground_truth: as in `beta_vae_score`.
        represent: images -> codes.
        seed: seed of every draw.
        num_train, num_test: points of MIG (train only), DCI and SAP.
        num_points, num_eval_points: training and evaluation points of the BetaVAE and
            FactorVAE scores (and FactorVAE's variance estimate: `num_points`).
        batch_size: images per point of the BetaVAE and FactorVAE scores.
        num_trees: boosting stages of DCI's classifiers.

    Returns:
        `{metric: value}` for each of `METRICS`, plus `"sizes"` (the sizes used) and
        `"mutual_information"`: I(c_j; v_k) in nats on the MIG points, `(d, K)` as lists.

    Example:

    >>> scores(sprites, lambda x: vae.central_latent(x).numpy(), num_points=1000)
    """
    rng = np.random.default_rng(seed)
    factors_train = ground_truth.sample_factors(num_train, rng)
    factors_test = ground_truth.sample_factors(num_test, rng)
    codes_train = _codes_of(ground_truth, represent, factors_train)
    codes_test = _codes_of(ground_truth, represent, factors_test)
    information = mutual_information_matrix(codes_train, factors_train)
    sizes = dict(
        batch_size=batch_size,
        num_points=num_points,
        num_eval_points=num_eval_points,
        num_trees=num_trees,
    )
    return {
        "beta_vae_score": beta_vae_score(
            ground_truth, represent, seed, batch_size, num_points, num_eval_points
        ),
        "factor_vae_score": factor_vae_score(
            ground_truth, represent, seed, batch_size, num_points, num_eval_points, num_points
        ),
        "mig": _gap(information, factors_train),
        **dci(codes_train, factors_train, codes_test, factors_test, seed, num_trees),
        "sap": sap(codes_train, factors_train, codes_test, factors_test),
        "sizes": {"num_train": num_train, "num_test": num_test, **sizes},
        "mutual_information": information.round(4).tolist(),
    }
