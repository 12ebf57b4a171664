"""Every model x every tool: each cell works (with numbers checked) or refuses in one line.

Each model is trained once from the command line (`tfvae train --model M`, embedded
digits, 1 epoch, 4-D latent) and shared by its cells. The README lists the cells.
"""

from __future__ import annotations

import json
import math

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_here
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfvae
from tfvae import export, loading, models, plots, serving

LATENT_DIM = 4
SIDE = 8  # digits are 8 x 8
SCALE = 64 // SIDE  # save_image_grid's default enlargement

#: The cells that are undefined, and the words their one-line refusal must contain.
REFUSED = {
    ("vqvae", "traversal"): "discrete codes",
    ("vqvae", "manifold"): "discrete codes",
    ("vqvae", "log_likelihood"): "needs a density",
}
REFUSED.update({(name, "manifold"): "2-D latent" for name in models.MODELS if name != "vqvae"})
# The mutual information with ground-truth factors needs a model of dSprites (these are
# of digits); tests/test_disentanglement.py draws it for a dSprites model.
REFUSED.update({(name, "factor_information"): "ground truth's images" for name in models.MODELS})
REFUSED[("vqvae", "factor_information")] = "discrete codes"
#: The KL splits over dimensions for a diagonal Gaussian posterior and prior only.
_NO_KL_SPLIT = ("flow", "mixture_prior", "vamp_prior", "hierarchical", "stacked")
REFUSED.update({(name, "kl_traversal"): "diagonal Gaussian" for name in _NO_KL_SPLIT})
REFUSED[("vqvae", "kl_traversal")] = "discrete codes"
#: The models that take labels (the conditional VAE and the semi-supervised M2).
CONDITIONAL = {name for name in models.MODELS if models.registry.spec(name).conditional}
REFUSED.update(
    {(name, "analogies"): "takes no labels" for name in models.MODELS if name not in CONDITIONAL}
)
REFUSED.update({(name, "kl_traversal"): "takes labels" for name in CONDITIONAL})
REFUSED.update({(name, "factor_information"): "takes labels" for name in CONDITIONAL})


