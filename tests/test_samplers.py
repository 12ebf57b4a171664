"""Samplers fitted after training: GMM, two-stage VAE, the PixelCNN prior over VQ codes.

Each against a known answer (a mixture recovered, a causal network, a uniform prior's
log-likelihood, a pattern learned), then through every path a sample takes: seeds,
`.keras` files, SavedModel and LiteRT signatures, the command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import shutil
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_vae, run_here

from tfvae import code_prior, evaluation, export, models, serving
from tfvae.samplers import GaussianMixtureSampler, fit_gaussian_mixture


# ---------------------------------------------------------------- Gaussian mixture
def known_mixture(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.7])
    means = np.array([[-4.0, 0.0], [3.0, 2.0]])
    covariances = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]]])
    component = rng.choice(2, size=n, p=weights)
    noise = rng.normal(size=(n, 2))
    points = means[component] + np.einsum(
        "nij,nj->ni", np.linalg.cholesky(covariances)[component], noise
    )
    return points, (weights, means, covariances)


def test_gaussian_mixture_is_recovered_and_sampled_with_its_moments():
    points, (weights, means, covariances) = known_mixture()
    got_weights, got_means, got_covariances = fit_gaussian_mixture(points, 2)
    order = np.argsort(got_means[:, 0])
    np.testing.assert_allclose(got_weights[order], weights, atol=0.02)
    np.testing.assert_allclose(got_means[order], means, atol=0.1)
    np.testing.assert_allclose(got_covariances[order], covariances, atol=0.15)

    sampler = GaussianMixtureSampler(2, 2)
    sampler.set_mixture(weights, means, covariances)
    draws = sampler.sample(40_000).numpy()  # stateful: TFLite's builtin random ops
    mean = weights @ means
    second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(weights, means, covariances))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), second - np.outer(mean, mean), rtol=0.05)
    assert np.mean(draws[:, 0] < -0.5) == pytest.approx(0.3, abs=0.01)  # the weights
    seeded = sampler.sample(10_000, seed=3).numpy()  # stateless: TFP's own sampling
    np.testing.assert_allclose(seeded.mean(0), mean, atol=0.1)
    np.testing.assert_array_equal(seeded, sampler.sample(10_000, seed=3).numpy())
    assert not np.array_equal(seeded, sampler.sample(10_000, seed=4).numpy())
    # The TFP mixture agrees with scikit-learn's density at the data.
    log_density = sampler.distribution().log_prob(points[:5].astype(np.float32)).numpy()
    assert np.isfinite(log_density).all() and log_density.max() < 0


@pytest.mark.parametrize(
    "mixture, words",
    [
        ((np.ones(3), np.zeros((3, 2)), np.stack([np.eye(2)] * 3)), "needs weights (2,)"),
        ((np.array([1.0, -1.0]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2)), "positive"),
        ((np.ones(2), np.full((2, 2), np.nan), np.stack([np.eye(2)] * 2)), "finite"),
        ((np.ones(2), np.zeros((2, 2)), np.stack([-np.eye(2)] * 2)), "positive definite"),
    ],
)
def test_a_bad_mixture_is_refused_and_keeps_the_old_one(mixture, words):
    sampler = GaussianMixtureSampler(2, 2)
    before = [w.numpy().copy() for w in sampler.weights]
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        sampler.set_mixture(*mixture)
    for old, new in zip(before, sampler.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_too_few_or_bad_codes_are_refused():
    with pytest.raises(ValueError, match="n >= 10"):
        fit_gaussian_mixture(np.zeros((5, 2)), 10)
    with pytest.raises(ValueError, match="finite codes"):
        fit_gaussian_mixture(np.full((50, 2), np.inf), 2)


# ---------------------------------------------------------------- the PixelCNN
@pytest.mark.parametrize("grid", [(16,), (4, 4), (7, 7)])
def test_pixelcnn_is_causal_and_sees_every_earlier_code(grid):
    keras.utils.set_random_seed(0)
    network = code_prior.gated_pixelcnn(grid, num_codes=5, filters=8)
    positions = math.prod(grid)
    base = np.random.default_rng(0).integers(0, 5, size=(1, positions))
    changed = np.repeat(base, positions, axis=0)
    for j in range(positions):  # row j changes the code at position j
        changed[j, j] = (base[0, j] + 1) % 5
    logits = network(np.concatenate([base, changed]).reshape(-1, *grid)).numpy()
    logits = logits.reshape(positions + 1, positions, 5)
    delta = np.abs(logits[1:] - logits[:1]).max(-1)  # (changed position, output position)
    # The logits of position i never depend on the code at i or later (j >= i) ...
    assert np.all(np.tril(delta) == 0), np.argwhere(np.tril(delta) > 0)[:5]
    # ... and the last position depends on every earlier one (no blind spot).
    assert np.all(delta[:-1, -1] > 0), np.flatnonzero(delta[:-1, -1] == 0)


def zero_logits_prior(grid, num_codes):
    network = code_prior.gated_pixelcnn(grid, num_codes, filters=8, num_layers=2)
    final = network.get_layer("logits")
    final.kernel.assign(tf.zeros_like(final.kernel))
    final.bias.assign(tf.zeros_like(final.bias))
    return code_prior.CodePrior(network)


def test_a_prior_with_zero_logits_is_uniform():
    prior = zero_logits_prior((3, 5), 7)
    codes = np.random.default_rng(0).integers(0, 7, size=(4, 3, 5))
    np.testing.assert_allclose(prior.log_prob(codes), np.full(4, -15 * math.log(7)), rtol=1e-6)
    draws = prior.sample(2000, seed=0).numpy()
    assert draws.shape == (2000, 3, 5) and draws.dtype == np.int32
    counts = np.bincount(draws.ravel(), minlength=7) / draws.size
    np.testing.assert_allclose(counts, np.full(7, 1 / 7), atol=0.01)


def test_fit_code_prior_learns_a_pattern_that_needs_the_earlier_codes():
    # c_i = (c_0 + i) mod K with c_0 uniform: every code after the first is determined by
    # the one before it, and only an autoregressive prior can draw such grids.
    rng = np.random.default_rng(0)
    k, positions = 6, 8
    codes = (rng.integers(0, k, size=(3000, 1)) + np.arange(positions)) % k
    prior = code_prior.fit_code_prior(codes, k, epochs=8, filters=16, num_layers=3)
    nll = -prior.log_prob(codes[:500]).numpy().mean()
    assert nll < math.log(k) + 0.3, nll  # the first code's log K, and little for the rest
    draws = prior.sample(200, seed=1).numpy()
    follows = np.mean((np.diff(draws, axis=1) % k) == 1)
    assert follows > 0.97, follows
    assert len(np.unique(draws[:, 0])) == k  # and c_0 still varies
    assert not prior.network.trainable and not prior.trainable_weights


@pytest.mark.parametrize(
    "codes, words",
    [
        (np.zeros((4, 2, 2, 2), np.int32), "code grids"),
        (np.full((4, 3), 7), "range"),
        (np.full((4, 3), 0.5), "integer"),
    ],
)
def test_fit_code_prior_refuses_bad_codes(codes, words):
    with pytest.raises(ValueError, match=words):
        code_prior.fit_code_prior(codes, 5, epochs=1)


# ---------------------------------------------------------------- through the models
@pytest.fixture(scope="module")
def fitted(digits):
    """A Gaussian-latent VAE with GMM and two-stage samplers, and a VQ-VAE with a PixelCNN."""
    x_train, _ = digits
    keras.utils.set_random_seed(0)
    vae = make_vae(latent_dim=4, seed=0)
    vae.compile()
    vae.fit(x_train, batch_size=64, epochs=3, verbose=0)
    vae.fit_sampler("gmm", x_train, num_components=5)
    vae.fit_sampler("two_stage", x_train, epochs=10)
    vq = models.build("vqvae", (8, 8, 1), latent_dim=8, num_codes=16, seed=0)
    vq.compile()
    vq.fit(x_train, batch_size=64, epochs=3, verbose=0)
    vq.fit_sampler("pixelcnn", x_train, epochs=3)
    return vae, vq


def test_gaussian_samplers_fit_the_aggregate_posterior(fitted, digits):
    vae, _ = fitted
    codes = vae.central_latent(digits[0]).numpy()
    for sampler in ("gmm", "two_stage"):
        z = vae.draw_latent(4000, seed=0, sampler=sampler).numpy()
        # Closer to the codes' moments than the prior is (the codes are not N(0, I)).
        gap = np.abs(z.mean(0) - codes.mean(0)).max()
        prior_gap = np.abs(codes.mean(0)).max()
        assert gap < max(0.25, 0.5 * prior_gap), (sampler, gap, prior_gap)
        np.testing.assert_allclose(z.std(0), codes.std(0), rtol=0.35)
    assert vae.default_sampler == "prior"
    assert set(vae.fitted_samplers) == {"gmm", "two_stage"}


def test_unknown_unfitted_and_foreign_samplers_are_refused(fitted, digits):
    vae, vq = fitted
    plain = make_vae()
    with pytest.raises(ValueError, match="Unknown sampler 'flow'"):
        vae.sample(2, sampler="flow")
    with pytest.raises(ValueError, match="'gmm' sampler was not fitted"):
        plain.sample(2, sampler="gmm")
    with pytest.raises(ValueError, match="cannot fit the sampler 'pixelcnn'"):
        plain.fit_sampler("pixelcnn", digits[0])
    with pytest.raises(ValueError, match="cannot fit the sampler 'gmm'"):
        vq.fit_sampler("gmm", digits[0])
    with pytest.raises(ValueError, match="was not fitted"):
        models.build("vqvae", (8, 8, 1), latent_dim=8, num_codes=16).code_log_prob(digits[1])
    with pytest.raises(ValueError, match="VQVAE has no 'two_stage' sampler; .* pixelcnn"):
        vq.sample(2, sampler="two_stage")


def test_vqvae_samples_from_its_pixelcnn_and_has_a_likelihood(fitted, digits):
    _, vq = fitted
    x_test = digits[1]
    assert vq.default_sampler == "pixelcnn"
    uniform_nll = vq.positions * math.log(vq.quantizer.num_codes)
    code_nll = -vq.code_log_prob(x_test).mean()
    assert 0 < code_nll < 0.5 * uniform_nll, (code_nll, uniform_nll)
    bound = evaluation.code_prior_elbo(vq, x_test)
    terms = vq.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)
    assert bound.elbo == pytest.approx(-(terms["distortion"] + code_nll), rel=1e-5)
    assert bound.elbo > terms["elbo"]  # the learned prior beats the uniform one
    assert bound.bits_per_dim == pytest.approx(-bound.elbo / (64 * math.log(2)))
    report = evaluation.report(vq, x_test[:200], k=10)
    assert report["code_nll"] == pytest.approx(-vq.code_log_prob(x_test[:200]).mean(), rel=1e-5)
    # Its samples use the codes the model uses; uniform ones use every code alike.
    codes = vq.draw_codes(500, seed=0).numpy()
    used = np.bincount(vq.posterior_tensors(x_test)["codes"].numpy().ravel(), minlength=16)
    drawn = np.bincount(codes.ravel(), minlength=16)
    assert np.corrcoef(used, drawn)[0, 1] > 0.8
    np.testing.assert_array_equal(vq.draw_codes(5, seed=1), vq.draw_codes(5, seed=1))


def test_code_prior_elbo_of_a_uniform_prior_is_the_vqvae_elbo(fitted, digits):
    _, vq = fitted
    x_test = digits[1]
    uniform = models.build("vqvae", (8, 8, 1), latent_dim=8, num_codes=16, seed=0)
    uniform.compile()
    uniform.set_weights(vq.get_weights()[: len(uniform.weights)])
    uniform._attach_sampler("pixelcnn", zero_logits_prior(vq.latent_shape[:-1], 16))
    terms = uniform.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)
    assert evaluation.code_prior_elbo(uniform, x_test).elbo == pytest.approx(
        terms["elbo"], rel=1e-5
    )


@pytest.mark.parametrize("which", ["vae", "vq"])
def test_fitted_samplers_survive_a_keras_round_trip(fitted, digits, which, tmp_path):
    model = dict(zip(("vae", "vq"), fitted))[which]
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    messages = [str(w.message) for w in caught]
    assert not any("optimizer" in m or "variables" in m for m in messages), messages
    assert set(loaded.fitted_samplers) == set(model.fitted_samplers)
    assert loaded.default_sampler == model.default_sampler
    for sampler in ("prior", *model.fitted_samplers):
        np.testing.assert_array_equal(
            loaded.sample(6, seed=5, sampler=sampler), model.sample(6, seed=5, sampler=sampler)
        )
    # Fitting again replaces the sampler: no second copy of its weights.
    size = len(loaded.weights)
    loaded.fit_sampler("pixelcnn" if which == "vq" else "gmm", digits[0][:300], epochs=1)
    assert len(loaded.weights) == size


@pytest.fixture(scope="module")
def lite_files(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampler_export")
    return {
        name: export.to_tflite(model, folder / f"{name}.tflite")
        for name, model in zip(("vae", "vq"), fitted)
    }


@pytest.mark.slow  # long; CI runs it with -m slow
def test_exported_samplers_decode_what_they_draw(fitted, lite_files):
    vae, vq = fitted
    runner = serving.LiteRTModel(lite_files["vae"])
    assert set(runner.signatures) == {
        "decode",
        "sample",
        "sample_prior",
        "sample_gmm",
        "sample_two_stage",
    }
    for signature in ("sample", "sample_gmm", "sample_two_stage"):
        out = runner.run(signature, n=np.int32(8))
        np.testing.assert_allclose(out["x"], vae.decode(out["z"]).mean(), atol=1e-4)
        assert not np.array_equal(out["x"], runner.run(signature, n=np.int32(8))["x"])
    runner = serving.LiteRTModel(lite_files["vq"])
    assert set(runner.signatures) == {"decode", "sample", "sample_prior", "sample_pixelcnn"}
    for signature in ("sample", "sample_pixelcnn", "sample_prior"):
        out = runner.run(signature, n=np.int32(8))
        assert out["codes"].shape == (8, *vq.latent_shape[:-1])
        np.testing.assert_allclose(out["x"], vq.decode_codes(out["codes"]).mean(), atol=1e-4)
    # The exported PixelCNN draws from the fitted prior, not uniformly.
    codes = runner.run("sample", n=np.int32(300))["codes"]
    assert -vq.fitted_samplers["pixelcnn"].log_prob(codes).numpy().mean() < 0.5 * (
        vq.positions * math.log(16)
    )


def tflite_ops(path) -> set[str]:
    """The ops of every subgraph of a .tflite file (the loop bodies too)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return set(re.findall(r"Op#\d+ (\w+)", out.getvalue()))


