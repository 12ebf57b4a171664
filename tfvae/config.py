"""A training run's settings: one dataclass, read by `tfvae.runs` and by `tfvae train`.

`RunConfig` holds everything a run is started with. `tfvae.runs.train_run(config)`
trains it, and writes it to the run folder's `config.json`, which is how
`train_run(config, resume=True)` (and `tfvae train --resume`) know what to resume.
Each field's metadata (its group, kind and help) is also the spec of its `tfvae
train` flag, so the command line and the library cannot drift apart; a model's own
options come from `tfvae.models.registry` the same way.

This module imports no TensorFlow, so the command line parses and checks its flags
at once.

Example:

>>> config = RunConfig(dataset="digits", model="iwae", model_options={"k": 10}, epochs=5)
>>> config.validate()
>>> RunConfig.from_dict(config.to_dict()) == config
True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfvae import choices
from tfvae.arguments import check_choice, check_integer, check_number
from tfvae.models import registry

__all__ = ["RunConfig", "FIELD_KINDS", "read_config_file"]

#: What a field holds: free text (or None), one of its `choices`, an integer >= 1, any
#: integer, a number > 0, a number >= 0 (or None), or an on/off switch.
FIELD_KINDS = ("text", "choice", "count", "integer", "positive", "nonnegative", "switch")


def _setting(default, group: str, kind: str, help: str, choices=None):
    """A field with its `tfvae train` flag's spec in its metadata."""
    metadata = {"group": group, "kind": kind, "help": help, "choices": choices}
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """The settings of one training run (also the flags of `tfvae train`).

    Args:
        dataset, split, validation_split: the data (`tfvae.data.load`).
        manual_dir, data_dir, offline: where TFDS finds or keeps it.
        binarize: `"none"`, `"dynamic"` or `"threshold"`.
        model, network, latent_dim, likelihood: the model (`tfvae.models.build`).
        labels, label_seed, features: a semi-supervised run's labelled subset and
            its M1 model (`tfvae.models.semi_supervised`).
        beta: the rate weight, or None for the model's default.
        model_options: the model's own options (`tfvae.models.registry`), such as
            `{"k": 10}` for `"iwae"`; the others take their registered defaults.
        kl_schedule, kl_schedule_steps: anneal beta from 0 (`tfvae.schedules`).
        epochs, batch_size, learning_rate, seed: training.
        deterministic: bit-identical runs for the same seed (op determinism, no XLA).
        keep_checkpoints: checkpoint generations kept.
        jit_compile: `"auto"`, `"on"` or `"off"`.
        steps_per_execution: steps per call of the train function (None: the default).
        strategy, precision: `tfvae.scaling`.
        output_dir: the run folder (None: a new one under `saved_models/`).
        log_dir: the TensorBoard folder (None: `<output_dir>/logs`).
    """

    dataset: str = _setting(
        "digits", "data", "text", "'digits' (embedded, offline) or a TFDS image data set"
    )
    split: str = _setting("train", "data", "text", "training split")
    validation_split: str = _setting("test", "data", "text", "split for validation and pictures")
    manual_dir: str | None = _setting(
        None,
        "data",
        "text",
        "folder of the original data files, to prepare a TFDS data set with no network "
        "(default: $TFVAE_MANUAL_DIR)",
    )
    data_dir: str | None = _setting(
        None, "data", "text", "where TFDS keeps prepared data (default: $TFVAE_DATA_DIR)"
    )
    offline: bool = _setting(False, "data", "switch", "never try to download data")
    binarize: str = _setting(
        "none",
        "data",
        "choice",
        "binarise images: a fresh draw each epoch, or x >= 0.5",
        ("none", *choices.BINARIZATIONS),
    )
    model: str = _setting("vae", "model", "choice", "the model", tuple(registry.REGISTRY))
    network: str = _setting("mlp", "model", "choice", "encoder and decoder", choices.NETWORKS)
    latent_dim: int = _setting(20, "model", "count", "size of z")
    likelihood: str = _setting("bernoulli", "model", "choice", "p(x|z)", choices.LIKELIHOODS)
    beta: float | None = _setting(
        None,
        "model",
        "nonnegative",
        "weight of the KL term, or vqvae's commitment cost (default: the model's own: "
        "1; 4 for beta_vae, 0.25 for vqvae)",
    )
    model_options: dict[str, Any] = field(default_factory=dict)
    labels: int | None = _setting(
        None,
        "model",
        "count",
        "semi_supervised: keep the labels of a class-balanced subset of this many training "
        "examples, the rest unlabelled (default: all labelled)",
    )
    label_seed: int = _setting(0, "model", "integer", "semi_supervised: which examples keep labels")
    features: str | None = _setting(
        None,
        "model",
        "text",
        "semi_supervised: a trained VAE (its run folder or .keras file) whose latents M2 "
        "models: the stacked M1+M2",
    )
    kl_schedule: str = _setting(
        "none", "model", "choice", "anneal beta from 0 to beta", ("none", *choices.SCHEDULES)
    )
    kl_schedule_steps: int = _setting(
        1000,
        "model",
        "count",
        "warm-up length, cycle period, or twice the sigmoid midpoint, in steps",
    )
    epochs: int = _setting(30, "training", "count", "passes over the training split")
    batch_size: int = _setting(128, "training", "count", "examples per step (the global batch)")
    learning_rate: float = _setting(1e-3, "training", "positive", "Adam learning rate")
    seed: int = _setting(0, "training", "integer", "seed of the weights, data order and noise")
    deterministic: bool = _setting(
        False,
        "training",
        "switch",
        "bit-identical runs for the same seed, data and machine (op determinism; no XLA)",
    )
    keep_checkpoints: int = _setting(
        3, "training", "count", "checkpoint generations kept in <output-dir>/checkpoints"
    )
    jit_compile: str = _setting(
        "auto",
        "training",
        "choice",
        "XLA: 'auto' turns it on on GPU/TPU, and on CPU for networks without convolutions",
        choices.JIT_COMPILE,
    )
    steps_per_execution: int | None = _setting(
        None,
        "training",
        "count",
        "train steps per call, fused into one XLA program under XLA (default: 32)",
    )
    strategy: str = _setting(
        "none",
        "scaling out",
        "choice",
        "tf.distribute strategy: 'mirrored' (all local GPUs) or 'multi_worker' (one process "
        "per machine, configured by TF_CONFIG); batch_size is the global batch",
        choices.STRATEGIES,
    )
    precision: str = _setting(
        "float32",
        "scaling out",
        "choice",
        "Keras dtype policy of the networks; distributions and the loss stay float32",
        choices.PRECISIONS,
    )
    output_dir: str | None = _setting(
        None,
        "output",
        "text",
        "run folder, new or empty (default: saved_models/<dataset>-<network>-<time>)",
    )
    log_dir: str | None = _setting(
        None, "output", "text", "TensorBoard log folder (default: <output-dir>/logs)"
    )

    @staticmethod
    def settings() -> list[dataclasses.Field]:
        """The fields that are `tfvae train` flags (all but `model_options`), in order."""
        return [f for f in dataclasses.fields(RunConfig) if f.metadata]

    def validate(self) -> None:
        """Checks every setting; raises a one-line error naming the first bad one.

        Raises:
            ValueError / TypeError: for a value of the wrong kind, an unknown choice, a
                model option the model does not take, or a `manual_dir` that is not
                a folder.
        """
        for setting in self.settings():
            _check_setting(setting, getattr(self, setting.name))
        if not isinstance(self.model_options, dict):
            raise TypeError(
                "`model_options` must be a dict of the model's options. "
                f"Received: {type(self.model_options).__name__}"
            )
        self.model_spec_options()
        for name in ("labels", "features"):
            if getattr(self, name) is not None and self.model != "semi_supervised":
                raise ValueError(f"`{name}` applies to `model` semi_supervised, not {self.model}.")
        if self.manual_dir is not None and not Path(self.manual_dir).is_dir():
            raise ValueError(f"`manual_dir` {self.manual_dir!r} does not exist or is not a folder.")

    def model_spec_options(self) -> dict[str, Any]:
        """The model's own options: those given in `model_options`, else the defaults.

        Raises:
            ValueError: for an option of another model (such as `k` with model "vae").
        """
        model = registry.spec(self.model)
        by_name = registry.options_by_name()
        for name, value in self.model_options.items():
            if model.option(name) is None:
                models = by_name[name][1] if name in by_name else ()
                where = f"applies to `model` {' or '.join(models)}" if models else "is unknown"
                raise ValueError(f"`{name}` {where}, not {self.model}.")
            model.option(name).check(value)
        return {o.name: self.model_options.get(o.name, o.default) for o in model.options}

    def to_dict(self) -> dict[str, Any]:
        """The settings as the flat dict that `config.json` holds (model options inline)."""
        flat = {s.name: getattr(self, s.name) for s in self.settings()}
        return {**flat, **self.model_options}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The config of a `config.json`; keys it does not know (facts of the run, such
        as `data_shape` or `versions`) are ignored, and missing ones take defaults.

        Raises:
            ValueError: if `values` is not a dict with a known `model`.
        """
        if not isinstance(values, dict) or not isinstance(values.get("model", "vae"), str):
            raise ValueError(f"Expected a run config (a dict). Received: {type(values).__name__}")
        known = {s.name: values[s.name] for s in cls.settings() if s.name in values}
        if isinstance(known.get("jit_compile"), bool):  # runs written before the choice
            known["jit_compile"] = "on" if known["jit_compile"] else "off"
        model = registry.spec(known.get("model", "vae"))
        options = {o.name: values[o.name] for o in model.options if o.name in values}
        return cls(**known, model_options=options)


def _check_setting(setting: dataclasses.Field, value) -> None:
    name, kind = setting.name, setting.metadata["kind"]
    if value is None and setting.default is None:
        return
    if kind == "text":
        if not isinstance(value, str) or not value:
            raise TypeError(f"`{name}` must be a non-empty string. Received: {name}={value!r}")
    elif kind == "choice":
        check_choice(name, value, setting.metadata["choices"])
    elif kind == "count":
        check_integer(name, value)
    elif kind == "integer":
        check_integer(name, value, minimum=-(2**63))
    elif kind == "positive":
        check_number(name, value, inclusive=False)
    elif kind == "nonnegative":
        check_number(name, value)
    elif not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")


def read_config_file(path) -> dict[str, Any]:
    """A run folder's `config.json` as a dict, or a one-line error saying what is wrong.

    Raises:
        ValueError: if it cannot be read, is not JSON, or is not a run config.
    """
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a readable run config: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model", "vae"), str):
        raise ValueError(f"{str(path)!r} is not a run config written by tfvae.")
    missing = [key for key in _REQUIRED_KEYS if key not in config]
    if missing:  # valid JSON of another shape: its defaults would train another model
        raise ValueError(
            f"{str(path)!r} is not a run config written by tfvae: it has no {', '.join(missing)}."
        )
    return config


#: The settings every config.json tfvae has written holds (older ones too).
_REQUIRED_KEYS = ("model", "dataset", "latent_dim")