def assert_refused(result, words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("tfvae "), result.stderr[-2000:]
    assert words in lines[0], lines[0]


class _Lazy(dict):
    """A dict whose entry for a model is made on first use (`make(name)`), so a selection
    of cells (the default run, or `-k NAME`) trains and exports only the models it needs."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, name):
        self[name] = self._make(name)
        return self[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One trained run folder per model, made by `tfvae train` when a cell first needs it."""
    root = tmp_path_factory.mktemp("matrix")

    def train(name):
        folder = root / name
        own = {"vamp_prior": ["--num-pseudo-inputs", 10], "semi_supervised": ["--labels", 100]}
        own = own.get(name, [])
        flags = ["--epochs", 1, "--latent-dim", LATENT_DIM, "--batch-size", 64, *own]
        flags += ["--jit-compile", "off"]  # XLA per model is tested in test_models.py
        result = run_here("train", "--model", name, *flags, "--output-dir", folder)
        assert result.returncode == 0, (name, result.stderr[-3000:])
        return folder

    return _Lazy(train)


#: Models whose cells run with `-m slow` only, but for the log-likelihood and `.keras`
#: cells: the disentangling objectives are plain Gaussian VAEs to every tool (the cells
#: of `vae` cover the same code paths), and tests/test_disentanglement.py trains each.
SLOW_CELLS = {"beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii", "capacity_vae"}


def every_model(slow=SLOW_CELLS):
    """`models.MODELS` as parameters, those in `slow` marked `slow`."""
    return [n if n not in slow else pytest.param(n, marks=pytest.mark.slow) for n in models.MODELS]


@pytest.fixture(scope="module")
def test_digits():
    return tfvae.data.load_arrays("digits", "test")


def mosaic_size(count: int, columns: int) -> tuple[int, int]:
    rows = math.ceil(count / columns)
    return (rows * (SIDE + 1) + 1) * SCALE, (columns * (SIDE + 1) + 1) * SCALE


def expected_png_size(name: str, what: str) -> tuple[int, int]:
    if what == "samples":
        return mosaic_size(64, 10 if name in CONDITIONAL else 8)
    if what == "reconstructions":
        return mosaic_size(64, 8)  # 32 inputs and their 32 reconstructions
    if what == "interpolation":
        return mosaic_size(12, 12)
    if what == "traversal":
        return mosaic_size(LATENT_DIM * 9, 9)
    if what == "analogies":  # 8 inputs, each beside its 10 classes
        return mosaic_size(8 * 11, 11)
    if what == "kl_traversal":  # a figure: 9 columns, one row per latent dimension
        return (round((LATENT_DIM * 0.9 + 0.4) * 100), round((9 * 0.9 + 1.2) * 100))
    return {"latent_map": (600, 600), "curves": (600, 800)}[what]


@pytest.mark.parametrize("what", plots.PLOTS)
@pytest.mark.parametrize("name", every_model())
def test_plot(runs, name, what, tmp_path):
    out = tmp_path / f"{what}.png"
    takes_label = name in CONDITIONAL and what not in ("reconstructions", "analogies")
    label = ["--label", 3] if takes_label else []
    result = run_here("plot", runs[name], "--what", what, "--out", out, *label)
    if (name, what) in REFUSED:
        assert_refused(result, REFUSED[name, what])
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr[-3000:]
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == expected_png_size(name, what)
    assert np.isfinite(image).all() and image.std() > 0.01  # a picture, not a blank


@pytest.mark.parametrize("name", models.MODELS)
def test_log_likelihood_is_above_the_elbo(runs, name):
    result = run_here("evaluate", runs[name], "--k", 100)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ELBO, nats" in result.stdout and "active units" in result.stdout  # the table
    metrics = json.loads((runs[name] / "metrics.json").read_text())
    assert np.isfinite([metrics["elbo"], metrics["rate"], metrics["distortion"]]).all()
    if (name, "log_likelihood") in REFUSED:
        assert metrics["log_likelihood"] is None
        assert REFUSED[name, "log_likelihood"] in metrics["not_measured"]["log_likelihood"]
        return
    # log p(x) >= L_k >= ELBO in expectation; over 360 examples the gap is far above noise.
    assert metrics["log_likelihood"] > metrics["elbo"], metrics
    assert metrics["log_likelihood"] - metrics["elbo"] < 10, metrics
    assert metrics["log_likelihood_of"] == ("log p(x | y)" if name in CONDITIONAL else "log p(x)")


@pytest.mark.parametrize("name", every_model())
def test_tensorboard_callbacks_wrote_images_and_latent_scalars(runs, name):
    images = EventAccumulator(str(runs[name] / "logs" / "images"), size_guidance={"tensors": 0})
    images.Reload()
    assert {"reconstructions", "samples"} <= set(images.Tags()["tensors"])
    latent = EventAccumulator(str(runs[name] / "logs" / "latent"), size_guidance={"tensors": 0})
    latent.Reload()
    tags = set(latent.Tags()["tensors"])
    assert "beta" in tags
    gaussian = name not in _NO_KL_SPLIT and name != "vqvae"
    assert ("active_units" in tags) == gaussian, tags
    assert ("kl_per_dimension" in tags) == gaussian, tags


@pytest.mark.parametrize("name", every_model())
def test_hparams_session_and_projector(runs, name, test_digits):
    from test_dashboards import read_projector, read_session

    hparams, metrics, _ = read_session(runs[name] / "logs")
    assert hparams["model"] == name and hparams["latent_dim"] == LATENT_DIM
    assert np.isfinite(metrics["final/validation_elbo"][1])
    # Every model with a density reports log p(x); the VQ-VAE has none.
    assert ("final/validation_log_likelihood" in metrics) == (name != "vqvae"), metrics
    _, values, labels, sprite = read_projector(runs[name] / "logs")
    x, y = test_digits
    vae = loading.load_vae(runs[name])
    given = vae._label_batch(y, x) if vae.is_conditional else None
    latent = vae.posterior_tensors(tf.constant(x), given)["latent"].numpy().reshape(len(x), -1)
    np.testing.assert_allclose(values, latent, rtol=1e-4, atol=1e-4)
    assert labels == [str(label) for label in y] and sprite.shape[0] == 19 * SIDE


@pytest.fixture(scope="module")
def feature_network_of_digits():
    return tfvae.feature_network.load_feature_network("digits", verbose=False)


@pytest.mark.parametrize("name", every_model())
def test_sample_quality(runs, name, test_digits, feature_network_of_digits):
    vae = loading.load_vae(runs[name])
    x_train, _ = tfvae.data.load_arrays("digits", "train")
    quality = tfvae.sample_quality.sample_quality(
        vae, feature_network_of_digits, test_digits[0], x_train
    )
    assert quality["samples"] == 360
    values = [quality[k] for k in ("fid", "kid", "precision", "recall", "fid_floor")]
    assert np.isfinite(values).all()
    assert quality["fid"] > quality["fid_floor"]  # one epoch of training is far from the data
    assert ("mean_class_accuracy" in quality) == (name in CONDITIONAL)


def model_inputs(vae, x, y):
    """Keyword inputs of the exported signatures (conditional models take a label)."""
    return {"label": y.astype(np.int32)} if vae.is_conditional else {}


@pytest.mark.parametrize("name", models.MODELS)
def test_keras_round_trip_keeps_every_output(runs, name, test_digits, tmp_path):
    x, y = test_digits[0][:20], test_digits[1][:20]
    vae = loading.load_vae(runs[name])
    vae.save(tmp_path / "again.keras")
    loaded = keras.models.load_model(tmp_path / "again.keras", safe_mode=True)
    assert type(loaded) is type(vae)
    assert len(loaded.weights) == len(vae.weights)
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    labels = y if vae.is_conditional else None
    np.testing.assert_array_equal(
        loaded.central_latent(x, labels=labels), vae.central_latent(x, labels=labels)
    )
    np.testing.assert_array_equal(
        loaded.reconstruct(x, labels=labels), vae.reconstruct(x, labels=labels)
    )
    q = loaded.encode(x, labels=labels)
    z = q.sample(seed=1)
    assert np.isfinite(loaded.decode(z, labels=labels).mean()).all()  # decode takes encode's
    draws = loaded.sample(5, labels=3 if vae.is_conditional else None, seed=2)
    again = vae.sample(5, labels=3 if vae.is_conditional else None, seed=2)
    np.testing.assert_array_equal(draws, again)


@pytest.fixture(scope="module")
def exported(runs):
    """Each model's SavedModel and float32 .tflite file (all four signatures), made when a
    cell first needs them."""

    def export_model(name):
        folder = runs[name]
        vae = loading.load_vae(folder)
        saved = export.export_saved_model(vae, folder / "saved_model")
        lite = export.to_tflite(saved, folder / "model.tflite", signatures=export.SIGNATURES)
        return vae, saved, lite

    return _Lazy(export_model)


def keras_outputs(vae, x, y, z):
    import tensorflow as tf

    x = tf.constant(x)
    labels = y if vae.is_conditional else None
    decoded = vae.decode(z, labels=labels)
    tensors = vae.posterior_tensors(x, None if labels is None else vae._label_batch(labels, x))
    return {
        "encode": {k: np.asarray(v) for k, v in tensors.items()},
        "decode": {"mean": np.asarray(decoded.mean())},
        "reconstruct": {"x": np.asarray(vae.reconstruct(x, labels=labels))},
    }


@pytest.mark.parametrize("name", every_model())
def test_saved_model_and_litert_agree_with_keras(exported, name, test_digits):
    import tensorflow as tf

    vae, saved, lite = exported[name]
    x, y = test_digits[0][:16].astype(np.float32), test_digits[1][:16]
    z = np.asarray(vae.central_latent(x, labels=y if vae.is_conditional else None))
    expected = keras_outputs(vae, x, y, z)
    served = tf.saved_model.load(str(saved)).signatures
    runner = serving.LiteRTModel(lite)
    assert set(runner.signatures) == set(export.SIGNATURES)
    label = model_inputs(vae, x, y)
    inputs = {"encode": {"x": x}, "decode": {"z": z}, "reconstruct": {"x": x}}
    for signature, want in expected.items():
        feed = {**inputs[signature], **label}
        from_saved = served[signature](**{k: tf.constant(v) for k, v in feed.items()})
        from_lite = runner.run(signature, **feed)
        for key, value in want.items():
            np.testing.assert_allclose(from_saved[key].numpy(), value, atol=1e-4)
            np.testing.assert_allclose(from_lite[key], value, atol=1e-4)
    # Sampling is random: fresh, finite draws of the right shape, in the data's range.
    extra = {"label": np.int32(3)} if vae.is_conditional else {}
    first = runner.run("sample", n=np.int32(6), **extra)["x"]
    second = runner.run("sample", n=np.int32(6), **extra)["x"]
    assert first.shape == (6, SIDE, SIDE, 1) and np.isfinite(first).all()
    assert 0 <= first.min() and first.max() <= 1 and not np.array_equal(first, second)
    assert lite.stat().st_size > 20_000  # the weights are in the file


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "tflite"])
@pytest.mark.parametrize("name", every_model())
def test_sample_command(exported, runs, name, fmt, tmp_path):
    source = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}
    out = tmp_path / "grid.png"
    label = ["--label", 3] if name in CONDITIONAL else []
    result = run_here("sample", runs[name] / source[fmt], "-n", 16, "--out", out, *label)
    assert result.returncode == 0, result.stderr[-3000:]
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == mosaic_size(16, 4) and image.std() > 0.01
    if name in CONDITIONAL:  # without the label it needs, one line
        assert_refused(
            run_here("sample", runs[name] / source[fmt], "--out", tmp_path / "b.png"), "label"
        )


