"""Export a trained VAE for serving (SavedModel) and for phones (TFLite, run by LiteRT).

SavedModel signatures, made with `keras.export.ExportArchive` (tensors in, named
tensors out):

    encode(x)       -> latent, <parameters>  the central latent and q(z|x)'s parameters
    decode(z)       -> mean, <parameters>    logits (Bernoulli kinds) or loc, scale (Gaussian)
    sample(n)       -> x                     n new prior samples through the decoder (means)
    reconstruct(x)  -> x                     decoder mean at the central latent
    classify(x)     -> label, probabilities  q(y|x), for a model that classifies (M2)

A conditional model's signatures take a `label` input too (int32: one per row, or
one for all n samples); `classify` takes x alone.

`to_tflite` converts chosen signatures with builtin TFLite ops only: `sample` draws z
with the stateful `tf.random.normal`, which becomes the builtin RANDOM_STANDARD_NORMAL
op, so every call gives new samples. `tfvae.serving` runs what this module writes
(`LiteRTModel` for `.tflite` files, `load_sampler` for every kind).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from tfvae import choices, scaling
from tfvae.files import atomic_output
from tfvae.models import VAE
from tfvae.serving import saved_model_signatures, write_checksums

__all__ = [
    "SIGNATURES",
    "CLASSIFY_SIGNATURE",
    "QUANTIZATIONS",
    "export_saved_model",
    "to_tflite",
]

#: Signature names of exported models.
SIGNATURES = choices.SIGNATURES
#: Accepted `quantization` values of `to_tflite`.
QUANTIZATIONS = (None, *choices.QUANTIZATIONS)


def _check_trained(vae, allow_untrained: bool) -> None:
    if not isinstance(vae, VAE):
        raise TypeError(f"Expected a tfvae.VAE to export. Received: {type(vae).__name__}")
    if not vae.built:
        raise ValueError("The VAE is not built; build or train it before exporting.")
    optimizer = getattr(vae, "optimizer", None)
    steps = scaling.steps_taken(vae) if optimizer is not None else 0
    if steps == 0 and not allow_untrained:
        raise ValueError(
            "The VAE has not been trained (0 optimizer steps), so an export would hold random "
            "weights. Train it first, or pass allow_untrained=True."
        )


def sampler_signature(sampler: str | None) -> str:
    """The signature that samples with `sampler`: `sample` for the model's default
    sampler (None), `sample_<sampler>` for a named one (`sample_gmm`, ...)."""
    return "sample" if sampler is None else f"sample_{sampler}"


#: The per-sampler signatures a model with fitted samplers can have.
SAMPLER_SIGNATURES = tuple(sampler_signature(s) for s in choices.SAMPLERS)
#: The signature of a model that classifies (`vae.classifies`): x -> label, probabilities.
CLASSIFY_SIGNATURE = "classify"


def _check_signatures(signatures, available: Sequence[str]) -> tuple[str, ...]:
    if isinstance(signatures, str):
        signatures = (signatures,)
    signatures = tuple(signatures)
    unknown = [s for s in signatures if s not in available]
    if unknown or not signatures:
        raise ValueError(
            f"Unknown signature(s) {unknown or list(signatures)}. "
            f"Expected some of: {', '.join(available)}."
        )
    return signatures


def _signatures_of(vae: VAE) -> tuple[str, ...]:
    """Every signature `vae` can be exported with: the four, `classify` for a model that
    classifies, and `sample_<sampler>` for the prior and each fitted sampler, once a
    sampler has been fitted."""
    found = SIGNATURES + ((CLASSIFY_SIGNATURE,) if vae.classifies else ())
    if not vae.fitted_samplers:
        return found
    return found + tuple(sampler_signature(s) for s in ("prior", *vae.fitted_samplers))


def _endpoints(vae: VAE) -> dict:
    """Returns {name: (function, input_signature)} for every signature.

    `sample` draws with the model's `default_sampler`; `sample_<sampler>` with each
    sampler (`_signatures_of`); they return the latents drawn beside `x` (`z`, or a
    VQ-VAE's `codes`). A conditional model's signatures take a `label` too: one int32
    per row (`encode`,
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

    def sampling(sampler):
        def sample(n, label=None):
            if vae.latent_is_discrete:  # the codes too: decode_codes(codes) gives x again
                codes = vae.draw_codes(n, sampler=sampler)
                return {"x": vae.decode_codes(codes).mean(), "codes": codes}
            z = vae.draw_latent(n, sampler=sampler)  # z too: decode(z) gives x again
            if label is None:
                return {"x": vae._decode(z).mean(), "z": z}
            x = vae._decode(z, tf.fill(tf.reshape(n, [1]), label)).mean()
            return {"x": x, "z": z, "num_classes": tf.fill([1], vae.num_classes)}

        return sample

    def reconstruct(x, label=None):
        return {"x": vae._reconstruct(x, label)}

    endpoints = {
        "encode": (encode, [x_spec], row_labels),
        "decode": (decode, [z_spec], row_labels),
        "sample": (sampling(None), [n_spec], one_label),
        "reconstruct": (reconstruct, [x_spec], row_labels),
    }
    for sampler in ("prior", *vae.fitted_samplers):
        endpoints[sampler_signature(sampler)] = (sampling(sampler), [n_spec], one_label)
    if vae.is_conditional:
        found = {name: (f, specs + [label]) for name, (f, specs, label) in endpoints.items()}
    else:
        found = {name: (_one_input(f), specs) for name, (f, specs, _) in endpoints.items()}
    if vae.classifies:

        def classify(x):
            probabilities = vae.classifier(vae._inputs(x)).probs_parameter()
            label = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            return {"label": label, "probabilities": probabilities}

        found[CLASSIFY_SIGNATURE] = (classify, [x_spec])
    return found


def _one_input(function):
    """`function` with only its first argument, so that its signature has one input."""

    def endpoint(inputs):
        return function(inputs)

    return endpoint


@contextlib.contextmanager
def _unseeded_random_ops():
    """Traces random ops without TensorFlow's global seed, then restores it.

    Under a global seed (`keras.utils.set_random_seed`, which training calls) every
    random op is traced with fixed seeds, and each LiteRT interpreter would then draw
    the same sequence of samples: a phone app would show the same "random" digits at
    every launch. Ops traced without one get seed 0, which LiteRT seeds afresh.
    """
    from tensorflow.python.eager import context

    seed = context.global_seed()
    tf.random.set_seed(None)
    try:
        yield
    finally:
        if seed is not None:
            tf.random.set_seed(seed)


def _write_saved_model(vae: VAE, directory: Path, signatures: Sequence[str]) -> None:
    with _unseeded_random_ops():
        _write_archive(vae, directory, signatures)


def _write_archive(vae: VAE, directory: Path, signatures: Sequence[str]) -> None:
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
        signatures: which signatures to include (default: all four, and
            `sample_<sampler>` for the prior and each sampler fitted to `vae`).
            `encode` returns `latent` (the model's central latent) and the
            posterior's parameters (`tfvae.VAE.posterior_tensors`). `sample` draws
            with `vae.default_sampler` (a VQ-VAE's fitted PixelCNN), and a VQ-VAE's
            `sample` returns the `codes` it drew beside `x`.
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
    available = _signatures_of(vae)
    signatures = _check_signatures(available if signatures is None else signatures, available)
    with atomic_output(path, overwrite) as partial:
        _write_saved_model(vae, partial, signatures)
        write_checksums(partial)  # readers tell a damaged export from a good one
    return Path(path)


def _flex_ops(message: str) -> list[str]:
    found = re.findall(r"\btf\.(\w+)", message) + re.findall(r"Flex(\w+)", message)
    return sorted(set(found))


def to_tflite(
    source,
    path,
    *,
    signatures: Sequence[str] | None = None,
    quantization: str | None = None,
    overwrite: bool = False,
    allow_untrained: bool = False,
) -> Path:
    """Converts a VAE (or its SavedModel) to a `.tflite` file with builtin ops only.

    Args:
        source: a trained `tfvae.VAE`, or the folder written by `export_saved_model`.
        path: the `.tflite` file to create.
        signatures: which signatures to convert (default: `decode`, `sample`, the
            `sample_<sampler>` signatures of fitted samplers, and `classify` for a
            model that classifies).
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
    >>> tfvae.serving.LiteRTModel("run/model.tflite").sample(16).shape
    (16, 28, 28, 1)
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Expected one of: "
            "None, 'float16', 'dynamic_int8'."
        )
    if Path(path).exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists; choose another path or pass `overwrite=True`. "
            "Nothing was written."
        )
    with tempfile.TemporaryDirectory(prefix="tfvae-export-") as scratch:
        if isinstance(source, VAE):
            _check_trained(source, allow_untrained)
            available = _signatures_of(source)
        else:
            available = tuple(saved_model_signatures(source))
        if signatures is None:
            wanted = ("decode", CLASSIFY_SIGNATURE)
            signatures = [s for s in available if s in wanted or s.startswith("sample")]
        if isinstance(source, VAE):
            signatures = _check_signatures(signatures, available)
            saved_model = Path(scratch) / "saved_model"
            _write_saved_model(source, saved_model, signatures)
        else:
            saved_model = Path(source)
            known = SIGNATURES + (CLASSIFY_SIGNATURE,) + SAMPLER_SIGNATURES
            signatures = _check_signatures(signatures, known)
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
    write_checksums(path)  # `<name>.tflite.sha256`: readers tell a damaged file
    return Path(path)
