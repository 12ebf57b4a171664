"""Loading `.keras` files safely: checked first, then loaded with `safe_mode=True`.

`load_vae` never runs code from a file, and says what a file is when it is not a
tfvae model (random bytes, a truncated archive, a Keras 2 HDF5 file, a Lambda layer).
Checkpoints (`tfvae.checkpoints`), export and the command line load through it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from tfvae import models
from tfvae.arguments import first_line
from tfvae.models import VAE

__all__ = ["load_vae"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_keras_archive(path: Path) -> None:
    """Says what a file is when it is not a readable `.keras` archive (a zip with a config)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == _HDF5_SIGNATURE:
        raise ValueError(
            f"{str(path)!r} is an HDF5 file (a Keras 2 .h5 model?), not a .keras archive; "
            "tfvae saves and loads .keras files."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a .keras archive (not a zip file): it is damaged, truncated "
            f"or of another kind ({path.stat().st_size} bytes)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{str(path)!r} is a damaged .keras archive: {error}") from None
    if damaged is not None:
        raise ValueError(f"{str(path)!r} is a damaged .keras archive: {damaged!r} is corrupt.")
    if "config.json" not in names:
        raise ValueError(
            f"{str(path)!r} is a zip file but not a Keras model: it has no config.json."
        )


def load_vae(path) -> VAE:
    """Loads a `tfvae.VAE` from a `.keras` file, or from a run folder's `model.keras`.

    Always with `safe_mode=True`: no code from the file is run. The file is checked first,
    so random bytes, a truncated archive, an HDF5 file or a model with a Lambda layer each
    get a message that says so.

    Raises:
        ValueError: if there is no such file, it cannot be read, or it holds another model.

    Example:

    >>> vae = load_vae("saved_models/digits-mlp-20261121-120000")
    """
    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise ValueError(
            f"No model at {str(model_path)!r}: expected a run folder or a .keras file."
        )
    _check_keras_archive(model_path)
    models.import_all()  # registers every model class with Keras
    try:
        vae = keras.models.load_model(model_path, safe_mode=True)
    except Exception as error:
        if "Lambda" in str(error):
            raise ValueError(
                f"{str(model_path)!r} contains a Lambda layer (Python code); tfvae loads with "
                "safe_mode=True and never runs code from a file. tfvae models have no Lambda."
            ) from None
        raise ValueError(
            f"Could not load {str(model_path)!r} as a tfvae model: {first_line(error)}"
        ) from None
    if not isinstance(vae, VAE):
        raise ValueError(f"{str(model_path)!r} holds a {type(vae).__name__}, not a tfvae.VAE.")
    return vae