def test_a_missing_model_is_one_line_for_every_command(tmp_path):
    for command in (["evaluate"], ["plot", "--what", "samples"], ["export", "--format", "tflite"]):
        result = run_here(command[0], tmp_path / "nowhere", *command[1:])
        assert_refused(result, "No model at")


#: The cells of `test_fitted_sampler_in_every_tool` in the default run (the rest: -m slow).
FAST_SAMPLER_CELLS = ("vae", "semi_supervised")  # vqvae's PixelCNN: tests/test_samplers.py


@pytest.mark.parametrize(
    "name",
    [
        n if n in FAST_SAMPLER_CELLS else pytest.param(n, marks=pytest.mark.slow)
        for n in models.MODELS
    ],
)
def test_fitted_sampler_in_every_tool(runs, name, tmp_path):
    """fit-sampler, then the sampler in `.keras`, `tfvae sample` and LiteRT."""
    import shutil

    run = tmp_path / name
    shutil.copytree(runs[name], run, ignore=shutil.ignore_patterns("saved_model", "*.tflite"))
    sampler = "pixelcnn" if name == "vqvae" else "gmm"
    result = run_here("fit-sampler", run, "--sampler", sampler, "--epochs", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    vae = loading.load_vae(run)
    assert list(vae.fitted_samplers) == [sampler]
    label = ["--label", 3] if name in CONDITIONAL else []
    out = tmp_path / "grid.png"
    result = run_here("sample", run, "-n", 16, "--out", out, "--sampler", sampler, *label)
    assert result.returncode == 0, result.stderr[-3000:]
    assert matplotlib.image.imread(out).std() > 0.01
    lite = export.to_tflite(vae, tmp_path / "model.tflite")
    runner = serving.LiteRTModel(lite)
    extra = {"label": np.int32(3)} if vae.is_conditional else {}
    drawn = runner.run(f"sample_{sampler}", n=np.int32(6), **extra)
    if name == "vqvae":
        expected = vae.decode_codes(drawn["codes"]).mean()
    else:
        labels = np.full(6, 3) if vae.is_conditional else None
        expected = vae.decode(drawn["z"], labels=labels).mean()
    np.testing.assert_allclose(drawn["x"], expected, atol=1e-4)
    assert not np.array_equal(
        drawn["x"], runner.run(f"sample_{sampler}", n=np.int32(6), **extra)["x"]
    )
