"""tfvae.VAE: construction, fit/evaluate/predict, sampling, saving, and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import make_vae

import tfvae

tfd = tfp.distributions
TERMS = {"loss", "distortion", "rate", "elbo"}


# ---------------------------------------------------------------- construction
def test_shapes_and_defaults():
    vae = make_vae(latent_dim=4)
    assert vae.data_shape == (8, 8, 1) and vae.latent_dim == 4
    assert isinstance(vae.prior, tfvae.StandardNormal)
    assert vae.built
    assert float(vae.beta.numpy()) == 1.0
    assert not any(v is vae.beta for v in vae.trainable_variables)


def test_construction_errors_name_what_was_received():
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), 4, (16,))
    decoder = tfvae.networks.mlp_decoder(4, (8, 8, 1), (16,))
    inputs = keras.Input((8, 8, 1))
    plain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(TypeError, match="encoder must end in a tfvae distribution layer.*Dense"):
        tfvae.VAE(plain, decoder)
    with pytest.raises(TypeError, match="must be a built Keras functional"):
        tfvae.VAE("encoder", decoder)
    with pytest.raises(ValueError, match=r"decoder must take z of shape \(batch, 4\)"):
        tfvae.VAE(encoder, tfvae.networks.mlp_decoder(5, (8, 8, 1), (16,)))
    with pytest.raises(ValueError, match=r"over data of shape \(8, 8, 1\)"):
        tfvae.VAE(encoder, tfvae.networks.mlp_decoder(4, (64,), (16,)))
    with pytest.raises(ValueError, match=r"beta.*>= 0. Received: beta=-1"):
        tfvae.VAE(encoder, decoder, beta=-1)
    with pytest.raises(TypeError, match="beta"):
        tfvae.VAE(encoder, decoder, beta="high")
    with pytest.raises(TypeError, match="prior"):
        tfvae.VAE(encoder, decoder, prior=tfd.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="prior is over 3 dimensions"):
        tfvae.VAE(encoder, decoder, prior=tfvae.StandardNormal(3))
    with pytest.raises(ValueError, match="computes its own loss"):
        tfvae.VAE(encoder, decoder).compile(loss="mse")


# ---------------------------------------------------------------- training
def test_fit_reports_the_four_terms_for_train_and_validation(digits):
    x_train, x_test = digits
    vae = make_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = vae.fit(x_train, batch_size=64, epochs=3, validation_data=x_test, verbose=0)
    assert set(history.history) == TERMS | {f"val_{t}" for t in TERMS}
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    result = vae.evaluate(x_test, batch_size=100, verbose=0, return_dict=True)
    assert set(result) == TERMS
    assert result["elbo"] == pytest.approx(-(result["distortion"] + result["rate"]), rel=1e-5)
    assert vae.optimizer.iterations.numpy() == 3 * int(np.ceil(len(x_train) / 64))


def test_metrics_are_reset_at_each_epoch(digits):
    counts = []

    class FirstBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                counts.append(int(self.model.metrics[0].count.numpy()))

    vae = make_vae()
    vae.compile(steps_per_execution=1)
    vae.fit(digits[0][:256], batch_size=32, epochs=3, verbose=0, callbacks=[FirstBatch()])
    assert counts == [32, 32, 32]


def test_fit_on_a_tf_data_pipeline_of_x_and_labels():
    train = tfvae.data.load("digits", "train", batch_size=100, with_labels=True)
    vae = make_vae()
    vae.compile()
    history = vae.fit(train, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_training_under_xla(digits):
    vae = make_vae()
    vae.compile(jit_compile=True)
    history = vae.fit(digits[0], batch_size=128, epochs=2, verbose=0)
    assert vae.jit_compile is True
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][1] < history.history["loss"][0]


def test_beta_weights_the_rate_in_the_trained_loss(digits):
    vae = make_vae(beta=0.0)
    vae.compile()
    result = vae.fit(digits[0], batch_size=128, epochs=1, verbose=0).history
    assert result["loss"][0] == pytest.approx(result["distortion"][0], rel=1e-5)
    assert result["rate"][0] > 0


# ---------------------------------------------------------------- inference
def test_encode_decode_reconstruct_predict_and_sample(digits):
    vae = make_vae(latent_dim=4)
    x = digits[1][:10]
    q = vae.encode(x)
    assert isinstance(q, tfd.MultivariateNormalDiag) and q.batch_shape == (10,)
    p = vae.decode(q.mean())
    assert p.event_shape == (8, 8, 1)
    np.testing.assert_allclose(vae.reconstruct(x), p.mean(), rtol=1e-6)
    np.testing.assert_allclose(vae.predict(x, verbose=0), p.mean(), rtol=1e-6)
    samples = vae.sample(16, seed=1).numpy()
    assert samples.shape == (16, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1
    draws = vae.sample(16, seed=1, output="sample").numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="n` must be >= 1"):
        vae.sample(0)
    with pytest.raises(ValueError, match='output` must be "mean" or "sample"'):
        vae.sample(4, output="mode")


# ---------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "network,likelihood", [("mlp", "bernoulli"), ("conv", "gaussian_learned_scale")]
)
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, digits, network, likelihood):
    x_train, x_test = digits
    vae = make_vae(network=network, likelihood=likelihood, beta=0.5, seed=3)
    vae.compile()
    vae.fit(x_train[:256], batch_size=64, epochs=1, verbose=0)
    vae.beta.assign(0.75)  # as a schedule would
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, tfvae.VAE)
    assert len(loaded.weights) == len(vae.weights)
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(loaded.beta.numpy()) == 0.75
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), vae.predict(x_test, verbose=0))
    np.testing.assert_array_equal(loaded.encode(x_test).stddev(), vae.encode(x_test).stddev())
    z = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decode(z).stddev(), vae.decode(z).stddev())
    assert loaded.optimizer.iterations.numpy() == vae.optimizer.iterations.numpy()
    loaded.fit(x_train[:128], batch_size=64, epochs=1, verbose=0)  # training resumes


def test_config_round_trip():
    vae = make_vae(beta=2.0, seed=5)
    config = vae.get_config()
    assert config["beta"] == 2.0 and config["seed"] == 5
    clone = tfvae.VAE.from_config(config)
    assert clone.get_config() == config


# ---------------------------------------------------------------- bad input
def fitted():
    vae = make_vae()
    vae.compile()
    return vae


@pytest.mark.parametrize(
    "x,error,message",
    [
        (
            np.zeros((10, 64), np.float32),
            ValueError,
            r"`x` must have shape \(batch, 8, 8, 1\). Received: shape=\(10, 64\). .*reshape it",
        ),
        (np.zeros((10, 8, 8), np.float32), ValueError, r"Received: shape=\(10, 8, 8\)"),
        (np.array([["a"] * 64] * 2).reshape(2, 8, 8, 1), TypeError, "real numbers.*dtype=<U1"),
        (np.zeros((0, 8, 8, 1), np.float32), ValueError, "`x` is empty: it holds 0 examples"),
        (
            np.where(np.eye(64)[:10].reshape(10, 8, 8, 1) > 0, np.nan, 0.5),
            ValueError,
            r"holds 10 NaN or Inf value\(s\), the first in example 0",
        ),
        (
            np.full((10, 8, 8, 1), 255.0),
            ValueError,
            r"values in \[255, 255\], but the likelihood needs values in \[0, 1\]. .*x / 255",
        ),
        (np.full((10, 8, 8, 1), -0.5), ValueError, r"values in \[-0.5, -0.5\]"),
    ],
)
def test_bad_arrays_give_clear_errors_everywhere(x, error, message):
    vae = fitted()
    weights = [w.numpy() for w in vae.weights]
    for call in (
        lambda: vae.fit(x, epochs=1, verbose=0),
        lambda: vae.evaluate(x, verbose=0),
        lambda: vae.predict(x, verbose=0),
        lambda: vae.encode(x),
        lambda: vae.reconstruct(x),
    ):
        with pytest.raises(error, match=message):
            call()
    for before, after in zip(weights, vae.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_bad_validation_data_and_latents():
    vae = fitted()
    good = np.full((8, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match="`validation_data` holds 1 NaN"):
        vae.fit(
            good,
            validation_data=(np.where(np.arange(512).reshape(8, 8, 8, 1) == 3, np.nan, 0.5),),
            epochs=1,
            verbose=0,
        )
    with pytest.raises(ValueError, match=r"`z` must have shape \(batch, 4\)"):
        vae.decode(np.zeros((3, 5), np.float32))


def test_gaussian_likelihood_accepts_values_outside_the_unit_interval():
    vae = make_vae(likelihood="gaussian")
    vae.compile()
    history = vae.fit(np.full((32, 8, 8, 1), 3.0, np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def dataset(*batches):
    return tf.data.Dataset.from_tensor_slices(np.stack(batches))


def test_bad_datasets_give_clear_errors():
    vae = fitted()
    ok = np.full((4, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"`x` must yield batches of shape \(batch, 8, 8, 1\)"):
        vae.fit(tf.data.Dataset.from_tensors(np.zeros((4, 64), np.float32)), verbose=0)
    with pytest.raises(ValueError, match="yields single examples of shape .*batch it first"):
        vae.fit(tf.data.Dataset.from_tensor_slices(ok), verbose=0)
    with pytest.raises(ValueError, match="`x` is empty: the dataset yields no batches"):
        vae.fit(dataset(ok).take(0), verbose=0)
    with pytest.raises(TypeError, match="real numbers.*string"):
        vae.fit(tf.data.Dataset.from_tensors(tf.fill((4, 8, 8, 1), "a")), verbose=0)


@pytest.mark.parametrize(
    "bad_batch,message",
    [
        (
            np.where(np.arange(256).reshape(4, 8, 8, 1) == 9, np.nan, 0.5).astype(np.float32),
            "`x` holds NaN or Inf values; expected finite numbers.",
        ),
        (
            np.full((4, 8, 8, 1), 7.0, np.float32),
            r"`x` holds values outside \[0, 1\], which the likelihood needs",
        ),
    ],
)
def test_a_bad_batch_in_the_middle_of_a_dataset_stops_with_a_clear_error(bad_batch, message):
    vae = fitted()
    ok = np.full((4, 8, 8, 1), 0.5, np.float32)
    data = dataset(ok, ok, ok, bad_batch, ok)
    with pytest.raises(ValueError, match=message) as caught:
        vae.fit(data, epochs=1, verbose=0)
    assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)
    assert all(np.isfinite(w.numpy()).all() for w in vae.weights)
    with pytest.raises(ValueError, match=message):
        vae.evaluate(data, verbose=0)


def test_a_batch_of_another_shape_in_a_ragged_dataset_is_refused():
    vae = fitted()
    gen = tf.data.Dataset.from_generator(
        lambda: iter(
            [np.full((4, 8, 8, 1), 0.5, np.float32), np.full((4, 8, 7, 1), 0.5, np.float32)]
        ),
        output_signature=tf.TensorSpec((None, 8, None, 1), tf.float32),
    )
    with pytest.raises(ValueError, match="a batch had another shape"):
        vae.fit(gen, epochs=1, verbose=0)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_an_empty_dataset_of_unknown_size_is_refused():
    vae = fitted()
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((8, 8, 8, 1), np.float32)).batch(4)
    empty = empty.filter(lambda x: tf.reduce_sum(x) > 1.0)  # cardinality unknown, yields nothing
    with pytest.raises(ValueError, match="empty"):
        vae.fit(empty, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        vae.evaluate(empty, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        vae.predict(empty, verbose=0)
