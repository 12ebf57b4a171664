"""The disentanglement metrics (known answers), dSprites (rendered), the five disentangling
objectives, and the tools on a model trained on dSprites."""

from __future__ import annotations

import json

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import run_here

import tfvae
from tfvae import disentanglement, dsprites, losses, models

tfd = tfp.distributions
NEW_MODELS = ("beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii", "capacity_vae")


@pytest.fixture(scope="module")
def sprites():
    return dsprites.open_dsprites()


@pytest.fixture(scope="module")
def factors(sprites):
    rng = np.random.default_rng(0)
    return sprites.sample_factors(1500, rng), sprites.sample_factors(750, rng)


class FactorsAsImages:
    """Ground truth whose "images" are the factors themselves: with the identity as the
    representation, the codes are the true factors."""

    factor_sizes = dsprites.FACTOR_SIZES
    num_factors = len(factor_sizes)

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], 1)

    def images(self, factors):
        return np.asarray(factors, np.float64)


# ---------------------------------------------------------------------- metrics
def test_true_factors_score_near_one_and_noise_near_zero(factors):
    (train, test), rng = factors, np.random.default_rng(1)
    true_mig = disentanglement.mig(train.astype(float), train)
    # 40 orientations and 32 positions fall into 20 bins: a little of their entropy is lost.
    assert 0.85 < true_mig <= 1.0
    assert disentanglement.mig(rng.normal(size=(1500, 10)), train) < 0.03
    true = disentanglement.dci(train.astype(float), train, test.astype(float), test, num_trees=5)
    assert true["dci_disentanglement"] > 0.95 and true["dci_completeness"] > 0.95
    assert true["dci_informativeness"] > 0.95
    noise = disentanglement.dci(
        rng.normal(size=(1500, 10)), train, rng.normal(size=(750, 10)), test, num_trees=5
    )
    assert noise["dci_disentanglement"] < 0.1 and noise["dci_informativeness"] < 0.3
    true_sap = disentanglement.sap(train.astype(float), train, test.astype(float), test)
    noise_sap = disentanglement.sap(
        rng.normal(size=(1500, 10)), train, rng.normal(size=(750, 10)), test
    )
    assert true_sap > 0.15 > 0.02 > noise_sap


def test_permuting_or_rescaling_the_codes_leaves_the_scores(factors):
    train, test = factors
    codes = train.astype(float) + np.random.default_rng(2).normal(0, 0.3, train.shape)
    codes_test = test.astype(float) + np.random.default_rng(3).normal(0, 0.3, test.shape)
    order = [3, 0, 4, 1, 2]
    scale = np.array([2.0, -0.5, 10.0, 1.0, -3.0])
    moved, moved_test = codes[:, order] * scale + 7, codes_test[:, order] * scale + 7
    assert disentanglement.mig(moved, train) == pytest.approx(disentanglement.mig(codes, train))
    before = disentanglement.dci(codes, train, codes_test, test, num_trees=5)
    after = disentanglement.dci(moved, train, moved_test, test, num_trees=5)
    for key, value in before.items():
        assert after[key] == pytest.approx(value, abs=0.02), key
    information = disentanglement.mutual_information_matrix(codes, train)
    assert np.allclose(disentanglement.mutual_information_matrix(moved, train), information[order])


def test_beta_vae_and_factor_vae_scores_of_the_true_factors_and_of_noise():
    truth = FactorsAsImages()
    rng = np.random.default_rng(0)

    def noise(images):
        return rng.normal(size=(len(images), 10))

    sizes = dict(num_train=300, num_eval=150)
    assert disentanglement.beta_vae_score(truth, lambda v: v, **sizes) > 0.95
    assert disentanglement.beta_vae_score(truth, noise, **sizes) < 0.5  # chance: 0.2
    sizes["num_variance_estimate"] = 1000
    assert disentanglement.factor_vae_score(truth, lambda v: v, **sizes) == 1.0
    assert disentanglement.factor_vae_score(truth, noise, **sizes) < 0.5
    # Codes that never vary are pruned: no code left, a score of 0.
    assert disentanglement.factor_vae_score(truth, lambda v: 0 * v, **sizes) == 0.0


