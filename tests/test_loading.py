"""tfvae.loading: .keras files checked, then loaded with safe_mode=True."""

import numpy as np
import pytest
from conftest import make_vae

import tfvae
from tfvae import loading


def test_loading_damaged_or_foreign_model_files_says_what_they_are(tmp_path):
    import h5py
    import keras

    good = tmp_path / "good.keras"
    make_vae(latent_dim=2).save(good)
    content = good.read_bytes()
    cases = {
        "random.keras": (np.random.default_rng(0).bytes(4096), "not a .keras archive .not a zip"),
        "truncated.keras": (content[: len(content) // 2], "not a .keras archive"),
        "flipped.keras": (
            content[:200] + bytes(b ^ 0xFF for b in content[200:400]) + content[400:],
            "damaged|not a .keras archive",
        ),
        "notes.keras": (None, "a zip file but not a Keras model"),
    }
    import zipfile

    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is None:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("notes.txt", "hello")
        else:
            path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            loading.load_vae(path)
    with h5py.File(tmp_path / "old.h5", "w") as handle:
        handle["weights"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"is an HDF5 file \(a Keras 2 .h5 model\?\)"):
        loading.load_vae(tmp_path / "old.h5")
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="contains a Lambda layer .*never runs code"):
        loading.load_vae(tmp_path / "l.keras")
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="holds a Functional, not a tfvae.VAE"):
        loading.load_vae(tmp_path / "dense.keras")
    assert isinstance(loading.load_vae(good), tfvae.VAE)
