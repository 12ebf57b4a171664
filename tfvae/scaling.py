"""Scaling out: the `tf.distribute` strategy and the mixed-precision policy of a run.

tfvae trains under TensorFlow's own distribution engine unchanged. Make the model
(and compile it) inside `strategy.scope()`; `model.fit` then splits each global
batch over the replicas, `VAE.train_step` contributes each replica's share of the
mean over the **global** batch (`tfvae.training.global_batch_mean`), the optimizer
sums the replicas' gradients, and the metrics sum over replicas (exact epoch means,
also for an uneven last batch). Each replica draws its own posterior noise
(`tfvae.training.replica_seed`); VQ-VAE's moving-average codebook is updated from
the global batch's statistics, so the mirrored copies stay identical.

Mixed precision (`set_precision("mixed_bfloat16")` before making the model) runs
the networks' layers in bfloat16 or float16 with float32 weights. Distribution layers,
priors and the VQ codebook keep a float32 policy, so distributions, log-probs, KL
terms and the loss are float32. Under `mixed_float16` `compile` wraps the
optimizer in a `keras.optimizers.LossScaleOptimizer`, and `train_step` scales the
loss with `optimizer.scale_loss`.

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

import keras
import tensorflow as tf

__all__ = ["STRATEGIES", "PRECISIONS", "make_strategy", "is_chief", "set_precision"]

#: Strategy names of `make_strategy` and `tfvae train --strategy`.
STRATEGIES = ("none", "mirrored", "multi_worker")
#: Policy names of `set_precision` and `tfvae train --precision`.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "--strategy multi_worker needs the TF_CONFIG environment variable, e.g. "
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