@pytest.mark.slow  # long; CI runs it with -m slow
@pytest.mark.parametrize("which", ["vae", "vq"])
def test_exported_samplers_draw_afresh_in_every_interpreter_with_builtin_ops(lite_files, which):
    first = serving.LiteRTModel(lite_files[which]).sample(4)
    second = serving.LiteRTModel(lite_files[which]).sample(4)
    assert not np.array_equal(first, second)  # not the same "random" digits per launch
    ops = tflite_ops(lite_files[which])
    assert not {op for op in ops if op.startswith("Flex") or op == "CUSTOM"}, ops
    if which == "vq":
        assert {"WHILE", "RANDOM_UNIFORM"} <= ops, ops


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampler_runs") / "vqvae"
    flags = ["--epochs", 1, "--latent-dim", 4, "--batch-size", 64, "--jit-compile", "off"]
    result = run_here("train", "--model", "vqvae", *flags, "--output-dir", folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--sampler", "gmm"], "cannot fit the sampler 'gmm'"),
        (["--sampler", "pixelcnn", "--epochs", 0], "epochs"),
        (["--sampler", "pixelcnn", "--dataset", "nowhere"], "nowhere"),
    ],
)
def test_fit_sampler_errors_are_one_line_and_keep_the_model(trained_run, flags, words):
    before = digest(trained_run / "model.keras")
    result = run_here("fit-sampler", trained_run, *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and words in lines[-1], result.stderr[-2000:]
    assert digest(trained_run / "model.keras") == before


@pytest.mark.parametrize(
    "command, words",
    [
        (["sample", "-n", 4, "--sampler", "pixelcnn"], "'pixelcnn' sampler was not fitted"),
        (["sample", "-n", 4, "--sampler", "gmm"], "VQVAE has no 'gmm' sampler"),
        (["evaluate", "--sampler", "prior"], "--sample-quality only"),
    ],
)
def test_a_sampler_the_model_lacks_is_one_line(trained_run, command, words, tmp_path):
    out = ["--out", tmp_path / "s.png"] if command[0] == "sample" else []
    result = run_here(command[0], trained_run, *command[1:], *out)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "s.png").exists()


