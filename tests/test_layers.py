"""tfvae.layers: distribution layers as the last layer of Keras 3 functional models."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import layers

tfd = tfp.distributions

LIKELIHOOD_CLASSES = [
    (layers.IndependentBernoulli, {}),
    (layers.IndependentContinuousBernoulli, {}),
    (layers.IndependentNormal, {"scale": 0.5}),
    (layers.IndependentNormal, {"scale": "learned"}),
]


def assert_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


def test_multivariate_normal_diag_parameters_and_shapes():
    layer = layers.MultivariateNormalDiag(3, min_scale=1e-3)
    assert layer.params_size(3) == 6
    params = np.array([[0.5, -1.0, 2.0, 0.0, -1e4, 3.0]] * 5, np.float32)
    q = layer(params)
    assert isinstance(q, tfd.MultivariateNormalDiag)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    np.testing.assert_allclose(q.mean()[0], [0.5, -1.0, 2.0])
    # softplus scale plus the floor: a very negative raw scale gives the floor, not 0.
    expected = np.log1p(np.exp([0.0, -1e4, 3.0])) + 1e-3
    np.testing.assert_allclose(q.stddev()[0], expected, rtol=1e-6)
    assert np.isfinite(q.log_prob(q.mean()).numpy()).all()
    assert_config_round_trip(layer)


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True])
def test_multivariate_normal_diag_rejects_bad_latent_dim(bad):
    with pytest.raises(ValueError, match="latent_dim"):
        layers.MultivariateNormalDiag(bad)


def test_multivariate_normal_diag_rejects_wrong_parameter_count():
    inputs = keras.Input((5,))
    with pytest.raises(ValueError, match=r"needs 8 parameters.*input_shape=\(None, 5\)"):
        layers.MultivariateNormalDiag(4)(inputs)


@pytest.mark.parametrize("cls,kwargs", LIKELIHOOD_CLASSES)
@pytest.mark.parametrize("event_shape", [(6,), (4, 3, 2)])
def test_likelihoods_take_flat_or_shaped_parameters(cls, kwargs, event_shape):
    layer = cls(event_shape, **kwargs)
    size = cls.params_size(event_shape)
    assert size == int(np.prod(event_shape))
    for params_shape in [(7, size), (7,) + event_shape]:
        inputs = keras.Input(params_shape[1:])
        model = keras.Model(inputs, layer(inputs))
        assert tuple(model.outputs[0].shape) == (None,) + event_shape
        p = model(np.zeros(params_shape, np.float32))
        assert isinstance(p, tfd.Distribution)
        assert p.batch_shape == (7,) and p.event_shape == event_shape
        x = np.full((7,) + event_shape, 0.25, np.float32)
        assert p.log_prob(x).shape == (7,)
        assert p.mean().shape == (7,) + event_shape
    assert_config_round_trip(layer)


def test_bernoulli_mean_is_sigmoid_of_logits_and_log_prob_sums_over_event():
    logits = np.array([[-2.0, 0.0, 3.0, 1.0]], np.float32)
    p = layers.IndependentBernoulli((2, 2))(logits)
    np.testing.assert_allclose(p.mean().numpy().ravel(), 1 / (1 + np.exp(-logits[0])), rtol=1e-6)
    x = np.array([[[1.0, 0.0], [1.0, 1.0]]], np.float32)
    by_hand = np.sum(x.ravel() * logits[0] - np.log1p(np.exp(logits[0])))
    np.testing.assert_allclose(p.log_prob(x).numpy(), [by_hand], rtol=1e-6)


def test_continuous_bernoulli_is_normalised_on_the_unit_interval():
    p = layers.IndependentContinuousBernoulli((1,))(np.array([[2.0]], np.float32))
    grid = np.linspace(0.0, 1.0, 20001, dtype=np.float32)[:, None]
    density = np.exp(p.log_prob(grid[:, None, :]).numpy()).ravel()
    assert abs(np.trapezoid(density, grid.ravel()) - 1.0) < 1e-3


def test_normal_fixed_scale_has_no_weights_and_learned_scale_has_one_per_element():
    fixed = layers.IndependentNormal((3, 2), scale=0.5)
    fixed.build((None, 6))
    assert fixed.weights == []
    np.testing.assert_allclose(fixed(np.zeros((2, 6), np.float32)).stddev(), 0.5)
    learned = layers.IndependentNormal((3, 2), scale="learned")
    learned.build((None, 6))
    assert [tuple(w.shape) for w in learned.trainable_weights] == [(3, 2)]
    np.testing.assert_allclose(
        learned(np.zeros((2, 6), np.float32)).stddev(), 1.0 + 1e-3, rtol=1e-4
    )


@pytest.mark.parametrize("scale", [0, -1.0, "fixed", None])
def test_normal_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        layers.IndependentNormal((4,), scale=scale)


def test_likelihood_rejects_parameters_of_another_shape():
    with pytest.raises(ValueError, match=r"IndependentBernoulli\(event_shape=\(4,\)\)"):
        layers.IndependentBernoulli((4,))(keras.Input((5,)))


@pytest.mark.parametrize("shape", [(), (0, 3), "abc", (2, -1)])
def test_likelihood_rejects_bad_event_shape(shape):
    with pytest.raises(ValueError, match="event_shape"):
        layers.IndependentBernoulli(shape)


def test_likelihood_layer_by_name():
    assert isinstance(layers.likelihood_layer("bernoulli", (4,)), layers.IndependentBernoulli)
    assert layers.likelihood_layer("gaussian_learned_scale", (4,)).scale == "learned"
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'. Expected one of"):
        layers.likelihood_layer("poisson", (4,))


def test_distribution_layers_keep_float32_under_a_float16_input():
    q = layers.MultivariateNormalDiag(2)(tf.zeros((3, 4), tf.float16))
    assert q.dtype == tf.float32


def test_gated_dense_is_a_linear_layer_times_a_sigmoid_gate_and_round_trips(tmp_path):
    import tfvae

    x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    inputs = keras.Input((7,))
    model = keras.Model(inputs, tfvae.layers.GatedDense(3, name="gated")(inputs))
    layer = model.get_layer("gated")
    linear = x @ layer.linear.kernel.numpy() + layer.linear.bias.numpy()
    gate = 1 / (1 + np.exp(-(x @ layer.gate.kernel.numpy() + layer.gate.bias.numpy())))
    np.testing.assert_allclose(model(x).numpy(), linear * gate, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "gated.keras")
    loaded = keras.models.load_model(tmp_path / "gated.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    encoder = tfvae.networks.mlp_encoder((7,), 2, (4, 4), activation="gated")
    assert [type(l).__name__ for l in encoder.layers].count("GatedDense") == 2  # noqa: E741
    with pytest.raises(ValueError, match="`units` must be an integer >= 1"):
        tfvae.layers.GatedDense(0)
