"""Faults during training, turned into clean stops: non-finite losses and signals.

`StopOnNonFinite` (which `fit` always adds) stops training with a `NonFiniteLossError`
that names the term that went NaN or infinite, the epoch and the steps, instead of
training on with NaN weights. `StopOnSignal` turns SIGTERM and SIGINT into a stop at
the end of the running execution, agreed by every worker of a multi-worker run, so
the caller can write a checkpoint (`tfvae.runs`).
"""

from __future__ import annotations

import signal
import threading

import keras
import numpy as np
import tensorflow as tf

from tfvae import scaling

__all__ = ["NonFiniteLossError", "StopOnNonFinite", "StopOnSignal"]


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
        self._last_step = scaling.steps_taken(self.model)

    def on_train_batch_end(self, batch, logs=None):
        first_step = self._last_step + 1
        self._last_step = scaling.steps_taken(self.model)
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
        if not scaling.is_multi_worker(model):
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
