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


# One fresh process in the default run; the other families in `-m slow`.
@pytest.mark.parametrize(
    "name",
    ["hierarchical"]
    + [pytest.param(n, marks=pytest.mark.slow) for n in ("conditional", "vqvae", "iwae")],
)
def test_a_fresh_process_loads_every_model_family(tmp_path, name):
    # The model classes are imported lazily: loading must register them itself.
    import subprocess
    import sys

    options = {"num_classes": 10} if name == "conditional" else {}
    vae = tfvae.models.build(name, (8, 8, 1), "mlp", 2, "bernoulli", **options)
    vae.compile()
    x, y = tfvae.data.load_arrays("digits", "train")
    vae.fit(x[:256], y[:256] if name == "conditional" else None, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    vae.save(path)
    code = f"from tfvae import loading; print(type(loading.load_vae({str(path)!r})).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == type(vae).__name__


def test_one_line_errors_are_kept_short():
    from tfvae.arguments import first_line

    error = ValueError("Could not locate class 'X'. Full object config: " + "{'a': 1} " * 500)
    line = first_line(error)
    assert line.startswith("Could not locate class 'X'") and line.endswith(" ...")
    assert len(line) <= 304
    assert first_line(ValueError("short\nsecond line")) == "short"
