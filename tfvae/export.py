"""Export a trained VAE for serving (SavedModel) and for phones (TFLite, run by LiteRT).

SavedModel signatures, made with `keras.export.ExportArchive` (tensors in, named
tensors out):

    encode(x)       -> latent, <parameters>  the central latent and q(z|x)'s parameters
    decode(z)       -> mean, <parameters>    logits (Bernoulli kinds) or loc, scale (Gaussian)
    sample(n)       -> x                     n new prior samples through the decoder (means)
    reconstruct(x)  -> x                     decoder mean at the central latent

A conditional model's signatures take a `label` input too (int32: one per row, or
one for all n samples).

`to_tflite` converts chosen signatures with builtin TFLite ops only: `sample` draws z
with the stateful `tf.random.normal`, which becomes the builtin RANDOM_STANDARD_NORMAL
op, so every call gives new samples. `LiteRTModel` runs a `.tflite` file with
`ai_edge_litert` and returns NumPy arrays.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae import training
from tfvae.files import atomic_output
from tfvae.models import VAE

__all__ = [
    "SIGNATURES",
    "QUANTIZATIONS",
    "export_saved_model",
    "to_tflite",
    "LiteRTModel",
    "load_vae",
    "load_sampler",
]

#: Signature names of exported models.
SIGNATURES = ("encode", "decode", "sample", "reconstruct")
#: Accepted `quantization` values of `to_tflite`.
QUANTIZATIONS = (None, "float16", "dynamic_int8")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_trained(vae, allow_untrained: bool) -> None:
    if not isinstance(vae, VAE):
        raise TypeError(f"Expected a tfvae.VAE to export. Received: {type(vae).__name__}")
    if not vae.built:
        raise ValueError("The VAE is not built; build or train it before exporting.")
    optimizer = getattr(vae, "optimizer", None)
    steps = training.steps_taken(vae) if optimizer is not None else 0
    if steps == 0 and not allow_untrained:
        raise ValueError(
            "The VAE has not been trained (0 optimizer steps), so an export would hold random "
            "weights. Train it first, or pass allow_untrained=True."
        )


def _check_signatures(signatures) -> tuple[str, ...]:
    if isinstance(signatures, str):
        signatures = (signatures,)
    signatures = tuple(signatures)
    unknown = [s for s in signatures if s not in SIGNATURES]
    if unknown or not signatures:
        raise ValueError(
            f"Unknown signature(s) {unknown or list(signatures)}. "
            f"Expected some of: {', '.join(SIGNATURES)}."
        )
    return signatures


def _endpoints(vae: VAE) -> dict:
    """Returns {name: (function, input_signature)} for every signature.

    A conditional model's signatures take a `label` too: one int32 per row (`encode`,
    `decode`, `reconstruct`), or one for all n samples (`sample`, which then also
    returns `num_classes`, so a runner can check the label it was given).
    """
    x_spec = tf.TensorSpec((None,) + vae.data_shape, tf.float32, name="x")
    z_spec = tf.TensorSpec((None,) + vae.latent_shape, tf.float32, name="z")
    n_spec = tf.TensorSpec((), tf.int32, name="n")
    row_labels = tf.TensorSpec((None,), tf.int32, name="label")
    one_label = tf.TensorSpec((), tf.int32, name="label")

    def encode(x, label=None):
        return vae.posterior_tensors(x, label)

    def decode(z, label=None):
        likelihood = vae._decode(z, label)
        return {"mean": likelihood.mean(), **vae.likelihood.named_parameters(likelihood)}

    def sample(n, label=None):
        if label is None:
            return {"x": vae._decode(vae.sample_latent(n)).mean()}
        labels = tf.fill(tf.reshape(n, [1]), label)
        x = vae._decode(vae.sample_latent(n), labels).mean()
        return {"x": x, "num_classes": tf.fill([1], vae.num_classes)}

    def reconstruct(x, label=None):
        return {"x": vae._reconstruct(x, label)}

    endpoints = {
        "encode": (encode, [x_spec], row_labels),
        "decode": (decode, [z_spec], row_labels),
        "sample": (sample, [n_spec], one_label),
        "reconstruct": (reconstruct, [x_spec], row_labels),
    }
    if vae.is_conditional:
        return {name: (f, specs + [label]) for name, (f, specs, label) in endpoints.items()}
    return {name: (_one_input(f), specs) for name, (f, specs, _) in endpoints.items()}


def _one_input(function):
    """`function` with only its first argument, so that its signature has one input."""

    def endpoint(inputs):
        return function(inputs)

    return endpoint


def _write_saved_model(vae: VAE, directory: Path, signatures: Sequence[str]) -> None:
    archive = keras.export.ExportArchive()
    archive.track(vae)
    endpoints = _endpoints(vae)
    for name in signatures:
        function, input_signature = endpoints[name]
        archive.add_endpoint(name, function, input_signature=input_signature)
    archive.write_out(str(directory), verbose=False)


def export_saved_model(
    vae: VAE,
    path,
    *,
    signatures: Sequence[str] | None = None,
    overwrite: bool = False,
    allow_untrained: bool = False,
) -> Path:
    """Writes a SavedModel with named `encode`, `decode`, `sample`, `reconstruct` signatures.

    The folder is written beside `path` and renamed into place when complete.

    Args:
        vae: a trained `tfvae.VAE`.
        path: the SavedModel folder to create.
        signatures: which signatures to include (default: all four). `encode`
            returns `latent` (the model's central latent) and the posterior's
            parameters (`tfvae.VAE.posterior_tensors`).
        overwrite: replace an existing `path`.
        allow_untrained: export a model that has taken no training step.

    Returns:
        The folder written.

    Raises:
        TypeError: if `vae` is not a `tfvae.VAE`.
        ValueError: for an untrained model or an unknown signature.
        FileExistsError: if `path` exists and `overwrite` is False.

    Example:

    >>> export_saved_model(vae, "run/saved_model")
    >>> served = tf.saved_model.load("run/saved_model")
    >>> served.signatures["decode"](z=tf.zeros((1, 20)))["mean"]
    """
    _check_trained(vae, allow_untrained)
    signatures = _check_signatures(SIGNATURES if signatures is None else signatures)
    with atomic_output(path, overwrite) as partial:
        _write_saved_model(vae, partial, signatures)
    return Path(path)


def _flex_ops(message: str) -> list[str]:
    found = re.findall(r"\btf\.(\w+)", message) + re.findall(r"Flex(\w+)", message)
    return sorted(set(found))


def to_tflite(
    source,
    path,
    *,
    signatures: Sequence[str] = ("decode", "sample"),
    quantization: str | None = None,
    overwrite: bool = False,
    allow_untrained: bool = False,
) -> Path:
    """Converts a VAE (or its SavedModel) to a `.tflite` file with builtin ops only.

    Args:
        source: a trained `tfvae.VAE`, or the folder written by `export_saved_model`.
        path: the `.tflite` file to create.
        signatures: which signatures to convert (default: `decode` and `sample`).
        quantization: None (float32), `"float16"` (weights stored as float16) or
            `"dynamic_int8"` (weights stored as int8, dynamic-range quantisation).
        overwrite: replace an existing `path`.
        allow_untrained: convert a model that has taken no training step.

    Returns:
        The file written.

    Raises:
        ValueError: for an unknown signature or quantization, an untrained model, a
            SavedModel that lacks a signature, or a model that would need Flex
            (TensorFlow) ops, which plain LiteRT does not run.
        FileExistsError: if `path` exists and `overwrite` is False.

    Example:

    >>> to_tflite(vae, "run/model.tflite", quantization="float16")
    >>> LiteRTModel("run/model.tflite").sample(16).shape
    (16, 28, 28, 1)
    """
    signatures = _check_signatures(signatures)
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Expected one of: "
            "None, 'float16', 'dynamic_int8'."
        )
    if Path(path).exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists; choose another path or pass overwrite=True "
            "(--overwrite). Nothing was written."
        )
    with tempfile.TemporaryDirectory(prefix="tfvae-export-") as scratch:
        if isinstance(source, VAE):
            _check_trained(source, allow_untrained)
            saved_model = Path(scratch) / "saved_model"
            _write_saved_model(source, saved_model, signatures)
        else:
            saved_model = Path(source)
            available = _saved_model_signatures(saved_model)
            missing = [s for s in signatures if s not in available]
            if missing:
                raise ValueError(
                    f"The SavedModel {str(saved_model)!r} has no signature {missing}; it has: "
                    f"{', '.join(available)}."
                )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved_model), signature_keys=list(signatures)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises its own ConverterError
            ops = _flex_ops(str(error))
            raise ValueError(
                "The model needs TensorFlow (Flex) ops that builtin TFLite does not have"
                + (f" ({', '.join(ops)})" if ops else "")
                + "; tfvae exports builtin ops only. Use layers and priors with builtin ops."
            ) from None
    with atomic_output(path, overwrite) as partial:
        partial.write_bytes(flatbuffer)
    return Path(path)


def _saved_model_signatures(directory: Path) -> list[str]:
    if not (Path(directory) / "saved_model.pb").is_file():
        raise ValueError(
            f"{str(directory)!r} is not a SavedModel folder: it has no saved_model.pb."
        )
    try:
        loaded = tf.saved_model.load(str(directory))
    except Exception as error:
        raise ValueError(
            f"Could not read the SavedModel {str(directory)!r}: {_first_line(error)}"
        ) from None
    return sorted(loaded.signatures.keys())


class LiteRTModel:
    """Runs the signatures of a `.tflite` file written by `to_tflite`, on LiteRT.

    Args:
        path: the `.tflite` file.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).

    Raises:
        ValueError: if the file is missing, is not a TFLite model, or is damaged.

    Example:

    >>> model = LiteRTModel("run/model.tflite")
    >>> model.sample(64)            # (64, 28, 28, 1) float32
    >>> model.run("decode", z=z)    # {"mean": ..., "logits": ...}
    """

    def __init__(self, path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"No TFLite file at {str(self.path)!r}.")
        content = self.path.read_bytes()
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ValueError(
                f"{str(self.path)!r} is not a TFLite model (no 'TFL3' identifier); "
                f"it holds {len(content)} bytes."
            )
        try:
            self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
            listed = self._interpreter.get_signature_list()
            self.signatures = tuple(sorted(listed))
            self._inputs = {name: tuple(listed[name]["inputs"]) for name in listed}
            self._runners = {s: self._interpreter.get_signature_runner(s) for s in self.signatures}
        except Exception as error:
            raise ValueError(
                f"{str(self.path)!r} is a damaged or truncated TFLite model: {_first_line(error)}"
            ) from None

    def op_names(self) -> list[str]:
        """Returns the ops of every signature: builtin names (upper case) and custom ones.

        Flex (TensorFlow) ops appear as custom ops named `Flex...`.
        """
        from tensorflow.lite.python import schema_py_generated as schema

        model = schema.Model.GetRootAsModel(self.path.read_bytes(), 0)
        builtin = {
            code: name
            for name, code in vars(schema.BuiltinOperator).items()
            if not name.startswith("_")
        }
        names = set()
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            custom = code.CustomCode()
            if custom:
                names.add(custom.decode())
            else:
                names.add(builtin[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        return sorted(names)

    def run(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        """Runs one signature on NumPy inputs and returns its named outputs.

        Raises:
            ValueError: for a signature the file does not have.
        """
        if signature not in self._runners:
            raise ValueError(
                f"{str(self.path)!r} has no signature {signature!r}; it has: "
                f"{', '.join(self.signatures)}."
            )
        return {k: np.asarray(v) for k, v in self._runners[signature](**inputs).items()}

    def sample(self, n: int, label: int | None = None) -> np.ndarray:
        """Returns `n` new samples (decoder means), float32 of shape `(n, *data_shape)`.

        Args:
            n: how many, >= 1.
            label: the class of all n samples: required by a conditional model's file,
                refused by the others.

        Raises:
            ValueError: for a bad `n`, or a missing, unexpected or out-of-range label.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"`n` must be a positive integer. Received: n={n!r}")
        inputs = {"n": np.array(n, np.int32), **self._label_input(label, "sample")}
        outputs = self.run("sample", **inputs)
        _check_label_range(label, outputs.get("num_classes"), self.path)
        return outputs["x"]

    def decode(self, z, label=None) -> dict[str, np.ndarray]:
        """Returns the decoder outputs (`mean` and the likelihood's parameters) for `z`;
        a conditional model's file also needs one `label` per row."""
        z = np.asarray(z, np.float32)
        labels = (
            None if label is None else np.broadcast_to(np.asarray(label, np.int32), z.shape[:1])
        )
        return self.run("decode", z=z, **self._label_input(labels, "decode"))

    def _label_input(self, label, signature: str) -> dict:
        return _label_feed("label" in self._inputs.get(signature, ()), label, self.path)


