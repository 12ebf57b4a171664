"""The training path's defaults (tfvae.training): fused multi-step XLA, traced once.

Nothing here is timed; the speed behind these defaults is measured by
benchmarks/run.py.
"""

import keras
import numpy as np
import tensorflow as tf
from conftest import CountingVAE, make_vae

import tfvae
from tfvae import fused, training


def counting_vae():
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), 4, (32,))
    decoder = tfvae.networks.mlp_decoder(4, (8, 8, 1), (32,))
    return CountingVAE(encoder, decoder, seed=0)


def test_defaults_are_fused_xla_for_mlps_and_no_xla_for_convolutions_on_cpu():
    mlp, conv = make_vae(), make_vae(network="conv")
    mlp.compile()
    conv.compile()
    on_accelerator = bool(tf.config.list_physical_devices("GPU"))
    assert mlp.steps_per_execution == training.DEFAULT_STEPS_PER_EXECUTION > 1
    assert mlp.jit_compile is True and fused.uses_fused_steps(mlp)
    assert conv.jit_compile is on_accelerator
    assert fused.uses_fused_steps(conv) is on_accelerator
    no_xla = make_vae()
    no_xla.compile(jit_compile=False)
    assert not fused.uses_fused_steps(no_xla)


def test_the_fused_train_function_is_traced_once_over_epochs_of_many_steps(digits):
    x = digits[0][:1000]  # 63 steps of 16 an epoch: 32 + 31 fused, the last batch of 8
    vae = counting_vae()
    vae.compile()
    CountingVAE.traces = 0
    history = vae.fit(x, batch_size=16, epochs=3, verbose=0)
    assert fused.uses_fused_steps(vae)
    assert CountingVAE.traces == 1
    assert int(vae.optimizer.iterations) == 3 * 63
    assert np.isfinite(history.history["loss"]).all()


def test_fused_steps_give_the_same_weights_as_keras_step_by_step_loop(digits):
    x = digits[0][:600]
    results = []
    for steps in (1, 7):  # Keras' per-step XLA loop, then 7 steps per XLA program
        keras.utils.set_random_seed(0)
        vae = make_vae(seed=0)
        vae.compile(jit_compile=True, steps_per_execution=steps)
        history = vae.fit(x, batch_size=50, epochs=2, shuffle=False, verbose=0).history
        assert fused.uses_fused_steps(vae) is (steps > 1)
        results.append(([w.numpy() for w in vae.weights], history, int(vae.optimizer.iterations)))
    (weights_a, history_a, steps_a), (weights_b, history_b, steps_b) = results
    assert steps_a == steps_b == 24
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in history_a:
        np.testing.assert_allclose(history_a[name], history_b[name], rtol=1e-5)


def test_fused_steps_train_conditional_models_on_x_and_labels():
    x, y = tfvae.data.load_arrays("digits", "train")
    x, y = x[:512], y[:512]
    vae = tfvae.models.build("conditional", (8, 8, 1), latent_dim=4, num_classes=10)
    vae.compile(jit_compile=True, steps_per_execution=4)
    history = vae.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert fused.uses_fused_steps(vae)
    assert int(vae.optimizer.iterations) == 16
    assert history.history["loss"][1] < history.history["loss"][0]


def test_steps_per_execution_one_or_eager_falls_back_to_keras_loop(digits):
    for options in (dict(steps_per_execution=1), dict(run_eagerly=True)):
        vae = make_vae()
        vae.compile(**options)
        assert not fused.uses_fused_steps(vae)
        vae.fit(digits[0][:128], batch_size=64, verbose=0)
        assert int(vae.optimizer.iterations) == 2
