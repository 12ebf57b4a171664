"""Keras callbacks that show in TensorBoard what a VAE is learning.

`TensorBoardImages` writes grids of reconstructions and prior samples every N epochs.
`LatentDiagnostics` writes a histogram of the KL of each latent dimension, the number of
active units and the current beta as scalars. It warns of posterior collapse, once, when
the active units fall to zero, or when training ends with none.

Both write to their own sub-folders of the log folder (`images/` and `latent/`), next to
the `train/` and `validation/` folders of `keras.callbacks.TensorBoard`, so
`tensorboard --logdir LOG_DIR` shows all of them together.

The callbacks that stop training on a fault (a non-finite loss, a signal) are in
`tfvae.faults`.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae import evaluation, plots
from tfvae.arguments import check_integer

__all__ = [
    "TensorBoardImages",
    "LatentDiagnostics",
    "PosteriorCollapseWarning",
]


class PosteriorCollapseWarning(UserWarning):
    """No latent dimension carries information about the input."""


def _check_every(every) -> int:
    return check_integer("every", every)


class _SummaryCallback(keras.callbacks.Callback):
    """Writes summaries every `every` epochs to its own folder, opened on first use."""

    def __init__(self, log_dir, every: int):
        super().__init__()
        self.every = _check_every(every)
        self.log_dir = Path(log_dir)
        self._writer = None

    def _due(self, epoch) -> bool:
        return (epoch + 1) % self.every == 0

    @contextlib.contextmanager
    def _summaries(self, epoch):
        """Writes what the block logs at `epoch`, flushed so TensorBoard shows it at once."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default(step=epoch):
            yield
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoardImages(_SummaryCallback):
    """Writes reconstructions of `x` and prior samples as TensorBoard images.

    Args:
        log_dir: the TensorBoard log folder; images go to `log_dir/images`.
        x: a few examples to reconstruct (such as 16 validation images).
        labels: their labels, for a conditional model (whose samples then cycle
            through the classes).
        every: write every this many epochs (and after the last one).
        num_samples: prior samples per grid.
        seed: seed of the prior samples, fixed so the grids are comparable over epochs.

    Raises:
        ValueError: when training starts, for a conditional model without `labels`.

    Example:

    >>> vae.fit(train, epochs=20, callbacks=[TensorBoardImages("logs", x_test[:16])])
    """

    def __init__(
        self, log_dir, x, labels=None, every: int = 1, num_samples: int = 16, seed: int = 0
    ):
        super().__init__(Path(log_dir) / "images", every)
        self.x = np.asarray(x, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self.num_samples, self.seed = num_samples, seed

    def _grid(self, images):
        return plots.image_grid(plots.as_images(images, self.model.data_shape), scale=2)[np.newaxis]

    def on_train_begin(self, logs=None):
        if self.model.is_conditional and self.labels is None:
            raise ValueError(
                "TensorBoardImages needs labels= (the labels of x) for a conditional model."
            )

    def on_epoch_end(self, epoch, logs=None):
        vae = self.model
        if not self._due(epoch):
            return
        labels = self.labels if vae.is_conditional else None
        classes = np.arange(self.num_samples) % vae.num_classes if vae.is_conditional else None
        pairs = np.concatenate([self.x, np.asarray(vae.reconstruct(self.x, labels=labels))])
        samples = np.asarray(vae.sample(self.num_samples, labels=classes, seed=self.seed))
        with self._summaries(epoch):
            tf.summary.image("reconstructions", self._grid(pairs))
            tf.summary.image("samples", self._grid(samples))


class LatentDiagnostics(_SummaryCallback):
    """Writes the KL per latent dimension, the active units and beta; warns of collapse.

    Active units follow Burda et al. (2016): dimensions whose posterior mean varies over
    `x` by more than `threshold`. Needs a diagonal Gaussian posterior and prior (the
    plain VAE, beta-VAE, free bits, IWAE); for other models it writes beta only. The
    values are also added to the epoch logs (`active_units`), so History records them.

    Args:
        log_dir: the TensorBoard log folder; summaries go to `log_dir/latent`.
        x: examples to measure on (a few hundred validation images are plenty).
        labels: their labels, for a conditional model.
        every: measure every this many epochs.
        threshold: the variance above which a dimension counts as active.
        run_epochs: when one run is trained by several `fit` calls (as `tfvae train`
            does, one per epoch), its number of epochs: the warning that training
            ended with no active unit then waits for the run's last epoch, and a
            fall to zero is tracked across the calls.

    Example:

    >>> vae.fit(train, epochs=20, callbacks=[LatentDiagnostics("logs", x_test[:500])])
    """

    def __init__(
        self,
        log_dir,
        x,
        labels=None,
        every: int = 1,
        threshold: float = 0.01,
        run_epochs: int | None = None,
    ):
        super().__init__(Path(log_dir) / "latent", every)
        self.x = np.asarray(x, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self.threshold = threshold
        self.run_epochs = None if run_epochs is None else check_integer("run_epochs", run_epochs)
        self._most_active, self._warned, self._last = 0, False, None

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        vae = self.model
        beta = float(keras.ops.convert_to_numpy(vae.beta))
        try:
            labels = self.labels if vae.is_conditional else None
            count, _ = evaluation.active_units(vae, self.x, self.threshold, labels=labels)
            kl = evaluation.kl_per_dimension(vae, self.x, labels=labels)
        except ValueError:
            count = kl = None
        with self._summaries(epoch):
            tf.summary.scalar("beta", beta)
            if count is not None:
                tf.summary.scalar("active_units", count)
                tf.summary.histogram("kl_per_dimension", kl)
        if count is None:
            return
        if logs is not None:
            logs["active_units"] = count
        fell = count == 0 and self._most_active > 0
        self._most_active = max(self._most_active, count)
        self._last = (epoch, count, float(kl.sum()))
        if fell and not self._warned:
            self._warn(
                f"the active units fell to 0 of {vae.latent_dim} at epoch {epoch + 1}", kl.sum()
            )

    def _warn(self, what: str, total_kl: float) -> None:
        self._warned = True
        warnings.warn(
            f"Posterior collapse: {what} (total KL {total_kl:.3f} nats). The decoder ignores z; "
            "try KL annealing (tfvae.schedules), free bits, or a smaller beta.",
            PosteriorCollapseWarning,
            stacklevel=2,
        )

    def on_train_begin(self, logs=None):
        if self.run_epochs is None:  # each fit is a run of its own
            self._most_active, self._warned, self._last = 0, False, None

    def on_train_end(self, logs=None):
        this_fit_epochs = (self.params or {}).get("epochs", 0)
        run_over = self.run_epochs is None or this_fit_epochs >= self.run_epochs
        if run_over and self._last is not None and self._last[1] == 0 and not self._warned:
            epoch, _, total_kl = self._last
            self._warn(
                f"0 of {self.model.latent_dim} latent dimensions are active after epoch "
                f"{epoch + 1}",
                total_kl,
            )
        super().on_train_end(logs)
