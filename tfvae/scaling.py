"""Scaling out: `tf.distribute` strategies, mixed precision, and the step helpers they need.

tfvae trains under TensorFlow's own distribution engine unchanged. Make the model
(and compile it) inside `strategy.scope()`; `model.fit` then splits each global
batch over the replicas, `VAE.train_step` contributes each replica's share of the
mean over the **global** batch (`global_batch_mean`), the optimizer
sums the replicas' gradients, and the metrics sum over replicas (exact epoch means,
also for an uneven last batch). Each replica draws its own posterior noise
(`replica_seed`); VQ-VAE's moving-average codebook is updated from
the global batch's statistics, so the mirrored copies stay identical.

Mixed precision (`set_precision("mixed_bfloat16")` before making the model) runs
the networks' layers in bfloat16 or float16 with float32 weights. Distribution layers,
priors and the VQ codebook keep a float32 policy, so distributions, log-probs, KL
terms and the loss are float32. Under `mixed_float16` `compile` wraps the
optimizer in a `keras.optimizers.LossScaleOptimizer`, and `train_step` scales the
loss with `optimizer.scale_loss`.

Keras 3.15's own train and test functions fail under `tf.distribute` in two ways
(see `distributed_function`), so `tfvae.training.Trainer` uses this module's
`distributed_function` there, without XLA.

Example:

>>> strategy = tfvae.scaling.make_strategy("mirrored")  # all local GPUs
>>> tfvae.scaling.set_precision("mixed_bfloat16")
>>> with strategy.scope():
...     vae = tfvae.models.build("vae", (28, 28, 1))
...     vae.compile()
>>> vae.fit(x_train, batch_size=512, epochs=10)  # 512 examples over all replicas
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from tfvae import choices

__all__ = [
    "STRATEGIES",
    "PRECISIONS",
    "make_strategy",
    "is_chief",
    "set_precision",
    "is_distributed",
    "uses_distributed_steps",
    "replica_context",
    "is_multi_worker",
    "global_batch_mean",
    "replica_seed",
    "sharded_by_batch",
    "distributed_function",
    "steps_taken",
]

#: Strategy names of `make_strategy`.
STRATEGIES = choices.STRATEGIES
#: Policy names of `set_precision`.
PRECISIONS = choices.PRECISIONS


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "`strategy` 'multi_worker' needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}. Received: TF_CONFIG is not set.'
        )
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            "TF_CONFIG must be JSON with cluster.worker (a list of host:port) and task "
            f"(type and index). Received: TF_CONFIG={text!r} ({error})"
        ) from None
    if task.get("type") == "worker" and not 0 <= index < len(workers):
        raise ValueError(
            f"TF_CONFIG's task index {index} is not one of the {len(workers)} workers."
        )


def make_strategy(name: str = "none") -> tf.distribute.Strategy:
    """Returns the `tf.distribute` strategy called `name`.

    Args:
        name: `"none"` (TensorFlow's default strategy: one device), `"mirrored"`
            (`MirroredStrategy` over all local GPUs, or the CPU when there are none)
            or `"multi_worker"` (`MultiWorkerMirroredStrategy`, configured by the
            `TF_CONFIG` environment variable; it must be made before any other
            TensorFlow work in the process).

    Returns:
        The strategy.

    Raises:
        ValueError: for an unknown name, or `"multi_worker"` without a valid
            `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of: {', '.join(STRATEGIES)}.")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the chief, or worker 0 when the
    cluster has no chief; True for single-process strategies."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and int(resolver.task_id) == 0 and not has_chief


def set_precision(name: str = "float32") -> None:
    """Sets Keras' global dtype policy for the models made afterwards.

    Args:
        name: `"float32"`, `"mixed_bfloat16"` (CPUs, TPUs, Ampere-or-newer GPUs) or
            `"mixed_float16"` (GPUs; the loss is scaled to keep small gradients).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {name!r}. Expected one of: {', '.join(PRECISIONS)}.")
    keras.mixed_precision.set_global_policy(name)


def is_distributed(model) -> bool:
    """Whether the model was made under a `tf.distribute` strategy scope (or is used in one)."""
    return getattr(model, "_distribute_strategy", None) is not None or tf.distribute.has_strategy()


def uses_distributed_steps(model) -> bool:
    """Whether `fit` and `evaluate` run `distributed_function`: under a
    `tf.distribute` strategy, in graph mode."""
    return is_distributed(model) and not model.run_eagerly


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


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """`seed` folded with the replica's id under `tf.distribute` (unchanged on one
    replica), so replicas draw independent noise for their shares of the batch."""
    context = replica_context()
    if context is None:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.cast(tf.random.experimental.stateless_fold_in(seed, replica), seed.dtype)


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


def steps_taken(model) -> int:
    """The optimizer's step count as a Python int (also a mirrored variable's, which
    `int()` refuses under `tf.distribute`)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))
