"""Running exported models: `.tflite` files on LiteRT, and a sampler for any model file.

`LiteRTModel` runs the signatures of a `.tflite` file written by `tfvae.export.to_tflite`
with `ai_edge_litert` and returns NumPy arrays. `load_sampler` gives one
`sample(n, label=None)` for a `.keras` file, a SavedModel folder or a `.tflite` file,
checking a conditional model's label against the `num_classes` its signature returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.arguments import check_integer, first_line
from tfvae.files import atomic_output, sha256_of
from tfvae.loading import load_vae

__all__ = [
    "LiteRTModel",
    "load_sampler",
    "saved_model_signatures",
    "write_checksums",
    "check_checksums",
    "CHECKSUMS",
]

#: The checksums `tfvae export` writes inside a SavedModel folder (for a .tflite file:
#: `<name>.tflite.sha256` beside it); every reader here checks them when they are there.
CHECKSUMS = "tfvae_checksums.json"


def _checksum_file(path: Path) -> Path:
    return path / CHECKSUMS if path.is_dir() else path.with_name(path.name + ".sha256")


def write_checksums(path) -> Path:
    """Writes the SHA-256 of every file of an export (a SavedModel folder or a .tflite
    file), so a reader can tell a damaged one (`check_checksums`). Returns where."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    digests = {str(f.relative_to(base)): sha256_of(f) for f in files if f.name != CHECKSUMS}
    target = _checksum_file(path)
    with atomic_output(target, overwrite=True) as partial:
        partial.write_text(json.dumps({"sha256": digests}, indent=1) + "\n")
    return target


def check_checksums(path) -> None:
    """Raises a one-line ValueError when an export's files differ from the checksums
    `tfvae export` wrote beside them; does nothing for an export without them."""
    path = Path(path)
    target = _checksum_file(path)
    if not target.is_file():
        return
    base = path if path.is_dir() else path.parent
    try:
        expected = dict(json.loads(target.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{str(target)!r}, the checksums of {str(path)!r}, is damaged; export again."
        ) from None
    for name, digest in expected.items():
        file = base / name
        if not file.is_file() or sha256_of(file) != digest:
            what = "is missing" if not file.is_file() else "does not match its checksum"
            raise ValueError(
                f"{str(file)!r} {what} (written by tfvae export): the export is damaged; "
                "export it again."
            )


def saved_model_signatures(directory) -> list[str]:
    """The signature names of a SavedModel folder.

    Raises:
        ValueError: if it is not a readable SavedModel folder.
    """
    if not (Path(directory) / "saved_model.pb").is_file():
        raise ValueError(
            f"{str(directory)!r} is not a SavedModel folder: it has no saved_model.pb."
        )
    try:
        loaded = tf.saved_model.load(str(directory))
    except Exception as error:
        raise ValueError(
            f"Could not read the SavedModel {str(directory)!r}: {first_line(error)}"
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
        check_checksums(self.path)
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
                f"{str(self.path)!r} is a damaged or truncated TFLite model: {first_line(error)}"
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

    def sample(self, n: int, label: int | None = None, sampler: str | None = None) -> np.ndarray:
        """Returns `n` new samples (decoder means), float32 of shape `(n, *data_shape)`.

        Args:
            n: how many, >= 1.
            label: the class of all n samples: required by a conditional model's file,
                refused by the others.
            sampler: a sampler exported with the model (`sample_<sampler>`
                signature: `"prior"`, `"gmm"`, ...); None for the model's default.

        Raises:
            ValueError: for a bad `n`, a sampler the file lacks, or a missing,
                unexpected or out-of-range label.
        """
        n = check_integer("n", n)
        signature = _sampler_signature(sampler, self.signatures, self.path)
        inputs = {"n": np.array(n, np.int32), **self._label_input(label, signature)}
        outputs = self.run(signature, **inputs)
        _check_label_range(label, outputs.get("num_classes"), self.path)
        return outputs["x"]

    def classify(self, x) -> np.ndarray:
        """Returns the most probable class of each row of `x`, int32 `(n,)`, from the
        `classify` signature of a model that classifies (the semi-supervised VAE).

        Raises:
            ValueError: for a file without a `classify` signature.
        """
        return self.run("classify", x=np.asarray(x, np.float32))["label"]

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


def _sampler_signature(sampler, signatures, source) -> str:
    """The signature that samples with `sampler` in a file that has `signatures`."""
    name = "sample" if sampler is None else f"sample_{sampler}"
    if name not in signatures:
        drawn = [s.removeprefix("sample_") for s in signatures if s.startswith("sample_")]
        raise ValueError(
            f"{str(source)!r} has no {name!r} signature, so it cannot sample with "
            f"sampler={sampler!r}. Its samplers: {', '.join(drawn) or 'only its default'}."
        )
    return name


def _label_feed(takes_label: bool, label, source) -> dict:
    """`{"label": label}` for a conditional model's signature, `{}` for another's; a
    missing or unexpected label is a one-line error naming `source`."""
    if takes_label and label is None:
        raise ValueError(f"{str(source)!r} is a conditional model's file: pass a label (`label`).")
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


def load_sampler(path, sampler: str | None = None):
    """Returns `sample(n, label=None) -> np.ndarray` for a `.keras` file (or a run folder
    holding `model.keras`), a SavedModel folder or a `.tflite` file. A conditional
    model needs the `label` of the samples.

    Args:
        path: the model file or folder.
        sampler: where latents come from: `"prior"`, a fitted sampler (`"gmm"`,
            `"two_stage"`, `"pixelcnn"`), or None for the model's default.

    Raises:
        ValueError: if `path` is none of these, cannot be read, or lacks `sampler`.

    Example:

    >>> images = load_sampler("run/model.tflite")(64)
    >>> sevens = load_sampler("cvae/saved_model")(64, label=7)
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"No model at {str(path)!r}.")
    if (
        path.is_dir()
        and not (path / "saved_model.pb").exists()
        and (path / "model.keras").is_file()
    ):
        path = path / "model.keras"  # a run folder
    if path.is_dir():
        check_checksums(path)
        signatures = saved_model_signatures(path)
        if "sample" not in signatures:
            raise ValueError(
                f"The SavedModel {str(path)!r} has no 'sample' signature; it has: "
                f"{', '.join(signatures)}."
            )
        signature = _sampler_signature(sampler, signatures, path)
        served = tf.saved_model.load(str(path)).signatures[signature]
        takes_label = "label" in served.structured_input_signature[1]

        def sample_saved_model(n, label=None):
            inputs = {"n": np.array(n, np.int32), **_label_feed(takes_label, label, path)}
            outputs = served(**{key: tf.constant(value) for key, value in inputs.items()})
            _check_label_range(label, outputs.get("num_classes"), path)
            return outputs["x"].numpy()

        return sample_saved_model
    if path.suffix == ".tflite":
        model = LiteRTModel(path)
        _sampler_signature(sampler, model.signatures, path)
        return lambda n, label=None: model.sample(n, label, sampler)
    if path.suffix == ".keras":
        vae = load_vae(path)
        try:
            vae.check_sampler(sampler)
        except ValueError as error:
            raise ValueError(f"{str(path)!r}: {first_line(error)}") from None
        return lambda n, label=None: np.asarray(vae.sample(n, labels=label, sampler=sampler))
    raise ValueError(
        f"Cannot tell what {str(path)!r} is. Expected a .keras file, a SavedModel folder "
        "or a .tflite file."
    )
