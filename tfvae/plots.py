"""PNG pictures of what a VAE does.

Image mosaics (prior samples, reconstructions, interpolations, latent traversals, the 2-D
manifold, a conditional model's analogies) are tiled and written with matplotlib (Agg),
each pixel enlarged to a square of `scale` x `scale` pixels so small images stay
legible. Charts (the latent map and the training curves) are matplotlib figures of a
fixed size, `figsize` x 100 pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfvae import choices

__all__ = [
    "as_images",
    "image_grid",
    "save_image_grid",
    "plot_samples",
    "plot_reconstructions",
    "plot_interpolation",
    "plot_traversal",
    "plot_latent_map",
    "plot_manifold",
    "plot_analogies",
    "plot_curves",
    "plot",
    "PLOTS",
]

#: Picture names of `plot` and `tfvae plot --what`.
PLOTS = choices.PLOTS


def as_images(x, data_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns a batch as images of shape `(n, H, W, C)`, C being 1 or 3.

    Flat examples whose size is a perfect square are shown as square grey images.

    Raises:
        ValueError: if the examples cannot be shown as images.
    """
    x = np.asarray(x, dtype=np.float32)
    shape = tuple(data_shape) if data_shape is not None else x.shape[1:]
    x = x.reshape((-1,) + shape)
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        x = x.reshape(-1, side, side, 1)
    elif len(shape) == 2:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            "Only grey or RGB images (or flat square ones) can be plotted. "
            f"Received: examples of shape {shape}"
        )
    return x


def image_grid(images, columns: int | None = None, scale: int = 1, padding: int = 1) -> np.ndarray:
    """Tiles `(n, H, W, C)` images in [0, 1] into one `(rows*H', columns*W', C)` mosaic.

    Args:
        images: the images (values are clipped to [0, 1]).
        columns: images per row; default the ceiling of sqrt(n).
        scale: each pixel becomes a `scale` x `scale` square.
        padding: pixels of white between images (before scaling).

    Returns:
        A float32 array in [0, 1].
    """
    images = np.clip(as_images(images), 0.0, 1.0)
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    cell_h, cell_w = height + padding, width + padding
    grid = np.ones((rows * cell_h + padding, columns * cell_w + padding, channels), np.float32)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * cell_h, padding + (i % columns) * cell_w
        grid[top : top + height, left : left + width] = image
    return np.kron(grid, np.ones((scale, scale, 1), np.float32))


