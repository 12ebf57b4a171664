"""Runs distributed training in a fresh process for tests/test_scaling.py.

python tests/distributed_script.py mirrored OUT.json
    Splits the CPU into two logical devices (only possible before TensorFlow
    starts, hence a process of its own) and compares MirroredStrategy with one
    device on the same data, weights and seeds.
TF_CONFIG=... python tests/distributed_script.py worker OUT_PREFIX
    One MultiWorkerMirroredStrategy worker; writes OUT_PREFIX.npz (weights) and
    OUT_PREFIX.json (history, steps).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tensorflow as tf

# The digits, thresholded: 1,797 images, so batches of 64 end with one of 5, which
# two replicas split 3 + 2.
BATCH = 64


def _digits():
    import tfvae

    images = np.concatenate(
        [tfvae.data.load_arrays("digits", split)[0] for split in ("train", "test")]
    )
    return (images >= 0.5).astype("float32")


def _build(name, seed=1, **options):
    from tfvae import models

    return models.build(name, (8, 8, 1), latent_dim=8, seed=seed, **options)


def _train(
    x,
    name,
    weights,
    epochs,
    learning_rate,
    strategy=None,
    seed=1,
    batch_size=BATCH,
    optimizer="Adam",
    compile_options=None,
    **options,
):
    """Trains `name` from `weights`; returns (history, final weights, model)."""
    import keras

    scope = strategy.scope() if strategy else tf.distribute.get_strategy().scope()
    with scope:
        model = _build(name, seed=seed, **options)
        model.set_weights(weights)
        config = {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        model.compile(optimizer=keras.optimizers.get(config), **(compile_options or {}))
    history = model.fit(x, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return history.history, model.get_weights(), model


def _max_difference(a, b) -> float:
    return float(max(np.max(np.abs(u - v)) for u, v in zip(a, b, strict=True)))


def mirrored(out: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from tfvae import checkpoints, scaling

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = _digits()
    results: dict = {"replicas": strategy.num_replicas_in_sync}

    # 1. VQ-VAE: no sampling in its objective, so two replicas must reproduce one
    # device to rounding. One plain SGD step (learning rate 1) on 61 examples, split
    # 31 + 30, is the gradient itself: summed over replicas, it must be the mean over
    # the global batch, not twice it.
    keras.utils.set_random_seed(0)
    vq = dict(ema=True, num_codes=16)
    start = _build("vqvae", **vq).get_weights()
    step = dict(batch_size=61, optimizer="SGD", **vq)
    _, one_w, _ = _train(x[:61], "vqvae", start, 1, 1.0, **step)
    _, two_w, _ = _train(x[:61], "vqvae", start, 1, 1.0, strategy, **step)
    one_step = [after - before for after, before in zip(one_w, start, strict=True)]
    two_step = [after - before for after, before in zip(two_w, start, strict=True)]
    # Then two epochs with Adam and the EMA codebook (29 steps each, the last 3 + 2).
    # One device through Keras' own loop: its last batch is the short one, as under the
    # strategy (tfvae's fused XLA path fills the last batch up to one shape).
    keras_loop = {"jit_compile": False}
    one, one_w, _ = _train(x, "vqvae", start, 2, 1e-3, compile_options=keras_loop, **vq)
    two, two_w, model = _train(x, "vqvae", start, 2, 1e-3, strategy, **vq)
    codebook = model.quantizer.codebook.value
    results["vqvae"] = {
        "one_step": float(max(np.max(np.abs(d)) for d in one_step)),
        "one_step_difference": _max_difference(one_step, two_step),
        "one_device": one["loss"],
        "mirrored": two["loss"],
        "weights_mirrored": _max_difference(one_w, two_w),
        "codebook_copies": _max_difference(*[[np.asarray(v)] for v in codebook.values]),
        "steps": scaling.steps_taken(model),
    }

    # 2. The Gaussian VAE: replicas draw their own posterior noise, so the runs agree
    # statistically. 40 full-batch steps (1,797 = 899 + 898 examples per step) keep
    # the noise small; the loss after them is the test loss of the final weights,
    # judged on one device with one fixed evaluation seed.
    keras.utils.set_random_seed(0)
    start = _build("vae").get_weights()
    steps = np.concatenate([x] * 40)
    full = dict(batch_size=len(x))
    _, one_w, _ = _train(steps, "vae", start, 1, 3e-3, **full)
    _, two_w, vae = _train(steps, "vae", start, 1, 3e-3, strategy, **full)
    _, fast_w, _ = _train(steps, "vae", start, 1, 6e-3, **full)

    def judged(weights, strategy=None):
        with strategy.scope() if strategy else tf.distribute.get_strategy().scope():
            judge = _build("vae", seed=3)
            judge.set_weights(weights)
            judge.compile()
        return judge.evaluate(x, batch_size=BATCH, verbose=0, return_dict=True)

    with strategy.scope():
        seeds = strategy.run(lambda: vae._posterior_seed(True))
    seeds = strategy.experimental_local_results(seeds)
    results["vae"] = {
        "one_device": judged(one_w)["loss"],
        "mirrored": judged(two_w)["loss"],
        "double_learning_rate": judged(fast_w)["loss"],
        "steps": scaling.steps_taken(vae),
        "replica_seeds": [np.asarray(seed).tolist() for seed in seeds],
        # The rate of a Gaussian posterior against N(0, I) is analytic (no sampling):
        # evaluated under the strategy, over replicas and an uneven last batch, it
        # must equal the one-device value.
        "rate_one_device": judged(two_w)["rate"],
        "rate_mirrored": judged(two_w, strategy)["rate"],
    }

    # 3. A checkpoint written under the strategy resumes under it: 1 + 1 epochs give
    # the weights of 2 uninterrupted ones.
    keras.utils.set_random_seed(0)
    start = _build("vae").get_weights()
    _, straight, _ = _train(x, "vae", start, 2, 1e-3, strategy)
    _, _, first = _train(x, "vae", start, 1, 1e-3, strategy)
    path = checkpoints.write_checkpoint(first, out + ".checkpoints", epoch=1)
    with strategy.scope():
        resumed = checkpoints.load_checkpoint(path)
    resumed.fit(x, batch_size=BATCH, epochs=2, initial_epoch=1, shuffle=False, verbose=0)
    results["resume"] = {
        "weights": _max_difference(straight, resumed.get_weights()),
        "mirrored_variables": type(resumed.encoder.trainable_variables[0].value).__name__,
        "steps": scaling.steps_taken(resumed),
    }
    with open(out, "w") as f:
        json.dump(results, f)


def worker(prefix: str) -> None:
    import keras

    from tfvae import scaling

    strategy = scaling.make_strategy("multi_worker")  # before any other TensorFlow work
    x = _digits()[:640]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        vae = _build("vae")
        start = vae.get_weights()
        vae.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=4)
    history = vae.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    np.savez(prefix + ".npz", *vae.get_weights())
    result = {
        "history": history.history,
        "chief": scaling.is_chief(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "steps": scaling.steps_taken(vae),
        "moved": _max_difference(start, vae.get_weights()),
    }
    with open(prefix + ".json", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    {"mirrored": mirrored, "worker": worker}[sys.argv[1]](sys.argv[2])
