"""PNG pictures of what a VAE does: grids of prior samples and of reconstructions.

Images are tiled into one mosaic and written with matplotlib (Agg), each pixel
enlarged to a square of `scale` x `scale` pixels so small images stay legible.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["as_images", "image_grid", "save_image_grid", "plot_samples", "plot_reconstructions"]


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


def plot_samples(vae, path, n: int = 64, seed: int | None = None, labels=None) -> Path:
    """Writes a grid of `n` prior samples (means of p(x|z), z ~ p(z)) to `path`.

    For a conditional VAE, `labels` picks the classes (default: 0, 1, 2, ... in turn,
    so each column of the grid is one class when the grid is 10 wide).

    Example:

    >>> tfvae.plots.plot_samples(vae, "samples.png", n=64, seed=0)
    """
    num_classes = getattr(vae, "num_classes", None)
    if num_classes:
        labels = np.arange(n) % num_classes if labels is None else labels
        samples = np.asarray(vae.sample(n, labels=labels, seed=seed))
        return save_image_grid(as_images(samples, vae.data_shape), path, columns=num_classes)
    samples = np.asarray(vae.sample(n, seed=seed))
    return save_image_grid(as_images(samples, vae.data_shape), path)


def plot_reconstructions(vae, x, path, n: int = 32, labels=None) -> Path:
    """Writes input/reconstruction pairs (inputs on odd rows, reconstructions below).

    `labels` are needed for a conditional VAE.

    Example:

    >>> tfvae.plots.plot_reconstructions(vae, x_test[:32], "reconstructions.png")
    """
    x = np.asarray(x, dtype=np.float32)[:n]
    if getattr(vae, "num_classes", None):
        reconstructions = np.asarray(vae.reconstruct(x, labels=np.asarray(labels)[:n]))
    else:
        reconstructions = np.asarray(vae.reconstruct(x))
    columns = min(len(x), 8)
    rows = []
    for start in range(0, len(x), columns):
        rows += [x[start : start + columns], reconstructions[start : start + columns]]
    pairs = np.concatenate(rows)
    return save_image_grid(as_images(pairs, vae.data_shape), path, columns=columns)
