"""tfvae.export: SavedModel signatures, TFLite conversion and LiteRT runs, proved by numbers."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_vae

import tfvae
from tfvae import export, serving

# Stated tolerances of quantised decoders, on decoder means in [0, 1] (measured: float16
# about 3e-4, dynamic_int8 about 2e-3 on these models).
TOLERANCE = {None: 1e-4, "float16": 2e-3, "dynamic_int8": 3e-2}

CASES = [
    # network, likelihood, data shape, latent size
    ("mlp", "bernoulli", (28, 28, 1), 20),
    ("mlp", "continuous_bernoulli", (8, 8, 1), 4),
    ("conv", "gaussian", (12, 10, 3), 6),
    ("conv", "gaussian_learned_scale", (8, 8, 1), 3),
]


def trained(network, likelihood, shape, latent_dim, steps=2):
    vae = make_vae(shape, latent_dim, network, likelihood, seed=0)
    vae.compile()
    x = np.random.default_rng(0).random((64,) + shape, dtype=np.float32)
    vae.fit(x, batch_size=32, epochs=steps // 2, verbose=0)
    return vae


@pytest.mark.parametrize("network,likelihood,shape,latent_dim", CASES)
def test_decode_agrees_across_keras_saved_model_and_litert(
    tmp_path, network, likelihood, shape, latent_dim
):
    vae = trained(network, likelihood, shape, latent_dim)
    z = np.random.default_rng(1).normal(size=(7, latent_dim)).astype(np.float32)
    x = np.random.default_rng(2).random((5,) + shape, dtype=np.float32)
    keras_p = vae.decode(z)
    expected = {
        "mean": keras_p.mean().numpy(),
        **{k: v.numpy() for k, v in vae.likelihood.named_parameters(keras_p).items()},
    }

    saved = export.export_saved_model(vae, tmp_path / "sm")
    served = tf.saved_model.load(str(saved)).signatures
    decoded = {k: v.numpy() for k, v in served["decode"](z=tf.constant(z)).items()}
    assert set(decoded) == set(expected)
    for name in expected:
        np.testing.assert_allclose(decoded[name], expected[name], atol=1e-5, rtol=0)
    encoded = served["encode"](x=tf.constant(x))
    q = vae.encode(x)
    np.testing.assert_allclose(encoded["loc"], q.mean(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(encoded["scale"], q.stddev(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        served["reconstruct"](x=tf.constant(x))["x"], vae.reconstruct(x), atol=1e-5, rtol=0
    )
    assert served["sample"](n=tf.constant(3))["x"].shape == (3,) + shape

    lite = serving.LiteRTModel(export.to_tflite(vae, tmp_path / "m.tflite"))
    assert lite.signatures == ("decode", "sample")
    outputs = lite.decode(z)
    assert set(outputs) == set(expected)
    for name in expected:
        assert np.abs(outputs[name] - expected[name]).max() <= TOLERANCE[None], name
    assert lite.sample(4).shape == (4,) + shape


def test_litert_sampling_is_fresh_each_call_builtin_only_and_in_range(mnist_shaped):
    _, _, files = mnist_shaped
    lite = serving.LiteRTModel(files[None])
    first, second = lite.sample(16), lite.sample(16)
    assert first.shape == (16, 28, 28, 1) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.abs(first - second).max() > 0.1
    assert lite.sample(1).shape == (1, 28, 28, 1) and lite.sample(64).shape[0] == 64
    ops = lite.op_names()
    assert "RANDOM_STANDARD_NORMAL" in ops and "FULLY_CONNECTED" in ops
    assert all(op.isupper() for op in ops), ops  # no custom ops, so no Flex ops


def test_quantised_files_are_smaller_and_within_their_tolerance(mnist_shaped):
    vae, _, files = mnist_shaped
    z = np.random.default_rng(3).normal(size=(32, 20)).astype(np.float32)
    expected = vae.decode(z).mean().numpy()
    sizes = {q: path.stat().st_size for q, path in files.items()}
    # The decoder holds about 0.54 M weights: about 2.2 MB in float32. A .tflite file
    # without its weights would be a few KB.
    assert sizes[None] > 2_000_000
    assert sizes["float16"] < 0.6 * sizes[None] and sizes["dynamic_int8"] < 0.35 * sizes[None]
    for quantization, path in files.items():
        error = np.abs(serving.LiteRTModel(path).decode(z)["mean"] - expected).max()
        assert error <= TOLERANCE[quantization], (quantization, error)


def test_refuses_untrained_models_unknown_names_and_existing_paths(tmp_path):
    untrained = make_vae()
    with pytest.raises(ValueError, match=r"has not been trained \(0 optimizer steps\)"):
        export.export_saved_model(untrained, tmp_path / "a")
    with pytest.raises(ValueError, match="has not been trained"):
        export.to_tflite(untrained, tmp_path / "a.tflite")
    with pytest.raises(TypeError, match="Expected a tfvae.VAE"):
        export.export_saved_model(untrained.encoder, tmp_path / "a")
    vae = trained("mlp", "bernoulli", (8, 8, 1), 4)
    with pytest.raises(ValueError, match=r"Unknown signature\(s\) \['generate'\]"):
        export.to_tflite(vae, tmp_path / "a.tflite", signatures=("decode", "generate"))
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        export.to_tflite(vae, tmp_path / "a.tflite", quantization="int4")
    assert not any(tmp_path.iterdir())

    target = tmp_path / "model.tflite"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists.*overwrite=True"):
        export.to_tflite(vae, target)
    assert target.read_bytes() == b"precious"
    export.to_tflite(vae, target, overwrite=True)
    assert serving.LiteRTModel(target).sample(2).shape == (2, 8, 8, 1)

    folder = tmp_path / "saved_model"
    export.export_saved_model(vae, folder)
    with pytest.raises(FileExistsError):
        export.export_saved_model(vae, folder)
    export.export_saved_model(vae, folder, overwrite=True)
    # Beside the .tflite file, its checksum, which readers check (`serving.check_checksums`).
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model.tflite", "model.tflite.sha256", "saved_model"]
    assert (folder / serving.CHECKSUMS).is_file()
    assert export.export_saved_model(make_vae(), tmp_path / "b", allow_untrained=True).is_dir()


class StatelessPrior(tfvae.priors.StandardNormal):
    """Samples with a stateless op, which TFLite has only as a Flex op."""

    def stateful_sample(self, n, encoder=None):
        return tf.random.stateless_normal(tf.stack([n, self.latent_dim]), seed=[1, 2])


def test_a_model_that_needs_flex_ops_is_refused_with_a_clear_message(tmp_path):
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), 4, (16,))
    decoder = tfvae.networks.mlp_decoder(4, (8, 8, 1), (16,))
    vae = tfvae.VAE(encoder, decoder, prior=StatelessPrior(4))
    with pytest.raises(ValueError, match=r"needs TensorFlow \(Flex\) ops .*StatelessRandomNormal"):
        export.to_tflite(vae, tmp_path / "m.tflite", allow_untrained=True)
    assert not (tmp_path / "m.tflite").exists()