def _label_feed(takes_label: bool, label, source) -> dict:
    """`{"label": label}` for a conditional model's signature, `{}` for another's; a
    missing or unexpected label is a one-line error naming `source`."""
    if takes_label and label is None:
        raise ValueError(
            f"{str(source)!r} is a conditional model's file: pass a label "
            "(--label in `tfvae sample`)."
        )
    if not takes_label and label is not None:
        raise ValueError(f"{str(source)!r} is not a conditional model's file; it takes no label.")
    return {} if label is None else {"label": np.asarray(label, np.int32)}


def _check_label_range(label, num_classes, source) -> None:
    """Raises for a label that is not below the model's `num_classes` (one_hot would
    silently give a row of zeros)."""
    if label is None or num_classes is None:
        return
    classes = int(np.asarray(num_classes).reshape(-1)[0])
    if not 0 <= int(label) < classes:
        raise ValueError(
            f"The label must lie in [0, {classes}) for {str(source)!r}. Received: label={label}"
        )


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_keras_archive(path: Path) -> None:
    """Says what a file is when it is not a readable `.keras` archive (a zip with a config)."""
    import zipfile

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
    try:
        vae = keras.models.load_model(model_path, safe_mode=True)
    except Exception as error:
        if "Lambda" in str(error):
            raise ValueError(
                f"{str(model_path)!r} contains a Lambda layer (Python code); tfvae loads with "
                "safe_mode=True and never runs code from a file. tfvae models have no Lambda."
            ) from None
        raise ValueError(
            f"Could not load {str(model_path)!r} as a tfvae model: {_first_line(error)}"
        ) from None
    if not isinstance(vae, VAE):
        raise ValueError(f"{str(model_path)!r} holds a {type(vae).__name__}, not a tfvae.VAE.")
    return vae


