"""TensorBoard's HParams dashboard and embedding projector, for runs of tfvae.

`write_hparams(log_dir, hparams, metrics)` records one run as an HParams session: its
settings as hyperparameters and its final measures (test ELBO, log p(x), FID) as
scalars of the same folder, so `tensorboard --logdir saved_models` compares every run
in one table (HParams tab; the plugin finds the metrics among the runs' scalars).
`write_metrics` adds measures later (`tfvae evaluate --sample-quality` adds the FID).

`write_projector(log_dir, embeddings, labels, images)` writes what the Projector tab
shows: the embeddings (for tfvae, the latent means of test images) in a checkpoint,
their labels as metadata, and the images as one sprite.

Example:

>>> write_hparams("run/logs", {"latent_dim": 20, "model": "vae"}, {"test_elbo": -95.2})
>>> write_projector("run/logs", latent_means, labels, x_test[:1000])
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae import plots

__all__ = ["write_hparams", "write_metrics", "write_projector", "METRIC_PREFIX", "PROJECTOR_DIR"]

#: The tag prefix of the final measures (`final/test_elbo`, ...).
METRIC_PREFIX = "final/"
#: The sub-folder of the log folder that holds the projector's files.
PROJECTOR_DIR = "projector"
#: The projector's limit on a sprite's side, in pixels.
_SPRITE_LIMIT = 8192


def _hparam_value(name: str, value):
    """A value the HParams plugin takes (bool, int, float or str), or None to skip."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    raise TypeError(
        f"Hyperparameter {name!r} must be a bool, number, string or list. "
        f"Received: {type(value).__name__}"
    )


def _write_scalars(metrics: dict[str, float | None]) -> None:
    for name, value in metrics.items():
        if value is not None and math.isfinite(float(value)):
            tf.summary.scalar(METRIC_PREFIX + name, float(value))


def write_metrics(log_dir, metrics: dict[str, float | None], step: int = 0) -> None:
    """Writes final measures as scalars `final/<name>` in `log_dir` (None values skipped).

    Args:
        log_dir: the run's log folder (the HParams session folder).
        metrics: name -> value.
        step: the step to record them at (e.g. the number of epochs).
    """
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default(step=step):
        _write_scalars(metrics)
    writer.close()


def write_hparams(
    log_dir, hparams: dict, metrics: dict[str, float | None], step: int = 0, trial_id=None
) -> None:
    """Records a run as an HParams session: its settings, and its final measures.

    Args:
        log_dir: the run's log folder.
        hparams: setting -> value (None values are left out; lists become strings).
        metrics: final measures (see `write_metrics`).
        step: the step of the measures.
        trial_id: the session's name in the dashboard (default: the folder above
            `log_dir`, i.e. the run folder's name).

    Raises:
        TypeError: for a setting of another type.
    """
    from tensorboard.plugins.hparams import api as hp

    values = {}
    for name, value in hparams.items():
        converted = _hparam_value(name, value)
        if converted is not None:
            values[name] = converted
    log_dir = Path(log_dir)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default(step=step):
        hp.hparams(values, trial_id=trial_id or log_dir.resolve().parent.name)
        _write_scalars(metrics)
    writer.close()


def _sprite(images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The images on one square grid, uint8 `(H, W, C)`, and the size of one image."""
    pictures = plots.as_images(images)  # (n, h, w, c), c = 1 or 3
    n, h, w, c = pictures.shape
    side = math.ceil(math.sqrt(n))
    grid = np.ones((side * h, side * w, c), np.float32)
    for i, picture in enumerate(pictures):
        row, column = divmod(i, side)
        grid[row * h : (row + 1) * h, column * w : (column + 1) * w] = picture
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8), (w, h)


def write_projector(log_dir, embeddings, labels=None, images=None) -> Path:
    """Writes embeddings, their labels and a sprite of their images for the Projector tab.

    Args:
        log_dir: the run's log folder; the files go to `log_dir/projector`.
        embeddings: `(n, d)` floats, one row per example.
        labels: one label per example, or None.
        images: the examples as images `(n, h, w[, c])` in [0, 1], or None.

    Returns:
        The projector folder.

    Raises:
        ValueError: for embeddings that are not `(n, d)` and finite, or labels or images
            of another length, or a sprite larger than the projector allows.
    """
    from tensorboard.plugins import projector

    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) == 0 or not np.isfinite(embeddings).all():
        raise ValueError(
            "`embeddings` must be finite, of shape (n, d) with n >= 1. "
            f"Received: shape={embeddings.shape}"
        )
    n = len(embeddings)
    for name, values in (("labels", labels), ("images", images)):
        if values is not None and len(values) != n:
            raise ValueError(
                f"`{name}` must have one entry per embedding ({n}). Received: {len(values)}"
            )
    folder = Path(log_dir) / PROJECTOR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(embeddings, name="latent_means"))
    checkpoint.save(str(folder / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    if labels is not None:
        (folder / "metadata.tsv").write_text("".join(f"{label}\n" for label in labels))
        embedding.metadata_path = "metadata.tsv"
    if images is not None:
        sprite, (w, h) = _sprite(np.asarray(images, np.float32))
        if max(sprite.shape[:2]) > _SPRITE_LIMIT:
            raise ValueError(
                f"A sprite of {n} images of {h}x{w} would be {sprite.shape[1]}x"
                f"{sprite.shape[0]} pixels; the projector takes at most {_SPRITE_LIMIT}. "
                "Pass fewer images."
            )
        tf.io.write_file(str(folder / "sprite.png"), tf.io.encode_png(sprite))
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([w, h])
    projector.visualize_embeddings(str(folder), config)
    return folder
