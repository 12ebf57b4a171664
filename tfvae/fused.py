"""The fused train function: each execution of `steps_per_execution` steps as one XLA program.

Keras runs `steps_per_execution` steps as a `tf.while_loop` around a per-step XLA
program: every step pays the XLA launch (its variables handed in and out) and one
`tf.data` hand-off. `fused_train_function` instead takes the execution's batches from
the iterator, stacks them, and runs all of them inside **one** XLA program (a while
loop over `model.train_step`), so the weights and Adam's slots stay inside XLA for
the whole execution. `benchmarks/README.md` has the measurements.

The train step is still written once (`tfvae.training.Trainer.train_step`); it is
traced once per fused program, and the program takes any number of steps and any
batch size, so the short last execution of an epoch and a smaller last batch do not
retrace it. `in_memory_dataset` feeds NumPy arrays to it with as little `tf.data`
work as possible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfvae import compile_cache, scaling

__all__ = ["uses_fused_steps", "fused_train_function", "in_memory_dataset"]


def uses_fused_steps(model) -> bool:
    """Whether `model.fit` can run the fused train function.

    It needs XLA, more than one step per execution, graph mode, and the default
    distribution strategy (under `tf.distribute`, Keras' own loop is used).
    """
    return (
        bool(model.jit_compile)
        and not model.run_eagerly
        and isinstance(model.steps_per_execution, int)
        and model.steps_per_execution > 1
        and not scaling.is_distributed(model)
    )


def in_memory_dataset(x, y=None, batch_size=None, shuffle=True) -> tf.data.Dataset:
    """Batches in-memory arrays for the fused path: every batch full, no copy of the data.

    Each epoch shuffles the indices as one tensor; each batch is gathered from the
    arrays where they are: from a NumPy array by NumPy, inside the `tf.data` thread
    (so it overlaps training, and neither the array nor a float32 copy of it is
    handed to TensorFlow whole: a float64 array is cast batch by batch), from a tensor
    by `tf.gather`. When the number of examples is not a multiple of `batch_size`,
    the last batch is filled up with the epoch's first examples (each example is seen
    once an epoch, those few twice), so that every step has the same shape and XLA
    compiles the train program once instead of once more for a short last batch
    (`benchmarks/README.md`, section 6). With fewer examples than `batch_size`, each
    epoch is one batch of all of them. `tf.data` autotuning is off and the pipeline
    runs on one private thread: on few CPU cores the autotuned pipeline Keras builds
    for arrays made epochs slower and less even.

    Args:
        x: a NumPy array or tensor of examples.
        y: optional labels, one per example.
        batch_size: examples per batch (default 32, as in Keras).
        shuffle: shuffle every epoch (seeded by `keras.utils.set_random_seed`).

    Returns:
        A dataset of `(x,)` or `(x, y)` batches of static shape, like Keras' own, of
        known cardinality (steps per epoch).
    """
    count = int(x.shape[0])
    batch = min(int(batch_size or 32), count)
    steps = -(-count // batch)
    fill = steps * batch - count

    def epoch_order(indices):
        if shuffle:
            indices = tf.random.shuffle(indices)
        if fill:
            indices = tf.concat([indices, indices[:fill]], axis=0)
        return tf.reshape(indices, (steps, batch))

    gatherers = [_gatherer(x, batch, tf.float32)]
    if y is not None:
        gatherers.append(_gatherer(tf.convert_to_tensor(y), batch))
    batches = tf.data.Dataset.from_tensors(tf.range(count)).map(epoch_order).unbatch()
    dataset = batches.map(lambda i: tuple(gather(i) for gather in gatherers))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    # The default graph rewrites serialise the dataset graph, captured arrays
    # included, for each new iterator (each fit call; benchmarks/README.md).
    options.experimental_optimization.apply_default_optimizations = False
    return dataset.prefetch(2).with_options(options)


def _gatherer(array, batch: int, dtype=None) -> Callable:
    """A function of a batch of indices that returns those rows of `array`."""
    if isinstance(array, tf.Tensor):
        return lambda indices: tf.gather(array, indices)
    array = np.asarray(array)
    dtype = tf.as_dtype(dtype or array.dtype)

    def take(indices):
        return np.asarray(array[indices], dtype=dtype.as_numpy_dtype)

    def gather(indices):
        rows = tf.numpy_function(take, [indices], dtype, stateful=False)
        rows.set_shape((batch,) + array.shape[1:])
        return rows

    return gather


def _runs_of_equal_shape(batches: list) -> list[list]:
    """Splits consecutive batches into runs whose tensors have equal shapes."""
    runs: list[list] = []
    key = None
    for batch in batches:
        shapes = tuple(tuple(t.shape) for t in tf.nest.flatten(batch))
        if runs and shapes == key:
            runs[-1].append(batch)
        else:
            runs.append([batch])
            key = shapes
    return runs


def _stacked(batches: list, length: int):
    """The batches stacked along a new first axis, padded with zeros to `length` steps."""
    missing = length - len(batches)
    padding = [tf.nest.map_structure(tf.zeros_like, batches[0])] * missing if missing else []

    # tf.stack first tries to make one constant of the list, through NumPy: a slow
    # double copy of every execution's data.
    def stack(*tensors):
        return tf.raw_ops.Pack(values=list(tensors), axis=0)

    return tf.nest.map_structure(stack, *batches, *padding)


def _program(run_steps: Callable, input_signature: list) -> Callable:
    """`run_steps` as one XLA program, traced without autograph where the code allows.

    Autograph's source transformation of `train_step`, `loss_terms` and what they
    call was most of the first trace's time (1.5 of 2.5 s for the MLP VAE). tfvae's
    models need no autograph (their control flow is TensorFlow ops), so the program is
    first traced without it; a model whose code branches on a tensor in Python
    (`if tensor: ...`) fails that trace, and is then traced again with autograph on.
    """
    plain = tf.function(
        run_steps, input_signature=input_signature, jit_compile=True, autograph=False
    )
    converted = None

    def program(*args):
        nonlocal plain, converted
        if plain is not None:
            try:
                return compile_cache.call_checking_cache(plain, *args)
            except tf.errors.OperatorNotAllowedInGraphError:
                plain = None
        if converted is None:
            converted = tf.function(run_steps, input_signature=input_signature, jit_compile=True)
        return compile_cache.call_checking_cache(converted, *args)

    return program


def fused_train_function(model) -> Callable:
    """Returns a train function for `model.fit` that runs each execution as one XLA program.

    Every execution hands the program `steps_per_execution` stacked batches (the last
    one of an epoch padded with zeros) and the number of real ones, so the program
    has one shape and XLA compiles it once per batch shape, not once more for the
    short last execution of each epoch.

    Args:
        model: a compiled `tfvae.VAE` (any variant); its `train_step` is run
            unchanged.

    Returns:
        A function of a `tf.data` iterator, with the contract of Keras'
        `train_function`: it runs up to `model.steps_per_execution` steps, returns
        the logs of the last one, and raises `StopIteration` when the iterator is
        empty.
    """
    programs: dict = {}

    def run_steps(stacked, count):
        def step(i, logs):
            batch = tf.nest.map_structure(lambda t: t[i], stacked)
            return i + 1, model.train_step(batch)

        # A plain while loop: autograph's `for i in tf.range(count)` would give XLA a
        # `maximum_iterations`, making `count` a compile-time constant (one more
        # compilation for the short last execution of every epoch).
        initial = (tf.constant(0), model._metric_results())
        return tf.while_loop(lambda i, _: i < count, step, initial)[1]

    def program_for(element_spec):
        # Step count and batch size left unknown: one trace serves every execution of
        # data with this structure and these dtypes (XLA compiles each new shape).
        signature = tf.nest.map_structure(
            lambda spec: tf.TensorSpec((None, None) + tuple(spec.shape[1:]), spec.dtype),
            element_spec,
        )
        key = str(signature)
        if key not in programs:
            programs[key] = _program(run_steps, [signature, tf.TensorSpec((), tf.int32)])
        return programs[key]

    def train_function(iterator):
        batches = []
        for _ in range(model.steps_per_execution):
            try:
                batches.append(next(iterator))
            except StopIteration:
                break
        if not batches:
            raise StopIteration
        program = program_for(iterator.element_spec)
        for run in _runs_of_equal_shape(batches):
            stacked = _stacked(run, model.steps_per_execution)
            logs = program(stacked, tf.constant(len(run), tf.int32))
        return logs

    return train_function
