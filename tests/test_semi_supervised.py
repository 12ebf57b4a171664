"""tfvae.models.semi_supervised: M2's objective, M1+M2, labelled subsets, classify everywhere."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import run_here

import tfvae
from tfvae import export, loading, plots, serving
from tfvae.models import semi_supervised

tfd = tfp.distributions
K = 10


def build_m2(alpha=7.0, **kwargs):
    return tfvae.models.build(
        "semi_supervised", (8, 8, 1), "mlp", 4, "bernoulli", seed=0, **kwargs
    ), alpha


def m2_with_tiny_posterior(alpha=7.0):
    """M2 whose q(z|x,y) has a standard deviation of about 1e-5, so that the one draw
    of z in each pass is its mean to 1e-5: a batched pass and separate per-class passes
    then see the same z, and their objectives must agree."""
    model = tfvae.models.build(
        "semi_supervised", (8, 8, 1), "mlp", 4, "bernoulli", seed=0, labelled_fraction=0.1 / alpha
    )
    params = model.encoder.get_layer("params")
    kernel, bias = params.get_weights()
    kernel[:, 4:], bias[4:] = 0.0, -40.0  # softplus(-40) + min_scale: the scale is 1e-5
    params.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def digits_labels():
    x, y = tfvae.data.load_arrays("digits", "train")
    return x, y


def test_paper_alpha_and_the_builders_weight():
    assert semi_supervised.paper_alpha(60000, 100) == pytest.approx(60.0)
    assert semi_supervised.paper_alpha(60000, 60000) == pytest.approx(0.1)
    model = tfvae.models.build("semi_supervised", (8, 8, 1), latent_dim=4, labelled_fraction=0.01)
    assert model.alpha == pytest.approx(10.0)
    with pytest.raises(ValueError, match="at most"):
        semi_supervised.paper_alpha(100, 101)
    with pytest.raises(ValueError, match="labelled_fraction"):
        tfvae.models.build("semi_supervised", (8, 8, 1), latent_dim=4, labelled_fraction=1.5)


def test_unlabelled_objective_is_the_explicit_sum_over_the_classes(digits_labels):
    x = tf.constant(digits_labels[0][:16])
    model = m2_with_tiny_posterior()
    terms = model.loss_terms(x, tf.fill([16], -1))
    # Separately: -L(x, c) for each class c through the conditional VAE's own pass.
    negative_elbos = []
    for c in range(K):
        parts = model.elbo_parts(x, tf.fill([16], c))
        negative_elbos.append((parts.distortion + parts.rate).numpy())
    q_y = model.classifier(x)
    probs = q_y.probs_parameter().numpy()
    entropy = tfd.OneHotCategorical(probs=probs).entropy().numpy()
    expected = (probs * np.stack(negative_elbos, axis=1)).sum(axis=1) - entropy
    np.testing.assert_allclose(terms["loss"].numpy(), expected, rtol=1e-5, atol=1e-4)
    # The ELBO is the bound on log p(x): -U(x) - log K.
    np.testing.assert_allclose(terms["elbo"].numpy(), -expected - math.log(K), rtol=1e-5)
    assert (terms["labelled"].numpy() == 0).all()


def test_with_every_label_given_it_is_the_conditional_loss_plus_alpha_cross_entropy(
    digits_labels,
):
    x, y = tf.constant(digits_labels[0][:16]), digits_labels[1][:16]
    model = m2_with_tiny_posterior(alpha=7.0)
    conditional = tfvae.ConditionalVAE(model.encoder, model.decoder, num_classes=K)
    cvae_loss = conditional.loss_terms(x, tf.one_hot(y, K))["loss"].numpy()
    cross_entropy = -model.classifier(x).log_prob(tf.one_hot(y, K)).numpy()
    terms = model.loss_terms(x, tf.constant(y))
    np.testing.assert_allclose(
        terms["loss"].numpy(), cvae_loss + 7.0 * cross_entropy, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(terms["cross_entropy"].numpy(), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(terms["label_rate"].numpy(), 0.0)
    # One-hot rows mean the same labels.
    np.testing.assert_allclose(
        model.loss_terms(x, tf.one_hot(y, K))["loss"].numpy(), terms["loss"].numpy(), rtol=1e-5
    )


def test_a_mixed_batch_gives_each_example_the_terms_of_its_own_kind(digits_labels):
    x, y = tf.constant(digits_labels[0][:12]), digits_labels[1][:12].copy()
    model = m2_with_tiny_posterior()
    mixed = y.copy()
    mixed[::2] = -1
    together = model.loss_terms(x, tf.constant(mixed))["loss"].numpy()
    labelled = model.loss_terms(x, tf.constant(y))["loss"].numpy()
    unlabelled = model.loss_terms(x, tf.fill([12], -1))["loss"].numpy()
    np.testing.assert_allclose(together[1::2], labelled[1::2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(together[::2], unlabelled[::2], rtol=1e-5, atol=1e-4)


def test_classification_metrics_average_over_the_labelled_examples_only(digits_labels):
    x, y = digits_labels[0][:200], digits_labels[1][:200]
    model, _ = build_m2()
    model.compile()
    hidden = y.copy()
    hidden[50:] = -1
    metrics = model.evaluate(x, hidden, batch_size=200, verbose=0, return_dict=True)
    cross_entropy = -model.classifier(tf.constant(x[:50])).log_prob(tf.one_hot(y[:50], K))
    assert metrics["cross_entropy"] == pytest.approx(float(np.mean(cross_entropy)), rel=1e-4)
    errors = np.mean(model.classify(x[:50]) != y[:50])
    assert metrics["error"] == pytest.approx(errors, abs=1e-6)


def test_training_labels_are_checked_in_one_line(digits_labels):
    x, y = digits_labels
    model, _ = build_m2()
    model.compile()
    with pytest.raises(ValueError, match=r"\[-1, 10\)"):
        model.fit(x[:64], np.full(64, -2), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="received no labels"):
        model.fit(x[:64], epochs=1, verbose=0)
    with pytest.raises(TypeError, match="integers"):
        model.fit(x[:64], y[:64].astype(np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Expected 64 labels"):
        model.fit(x[:64], y[:63], epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):  # elsewhere -1 is not a class
        model.encode(x[:2], labels=[-1, 3])


def test_labelled_subset_is_class_balanced_fixed_by_its_seed_and_checked():
    y = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(y)
    subset = tfvae.data.labelled_subset(y, 100, seed=3)
    kept = subset >= 0
    assert kept.sum() == 100 and (subset[kept] == y[kept]).all()
    assert (np.bincount(subset[kept], minlength=10) == 10).all()
    assert (tfvae.data.labelled_subset(y, 100, seed=3) == subset).all()
    assert (tfvae.data.labelled_subset(y, 100, seed=4) != subset).any()
    uneven = tfvae.data.labelled_subset(y, 13, seed=0)
    assert sorted(np.bincount(uneven[uneven >= 0], minlength=10)) == [1] * 7 + [2] * 3
    with pytest.raises(ValueError, match=">= 10"):
        tfvae.data.labelled_subset(y, 5)
    with pytest.raises(ValueError, match="at most the 500"):
        tfvae.data.labelled_subset(y, 501)
    with pytest.raises(ValueError, match="fewer than"):
        tfvae.data.labelled_subset(np.array([0] * 20 + [1] * 2), 10)
    with pytest.raises(ValueError, match="must all be given"):
        tfvae.data.labelled_subset(subset, 10)


def test_load_keeps_the_labels_of_the_same_subset():
    batches = tfvae.data.load(
        "digits", "train", batch_size=2000, with_labels=True, num_labelled=30, label_seed=2
    )
    x, y = next(iter(batches))
    order_free = {tuple(np.round(a.ravel(), 4)): b for a, b in zip(x.numpy(), y.numpy())}
    x_all, y_all = tfvae.data.load_arrays("digits", "train")
    expected = tfvae.data.labelled_subset(y_all, 30, seed=2)
    assert all(order_free[tuple(np.round(a.ravel(), 4))] == b for a, b in zip(x_all, expected))


@pytest.mark.slow  # M2 on real MNIST (about 12 s)
def test_short_real_mnist_run_beats_the_majority_class_by_far(mnist_source):
    x, y = tfvae.data.load_arrays("mnist", "train[:10000]", **mnist_source)
    x_test, y_test = tfvae.data.load_arrays("mnist", "test[:2000]", **mnist_source)
    labels = tfvae.data.labelled_subset(y, 100, seed=0)
    model = tfvae.models.build(
        "semi_supervised", (28, 28, 1), "mlp", 16, labelled_fraction=100 / len(x), seed=0
    )
    model.compile()
    model.fit(x, labels, epochs=3, batch_size=100, verbose=0)
    error = np.mean(model.classify(x_test) != y_test)
    majority = 1 - np.bincount(y_test).max() / len(y_test)
    # 100 labels, 3 epochs on 10,000 images: about 0.55 against the majority's 0.89.
    assert majority > 0.85 and error < majority - 0.25, (error, majority)


@pytest.fixture(scope="module")
def m1_and_stacked(digits_labels, tmp_path_factory):
    x, y = digits_labels
    m1 = tfvae.models.build("vae", (8, 8, 1), "mlp", 6, seed=0)
    m1.compile()
    m1.fit(x, epochs=2, verbose=0)
    dims = semi_supervised.used_dimensions(m1, x[:500], threshold=0.0)
    stacked = tfvae.models.build(
        "semi_supervised", (8, 8, 1), "mlp", 4, features=m1, feature_dims=dims[:5], seed=0
    )
    stacked.compile()
    stacked.fit(x, tfvae.data.labelled_subset(y, 50), epochs=1, verbose=0)
    return m1, stacked


def test_m1_stays_frozen_and_m1_plus_m2_works_on_images(m1_and_stacked, digits_labels):
    m1, stacked = m1_and_stacked
    x = digits_labels[0][:20]
    for mine, theirs in zip(stacked.features.get_weights(), m1.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # trained M2, M1 untouched
    assert not stacked.features.trainable and stacked.model_input_shape == (5,)
    assert stacked.data_shape == (8, 8, 1) and stacked.likelihood is stacked.features.likelihood
    assert stacked.sample(3, labels=2, seed=0).shape == (3, 8, 8, 1)
    assert stacked.reconstruct(x[:3], labels=[1, 2, 3]).shape == (3, 8, 8, 1)
    assert stacked.classify(x).shape == (20,)
    with pytest.raises(ValueError, match="M1's latents"):
        stacked.log_importance_weights(x[:2], 3, labels=[0, 1])
    with pytest.raises(TypeError, match="trained tfvae.VAE"):
        tfvae.models.build("semi_supervised", (8, 8, 1), latent_dim=4, features=object())


@pytest.mark.parametrize("kind", ["m2", pytest.param("m1_plus_m2", marks=pytest.mark.slow)])
def test_keras_saved_model_and_litert_classify_agree(kind, m1_and_stacked, digits_labels, tmp_path):
    x = digits_labels[0][:50]
    if kind == "m2":
        model, _ = build_m2()
        model.compile()
        model.fit(*digits_labels, epochs=1, verbose=0)
    else:
        model = m1_and_stacked[1]
    model.save(tmp_path / "model.keras")
    loaded = loading.load_vae(tmp_path / "model.keras")
    expected = model.class_probabilities(x).numpy()
    np.testing.assert_allclose(loaded.class_probabilities(x).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(
        loaded.sample(4, labels=3, seed=1), model.sample(4, labels=3, seed=1), atol=1e-6
    )
    export.export_saved_model(model, tmp_path / "saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["classify"]
    out = served(x=tf.constant(x))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert (out["label"].numpy() == expected.argmax(-1)).all()
    export.to_tflite(model, tmp_path / "model.tflite")
    lite = serving.LiteRTModel(tmp_path / "model.tflite")
    assert "classify" in lite.signatures and "sample" in lite.signatures
    np.testing.assert_allclose(lite.run("classify", x=x)["probabilities"], expected, atol=1e-5)
    assert (lite.classify(x) == expected.argmax(-1)).all()
    assert expected.std() > 1e-3  # a trained classifier's probabilities, not a constant
    samples = lite.sample(64, label=3)
    assert samples.shape == (64, 8, 8, 1) and samples.std(axis=0).mean() > 1e-4


def test_analogies_keep_the_style_and_vary_the_class(m1_and_stacked, digits_labels, tmp_path):
    import matplotlib.image

    x = digits_labels[0][:8]
    out = plots.plot_analogies(m1_and_stacked[1], x, tmp_path / "analogies.png")
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == ((8 * 9 + 1) * 8, (11 * 9 + 1) * 8) and image.std() > 0.01
    with pytest.raises(ValueError, match="takes no labels"):
        plots.plot_analogies(m1_and_stacked[0], x, tmp_path / "no.png")


@pytest.mark.slow  # three CLI runs (about 20 s)
def test_cli_semi_supervised_train_evaluate_and_m1_plus_m2(tmp_path):
    m1 = tmp_path / "m1"
    result = run_here("train", "--epochs", 1, "--latent-dim", 6, "--output-dir", m1)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "m12"
    flags = ["--labels", 50, "--label-seed", 1, "--features", m1, "--latent-dim", 4]
    result = run_here(
        "train", "--model", "semi_supervised", "--epochs", 1, *flags, "--output-dir", run
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert (config["labels"], config["label_seed"], config["features"]) == (50, 1, str(m1))
    model = loading.load_vae(run)
    assert model.features is not None and model.alpha == pytest.approx(0.1 * 1437 / 50)
    result = run_here("evaluate", run, "--k", 10)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test error" in result.stdout and "ELBO, no labels" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    x_test, y_test = tfvae.data.load_arrays("digits", "test")
    assert metrics["classification_error"] == pytest.approx(
        np.mean(model.classify(x_test) != y_test)
    )
    assert "M1's latents" in metrics["not_measured"]["log_likelihood"]
    result = run_here("export", run, "--format", "tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "classify" in serving.LiteRTModel(run / "model.tflite").signatures


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--model", "vae", "--labels", 100], "applies to --model semi_supervised"),
        (["--model", "semi_supervised", "--labels", 5], "at least the 10 classes"),
        (["--model", "semi_supervised", "--labels", 5000], "at most the 1437"),
        (["--model", "semi_supervised", "--features", "/nonexistent/run"], "No model at"),
    ],
)
def test_cli_refuses_bad_semi_supervised_settings_in_one_line(flags, words, tmp_path):
    result = run_here("train", "--epochs", 1, *flags, "--output-dir", tmp_path / "run")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert words in lines[0], lines[0]


def test_config_round_trip(digits_labels):
    model, _ = build_m2(alpha=3.0)
    again = type(model).from_config(model.get_config())
    assert again.get_config() == model.get_config()
    layer = tfvae.OneHotCategorical(10)
    assert (
        tfvae.OneHotCategorical.from_config(layer.get_config()).get_config() == layer.get_config()
    )
    assert keras.saving.get_registered_name(type(model)) == "tfvae>SemiSupervisedVAE"