def test_metrics_refuse_bad_codes():
    good = np.zeros((10, 5), np.int64)
    with pytest.raises(ValueError, match=r"same n >= 2.*\(10, 3\) and \(9, 5\)"):
        disentanglement.mig(np.zeros((10, 3)), good[:9])
    with pytest.raises(ValueError, match="NaN"):
        disentanglement.mig(np.full((10, 3), np.nan), good)
    with pytest.raises(ValueError, match="at least 2 codes"):
        disentanglement.mig(np.zeros((10, 1)), good)


# ---------------------------------------------------------------------- dSprites
def test_rendered_sprites_have_the_stated_sizes_and_stay_in_the_frame(sprites):
    assert sprites.source == "rendered"  # the original file is not in ../shared/data
    side = 2 * 0.16 * 64  # a square of scale 1 is 20.5 pixels wide
    square, ellipse = sprites.images([[0, 5, 0, 16, 16], [1, 5, 0, 16, 16]])
    assert square.sum() == pytest.approx(side**2, rel=0.1)
    assert ellipse.sum() == pytest.approx(np.pi * side / 2 * side / 4, rel=0.1)
    small = sprites.images([[0, 0, 0, 16, 16]]).sum()  # 10.24 pixels: 10 or 11 after rasterising
    assert 10**2 <= small <= 11**2
    # The largest sprites at the corners, at every orientation: no pixel on the border.
    corners = [
        [s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)
    ]
    images = sprites.images(corners)[..., 0]
    border = (
        images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    )
    assert border == 0 and (images.sum(axis=(1, 2)) > 50).all()
    # x moves columns, y moves rows.
    left, low = sprites.images([[0, 5, 0, 0, 16], [0, 5, 0, 16, 31]])[..., 0]
    assert np.argwhere(left)[:, 1].mean() < 24 and np.argwhere(low)[:, 0].mean() > 40


def test_every_factor_changes_the_image(sprites):
    base = np.array([1, 3, 7, 10, 20])
    image = sprites.images([base])[0]
    for k, size in enumerate(dsprites.FACTOR_SIZES):
        other = base.copy()
        other[k] = (base[k] + 1) % size
        assert (sprites.images([other])[0] != image).any(), dsprites.FACTOR_NAMES[k]


def test_the_pipeline_gives_each_image_its_own_factors(sprites):
    batches = sprites.dataset("train", batch_size=32, seed=0, with_factors=True)
    images, factors = next(iter(batches))
    assert images.dtype == tf.uint8 and images.shape == (32, 64, 64, 1)
    assert np.array_equal(images.numpy().astype(np.float32), sprites.images(factors.numpy()))
    again = next(iter(sprites.dataset("train", batch_size=32, seed=0, with_factors=True)))[1]
    assert np.array_equal(factors, again)  # a seed fixes the order
    assert sprites.num_examples("train") == 737_280 and sprites.num_examples("test") == 10_000
    assert tfvae.data.num_examples("dsprites", "test") == 10_000
    x = next(iter(tfvae.data.load("dsprites", "test", batch_size=8, flatten=True)))
    assert x.shape == (8, 4096) and set(np.unique(x)) <= {0.0, 1.0}


def test_bad_dsprites_requests_are_refused(sprites):
    with pytest.raises(ValueError, match="Unknown split 'valid' for 'dsprites'"):
        sprites.dataset("valid")
    with pytest.raises(ValueError, match="must index the grid"):
        sprites.images([[3, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"must be \(n, 5\)"):
        sprites.images([[0, 0, 0]])
    with pytest.raises(ValueError, match="gives the 'test' split only"):
        tfvae.data.load_arrays("dsprites", "train")
    with pytest.raises(ValueError, match="'mnist' has no ground-truth factors"):
        tfvae.data.ground_truth("mnist")


# ---------------------------------------------------------------------- the objectives
def _small(name, **options):
    if name == "factor_vae":
        options.update(discriminator_units=32, discriminator_depth=2)
    return models.build(name, (8, 8, 1), latent_dim=3, seed=0, **options)


@pytest.fixture(scope="module")
def digits():
    return tfvae.data.load_arrays("digits", "train")[0]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_each_objective_trains_saves_and_reloads(name, digits, tmp_path):
    vae = _small(name)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in vae.encoder.weights]
    history = vae.fit(digits, epochs=1, batch_size=64, verbose=0).history
    assert set(vae.term_names) <= set(history) and np.isfinite(history["loss"]).all()
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, vae.encoder.weights))
    vae.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert type(again) is type(vae)
    layers = {"encoder", "decoder", "prior", "discriminator", "samplers"}
    settings = {k: v for k, v in vae.get_config().items() if k not in layers}
    assert {k: again.get_config()[k] for k in settings} == settings
    np.testing.assert_allclose(again.central_latent(digits[:8]), vae.central_latent(digits[:8]))
    if name == "factor_vae":  # a resumed run shuffles the latents as the first one would
        np.testing.assert_array_equal(again._shuffle_noise.state, vae._shuffle_noise.state)


