"""The VAE family: every model trains on real MNIST, reloads, runs from the CLI; identities."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import models

tfd = tfp.distributions


@pytest.fixture(scope="module")
def mnist_subset(mnist_source):
    """2,048 dynamically binarised MNIST training images with labels, 512 test images."""
    x, y = tfvae.data.load_arrays("mnist", "train[:2048]", **mnist_source)
    x_test, y_test = tfvae.data.load_arrays("mnist", "test[:512]", **mnist_source)
    rng = np.random.default_rng(0)
    binary = lambda a: (rng.random(a.shape) < a).astype(np.float32)  # noqa: E731
    return binary(x), y, binary(x_test), y_test


@pytest.fixture(scope="module")
def fixed_binarized_mnist(mnist_source):
    """2,048 training and 512 test images of the fixed binarized MNIST (no labels)."""
    x, _ = tfvae.data.load_arrays("binarized_mnist", "train[:2048]", **mnist_source)
    x_test, _ = tfvae.data.load_arrays("binarized_mnist", "test[:512]", **mnist_source)
    assert set(np.unique(x)) == {0.0, 1.0}
    return x, None, x_test, None


@pytest.mark.slow  # every model trained on real MNIST under XLA (about a minute and a half)
@pytest.mark.parametrize("name", models.MODELS)
def test_every_model_trains_on_mnist_reloads_and_its_log_likelihood_is_above_its_bounds(
    name, request, tmp_path
):
    # Fixed binarized MNIST (the density benchmark's data); the conditional models need
    # labels, so they train on dynamically binarised MNIST (M2 sees 100 of them).
    conditional = models.registry.spec(name).conditional
    data = "mnist_subset" if conditional else "fixed_binarized_mnist"
    x, y, x_test, y_test = request.getfixturevalue(data)
    keras.utils.set_random_seed(0)
    own = {"num_pseudo_inputs": 20} if name == "vamp_prior" else {}
    vae = models.build(name, (28, 28, 1), latent_dim=8, seed=0, **own)
    vae.compile()
    if name == "semi_supervised":
        y = tfvae.data.labelled_subset(y, 100, seed=0)
    labels = (y,) if conditional else ()
    history = vae.fit(x, *labels, batch_size=128, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 5, history["loss"]
    assert np.isfinite(history["rate"]).all()

    path = tmp_path / f"{name}.keras"
    vae.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(vae)
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    inputs = (x_test[:64], y_test[:64]) if conditional else x_test[:64]
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), vae.predict(inputs, verbose=0))

    if not vae.has_density:
        return
    # log p(x) (k = 1000) >= the test ELBO, and for IWAE >= its own L_k bound (k = 5).
    x_eval, y_eval = x_test[:100], None if y_test is None else y_test[:100]
    estimate = tfvae.evaluation.importance_sampled_log_likelihood(
        vae, x_eval, k=1000, labels=y_eval
    )
    terms = vae.evaluate(x_eval, *([] if y_eval is None else [y_eval]), verbose=0, return_dict=True)
    assert estimate.nats > terms["elbo"], (estimate.nats, terms)
    if name == "iwae":
        assert estimate.nats > terms["iwae_bound"] > terms["elbo"], (estimate.nats, terms)


def shared_networks(latent_dim=4):
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), latent_dim, (32,))
    decoder = tfvae.networks.mlp_decoder(latent_dim, (8, 8, 1), (32,))
    return encoder, decoder


def test_iwae_with_one_sample_is_the_elbo_on_the_same_noise(digits):
    encoder, decoder = shared_networks()
    vae, iwae = tfvae.VAE(encoder, decoder, seed=3), tfvae.IWAE(encoder, decoder, k=1, seed=3)
    x = digits[1][:100]
    parts = vae.elbo_parts(x)
    bound = iwae.loss_terms(x)["iwae_bound"].numpy()
    monte_carlo_rate = parts.posterior.log_prob(parts.z) - vae.prior_distribution().log_prob(
        parts.z
    )
    np.testing.assert_allclose(bound, -(parts.distortion + monte_carlo_rate), atol=1e-4)

    # In expectation it is also the ELBO with the analytic KL.
    iwae_bound = tf.function(lambda: iwae.loss_terms(x)["iwae_bound"])  # fresh noise per call
    vae_elbo = tf.function(lambda: vae.loss_terms(x)["elbo"])
    draws = np.stack([iwae_bound().numpy() for _ in range(200)])
    elbo = np.mean([vae_elbo().numpy() for _ in range(200)], axis=0)
    error = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.abs(draws.mean(axis=0) - elbo).max() < 4 * error.max() + 0.05


def test_iwae_bound_with_five_samples_is_above_the_elbo_on_average(digits):
    x_train, x_test = digits
    iwae = tfvae.IWAE(*shared_networks(), k=5, seed=1)
    iwae.compile()
    iwae.fit(x_train, batch_size=64, epochs=5, verbose=0)
    draws = [iwae.loss_terms(x_test) for _ in range(20)]
    bound = np.mean([d["iwae_bound"].numpy().mean() for d in draws])
    elbo = np.mean([d["elbo"].numpy().mean() for d in draws])
    assert bound > elbo + 0.05, (bound, elbo)


def test_free_bits_report_the_true_rate_and_optimise_the_floored_one(digits):
    vae = tfvae.FreeBitsVAE(*shared_networks(latent_dim=6), free_bits=0.5, beta=2.0)
    x = digits[1][:128]
    terms = vae.loss_terms(x)
    q = vae.encoder(x)
    mu, sigma = q.mean().numpy(), q.stddev().numpy()
    per_dim = 0.5 * (mu**2 + sigma**2 - np.log(sigma**2) - 1.0)
    np.testing.assert_allclose(terms["rate"], per_dim.sum(axis=1), atol=1e-5)
    floored = np.maximum(per_dim.mean(axis=0), 0.5).sum()
    np.testing.assert_allclose(terms["optimized_rate"], floored, rtol=1e-5)
    assert terms["optimized_rate"].numpy().min() >= 6 * 0.5
    np.testing.assert_allclose(terms["loss"], terms["distortion"] + 2.0 * floored, rtol=1e-5)


def test_conditional_sampler_follows_the_label_and_needs_labels(digits):
    x_train, _ = digits
    y_train = tfvae.data.load_arrays("digits", "train")[1]
    encoder, decoder = tfvae.networks.build("mlp", (8, 8, 1), 4, num_classes=10)
    cvae = tfvae.ConditionalVAE(encoder, decoder, num_classes=10, seed=0)
    cvae.compile()
    cvae.fit(x_train, y_train, batch_size=64, epochs=10, verbose=0)
    zeros = cvae.sample(32, labels=0, seed=5).numpy()
    ones = cvae.sample(32, labels=1, seed=5).numpy()
    assert np.abs(zeros - ones).mean() > 0.05
    # The samples of each label look like that class more than like the other one.
    mean_zero, mean_one = (x_train[y_train == c].mean(axis=0) for c in (0, 1))
    assert np.abs(zeros.mean(0) - mean_zero).mean() < np.abs(zeros.mean(0) - mean_one).mean()
    with pytest.raises(ValueError, match="needs labels"):
        cvae.fit(x_train, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="needs labels"):
        cvae.sample(4)
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 10\)"):
        cvae.sample(4, labels=12)
    with pytest.raises(ValueError, match="needs labels"):
        cvae.fit(tfvae.data.load("digits", "train", batch_size=64), epochs=1, verbose=0)


def test_learned_priors_are_learned_and_use_the_monte_carlo_rate(digits):
    for prior in (
        tfvae.priors.MixtureOfGaussians(4, 3),
        tfvae.priors.VampPrior(4, (8, 8, 1), num_pseudo_inputs=7),
    ):
        vae = tfvae.VAE(*shared_networks(), prior=prior)
        before = [w.numpy().copy() for w in prior.weights]
        assert prior.trainable_weights
        with pytest.raises(NotImplementedError):
            tfd.kl_divergence(vae.encoder(digits[1][:4]), vae.prior_distribution())
        vae.compile()
        vae.fit(digits[0], batch_size=64, epochs=2, verbose=0)
        assert any(np.abs(b - a.numpy()).max() > 1e-4 for b, a in zip(before, prior.weights))
        assert np.isfinite(vae.evaluate(digits[1], verbose=0, return_dict=True)["rate"])


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda e, d: tfvae.IWAE(e, d, k=0), ValueError, r"`k` must be an integer >= 1"),
        (lambda e, d: tfvae.IWAE(e, d, k=2.5), ValueError, "k"),
        (lambda e, d: tfvae.BetaVAE(e, d, beta=-4.0), ValueError, "beta"),
        (lambda e, d: tfvae.IWAE(e, d, beta=-1.0), ValueError, "beta"),
        (lambda e, d: tfvae.FreeBitsVAE(e, d, free_bits=-0.1), ValueError, "free_bits"),
        (lambda e, d: tfvae.ConditionalVAE(e, d, num_classes=1), ValueError, "num_classes"),
        (
            lambda e, d: tfvae.ConditionalVAE(e, d, num_classes=10),
            ValueError,
            "must take two inputs",
        ),
        (lambda e, d: tfvae.priors.MixtureOfGaussians(4, 0), ValueError, "num_components"),
        (lambda e, d: tfvae.priors.VampPrior(4, (8, 8, 1), 0), ValueError, "num_pseudo_inputs"),
        (lambda e, d: models.build("ladder", (8, 8, 1)), ValueError, "Unknown model 'ladder'"),
        (
            lambda e, d: models.build("vqvae", (8, 8, 1), num_codes=1),
            ValueError,
            r"`num_codes` must be an integer >= 2",
        ),
        (lambda e, d: models.build("vqvae", (8, 8, 1), beta=-0.5), ValueError, "beta"),
    ],
)
def test_bad_settings_give_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make(*shared_networks())


def test_vqvae_uses_many_codes_learns_its_codebook_and_passes_gradients(digits):
    x_train, x_test = digits
    for ema in (False, True):
        keras.utils.set_random_seed(0)
        vqvae = models.build("vqvae", (8, 8, 1), latent_dim=8, num_codes=32, ema=ema, seed=0)
        codebook = vqvae.quantizer.codebook.numpy().copy()
        assert vqvae.quantizer.codebook.trainable is not ema
        # Straight-through: the encoder gets gradients through the quantiser.
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(vqvae.loss_terms(x_test[:32], training=True)["loss"])
        gradients = tape.gradient(loss, vqvae.encoder.trainable_variables)
        assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in gradients)
        vqvae.compile()
        history = vqvae.fit(x_train, batch_size=64, epochs=5, verbose=0).history
        assert history["loss"][-1] < history["loss"][0]
        used = np.unique(vqvae.codes(x_test).numpy())
        assert len(used) > 1 and history["perplexity"][-1] > 1.5, (ema, used)
        assert np.abs(vqvae.quantizer.codebook.numpy() - codebook).max() > 1e-3
        result = vqvae.evaluate(x_test, verbose=0, return_dict=True)
        assert result["rate"] == pytest.approx(16 * np.log(32), rel=1e-5)  # 16 positions
        assert vqvae.sample(5, seed=1).shape == (5, 8, 8, 1)


def test_hierarchical_vae_reports_a_kl_per_layer_that_sums_to_the_rate(digits):
    x_train, x_test = digits
    encoder, top_down, decoder = tfvae.networks.build_hierarchical(
        (8, 8, 1), latent_dims=(8, 6, 4), hidden_units=(64, 32, 16)
    )
    vae = tfvae.HierarchicalVAE(encoder, top_down, decoder, seed=0)
    terms = {k: v.numpy() for k, v in vae.loss_terms(x_test[:50]).items()}
    assert {"kl_1", "kl_2", "kl_3"} <= set(terms)
    np.testing.assert_allclose(
        terms["kl_1"] + terms["kl_2"] + terms["kl_3"], terms["rate"], rtol=1e-5
    )
    assert all((terms[f"kl_{i}"] >= -1e-5).all() for i in (1, 2, 3))
    joint = vae.encode(x_test[:5])  # q(z_3, z_2, z_1 | x), top first
    draws = joint.sample(seed=1)
    assert [tuple(z.shape) for z in draws] == [(5, 4), (5, 6), (5, 8)]
    assert joint.log_prob(draws).shape == (5,)
    assert vae.decode(draws).mean().shape == (5, 8, 8, 1)  # decode reads z_1
    vae.compile()
    history = vae.fit(x_train, batch_size=64, epochs=2, verbose=0).history
    assert {"kl_1", "kl_2", "kl_3"} <= set(history)
    assert vae.sample(6, seed=2).shape == (6, 8, 8, 1)
    with pytest.raises(ValueError, match="two or more latent sizes"):
        tfvae.networks.build_hierarchical((8, 8, 1), latent_dims=(8,), hidden_units=(64,))
    with pytest.raises(ValueError, match="Expected 2 top-down models"):
        tfvae.HierarchicalVAE(encoder, top_down[:1], decoder)


def _gaussian_log_density(z, params):
    loc, raw = np.split(params.astype(np.float64), 2, axis=-1)
    scale = np.logaddexp(0.0, raw) + 1e-4  # softplus + the floor, as the model's layers
    return (-0.5 * ((z - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)


def test_two_layer_bottom_up_joint_importance_weights_match_a_direct_computation(digits):
    # Burda et al.'s two-layer model: q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1).
    x = (digits[1][:6] > 0.5).astype(np.float32)
    encoder, top_down, decoder, bottom_up = tfvae.networks.build_stacked(
        (8, 8, 1), latent_dims=(6, 3), hidden_units=(16, 8)
    )
    vae = tfvae.HierarchicalVAE(encoder, top_down, decoder, bottom_up, k=4, seed=0)
    assert vae.inference == "bottom_up" and vae.latent_dims == (6, 3)
    k, seed = 4, tf.constant([3, 7], tf.int32)
    weights = vae._importance_sample(tf.constant(x), None, k, seed).log_weights.numpy()
    assert weights.shape == (k, 6)

    # The draws the same seed gives, then every density by hand in NumPy.
    repeated = np.tile(x, (k, 1, 1, 1))
    (_, _, z1), (_, _, z2) = vae._posteriors(tf.constant(repeated), seed=seed)
    z1, z2 = z1.numpy().astype(np.float64), z2.numpy().astype(np.float64)
    log_q1 = _gaussian_log_density(z1, encoder(repeated).numpy())
    log_q2 = _gaussian_log_density(z2, bottom_up[0](z1.astype(np.float32)).numpy())
    log_p2 = (-0.5 * z2**2 - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_p1 = _gaussian_log_density(z1, top_down[0](z2.astype(np.float32)).numpy())
    logits = (
        decoder.get_layer("params")(
            decoder.get_layer("hidden_1")(decoder.get_layer("hidden_0")(z1.astype(np.float32)))
        )
        .numpy()
        .astype(np.float64)
    )
    flat = repeated.reshape(len(repeated), -1)
    log_px = (flat * logits - np.logaddexp(0.0, logits)).sum(-1)
    direct = (log_px + log_p1 + log_p2 - log_q1 - log_q2).reshape(k, 6)
    np.testing.assert_allclose(weights, direct, rtol=1e-4, atol=1e-3)

    # The training loss is -L_k on those weights; L_1's terms are the ELBO's.
    terms = vae.loss_terms(x)
    bound = terms["iwae_bound"].numpy()
    assert np.all(np.isfinite(bound)) and terms["loss"].numpy() == pytest.approx(-bound)
    elbo = tfvae.HierarchicalVAE(encoder, top_down, decoder, bottom_up, seed=0)
    parts = elbo.loss_terms(x)
    assert "iwae_bound" not in parts
    np.testing.assert_allclose(parts["kl_1"] + parts["kl_2"], parts["rate"], rtol=1e-5)
    q2 = elbo._posteriors(tf.constant(x), seed=tf.constant([1, 2]))[1][0]
    assert np.all(tfd.kl_divergence(q2, elbo._top_prior()).numpy() >= 0)


def test_two_layer_iwae_trains_reloads_and_its_log_likelihood_is_above_its_bound(digits, tmp_path):
    x_train, x_test = ((a > 0.5).astype(np.float32) for a in digits)
    parts = tfvae.networks.build_stacked((8, 8, 1), latent_dims=(8, 4), hidden_units=(32, 16))
    tfvae.networks.initialize_output_bias(parts[2], x_train)
    vae = tfvae.HierarchicalVAE(*parts, k=5, seed=1)
    vae.compile()
    history = vae.fit(x_train, batch_size=64, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0], history["loss"]
    assert {"iwae_bound", "kl_1", "kl_2"} <= set(history)
    path = tmp_path / "stacked.keras"
    vae.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert (loaded.inference, loaded.k, loaded.latent_dims) == ("bottom_up", 5, (8, 4))
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    draws = loaded.encode(x_test[:3]).sample(seed=2)  # (z_1, z_2): the order of sampling
    assert [tuple(z.shape) for z in draws] == [(3, 8), (3, 4)]
    assert loaded.decode(draws).mean().shape == (3, 8, 8, 1)
    estimate = tfvae.evaluation.importance_sampled_log_likelihood(loaded, x_test[:50], k=200)
    bound = np.mean([vae.loss_terms(x_test[:50])["iwae_bound"].numpy().mean() for _ in range(5)])
    assert estimate.nats > bound, (estimate.nats, bound)
    with pytest.raises(ValueError, match=r"top_down\[0\] must map z of shape \(8,\)"):
        tfvae.HierarchicalVAE(parts[0], parts[1], parts[2], [parts[1][0]])
    with pytest.raises(ValueError, match="`k` must be"):
        tfvae.HierarchicalVAE(*parts, k=0)


def test_the_registry_is_what_build_and_the_cli_read():
    assert models.MODELS == tuple(models.registry.REGISTRY)
    for name, spec in models.registry.REGISTRY.items():
        own = {"num_pseudo_inputs": 3} if name == "vamp_prior" else {}
        vae = models.build(name, (8, 8, 1), latent_dim=4, **own)
        assert float(vae.beta.numpy()) == spec.beta
        assert vae.is_conditional == spec.conditional
        for option in spec.options:  # each option reaches the model
            value = own.get(option.name, option.default)
            owners = [vae, getattr(vae, "quantizer", None), vae.prior]
            stored = [getattr(o, option.name) for o in owners if hasattr(o, option.name)]
            assert stored == [value], (name, option.name, stored)
    with pytest.raises(ValueError, match="does not take `k`; it takes: no options"):
        models.build("vae", (8, 8, 1), k=5)
    with pytest.raises(ValueError, match="`num_codes` must be an integer >= 1"):
        models.build("vqvae", (8, 8, 1), num_codes=0)
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        models.build("nope", (8, 8, 1))
    with pytest.raises(ValueError, match="already registered"):
        models.registry.register(models.registry.REGISTRY["vae"])


def test_vqvae_decodes_what_it_encodes_and_samples(digits):
    vqvae = models.build("vqvae", (8, 8, 1), latent_dim=4, num_codes=8)
    x = digits[1][:6]
    posterior = vqvae.encode(x)  # a point mass on the quantised vectors
    z_q = vqvae.central_latent(x)
    assert z_q.shape == (6, 16, 4) and posterior.event_shape == (16, 4)
    np.testing.assert_array_equal(posterior.sample(seed=1), z_q)
    codes = vqvae.codes(x).numpy()
    np.testing.assert_array_equal(z_q, tf.gather(vqvae.quantizer.codebook, codes))
    np.testing.assert_allclose(vqvae.decode(z_q).mean(), vqvae.reconstruct(x), atol=1e-6)
    drawn = vqvae.sample_latent(5, seed=3)  # uniform codes, as their vectors
    assert drawn.shape == (5, 16, 4)
    with pytest.raises(ValueError, match=r"shape \(batch, 16, 4\)"):
        vqvae.decode(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="needs a density"):
        vqvae.log_importance_weights(x, 5)


def test_labels_are_required_by_conditional_models_and_refused_by_the_others(digits):
    x = digits[1][:4]
    vae = models.build("vae", (8, 8, 1), latent_dim=4)
    cvae = models.build("conditional", (8, 8, 1), latent_dim=4)
    with pytest.raises(ValueError, match="VAE is not conditional: it takes no labels"):
        vae.encode(x, labels=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="needs labels"):
        cvae.central_latent(x)
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 10\)"):
        cvae.sample(2, labels=10)
    weights = cvae.log_importance_weights(x, 7, labels=3, seed=1)
    assert weights.shape == (7, 4) and np.isfinite(weights).all()
    # log p(x|y) differs with y: the labels reach the decoder.
    other = cvae.log_importance_weights(x, 7, labels=5, seed=1)
    assert np.abs(weights.numpy() - other.numpy()).max() > 1e-4
