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


def test_in_memory_batches_are_all_full_and_cover_every_example_each_epoch():
    x = np.arange(1000, dtype=np.float32).reshape(1000, 1)  # 62 full batches of 16, 8 over
    dataset = fused.in_memory_dataset(x, batch_size=16, shuffle=True)
    assert int(dataset.cardinality()) == 63
    for _ in range(2):  # two epochs, each a new order
        batches = [b[0].numpy().ravel() for b in dataset]
        assert [len(b) for b in batches] == [16] * 63
        seen = np.concatenate(batches)
        assert set(seen.tolist()) == set(range(1000))  # every example once ...
        assert len(seen) - len(set(seen.tolist())) == 8  # ... and 8 of them twice
    small = fused.in_memory_dataset(x[:5], batch_size=16)  # fewer than a batch: one of 5
    assert [tuple(b[0].shape) for b in small] == [(5, 1)]


def test_in_memory_batches_gather_from_numpy_without_copying_it_whole():
    rng = np.random.default_rng(0)
    x = rng.random((100, 3))  # float64: cast batch by batch, as float32
    y = np.arange(100)
    dataset = fused.in_memory_dataset(x, y, batch_size=32, shuffle=False)
    batches = list(dataset)
    assert [tuple(b[0].shape) for b in batches] == [(32, 3)] * 4
    assert all(b[0].dtype == tf.float32 for b in batches)
    np.testing.assert_array_equal(batches[0][0].numpy(), x[:32].astype(np.float32))
    np.testing.assert_array_equal(batches[3][1].numpy(), np.r_[96:100, 0:28])  # filled up
    tensor = tf.constant(x, tf.float32)
    from_tensor = list(fused.in_memory_dataset(tensor, batch_size=32, shuffle=False))
    np.testing.assert_array_equal(from_tensor[1][0].numpy(), batches[1][0].numpy())


class BranchingVAE(tfvae.VAE):
    """Branches in Python on a tensor: needs autograph to trace."""

    def loss_terms(self, x, y=None, training=False):
        terms = super().loss_terms(x, y, training=training)
        if tf.reduce_mean(terms["loss"]) > 1e9:  # never true; autograph makes it a tf.cond
            terms = dict(terms, loss=terms["loss"] * 0.0)
        return terms


def test_fused_steps_train_a_model_whose_code_needs_autograph(digits):
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), 4, (32,))
    decoder = tfvae.networks.mlp_decoder(4, (8, 8, 1), (32,))
    vae = BranchingVAE(encoder, decoder, seed=0)
    vae.compile(steps_per_execution=4)
    history = vae.fit(digits[0][:512], batch_size=64, epochs=2, verbose=0).history
    assert fused.uses_fused_steps(vae)
    assert int(vae.optimizer.iterations) == 16
    assert history["loss"][1] < history["loss"][0]
