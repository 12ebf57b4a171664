"""KL-weight (beta) schedules and the callback that applies them during `fit`.

A schedule maps a step (or epoch) t = 0, 1, 2, ... to beta(t):

    LinearWarmup:  beta(t) = start + (end - start) * min(1, t / warmup)
    Cyclical:      tau = (t mod period) / period
                   beta(t) = start + (end - start) * min(1, tau / ratio)
    Sigmoid:       beta(t) = start + (end - start) / (1 + exp(-steepness * (t - midpoint)))

`KLScheduleCallback` assigns beta(t) to the model's non-trainable variable `beta`
before each step (or epoch). The compiled train function reads that variable, so a
schedule never retraces it. The current beta is added to the epoch logs as `beta`,
so History and a `keras.callbacks.TensorBoard` listed after the callback record it.

References:
    Bowman, S. R. et al. (2016). Generating Sentences from a Continuous Space. CoNLL.
        (KL annealing.)
    Fu, H. et al. (2019). Cyclical Annealing Schedule: A Simple Approach to Mitigating
        KL Vanishing. NAACL.
"""

from __future__ import annotations

import math

import keras

from tfvae import scaling
from tfvae.arguments import check_number

__all__ = ["KLSchedule", "LinearWarmup", "Cyclical", "Sigmoid", "KLScheduleCallback", "SCHEDULES"]


def _check_bounds(start, end):
    check_number("start", start)
    check_number("end", end)


def _check_positive(name, value):
    check_number(name, value, inclusive=False)


class KLSchedule:
    """Base class of beta schedules: `schedule(t)` returns beta at step or epoch t."""

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> KLSchedule:
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfvae")
class LinearWarmup(KLSchedule):
    """beta rises linearly from `start` to `end` over `warmup` steps, then stays at `end`.

    Args:
        warmup: steps (or epochs) of the rise, > 0.
        start: beta at t = 0.
        end: beta from t = warmup on.

    Example:

    >>> LinearWarmup(1000)(500)
    0.5
    """

    def __init__(self, warmup: int, start: float = 0.0, end: float = 1.0):
        _check_positive("warmup", warmup)
        _check_bounds(start, end)
        self.warmup, self.start, self.end = warmup, float(start), float(end)

    def __call__(self, t):
        return self.start + (self.end - self.start) * min(1.0, t / self.warmup)

    def get_config(self):
        return {"warmup": self.warmup, "start": self.start, "end": self.end}


@keras.saving.register_keras_serializable(package="tfvae")
class Cyclical(KLSchedule):
    """Cyclical annealing (Fu et al. 2019): within each period, a linear rise then a plateau.

    Args:
        period: steps (or epochs) of one cycle, > 0.
        ratio: the fraction of each cycle spent rising, in (0, 1].
        start: beta at the start of each cycle.
        end: beta on the plateau.

    Example:

    >>> schedule = Cyclical(period=100, ratio=0.5)
    >>> schedule(25), schedule(60), schedule(125)
    (0.5, 1.0, 0.5)
    """

    def __init__(self, period: int, ratio: float = 0.5, start: float = 0.0, end: float = 1.0):
        _check_positive("period", period)
        if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"`ratio` must be in (0, 1]. Received: ratio={ratio!r}")
        _check_bounds(start, end)
        self.period, self.ratio, self.start, self.end = (
            period,
            float(ratio),
            float(start),
            float(end),
        )

    def __call__(self, t):
        tau = (t % self.period) / self.period
        return self.start + (self.end - self.start) * min(1.0, tau / self.ratio)

    def get_config(self):
        return {"period": self.period, "ratio": self.ratio, "start": self.start, "end": self.end}


@keras.saving.register_keras_serializable(package="tfvae")
class Sigmoid(KLSchedule):
    """beta follows a logistic curve from `start` to `end`, centred at `midpoint`.

    Args:
        midpoint: the step (or epoch) where beta is halfway.
        steepness: slope of the curve, > 0 (per step).
        start: the limit of beta as t -> -inf.
        end: the limit as t -> inf.

    Example:

    >>> Sigmoid(midpoint=1000, steepness=0.01)(1000)
    0.5
    """

    def __init__(
        self, midpoint: float, steepness: float = 0.01, start: float = 0.0, end: float = 1.0
    ):
        if not isinstance(midpoint, (int, float)) or not math.isfinite(midpoint):
            raise ValueError(f"`midpoint` must be a finite number. Received: {midpoint!r}")
        _check_positive("steepness", steepness)
        _check_bounds(start, end)
        self.midpoint, self.steepness = float(midpoint), float(steepness)
        self.start, self.end = float(start), float(end)

    def __call__(self, t):
        x = -self.steepness * (t - self.midpoint)
        logistic = 1.0 / (1.0 + math.exp(x)) if x < 700 else 0.0
        return self.start + (self.end - self.start) * logistic

    def get_config(self):
        return {
            "midpoint": self.midpoint,
            "steepness": self.steepness,
            "start": self.start,
            "end": self.end,
        }


#: Schedule names accepted by the CLI.
SCHEDULES = {"linear": LinearWarmup, "cyclical": Cyclical, "sigmoid": Sigmoid}


class KLScheduleCallback(keras.callbacks.Callback):
    """Sets `model.beta` from a schedule before every step (or epoch) of `fit`.

    The step is the optimizer's iteration count, so a resumed run continues the
    schedule where it stopped. The epoch logs get `beta` (its value at the end of the
    epoch); list this callback before `keras.callbacks.TensorBoard` to have it plotted.

    Args:
        schedule: a `KLSchedule`, or any callable from int to float.
        unit: `"step"` or `"epoch"`.

    Raises:
        ValueError: for another unit, or a schedule value that is negative or not finite.

    Example:

    >>> vae.fit(train, epochs=20, callbacks=[
    ...     KLScheduleCallback(Cyclical(period=2000)), keras.callbacks.TensorBoard("logs")])
    """

    def __init__(self, schedule, unit: str = "step"):
        super().__init__()
        if unit not in ("step", "epoch"):
            raise ValueError(f'`unit` must be "step" or "epoch". Received: unit={unit!r}')
        if not callable(schedule):
            raise TypeError(f"`schedule` must be callable. Received: {type(schedule).__name__}")
        self.schedule, self.unit = schedule, unit

    def _apply(self, t: int) -> None:
        beta = float(self.schedule(t))
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(
                f"The KL schedule gave beta={beta!r} at {self.unit} {t}; "
                "expected a finite number >= 0."
            )
        self.model.beta.assign(beta)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._apply(scaling.steps_taken(self.model))

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._apply(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(keras.ops.convert_to_numpy(self.model.beta))
