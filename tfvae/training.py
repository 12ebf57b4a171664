"""The trainer every tfvae model inherits: how `compile`, `fit` and `evaluate` run it.

Keras keeps the training loop apart from the model (`class Model(Trainer, Layer)`);
tfvae does the same. `Trainer` holds `train_step` and `test_step`, written once for
every model: they call the model's `loss_terms(x, y, training)` (the one method a
variant overrides) and track each of its `term_names` as a `keras.metrics.Mean`.
It also holds the Keras overrides that pick the train function (Keras' own, the
fused XLA program of `tfvae.fused`, or `tfvae.scaling.distributed_function`) and the
input checks of `fit`, `evaluate` and `predict` (`tfvae.validation`).

A model built on it provides `term_names`, `loss_terms`, `data_shape` and
`data_support` (the interval its likelihood needs), and may override
`_checked_labels` (conditional models check the labels passed beside x).

XLA is not a win everywhere: on a CPU, convolutions run faster with TensorFlow's own
oneDNN kernels (`benchmarks/README.md`). Hence `jit_compile="auto"`, the default of
`compile` and `tfvae train`: XLA on a GPU or TPU, and on a CPU only when the networks
have no convolutions (`auto_jit_compile`).
"""

from __future__ import annotations

import functools
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfvae import compile_cache, fused, scaling
from tfvae.faults import StopOnNonFinite
from tfvae.validation import check_array, check_dataset, reraise_input_errors

__all__ = [
    "Trainer",
    "DEFAULT_JIT_COMPILE",
    "DEFAULT_STEPS_PER_EXECUTION",
    "auto_jit_compile",
    "make_deterministic",
]

#: `"auto"`: see `auto_jit_compile` (Keras' own "auto" turns XLA off on every CPU).
DEFAULT_JIT_COMPILE = "auto"
#: Steps per XLA program. Callbacks see a batch end (and a KL schedule updates beta)
#: once per execution, i.e. every this many steps; compile with 1 for per-step control.
DEFAULT_STEPS_PER_EXECUTION = 32


_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def auto_jit_compile(model: keras.Model) -> bool:
    """What `jit_compile="auto"` means in tfvae: whether XLA is measured to help here.

    Args:
        model: the model to train.

    Returns:
        False under op determinism or a `tf.distribute` strategy; otherwise True
        with a GPU or TPU, or on a CPU when no layer is a convolution.
    """
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if is_op_determinism_enabled():
        return False  # Keras refuses XLA under op determinism
    if scaling.is_distributed(model):
        return False  # as Keras' "auto": no XLA under tf.distribute (distributed_function)
    if tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
        return True
    return not any(isinstance(layer, _CONVOLUTIONS) for layer in model._flatten_layers())


