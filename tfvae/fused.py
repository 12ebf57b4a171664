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

import tensorflow as tf

from tfvae import scaling

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
    """Batches in-memory arrays for the fused path with as little `tf.data` work as possible.

    Each epoch shuffles the indices as one tensor and gathers whole batches from the
    arrays held once in memory. `tf.data` autotuning is off and the pipeline runs on
    one private thread: on few CPU cores the autotuned pipeline Keras builds for
    arrays made epochs slower and less even (`benchmarks/README.md`).

    Args:
        x: a NumPy array or tensor of examples.
        y: optional labels, one per example.
        batch_size: examples per batch (default 32, as in Keras).
        shuffle: shuffle every epoch (seeded by `keras.utils.set_random_seed`).

    Returns:
        A dataset of `(x,)` or `(x, y)` batches, like Keras' own.
    """
    arrays = (x,) if y is None else (x, y)
    tensors = tuple(tf.convert_to_tensor(a) for a in arrays)
    count = int(tensors[0].shape[0])
    indices = tf.data.Dataset.from_tensors(tf.range(count))
    if shuffle:
        indices = indices.map(tf.random.shuffle)
    batches = indices.unbatch().batch(batch_size or 32)
    dataset = batches.map(lambda i: tuple(tf.gather(t, i) for t in tensors))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    # The default graph rewrites serialise the dataset graph, captured arrays
    # included, for each new iterator (each fit call; benchmarks/README.md).
    options.experimental_optimization.apply_default_optimizations = False
    return dataset.prefetch(2).with_options(options)


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


def _stack(*tensors) -> tf.Tensor:
    # tf.stack first tries to make one constant of the list, through NumPy: a slow
    # double copy of every execution's data.
    return tf.raw_ops.Pack(values=list(tensors), axis=0)


def fused_train_function(model) -> Callable:
    """Returns a train function for `model.fit` that runs each execution as one XLA program.

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

    def run_steps(stacked):
        logs = model._metric_results()
        for i in tf.range(tf.shape(tf.nest.flatten(stacked)[0])[0]):
            logs = model.train_step(tf.nest.map_structure(lambda t: t[i], stacked))  # noqa: B023
        return logs

    def program_for(element_spec):
        # Step count and batch size left unknown: one trace serves every execution of
        # data with this structure and these dtypes (XLA compiles each new shape).
        signature = tf.nest.map_structure(
            lambda spec: tf.TensorSpec((None, None) + tuple(spec.shape[1:]), spec.dtype),
            element_spec,
        )
        key = str(signature)
        if key not in programs:
            programs[key] = tf.function(run_steps, input_signature=[signature], jit_compile=True)
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
            logs = program(tf.nest.map_structure(_stack, *run))
        return logs

    return train_function