def test_beta_tcvae_with_beta_one_is_the_vae_objective(digits):
    vae = _small("beta_tcvae", beta=1.0)
    terms = vae.loss_terms(tf.constant(digits[:64]), training=False)
    np.testing.assert_allclose(terms["loss"], -terms["elbo"], rtol=1e-6)
    heavy = _small("beta_tcvae", beta=6.0)
    heavy.set_weights(vae.get_weights())  # beta is a weight too: set it back to 6
    heavy.beta.assign(6.0)
    terms6 = heavy.loss_terms(tf.constant(digits[:64]), training=False)
    np.testing.assert_allclose(
        terms6["loss"],
        terms6["distortion"] + terms6["rate"] + 5 * terms6["total_correlation"],
        rtol=1e-5,
    )


def test_total_correlation_is_larger_for_dependent_latents():
    rng = np.random.default_rng(0)
    scale = tf.fill((512, 3), 0.3)
    independent = tfd.MultivariateNormalDiag(rng.normal(size=(512, 3)).astype(np.float32), scale)
    shared = rng.normal(size=(512, 1)).astype(np.float32)
    dependent = tfd.MultivariateNormalDiag(np.repeat(shared, 3, 1), scale)
    tc_independent = tf.reduce_mean(
        losses.total_correlation(independent.sample(seed=1), independent)
    )
    tc_dependent = tf.reduce_mean(losses.total_correlation(dependent.sample(seed=1), dependent))
    assert tc_dependent > tc_independent + 1.0
    z = independent.sample(seed=(1, 2))
    with_n = losses.total_correlation(z, independent, dataset_size=1000)
    without = losses.total_correlation(z, independent)
    np.testing.assert_allclose(with_n - without, 2 * np.log(1000), rtol=1e-4)  # (d - 1) log N
    with pytest.raises(ValueError, match="diagonal Gaussian posterior"):
        losses.total_correlation(
            tf.zeros((4, 3)), tfd.Independent(tfd.Bernoulli(tf.zeros((4, 3))), 1)
        )


def test_dip_penalty_is_zero_at_the_identity_and_grows_with_correlation():
    vae = _small("dip_vae_i")
    eye = tfd.MultivariateNormalDiag(tf.constant([[1.0, 0, 0], [-1, 0, 0]]) * 1.0, tf.ones((2, 3)))
    # Means +-e1: the covariance is diag(1, 0, 0): only the last two diagonal entries miss.
    assert float(vae.penalty(eye)) == pytest.approx(vae.lambda_od * vae.lambda_d_factor * 2)
    rng = np.random.default_rng(0)
    white = rng.normal(size=(4096, 3)).astype(np.float32)
    q = tfd.MultivariateNormalDiag(white, tf.fill((4096, 3), 1e-3))
    mixed = tfd.MultivariateNormalDiag(
        white @ np.array([[1, 0.9, 0], [0, 1, 0], [0, 0, 1]], np.float32), q.stddev()
    )
    assert float(vae.penalty(q)) < 1.0 < float(vae.penalty(mixed))
    # Type II adds the mean posterior variance to the diagonal.
    ii = _small("dip_vae_ii")
    wide = tfd.MultivariateNormalDiag(white * 0, tf.ones((4096, 3)))
    assert float(ii.penalty(wide)) == pytest.approx(0.0, abs=1e-6)


