"""tfvae.networks: named functional encoders and decoders, MLP and convolutional."""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

from tfvae import layers, networks

tfd = tfp.distributions


def dense_units(model):
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_mlp_defaults_follow_the_reference_architecture():
    encoder = networks.mlp_encoder((28, 28, 1))
    decoder = networks.mlp_decoder(20, (28, 28, 1))
    assert encoder.name == "encoder" and decoder.name == "decoder"
    assert dense_units(encoder) == [512, 256, 40]
    assert dense_units(decoder) == [256, 512, 784]
    assert isinstance(decoder.layers[-1], layers.IndependentBernoulli)


def test_mlp_encoder_returns_a_diagonal_gaussian_with_batch_and_event_shapes():
    encoder = networks.mlp_encoder((28, 28, 1), latent_dim=20)
    q = encoder(np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32))
    assert isinstance(q, tfd.MultivariateNormalDiag)
    assert q.batch_shape == (5,) and q.event_shape == (20,)


def test_encoder_round_trips_through_keras_file(tmp_path):
    encoder = networks.mlp_encoder((28, 28, 1), latent_dim=20)
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    before, after = encoder(x), loaded(x)
    assert isinstance(after, tfd.MultivariateNormalDiag)
    np.testing.assert_array_equal(before.mean(), after.mean())
    np.testing.assert_array_equal(before.stddev(), after.stddev())


def test_decoder_with_learned_scale_round_trips_with_its_scale_weights(tmp_path):
    decoder = networks.conv_decoder(6, (12, 10, 3), likelihood="gaussian_learned_scale")
    decoder.layers[-1].raw_scale.assign(np.full((12, 10, 3), -1.5, np.float32))
    path = tmp_path / "decoder.keras"
    decoder.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    z = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_array_equal(decoder(z).mean(), loaded(z).mean())
    np.testing.assert_array_equal(decoder(z).stddev(), loaded(z).stddev())


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (30, 22, 2), (8, 8, 1)])
@pytest.mark.parametrize("likelihood", sorted(layers.LIKELIHOODS))
def test_conv_networks_fit_any_image_shape(shape, likelihood):
    encoder, decoder = networks.build("conv", shape, latent_dim=5, likelihood=likelihood)
    q = encoder(np.zeros((2,) + shape, np.float32))
    assert q.event_shape == (5,)
    p = decoder(q.sample(seed=0))
    assert p.event_shape == shape and p.batch_shape == (2,)


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"height, width, channels.*\(28, 28, 1\)"):
        networks.conv_encoder((28, 28))
    with pytest.raises(ValueError, match="Unknown network 'rnn'"):
        networks.build("rnn", (8, 8, 1))
    with pytest.raises(ValueError, match="Unknown likelihood 'laplace'"):
        networks.mlp_decoder(4, (8, 8, 1), likelihood="laplace")
    with pytest.raises(ValueError, match="hidden_units"):
        networks.mlp_encoder((64,), hidden_units=(32, 0))
    with pytest.raises(ValueError, match="latent_dim"):
        networks.mlp_encoder((64,), latent_dim=0)


def test_summary_lists_the_distribution_layer(capsys):
    networks.mlp_encoder((64,), latent_dim=3).summary(line_length=120)
    out = capsys.readouterr().out
    assert "posterior (MultivariateNormalDiag)" in out and "(None, 3)" in out


def test_stacked_networks_are_burdas_two_layer_architecture():
    encoder, top_down, decoder, bottom_up = networks.build_stacked((28, 28, 1))

    def dense(model):
        return [(d.units, d.activation.__name__) for d in model.layers if hasattr(d, "units")]

    assert dense(encoder) == [(200, "tanh"), (200, "tanh"), (200, "linear")]  # q(z1|x): 2 x 100
    assert dense(bottom_up[0]) == [(100, "tanh"), (100, "tanh"), (100, "linear")]  # q(z2|z1)
    assert dense(top_down[0]) == [(100, "tanh"), (100, "tanh"), (200, "linear")]  # p(z1|z2)
    assert dense(decoder) == [(200, "tanh"), (200, "tanh"), (784, "linear")]  # p(x|z1)
    assert tuple(bottom_up[0].inputs[0].shape[1:]) == (100,)
    assert tuple(top_down[0].inputs[0].shape[1:]) == (50,)
    with pytest.raises(ValueError, match="two or more latent sizes"):
        networks.build_stacked((28, 28, 1), latent_dims=(50,), hidden_units=(200,))


def test_output_bias_starts_the_decoder_at_the_pixel_means(digits):
    x = (digits[0] > 0.5).astype(np.float32)
    decoder = networks.mlp_decoder(4, (8, 8, 1), (16,), activation="tanh")
    networks.initialize_output_bias(decoder, x)
    mean = np.clip(x.reshape(len(x), -1).mean(0), 1e-3, 1 - 1e-3)
    bias = decoder.get_layer("params").bias.numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), mean, rtol=1e-4)
    gaussian = networks.mlp_decoder(4, (8, 8, 1), (16,), likelihood="gaussian")
    with pytest.raises(ValueError, match="Bernoulli likelihood. Received layers"):
        networks.initialize_output_bias(gaussian, x)
    with pytest.raises(ValueError, match="Expected data with 64 values per example"):
        networks.initialize_output_bias(decoder, np.zeros((5, 4, 4, 1)))