def load_sampler(path):
    """Returns `sample(n, label=None) -> np.ndarray` for a `.keras` file, a SavedModel
    folder or a `.tflite` file. A conditional model needs the `label` of the samples.

    Raises:
        ValueError: if `path` is none of these, or cannot be read.

    Example:

    >>> images = load_sampler("run/model.tflite")(64)
    >>> sevens = load_sampler("cvae/saved_model")(64, label=7)
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"No model at {str(path)!r}.")
    if path.is_dir():
        signatures = _saved_model_signatures(path)
        if "sample" not in signatures:
            raise ValueError(
                f"The SavedModel {str(path)!r} has no 'sample' signature; it has: "
                f"{', '.join(signatures)}."
            )
        served = tf.saved_model.load(str(path)).signatures["sample"]
        takes_label = "label" in served.structured_input_signature[1]

        def sample_saved_model(n, label=None):
            inputs = {"n": np.array(n, np.int32), **_label_feed(takes_label, label, path)}
            outputs = served(**{key: tf.constant(value) for key, value in inputs.items()})
            _check_label_range(label, outputs.get("num_classes"), path)
            return outputs["x"].numpy()

        return sample_saved_model
    if path.suffix == ".tflite":
        return LiteRTModel(path).sample
    if path.suffix == ".keras":
        vae = load_vae(path)
        return lambda n, label=None: np.asarray(vae.sample(n, labels=label))
    raise ValueError(
        f"Cannot tell what {str(path)!r} is. Expected a .keras file, a SavedModel folder "
        "or a .tflite file."
    )
