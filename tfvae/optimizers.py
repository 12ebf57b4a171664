"""Optimisers and learning-rate schedules of published training protocols.

Tomczak & Welling (2018) train with Adam on gradients normalised to unit L2 norm,
each variable's separately, `g / (||g||_2 + 1e-7)` (`NormalizedAdam`).

Burda et al. (2016) train every model for 3,280 passes over the data, in 8 stages:
stage i = 0, ..., 7 lasts 3^i epochs at the learning rate

    lr_i = 1e-3 * 10^(-i/7)        (rounded as in the authors' code: 1e-4 * round(10^(1 - i/7), 1))

with Adam(beta_1 = 0.99, beta_2 = 0.999, epsilon = 1e-4) on the *sum* of the loss over
a batch of 20. tfvae's losses are batch means, and Adam is invariant to the scale of
the gradient except through epsilon, so the same update is Adam with
epsilon = 1e-4 / batch_size on the mean (`burda_adam`).

One difference stays: the authors' Adam starts its second moments at 1, Keras' at 0
(with bias correction); it changes only the first few hundred steps.

References:
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders.
        ICLR. Section 5 and the authors' code (github.com/yburda/iwae, experiments.py).
    Tomczak, J. M. & Welling, M. (2018). VAE with a VampPrior. AISTATS. The authors'
        code (github.com/jmtomczak/vae_vampprior, utils/optimizer.py: AdamNormGrad).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae.arguments import check_integer

__all__ = ["BurdaSchedule", "burda_adam", "NormalizedAdam", "BURDA_BATCH_SIZE", "BURDA_STAGES"]

#: Burda et al.'s batch size and number of stages (3^0 + ... + 3^7 = 3,280 epochs).
BURDA_BATCH_SIZE = 20
BURDA_STAGES = 8


@keras.saving.register_keras_serializable(package="tfvae")
class BurdaSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Burda et al.'s staged learning rate: 3^i epochs at 1e-3 * 10^(-i/7), i < `stages`.

    After the last stage the rate stays at the last stage's value.

    Args:
        steps_per_epoch: optimizer steps in one pass over the training data.
        stages: number of stages (8 in the paper: 3,280 epochs).

    Raises:
        ValueError: if `steps_per_epoch` or `stages` is not a positive integer.

    Example:

    >>> schedule = BurdaSchedule(steps_per_epoch=2500)
    >>> schedule.epochs  # (1, 3, 9, ..., 2187); sum 3280
    >>> optimizer = keras.optimizers.Adam(schedule, beta_1=0.99, epsilon=1e-4 / 20)
    """

    def __init__(self, steps_per_epoch: int, stages: int = BURDA_STAGES):
        self.steps_per_epoch = check_integer("steps_per_epoch", steps_per_epoch)
        self.stages = check_integer("stages", stages)

    @property
    def epochs(self) -> tuple[int, ...]:
        """Epochs of each stage: 1, 3, 9, ..."""
        return tuple(3**i for i in range(self.stages))

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole protocol (3,280 for 8 stages)."""
        return sum(self.epochs)

    @property
    def learning_rates(self) -> tuple[float, ...]:
        """Learning rate of each stage, as the authors' code rounds it."""
        return tuple(1e-4 * round(10.0 ** (1 - i / 7), 1) for i in range(self.stages))

    def stage_of(self, epoch: int) -> int:
        """The stage (0-based) that epoch `epoch` (0-based) belongs to."""
        end = 0
        for stage, length in enumerate(self.epochs):
            end += length
            if epoch < end:
                return stage
        return self.stages - 1

    def __call__(self, step):
        ends = tf.constant(
            [sum(self.epochs[: i + 1]) * self.steps_per_epoch for i in range(self.stages - 1)],
            tf.int64,
        )
        stage = tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= ends, tf.int32))
        return tf.gather(tf.constant(self.learning_rates, tf.float32), stage)

    def get_config(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, "stages": self.stages}


def burda_adam(
    steps_per_epoch: int, batch_size: int = BURDA_BATCH_SIZE, stages: int = BURDA_STAGES
) -> keras.optimizers.Adam:
    """Burda et al.'s optimiser: Adam(beta_1=0.99, beta_2=0.999) on `BurdaSchedule`.

    Args:
        steps_per_epoch: optimizer steps in one pass over the training data.
        batch_size: the batch size; epsilon is 1e-4 / batch_size because tfvae's loss is
            the batch mean where the authors' was the batch sum.
        stages: number of stages of the schedule.

    Returns:
        A `keras.optimizers.Adam`.

    Raises:
        ValueError: for a non-positive `steps_per_epoch`, `batch_size` or `stages`.

    Example:

    >>> vae.compile(optimizer=tfvae.optimizers.burda_adam(steps_per_epoch=2500))
    """
    batch_size = check_integer("batch_size", batch_size)
    return keras.optimizers.Adam(
        BurdaSchedule(steps_per_epoch, stages),
        beta_1=0.99,
        beta_2=0.999,
        epsilon=1e-4 / batch_size,
    )


@keras.saving.register_keras_serializable(package="tfvae")
class NormalizedAdam(keras.optimizers.Adam):
    """Adam on each variable's gradient divided by its L2 norm (Tomczak & Welling 2018).

    Takes the arguments of `keras.optimizers.Adam`.

    Example:

    >>> vae.compile(optimizer=NormalizedAdam(5e-4))
    """

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):  # an embedding's (a VQ codebook's) gradient
            gradient = tf.convert_to_tensor(gradient)
        norm = tf.norm(tf.cast(gradient, tf.float32))
        gradient = gradient / tf.cast(norm + 1e-7, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)