def test_the_capacity_rises_linearly_then_holds(digits):
    vae = _small("capacity_vae", capacity=10.0, capacity_steps=100)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    for steps, expected in ((0, 0.0), (50, 5.0), (100, 10.0), (400, 10.0)):
        vae.optimizer.iterations.assign(steps)
        terms = vae.loss_terms(tf.constant(digits[:16]))
        np.testing.assert_allclose(terms["capacity"], expected, rtol=1e-6)
        held = float(vae.beta) * abs(float(tf.reduce_mean(terms["rate"])) - expected)
        np.testing.assert_allclose(terms["loss"] - terms["distortion"], held, rtol=1e-4)


def test_factor_vae_trains_the_discriminator_on_its_own_loss_only(digits):
    """One step of plain SGD: D moves by -lr * grad(adversary_loss), the encoder by
    -lr * grad(loss); neither by the other's."""
    vae = _small("factor_vae")
    vae.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False, steps_per_execution=1)
    x = tf.constant(digits[:64])
    states = [g.state.numpy() for g in (vae._noise, vae._shuffle_noise)]
    main = [v for v in vae.trainable_variables if all(v is not d for d in vae.adversary_variables)]
    with tf.GradientTape(persistent=True) as tape:
        terms = vae.loss_terms(x, training=True)
        loss, adversary = tf.reduce_mean(terms["loss"]), tf.reduce_mean(terms["adversary_loss"])
    expected_d = [
        v - 0.1 * g
        for v, g in zip(vae.adversary_variables, tape.gradient(adversary, vae.adversary_variables))
    ]
    expected_main = [v - 0.1 * g for v, g in zip(main, tape.gradient(loss, main))]
    for generator, state in zip((vae._noise, vae._shuffle_noise), states):
        generator.state.assign(state)  # the step draws the same noise
    vae.train_on_batch(x)
    for variable, expected in zip(vae.adversary_variables + main, expected_d + expected_main):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="dip_type"):
        models.dip.DIPVAE(*tfvae.networks.build("mlp", (8, 8, 1), 3, "bernoulli"), dip_type="iii")
    with pytest.raises(ValueError, match="capacity_steps"):
        _small("capacity_vae", capacity_steps=0)
    with pytest.raises(ValueError, match="gamma"):
        _small("factor_vae", gamma=-1.0)
    encoder, decoder = tfvae.networks.build("mlp", (8, 8, 1), 3, "bernoulli")
    with pytest.raises(ValueError, match=r"one logit \(batch, 1\). Received: \(4,\)"):
        models.FactorVAE(encoder, decoder, tfvae.networks.build_discriminator(4))


# ---------------------------------------------------------------------- the tools on dSprites
# These train from the command line (about a minute in all): -m slow, which CI runs.
@pytest.fixture(scope="module")
def dsprites_run(tmp_path_factory):
    """beta-TCVAE trained one epoch on dSprites' 10,000-image split, from the command line."""
    folder = tmp_path_factory.mktemp("dsprites") / "run"
    flags = ["--dataset", "dsprites", "--split", "test", "--validation-split", "test"]
    flags += ["--epochs", 1, "--latent-dim", 4, "--batch-size", 64, "--model", "beta_tcvae"]
    result = run_here("train", *flags, "--output-dir", folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_evaluate_disentanglement_from_the_command_line(dsprites_run):
    result = run_here(
        "evaluate", dsprites_run, "--k", 5, "--examples", 200, "--disentanglement",
        "--disentanglement-points", 200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "disentanglement on dSprites (rendered)" in result.stdout and "mig" in result.stdout
    scores = json.loads((dsprites_run / "metrics.json").read_text())["disentanglement"]
    for name in disentanglement.METRICS:
        assert 0.0 <= scores[name] <= 1.0, (name, scores[name])
    assert np.array(scores["mutual_information"]).shape == (4, 5)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["kl_traversal", "factor_information"])
def test_the_disentanglement_pictures(dsprites_run, what, tmp_path):
    out = tmp_path / f"{what}.png"
    result = run_here("plot", dsprites_run, "--what", what, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    image = matplotlib.image.imread(out)
    assert image.std() > 0.01 and min(image.shape[:2]) > 200


@pytest.mark.slow
def test_disentanglement_of_a_model_of_other_data_is_refused(tmp_path):
    run = tmp_path / "digits"
    result = run_here("train", "--epochs", 1, "--latent-dim", 2, "--output-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_here("evaluate", run, "--k", 5, "--disentanglement")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "--dataset dsprites" in lines[0] and "'digits'" in lines[0]
    assert not (run / "metrics.json").exists()
