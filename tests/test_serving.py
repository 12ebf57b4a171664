"""tfvae.serving: .tflite files run by LiteRT, and samplers from every kind of model file."""

import numpy as np
import pytest

from tfvae import serving


def test_damaged_files_give_clear_errors(tmp_path, mnist_shaped):
    _, saved_model, files = mnist_shaped
    content = files[None].read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(content[: len(content) // 3])
    noise = tmp_path / "noise.tflite"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="is not a TFLite model"):
        serving.LiteRTModel(noise)
    with pytest.raises(ValueError, match="damaged or truncated TFLite model"):
        serving.LiteRTModel(truncated)
    with pytest.raises(ValueError, match="No TFLite file"):
        serving.LiteRTModel(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match="has no signature 'encode'"):
        serving.LiteRTModel(files[None]).run("encode", x=np.zeros((1, 28, 28, 1), np.float32))

    broken = tmp_path / "broken_saved_model"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ValueError, match="Could not read the SavedModel"):
        serving.load_sampler(broken)
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        serving.load_sampler(tmp_path)
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"x")
    with pytest.raises(ValueError, match="Cannot tell what"):
        serving.load_sampler(unknown)
    not_keras = tmp_path / "model.keras"
    not_keras.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match=r"is not a .keras archive \(not a zip file\)"):
        serving.load_sampler(not_keras)
    assert serving.load_sampler(saved_model)(3).shape == (3, 28, 28, 1)