def save_image_grid(images, path, columns: int | None = None, scale: int | None = None) -> Path:
    """Writes `image_grid(images)` to the PNG file `path` and returns the path.

    Args:
        images: `(n, H, W, C)` images in [0, 1] (or flat square ones).
        path: the PNG file to write; its folder is created.
        columns: images per row.
        scale: pixel enlargement; default makes each image about 64 pixels high.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    images = as_images(images)
    scale = scale or max(1, 64 // images.shape[1])
    grid = image_grid(images, columns=columns, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.shape[-1] == 1:
        matplotlib.image.imsave(path, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        matplotlib.image.imsave(path, grid)
    return path


def _labels_for(vae, labels, n: int):
    """The labels of n examples for a conditional model (a scalar label is repeated)."""
    if not vae.is_conditional:
        return vae._label_batch(labels, n)  # refuses labels
    if labels is None:
        raise ValueError(
            f"{type(vae).__name__} is conditional: this plot needs `labels`, the class "
            "of the examples."
        )
    labels = np.asarray(labels)
    return np.full((n,), labels) if labels.ndim == 0 else labels[:n]


def plot_samples(vae, path, n: int = 64, seed: int | None = None, labels=None) -> Path:
    """Writes a grid of `n` prior samples (means of p(x|z), z ~ p(z)) to `path`.

    For a conditional VAE, `labels` picks the classes (default: 0, 1, 2, ... in turn,
    so each column of the grid is one class when the grid is 10 wide).

    Example:

    >>> tfvae.plots.plot_samples(vae, "samples.png", n=64, seed=0)
    """
    columns = None
    if vae.is_conditional:
        labels = np.arange(n) % vae.num_classes if labels is None else _labels_for(vae, labels, n)
        columns = vae.num_classes
    samples = np.asarray(vae.sample(n, labels=labels, seed=seed))
    return save_image_grid(as_images(samples, vae.data_shape), path, columns=columns)


def plot_reconstructions(vae, x, path, n: int = 32, labels=None) -> Path:
    """Writes input/reconstruction pairs (inputs on odd rows, reconstructions below).

    `labels` (one per example) are needed for a conditional VAE (and ignored otherwise,
    so a split's labels can always be passed).

    Example:

    >>> tfvae.plots.plot_reconstructions(vae, x_test[:32], "reconstructions.png")
    """
    x = np.asarray(x, dtype=np.float32)[:n]
    labels = _labels_for(vae, labels, len(x)) if vae.is_conditional else None
    reconstructions = np.asarray(vae.reconstruct(x, labels=labels))
    columns = min(len(x), 8)
    rows = []
    for start in range(0, len(x), columns):
        rows += [x[start : start + columns], reconstructions[start : start + columns]]
    pairs = np.concatenate(rows)
    return save_image_grid(as_images(pairs, vae.data_shape), path, columns=columns)


def _central_latents(vae, x, labels=None) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.asarray(vae.central_latent(x, labels=labels))


def _decode_means(vae, z, labels=None) -> np.ndarray:
    return np.asarray(vae.decode(np.asarray(z, np.float32), labels=labels).mean())


def plot_interpolation(vae, x_start, x_end, path, steps: int = 10, label=None) -> Path:
    """Decodes `steps` points on the line between the central latents of two inputs.

    The first and last columns are the two inputs themselves. A conditional VAE needs
    the `label` both inputs are encoded and decoded with (pick two of one class).

    Example:

    >>> tfvae.plots.plot_interpolation(vae, x_test[0], x_test[1], "interpolation.png")
    """
    ends = np.stack([np.asarray(x_start, np.float32), np.asarray(x_end, np.float32)])
    z_start, z_end = _central_latents(vae, ends, _labels_for(vae, label, 2))
    weights = np.linspace(0.0, 1.0, steps).reshape((-1,) + (1,) * z_start.ndim)
    path_z = (1 - weights) * z_start + weights * z_end
    decoded = _decode_means(vae, path_z, _labels_for(vae, label, steps))
    row = np.concatenate([ends[:1], decoded, ends[1:]])
    return save_image_grid(as_images(row, vae.data_shape), path, columns=len(row))


def _refuse_discrete(vae, what: str) -> None:
    if vae.latent_is_discrete:
        raise ValueError(
            f"The {what} sweeps continuous latent dimensions; {type(vae).__name__}'s latent is "
            "a grid of discrete codes (draw samples, reconstructions, an interpolation or "
            "the latent map instead)."
        )


def plot_traversal(vae, x, path, dims=None, span: float = 3.0, steps: int = 9, label=None) -> Path:
    """One row per latent dimension: that dimension swept over [-span, span], others fixed.

    The sweep starts from the central latent of `x` (one example); a conditional VAE
    needs the `label` it is encoded and decoded with.

    Raises:
        ValueError: for a discrete latent (VQ-VAE), where there is nothing to sweep.

    Example:

    >>> tfvae.plots.plot_traversal(vae, x_test[0], "traversal.png", dims=range(10))
    """
    _refuse_discrete(vae, "traversal")
    z = _central_latents(vae, np.asarray(x, np.float32)[np.newaxis], _labels_for(vae, label, 1))[0]
    dims = list(range(vae.latent_dim) if dims is None else dims)
    values = np.linspace(-span, span, steps)
    rows = np.repeat(z[np.newaxis], len(dims) * steps, axis=0)
    for i, dim in enumerate(dims):
        rows[i * steps : (i + 1) * steps, dim] = values
    decoded = _decode_means(vae, rows, _labels_for(vae, label, len(rows)))
    return save_image_grid(as_images(decoded, vae.data_shape), path, columns=steps)


def plot_manifold(vae, path, n: int = 15, span: float = 0.95, label=None) -> Path:
    """For a 2-D latent: decodes an n x n grid of z at normal quantiles (Kingma & Welling).

    Raises:
        ValueError: if the latent is not a continuous 2-D vector.
    """
    _refuse_discrete(vae, "manifold plot")
    if vae.latent_shape != (2,):
        raise ValueError(
            f"The manifold plot needs a 2-D latent. Received: latent_dim="
            f"{vae.latent_dim} (use plot_latent_map or plot_traversal)."
        )
    import tensorflow_probability as tfp

    grid = tfp.distributions.Normal(0.0, 1.0).quantile(np.linspace(1 - span, span, n)).numpy()
    z = np.array([[a, b] for b in grid[::-1] for a in grid])
    decoded = _decode_means(vae, z, _labels_for(vae, label, len(z)))
    return save_image_grid(as_images(decoded, vae.data_shape), path, columns=n)


def plot_analogies(vae, x, path, labels=None, n: int = 8) -> Path:
    """Writes "analogies": each row keeps the style z of one input and varies the class.

    Row i is `x[i]`, then the decoder means of p(x | z_i, y) for y = 0 ... K-1, where
    z_i is the central latent of q(z | x_i, y_i) (Kingma et al. 2014, Figure 1). The
    label y_i is given, or, for a model that classifies, its own prediction.

    Args:
        vae: a conditional model (`ConditionalVAE` or `SemiSupervisedVAE`).
        x: examples, at least one; the first `n` are used.
        path: the PNG to write.
        labels: the examples' classes (optional for a model that classifies).
        n: rows.

    Raises:
        ValueError: for a model that takes no labels, or labels missing.

    Example:

    >>> tfvae.plots.plot_analogies(m2, x_test[:8], "analogies.png")
    """
    if not vae.is_conditional:
        raise ValueError(
            f"Analogies vary the label of a conditional model; {type(vae).__name__} takes "
            "no labels."
        )
    x = np.asarray(x, np.float32)[:n]
    if labels is None and vae.classifies:
        labels = vae.classify(x)
    labels = _labels_for(vae, labels, len(x))
    z = _central_latents(vae, x, labels)
    classes = np.arange(vae.num_classes)
    rows = []
    for image, code in zip(x, z):
        decoded = _decode_means(vae, np.repeat(code[None], len(classes), 0), classes)
        rows += [image[None], decoded]
    images = as_images(np.concatenate(rows), vae.data_shape)
    return save_image_grid(images, path, columns=vae.num_classes + 1)


def _figure(figsize):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=figsize, dpi=100)


def _save_figure(plt, figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_latent_map(vae, x, labels, path, figsize=(6, 6)) -> Path:
    """Scatters the central latents of `x` in 2-D, coloured by label.

    Latents of more than 2 dimensions (flattened, for a VQ-VAE's grid of code vectors)
    are projected on their first two principal components. A conditional VAE encodes
    each example with its own label. The image is `figsize` x 100 pixels.

    Example:

    >>> tfvae.plots.plot_latent_map(vae, x_test, y_test, "latent_map.png")
    """
    condition = np.asarray(labels) if vae.is_conditional else None
    means = _central_latents(vae, x, condition).astype(np.float64)
    means = means.reshape(len(means), -1)
    if means.shape[1] > 2:
        centred = means - means.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        means, axes = centred @ components[:2].T, ("PC 1", "PC 2")
    elif means.shape[1] == 2:
        axes = ("z 1", "z 2")
    else:
        means, axes = np.concatenate([means, np.zeros_like(means)], axis=1), ("z 1", "")
    plt, figure = _figure(figsize)
    ax = figure.add_subplot(1, 1, 1)
    points = ax.scatter(means[:, 0], means[:, 1], c=np.asarray(labels), cmap="tab10", s=6)
    figure.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("Central latents")
    return _save_figure(plt, figure, path)


def plot_curves(history: dict, path, figsize=(8, 6)) -> Path:
    """Plots loss, ELBO, rate and distortion per epoch, training and validation.

    Args:
        history: `History.history` or the run's `history.json`.
        path: the PNG to write (`figsize` x 100 pixels).

    Raises:
        ValueError: if the history has none of those terms.
    """
    names = [n for n in ("loss", "elbo", "rate", "distortion") if n in history]
    if not names:
        raise ValueError(f"The history has no loss, elbo, rate or distortion: {sorted(history)}")
    plt, figure = _figure(figsize)
    for i, name in enumerate(names):
        ax = figure.add_subplot(2, 2, i + 1)
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set_title(f"{name} (nats)")
        ax.set_xlabel("epoch")
        ax.legend()
    figure.tight_layout()
    return _save_figure(plt, figure, path)


def _one_class(x, labels, label, count: int):
    """`count` examples of class `label` (default: the first example's class)."""
    label = int(labels[0]) if label is None else label
    chosen = x[labels == label][:count]
    if len(chosen) < count:
        raise ValueError(
            f"Needs {count} examples of class {label} in the first {len(x)} of the split; "
            f"found {len(chosen)}."
        )
    return chosen, label


def plot_kl_traversal(vae, x, path, span: float = 3.0, steps: int = 9, dims: int = 10) -> Path:
    """Latent traversals of the `dims` dimensions of highest KL, each row labelled with
    its KL (nats, averaged over `x`): which dimensions carry information, and what.

    Each row sweeps one dimension over [-span, span] from the central latent of
    `x[0]`, the others held fixed.

    Raises:
        ValueError: for a model whose KL does not split over dimensions (a flow, a
            hierarchy, a mixture prior), or discrete codes.

    Example:

    >>> tfvae.plots.plot_kl_traversal(vae, x_test[:500], "kl_traversal.png")
    """
    from tfvae import evaluation

    _refuse_discrete(vae, "KL traversal")
    if vae.is_conditional:
        raise ValueError(
            "The KL traversal is drawn for unconditional models; "
            f"{type(vae).__name__} takes labels."
        )
    x = np.asarray(x, np.float32)
    kl = evaluation.kl_per_dimension(vae, x)
    order = np.argsort(-kl)[: min(dims, vae.latent_dim)]
    z = _central_latents(vae, x[:1])[0]
    rows = np.repeat(z[np.newaxis], len(order) * steps, axis=0)
    for i, dim in enumerate(order):
        rows[i * steps : (i + 1) * steps, dim] = np.linspace(-span, span, steps)
    images = as_images(_decode_means(vae, rows), vae.data_shape)
    plt, figure = _figure((steps * 0.9 + 1.2, len(order) * 0.9 + 0.4))
    axes = figure.subplots(len(order), steps, squeeze=False)
    for i, dim in enumerate(order):
        for j in range(steps):
            axis = axes[i, j]
            axis.imshow(images[i * steps + j].squeeze(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[i, 0].set_ylabel(f"z{dim}\n{kl[dim]:.2f}", rotation=0, ha="right", va="center")
    figure.suptitle(f"traversals over [-{span:g}, {span:g}], KL per dimension in nats")
    figure.subplots_adjust(left=0.14, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.05)
    return _save_figure(plt, figure, path)


def plot_factor_information(vae, path, ground_truth=None, num_points: int = 2000, seed=0) -> Path:
    """The mutual information (nats) between each latent and each ground-truth factor, as a
    heat map: a disentangled model has one bright cell per factor column.

    Args:
        vae: a model of the ground truth's images (trained on dSprites).
        path: the PNG to write.
        ground_truth: the factors and images (default: dSprites).
        num_points: images drawn for the estimate.
        seed: seed of the draw.

    Raises:
        ValueError: for a model of other data, a conditional model or discrete codes.

    Example:

    >>> tfvae.plots.plot_factor_information(vae, "factor_information.png")
    """
    from tfvae import data, disentanglement, evaluation

    ground_truth = ground_truth if ground_truth is not None else data.ground_truth()
    evaluation.check_disentanglement_model(vae, ground_truth)
    factors = ground_truth.sample_factors(num_points, np.random.default_rng(seed))
    codes = evaluation.representation(vae)(ground_truth.images(factors))
    information = disentanglement.mutual_information_matrix(codes, factors)
    plt, figure = _figure((6, 1.2 + 0.35 * len(information)))
    axis = figure.add_subplot()
    shown = axis.imshow(information, cmap="viridis", aspect="auto", vmin=0)
    axis.set_xticks(range(len(ground_truth.factor_names)), ground_truth.factor_names)
    axis.set_yticks(range(len(information)), [f"z{j}" for j in range(len(information))])
    for (j, k), value in np.ndenumerate(information):
        axis.text(k, j, f"{value:.2f}", ha="center", va="center", color="w", fontsize=7)
    figure.colorbar(shown, label="I(z_j; factor), nats")
    axis.set_title("mutual information between latents and factors")
    figure.tight_layout()
    return _save_figure(plt, figure, path)


def plot(what: str, vae, path, x=None, labels=None, label: int | None = None) -> Path:
    """Draws the picture called `what` of any model (what `tfvae plot --what` draws).

    Args:
        what: one of `PLOTS` but `"curves"` (see `plot_curves`).
        vae: a trained `tfvae.VAE`.
        path: the PNG to write.
        x, labels: examples and their labels, for the pictures of data
            (`"reconstructions"`, `"interpolation"`, `"traversal"`, `"latent_map"`,
            `"analogies"`);
            the interpolation runs from the first example to the first of another class.
        label: a conditional model's class held fixed (`"samples"`, `"interpolation"`,
            `"traversal"`, `"manifold"`); by default every class in turn for samples,
            the first example's class otherwise. The manifold needs it.

    Returns:
        `path`.

    Raises:
        ValueError: for an unknown picture, a label given to an unconditional model or
            out of range, or data missing.
    """
    if what not in PLOTS or what == "curves":
        raise ValueError(f"`what` must be one of {PLOTS[:-1]}. Received: what={what!r}")
    if label is not None and not vae.is_conditional:
        raise ValueError(f"`label` applies to conditional models; {type(vae).__name__} is not one.")
    if label is not None and not 0 <= label < vae.num_classes:
        raise ValueError(f"`label` must lie in [0, {vae.num_classes}). Received: label={label}")
    if what == "samples":
        return plot_samples(vae, path, n=64, seed=0, labels=label)
    if what == "factor_information":
        return plot_factor_information(vae, path)
    if what == "manifold":
        if vae.is_conditional and label is None:
            raise ValueError("The manifold of a conditional model needs a `label`.")
        return plot_manifold(vae, path, label=label)
    if x is None or labels is None:
        raise ValueError(f"The {what} picture needs examples `x` and their `labels`.")
    x, labels = np.asarray(x), np.asarray(labels)
    if what == "reconstructions":
        return plot_reconstructions(vae, x, path, labels=labels)
    if what == "latent_map":
        return plot_latent_map(vae, x, labels, path)
    if what == "analogies":
        return plot_analogies(vae, x, path, labels=labels)
    if what == "kl_traversal":
        return plot_kl_traversal(vae, x, path)
    dims = range(min(vae.latent_dim, 10))
    if vae.is_conditional:  # one class throughout, the label held fixed
        ends, label = _one_class(x, labels, label, 2)
        if what == "interpolation":
            return plot_interpolation(vae, ends[0], ends[1], path, label=label)
        return plot_traversal(vae, ends[0], path, dims=dims, label=label)
    if what == "interpolation":
        different = int(np.argmax(labels != labels[0])) if len(x) > 1 else 0
        return plot_interpolation(vae, x[0], x[different], path)
    return plot_traversal(vae, x[0], path, dims=dims)
