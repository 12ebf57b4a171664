"""Keras callbacks: what a VAE is learning, in TensorBoard, and a stop on non-finite losses.

`TensorBoardImages` writes grids of reconstructions and prior samples every N epochs.
`LatentDiagnostics` writes a histogram of the KL of each latent dimension, the number of
active units and the current beta as scalars. It warns of posterior collapse, once, when
the active units fall to zero, or when training ends with none.

Both write to their own sub-folders of the log folder (`images/` and `latent/`), next to
the `train/` and `validation/` folders of `keras.callbacks.TensorBoard`, so
`tensorboard --logdir LOG_DIR` shows all of them together.

`StopOnNonFinite` (which `VAE.fit` always adds) stops training with a
`NonFiniteLossError` that names the term that went NaN or infinite, the epoch and the
steps, instead of training on with NaN weights.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae import evaluation, plots, training

__all__ = [
    "TensorBoardImages",
    "LatentDiagnostics",
    "PosteriorCollapseWarning",
    "StopOnNonFinite",
    "NonFiniteLossError",
    "StopOnSignal",
]


class NonFiniteLossError(FloatingPointError):
    """A term of the training loss went NaN or infinite; training was stopped.

    Attributes:
        epoch: the epoch (0-based, as Keras counts) in which it happened.
        first_step, last_step: the range of optimizer steps (1-based) run in the
            execution where it was seen (one step when `steps_per_execution=1`).
        terms: the names of the non-finite terms (such as `["rate"]`).
    """

    def __init__(self, message: str, epoch: int, first_step: int, last_step: int, terms):
        super().__init__(message)
        self.epoch, self.first_step, self.last_step = epoch, first_step, last_step
        self.terms = list(terms)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training with a `NonFiniteLossError` as soon as a loss term is NaN or Inf.

    The logs of a batch hold each term's running mean over the epoch, so one
    non-finite step makes its term non-finite until the epoch ends; it is seen at the
    end of the execution that ran it (every `steps_per_execution` steps). The
    message names the term(s) (distortion, rate, ...), the epoch and the steps.
    Nothing already saved is touched.

    Example:

    >>> vae.fit(x, epochs=10)  # VAE.fit adds StopOnNonFinite itself
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_step = training.steps_taken(self.model)

    def on_train_batch_end(self, batch, logs=None):
        first_step = self._last_step + 1
        self._last_step = training.steps_taken(self.model)
        names = [name for name in getattr(self.model, "term_names", ()) if name != "elbo"]
        bad = [
            name
            for name in names or list(logs or {})
            if name in (logs or {}) and not np.isfinite(float(logs[name]))
        ]
        if not bad:
            return
        self.model.stop_training = True
        terms = [name for name in bad if name != "loss"] or bad
        steps = (
            f"step {self._last_step}"
            if first_step >= self._last_step
            else f"steps {first_step} to {self._last_step} (one execution; compile with "
            "steps_per_execution=1 to find the exact step)"
        )
        values = ", ".join(f"{name}={float(logs[name])}" for name in bad)
        raise NonFiniteLossError(
            f"Training stopped: the {' and '.join(terms)} went non-finite ({values}) in "
            f"epoch {self._epoch + 1}, {steps}. Check the data for NaN/Inf and lower the "
            "learning rate; files saved before this point are kept.",
            self._epoch,
            first_step,
            self._last_step,
            terms,
        )


class PosteriorCollapseWarning(UserWarning):
    """No latent dimension carries information about the input."""


def _check_every(every) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"`every` must be a positive integer (epochs). Received: {every!r}")
    return every


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

    Example:

    >>> vae.fit(train, epochs=20, callbacks=[LatentDiagnostics("logs", x_test[:500])])
    """

    def __init__(self, log_dir, x, labels=None, every: int = 1, threshold: float = 0.01):
        super().__init__(Path(log_dir) / "latent", every)
        self.x = np.asarray(x, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self.threshold = threshold
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
        self._most_active, self._warned, self._last = 0, False, None

    def on_train_end(self, logs=None):
        if self._last is not None and self._last[1] == 0 and not self._warned:
            epoch, _, total_kl = self._last
            self._warn(
                f"0 of {self.model.latent_dim} latent dimensions are active after epoch "
                f"{epoch + 1}",
                total_kl,
            )
        super().on_train_end(logs)


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGTERM and SIGINT into a clean stop at the end of the running execution.

    Used as a context manager around training, it installs handlers that only
    record the signal; at the next batch end the callback sets
    `model.stop_training`, so the running step (execution) finishes, and the
    caller writes a checkpoint. `tfvae train` then exits with status 75.

    Under `MultiWorkerMirroredStrategy` the workers agree at every batch end (a sum
    over workers), so a signal to any one of them stops all of them after the same
    step; `received` is then set on all of them, and `signal_name` says whose.

    Example:

    >>> stop = StopOnSignal()
    >>> with stop:
    ...     vae.fit(x, epochs=10, callbacks=[stop])
    >>> if stop.received is not None:
    ...     ...  # write a checkpoint
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        super().__init__()
        self.signals = tuple(signals)
        self.received: int | None = None
        self.from_other_worker = False
        self._previous: dict = {}

    @property
    def signal_name(self) -> str | None:
        if self.received is None:
            return None
        name = signal.Signals(self.received).name
        return f"{name} to another worker" if self.from_other_worker else name

    def _record(self, signum, frame) -> None:
        self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def synchronize(self, model=None) -> None:
        """Under `MultiWorkerMirroredStrategy`, sets `received` on every worker when any
        worker received a signal. It is a collective: every worker must call it at
        the same point (the callback does at each batch end; `tfvae train` also after
        each epoch). Does nothing under other strategies.

        Args:
            model: the model being trained (default: the callback's).
        """
        model = model or self.model
        if not training.is_multi_worker(model):
            return
        strategy = model.distribute_strategy
        mine = tf.constant(int(self.received is not None), tf.int32)
        flags = strategy.run(lambda: tf.identity(mine))
        anyone = int(strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None))
        if anyone and self.received is None:
            self.received, self.from_other_worker = self.signals[0], True

    def on_train_batch_end(self, batch, logs=None):
        self.synchronize()
        if self.received is not None:
            self.model.stop_training = True
