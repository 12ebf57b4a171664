"""tfvae.VAE: construction, fit/evaluate/predict, sampling, saving, and bad input."""

import keras
import numpy as np
import pytest
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
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
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
