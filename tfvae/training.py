"""The training path's defaults, and the fused multi-step train function that uses them.

Keras runs `steps_per_execution` steps as a `tf.while_loop` around a per-step XLA
program: every step pays the XLA launch (its variables handed in and out) and one
`tf.data` hand-off. `fused_train_function` instead takes the execution's batches from
the iterator, stacks them, and runs all of them inside **one** XLA program (a
while loop over `model.train_step`), so the weights and Adam's slots stay inside XLA
for the whole execution.

XLA is not a win everywhere. Measured by `benchmarks/run.py` on 2 CPU cores (see
`benchmarks/README.md`). For the MLP, the fused XLA path trains 1.8x faster than the
PyTorch reference; Keras' per-step XLA loop and its non-XLA one-step loop manage
0.9x to 1.2x. For the convolutional networks, XLA on CPU is 2x (per step) to 40x
(fused) slower than TensorFlow's own oneDNN kernels. Hence `jit_compile="auto"`, the default of
`VAE.compile` and `tfvae train`: XLA on a GPU or TPU, and on a CPU only when the
networks have no convolutions.

The train step is still written once (`VAE.train_step`); it is traced once per fused
program, and the program takes any number of steps and any batch size, so the
short last execution of an epoch and a smaller last batch do not retrace it.

Under a `tf.distribute` strategy (`tfvae.scaling`) the same `train_step` runs
through `distributed_function`, without XLA; `global_batch_mean` and
`replica_seed` are what make its loss and its noise right over replicas.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

__all__ = [
    "DEFAULT_JIT_COMPILE",
    "DEFAULT_STEPS_PER_EXECUTION",
    "auto_jit_compile",
    "uses_fused_steps",
    "fused_train_function",
    "distributed_function",
    "uses_distributed_steps",
    "is_distributed",
    "global_batch_mean",
    "replica_context",
    "is_multi_worker",
    "replica_seed",
    "sharded_by_batch",
    "in_memory_dataset",
    "make_deterministic",
    "steps_taken",
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
    if is_distributed(model):
        return False  # as Keras' "auto": no XLA under tf.distribute (distributed_function)
    if tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
        return True
    return not any(isinstance(layer, _CONVOLUTIONS) for layer in model._flatten_layers())


def steps_taken(model) -> int:
    """The optimizer's step count as a Python int (also a mirrored variable's, which
    `int()` refuses under `tf.distribute`)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


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
        and not is_distributed(model)
    )


def uses_distributed_steps(model) -> bool:
    """Whether `fit` and `evaluate` run `distributed_function`: under a
    `tf.distribute` strategy, in graph mode."""
    return is_distributed(model) and not model.run_eagerly


def is_distributed(model) -> bool:
    """Whether the model was made under a `tf.distribute` strategy scope (or is used in one)."""
    return getattr(model, "_distribute_strategy", None) is not None or tf.distribute.has_strategy()


def in_memory_dataset(x, y=None, batch_size=None, shuffle=True) -> tf.data.Dataset:
    """Batches in-memory arrays for the fused path with as little `tf.data` work as possible.

    Each epoch shuffles the indices as one tensor and gathers whole batches from the
    arrays held once in memory. `tf.data` autotuning is off and the pipeline runs on
    one private thread: on 2 CPU cores the autotuned pipeline Keras builds for
    arrays made epochs about 30% slower, and less even (measured while tuning for
    `benchmarks/run.py`).

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
    # included: 0.3-0.4 s for each new iterator over MNIST, i.e. each fit call.
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


def replica_context():
    """The replica context when a step runs on more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def is_multi_worker(model) -> bool:
    """Whether the model trains under `MultiWorkerMirroredStrategy`."""
    return isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)


def global_batch_mean(per_example: tf.Tensor) -> tf.Tensor:
    """This replica's share of the mean of `per_example` over the global batch.

    Under `tf.distribute` the optimizer sums the replicas' gradients, so each replica
    contributes `sum(its examples) / (examples on all replicas)`: the sum is the mean
    over the global batch, exact also when the last batch splits unevenly (or leaves
    a replica empty). With one replica it is `tf.reduce_mean`.

    Args:
        per_example: a `(batch,)` tensor, such as the per-example loss.

    Returns:
        A scalar tensor.
    """
    context = replica_context()
    if context is None:
        return tf.reduce_mean(per_example)
    count = tf.cast(tf.size(per_example), per_example.dtype)
    global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.reduce_sum(per_example) / global_count


def sharded_by_batch(dataset, model):
    """`dataset` set to be sharded by batch (`AutoShardPolicy.DATA`) under a
    multi-worker strategy, unless it already has a policy of its own.

    TensorFlow's default (`AUTO`) shards by file, and fails at the first batch when
    a split has fewer files than there are workers ("Could not apply FILE based
    sharding: the dataset only has 1 file(s)"), as TFDS's MNIST has. By batch, every
    worker reads the whole split, in the same seeded order, and keeps its share of
    each global batch. Set `options.experimental_distribute.auto_shard_policy` on
    the dataset yourself (`FILE`) for data sets of many files.
    """
    if not isinstance(dataset, tf.data.Dataset) or not is_multi_worker(model):
        return dataset
    policy = tf.data.experimental.AutoShardPolicy
    if dataset.options().experimental_distribute.auto_shard_policy != policy.AUTO:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.DATA
    return dataset.with_options(options)


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """`seed` folded with the replica's id under `tf.distribute` (unchanged on one
    replica), so replicas draw independent noise for their shares of the batch."""
    context = replica_context()
    if context is None:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.cast(tf.random.experimental.stateless_fold_in(seed, replica), seed.dtype)


def distributed_function(model, step: Callable) -> Callable:
    """Returns a train or test function for `model.fit`/`evaluate` under `tf.distribute`.

    Keras 3.15's own functions fail under `tf.distribute` in two ways, so tfvae
    uses this one there:

    - under `MirroredStrategy` with `steps_per_execution > 1`, the optimizer's
      cross-replica `merge_call` sits inside the step loop's `tf.cond` ("You must
      feed a value for placeholder tensor", keras-team/keras#19246);
    - under `MultiWorkerMirroredStrategy`, the per-replica metric results are
      reduced with `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars
      ("Invalid reduction dimension 0 for input with 0 dimensions").

    This function runs an execution's steps from Python, one `strategy.run` of the
    unchanged `step` each, so callbacks still see one batch end per
    `steps_per_execution` steps. The last step's logs are averaged over the
    replicas, once per execution (epoch logs come from the metrics, which sum over
    replicas exactly).

    Args:
        model: a compiled `tfvae.VAE` made under the strategy's scope.
        step: `model.train_step` or `model.test_step`.

    Returns:
        A function of a distributed iterator with the contract of Keras'
        `train_function`: it runs up to `model.steps_per_execution` steps, returns
        the logs of the last, and raises `StopIteration` when the iterator is empty.
    """
    strategy = model.distribute_strategy

    @tf.function(reduce_retracing=True)
    def one_step(data):
        return strategy.run(step, args=(data,))

    def function(iterator):
        logs = None
        for _ in range(model.steps_per_execution):
            try:
                data = next(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            logs = one_step(data)
        if logs is None:
            raise StopIteration
        mean = tf.distribute.ReduceOp.MEAN
        return tf.nest.map_structure(lambda v: strategy.reduce(mean, v, axis=None), logs)

    return function