@pytest.mark.slow  # fit, sample and export through the CLI (about 14 s)
def test_fit_sampler_then_sample_and_export(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = run_here("fit-sampler", run, "--sampler", "pixelcnn", "--epochs", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pixelcnn" in result.stdout
    for sampler in ("pixelcnn", "prior"):
        out = tmp_path / f"{sampler}.png"
        result = run_here("sample", run, "-n", 8, "--out", out, "--sampler", sampler)
        assert result.returncode == 0 and out.stat().st_size > 0, result.stderr[-3000:]
    result = run_here("evaluate", run, "--k", 10)  # the VQ-VAE now has a likelihood
    assert result.returncode == 0 and "code NLL" in result.stdout, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    uniform = metrics["elbo"]
    assert metrics["code_prior_elbo"] > uniform and metrics["code_nll"] > 0, metrics
    assert metrics["code_prior_bits_per_dim"] == pytest.approx(
        -metrics["code_prior_elbo"] / (64 * math.log(2)), rel=1e-6
    )
    result = run_here("export", run, "--format", "tflite")
    assert result.returncode == 0, result.stderr[-3000:]
    lite = next(run.glob("*.tflite"))
    assert "sample_pixelcnn" in serving.LiteRTModel(lite).signatures
    result = run_here("sample", lite, "-n", 4, "--out", tmp_path / "l.png", "--sampler", "gmm")
    assert result.returncode == 2 and "sample_gmm" in result.stderr, result.stderr[-2000:]