def make_deterministic(seed: int) -> None:
    """Makes training repeatable to the bit on one machine: same seed, data, result.

    Seeds Python, NumPy, TensorFlow and Keras (`keras.utils.set_random_seed`) and
    turns on `tf.config.experimental.enable_op_determinism`, which also turns XLA
    off (`auto_jit_compile` then says False). TFP's sampling in tfvae always takes
    explicit seeds from the model's seed generator, which checkpoints carry.

    Args:
        seed: the seed.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class Trainer(keras.Model):
    """The Keras training side of a tfvae model: steps, metrics, compile and checked fit.

    Subclasses define `term_names` (the per-example terms `loss_terms` returns, each
    tracked as a metric), `loss_terms(x, y, training)`, `data_shape` and
    `data_support`. `tfvae.VAE` is one.
    """

    #: Names of the per-example terms `loss_terms` returns, each tracked as a metric.
    term_names: tuple[str, ...] = ("loss",)
    #: Terms averaged over some examples only: `{term: the term holding each example's
    #: weight}` (a semi-supervised model's classification error, over labelled ones).
    term_weights: dict[str, str] = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.term_names}

    @property
    def data_support(self) -> tuple[float, float] | None:
        """The interval every input value must lie in, or None."""
        return None

    def loss_terms(self, x, y=None, training: bool = False) -> dict[str, tf.Tensor]:
        """The per-example terms of the objective; `loss` is minimised (see `tfvae.VAE`)."""
        raise NotImplementedError

    @staticmethod
    def _unpack(data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return tf.cast(x, tf.float32), y

    def _record(self, terms):
        for name, tracker in self._trackers.items():
            weight = self.term_weights.get(name)
            tracker.update_state(terms[name], None if weight is None else terms[weight])
        return self._metric_results()

    def _metric_results(self) -> dict[str, tf.Tensor]:
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    @property
    def adversary_variables(self) -> list:
        """Variables trained on the `adversary_loss` term alone, never on `loss`.

        Empty for most models. A model with an adversary (FactorVAE's discriminator)
        lists its variables here and returns a per-example `adversary_loss` from
        `loss_terms`; `train_step` then takes, in the same step and with the same
        optimizer, the gradient of `loss` for every other variable and the gradient
        of `adversary_loss` for these.
        """
        return []

    def train_step(self, data):
        x, y = self._unpack(data)
        adversary = self.adversary_variables
        with tf.GradientTape(persistent=bool(adversary)) as tape:
            terms = self.loss_terms(x, y, training=True)
            # The mean over the global batch (this replica's share of it).
            loss = scaling.global_batch_mean(terms["loss"])
            if self.losses:
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                loss += tf.add_n(self.losses) / replicas  # gradients are summed over them
            # Multiplied by the loss scale under mixed_float16 (the optimizer is then a
            # LossScaleOptimizer, which unscales the gradients); unchanged otherwise.
            loss = self.optimizer.scale_loss(loss)
            if adversary:
                adversary_loss = scaling.global_batch_mean(terms["adversary_loss"])
                adversary_loss = self.optimizer.scale_loss(adversary_loss)
        variables = self.trainable_variables
        if adversary:  # the optimizer pairs gradients with variables by identity, not order
            own = {id(v) for v in adversary}
            variables = [v for v in variables if id(v) not in own]
            gradients = tape.gradient(loss, variables) + tape.gradient(adversary_loss, adversary)
            variables += adversary
            del tape
        else:
            gradients = tape.gradient(loss, variables)
        self.optimizer.apply(gradients, variables)
        return self._record(terms)

    def test_step(self, data):
        x, y = self._unpack(data)
        return self._record(self.loss_terms(x, y, training=False))

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ------------------------------------------------------------------ Keras API
    def compile(
        self,
        optimizer="adam",
        loss=None,
        jit_compile=DEFAULT_JIT_COMPILE,
        steps_per_execution=DEFAULT_STEPS_PER_EXECUTION,
        **kwargs,
    ):
        """Configures training; the loss is the model's own, so `loss` must stay None.

        The defaults are the fastest measured training path (`tfvae.fused`): XLA
        where it helps (GPU/TPU, or a CPU and networks without convolutions), with
        `steps_per_execution` steps fused into one XLA program. Callbacks (and a KL
        schedule) then act every `steps_per_execution` steps.

        Args:
            optimizer: a Keras optimizer or its name (default Adam, learning rate 1e-3).
            loss: must be None.
            jit_compile: True, False or `"auto"` (default; see
                `auto_jit_compile`).
            steps_per_execution: train steps per call from `fit` (default 32); with
                XLA they run as one program.
            **kwargs: other `keras.Model.compile` arguments.

        Raises:
            ValueError: if a `loss` is given.
        """
        if loss is not None:
            raise ValueError(
                "A VAE computes its own loss (distortion + beta * rate); do not pass "
                f"`loss` to compile(). Received: loss={loss!r}"
            )
        if jit_compile == "auto" and not kwargs.get("run_eagerly"):
            jit_compile = auto_jit_compile(self)
        elif jit_compile is True and scaling.is_distributed(self):
            warnings.warn(
                "jit_compile=True is ignored under tf.distribute: Keras 3.15 cannot run a "
                "strategy's step inside XLA (see tfvae.scaling.distributed_function); "
                "training runs without XLA.",
                stacklevel=2,
            )
            jit_compile = False
        super().compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            **kwargs,
        )
        # Creating the optimizer's variables now, rather than inside the first traced
        # step, lets tf.function trace the train step once instead of twice.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skipped once built: a VAE has its weights from construction and its optimizer's
        from `compile`. (Under `tf.distribute`, Keras 3.15 builds from the replicas'
        first batches averaged together, which fails when a batch splits unevenly,
        e.g. 899 + 898 examples on two replicas.)"""
        if self.built and getattr(self.optimizer, "built", False):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """Keras' train function, or the fused multi-step XLA one (`tfvae.fused`) where it
        applies, or `tfvae.scaling.distributed_function` under `tf.distribute`."""
        if self.train_function is not None and not force:
            return self.train_function
        if fused.uses_fused_steps(self):
            self.train_function = fused.fused_train_function(self)
        elif scaling.uses_distributed_steps(self):
            self.train_function = scaling.distributed_function(self, self.train_step)
        else:
            super().make_train_function(force)
            if self.jit_compile:
                self.train_function = functools.partial(
                    compile_cache.call_checking_cache, self.train_function
                )
        return self.train_function

    def make_test_function(self, force=False):
        """Keras' test function, without XLA: compiling it (per batch shape) costs more
        than it saves on the few evaluation steps of an epoch."""
        if self.test_function is not None and not force:
            return self.test_function
        if scaling.uses_distributed_steps(self):
            self.test_function = scaling.distributed_function(self, self.test_step)
            return self.test_function
        jit_compile, self._jit_compile = self._jit_compile, False
        try:
            return super().make_test_function(force)
        finally:
            self._jit_compile = jit_compile

    def compile_from_config(self, config):
        """Re-compiles a loaded model as saved, with its optimizer state (for `.keras` files)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def _checked_data(self, data, name):
        if data is None:
            return None
        support = self.data_support
        if isinstance(data, tf.data.Dataset):
            # The last dataset checked under each name is kept with its checked pipeline:
            # passing the same one again (validation data in a fit per epoch, a test set
            # evaluated after every epoch) skips building the check again (about 20 ms).
            # In `__dict__`, out of reach of Keras' and TensorFlow's object tracking.
            last = self.__dict__.setdefault("_last_checked_datasets", {})
            if name in last and last[name][0] is data:
                return last[name][1]
            checked = check_dataset(data, self.data_shape, support, name)
            checked = scaling.sharded_by_batch(checked, self)
            last[name] = (data, checked)
            return checked
        if isinstance(data, keras.utils.PyDataset) or callable(getattr(data, "__next__", None)):
            return data
        if isinstance(data, tuple):
            return (self._checked_array(data[0], name),) + data[1:]
        return self._checked_array(data, name)

    def _checked_array(self, x, name):
        checked = check_array(x, self.data_shape, self.data_support, name)
        if isinstance(x, tf.Tensor) and x.dtype == tf.float32:
            return x  # checked through a view of its memory; converting it would copy
        return checked

    def _checked_labels(self, x, y):
        """Checks labels passed beside x (conditional models need them); returns them."""
        return y

    def _feeds_in_memory(self, x, args, kwargs) -> bool:
        """Whether fit feeds arrays through `tfvae.fused.in_memory_dataset` (fused path)."""
        keras_only = ("validation_split", "sample_weight", "class_weight", "steps_per_epoch")
        return (
            not args
            and isinstance(x, (np.ndarray, tf.Tensor))
            and isinstance(kwargs.get("shuffle", True), bool)
            and not any(kwargs.get(name) for name in keras_only)
            and fused.uses_fused_steps(self)
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, with the data checked first (see `tfvae.validation`).

        Training stops at the first non-finite loss term (`StopOnNonFinite` is added
        to the callbacks unless one is there). On the fused XLA path, arrays are not
        copied (batches are gathered from them), and when their length is not a
        multiple of `batch_size` the epoch's last batch is filled up with its first
        examples, so that XLA compiles one program (`tfvae.fused.in_memory_dataset`).

        Raises:
            ValueError / TypeError: for data of the wrong shape, type or range, with
                NaN or Inf, or empty (also when a dataset batch goes wrong mid-epoch).
            tfvae.faults.NonFiniteLossError: when a loss term goes NaN or infinite,
                naming the term, the epoch and the steps.
        """
        x = self._checked_data(x, "x")
        y = self._checked_labels(x, y)
        if self._feeds_in_memory(x, args, kwargs):
            x = fused.in_memory_dataset(
                x, y, kwargs.pop("batch_size", None), kwargs.pop("shuffle", True)
            )
            y = None
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself
        if kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = self._checked_data(
                kwargs["validation_data"], "validation_data"
            )
        callbacks = list(kwargs.get("callbacks") or [])
        if not any(isinstance(c, StopOnNonFinite) for c in callbacks):
            kwargs["callbacks"] = [StopOnNonFinite(), *callbacks]
        with reraise_input_errors():
            history = super().fit(x, y, *args, **kwargs)
        epochs = kwargs.get("epochs", args[1] if len(args) > 1 else 1)
        if not history.history and epochs > kwargs.get("initial_epoch", 0):
            raise ValueError(
                "`x` is empty: the dataset yielded no batches, so nothing was trained."
            )
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`, with the data checked first."""
        if not kwargs.get("_use_cached_eval_dataset"):  # in fit: checked there already
            x = self._checked_data(x, "x")
        y = self._checked_labels(x, y)
        with reraise_input_errors():
            result = super().evaluate(x, y, *args, **kwargs)
        if result is None or (hasattr(result, "__len__") and len(result) == 0):
            raise ValueError("`x` is empty: the dataset yielded no batches to evaluate.")
        return result

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` (reconstruction means), with the data checked first."""
        x = self._checked_data(x, "x")
        if isinstance(x, tf.data.Dataset) and int(x.cardinality()) < 0:
            with reraise_input_errors():
                if not any(True for _ in x.take(1)):
                    raise ValueError("`x` is empty: the dataset yields no batches.")
        with reraise_input_errors():
            return super().predict(x, *args, **kwargs)
