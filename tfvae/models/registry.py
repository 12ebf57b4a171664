"""The model registry: every model's name, builder, defaults and own options, in one table.

`tfvae.models.build`, `tfvae train --model NAME` (its choices, its flags and their help)
and the tests read this table and nothing else, so a new variant is one new file (its
class and a `build` function) plus one `register(ModelSpec(...))` entry below.

The table imports no TensorFlow: a builder is named by `"module:function"` and imported
on first use, so the command line can list models and check flags at once.

A builder is called as `builder(data_shape, network, latent_dim, likelihood, *, beta,
seed, **options)`, where `options` are the spec's `fixed` arguments and its `options`
(each at its default unless given).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from tfvae.arguments import check_integer, check_number

__all__ = ["Option", "ModelSpec", "REGISTRY", "register", "spec"]

#: What an option's value may be: an integer >= 1, a number >= 0, or an on/off flag.
OPTION_KINDS = ("count", "nonnegative", "flag")


@dataclass(frozen=True)
class Option:
    """A setting of one or more models, with its default; also a `tfvae train` flag.

    Args:
        name: the builder's keyword (`num_codes`); the flag is `--num-codes`.
        kind: `"count"` (an integer >= 1), `"nonnegative"` (a number >= 0) or `"flag"`.
        default: the value when none is given.
        help: what it sets, for `--help`.
    """

    name: str
    kind: str
    default: Any
    help: str

    def __post_init__(self):
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"Unknown option kind {self.kind!r}. Expected one of: {OPTION_KINDS}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value) -> Any:
        """Returns `value` if it is of this option's kind; raises a one-line error if not."""
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise TypeError(f"`{self.name}` must be True or False. Received: {value!r}")
        elif self.kind == "count":
            check_integer(self.name, value)
        else:
            check_number(self.name, value)
        return value


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Args:
        name: what `build` and `--model` call it.
        builder: `"module:function"` of the function that builds it.
        summary: one line for `--help` and the README.
        options: its own settings (`Option`s), also `tfvae train` flags.
        fixed: arguments always passed to the builder (a variant that differs from
            another only in one component, such as the posterior, is a registration).
        beta: the default weight of the rate (or VQ-VAE's commitment cost).
        conditional: trained on `(x, label)` pairs; the builder takes `num_classes`.
        data_options: other builder arguments that come from the data, not a flag
            (the labelled fraction of a semi-supervised run, the M1 model of M1+M2).
    """

    name: str
    builder: str
    summary: str
    options: tuple[Option, ...] = ()
    fixed: dict = field(default_factory=dict)
    beta: float = 1.0
    conditional: bool = False
    data_options: tuple[str, ...] = ()

    def load_builder(self):
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


#: Every model, by name, in the order `--help` lists them.
REGISTRY: dict[str, ModelSpec] = {}


def register(model: ModelSpec) -> ModelSpec:
    """Adds a model to `REGISTRY`.

    Raises:
        ValueError: if the name is taken, or an option clashes with another model's
            option of the same name (one flag serves every model that has it).
    """
    if model.name in REGISTRY:
        raise ValueError(f"A model named {model.name!r} is already registered.")
    for option in model.options:
        for other in REGISTRY.values():
            same = other.option(option.name)
            if same is not None and (same.kind, same.default) != (option.kind, option.default):
                raise ValueError(
                    f"Option {option.name!r} of {model.name!r} differs from {other.name!r}'s: "
                    "one flag serves both, so kind and default must agree."
                )
    REGISTRY[model.name] = model
    return model


def spec(name: str) -> ModelSpec:
    """Returns the registered model called `name`.

    Raises:
        ValueError: for a name that is not registered, listing those that are.
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Expected one of: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def options_by_name() -> dict[str, tuple[Option, list[str]]]:
    """Every option of every model, once: `{name: (option, [models that take it])}`."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for model in REGISTRY.values():
        for option in model.options:
            found.setdefault(option.name, (option, []))[1].append(model.name)
    return found


_K = Option("k", "count", 5, "importance samples per example of the training bound")
_FREE_BITS = Option(
    "free_bits", "nonnegative", 0.25, "nats per latent dimension below which KL is free"
)
_COMPONENTS = Option("num_components", "count", 10, "components of the learned mixture prior")
_PSEUDO_INPUTS = Option("num_pseudo_inputs", "count", 100, "learned pseudo-inputs of the VampPrior")
_CODES = Option("num_codes", "count", 128, "codebook size K")
_ALPHA = Option(
    "alpha",
    "nonnegative",
    0.1,
    "classifier weight alpha / N of Kingma et al. 2014 (0.1): each labelled example's "
    "-log q(y|x) weighs alpha * N / N_labelled",
)
_GAMMA = Option("gamma", "nonnegative", 40.0, "weight of FactorVAE's total-correlation penalty")
_DISCRIMINATOR_UNITS = Option(
    "discriminator_units", "count", 1000, "units of each layer of FactorVAE's discriminator"
)
_DISCRIMINATOR_DEPTH = Option(
    "discriminator_depth", "count", 6, "hidden layers of FactorVAE's discriminator"
)
_LAMBDA_OD = Option(
    "lambda_od", "nonnegative", 10.0, "DIP-VAE's weight of the off-diagonal covariances"
)
_CAPACITY = Option("capacity", "nonnegative", 25.0, "the capacity C_max, nats, the rate rises to")
_CAPACITY_STEPS = Option(
    "capacity_steps", "count", 100_000, "optimizer steps over which the capacity rises to C_max"
)
_EMA = Option("ema", "flag", False, "update the codebook by moving averages instead of gradients")

register(
    ModelSpec("vae", "tfvae.models.vae:build", "distortion + beta * rate (Kingma & Welling 2014)")
)
register(
    ModelSpec(
        "beta_vae",
        "tfvae.models.beta:build",
        "beta = 4 by default (Higgins et al. 2017)",
        beta=4.0,
    )
)
register(
    ModelSpec(
        "free_bits",
        "tfvae.models.free_bits:build",
        "a floor of free bits on each dimension's KL (Kingma et al. 2016)",
        options=(_FREE_BITS,),
    )
)
register(
    ModelSpec(
        "iwae",
        "tfvae.models.iwae:build",
        "the k-sample importance-weighted bound (Burda et al. 2016)",
        options=(_K,),
    )
)
register(
    ModelSpec(
        "conditional",
        "tfvae.models.conditional:build",
        "encoder and decoder see a one-hot label (Sohn et al. 2015)",
        conditional=True,
    )
)
register(
    ModelSpec(
        "flow",
        "tfvae.models.vae:build",
        "q(z|x) through inverse autoregressive flows (Kingma et al. 2016)",
        fixed={"posterior": "iaf"},
    )
)
register(
    ModelSpec(
        "mixture_prior",
        "tfvae.models.vae:build",
        "a learned mixture-of-Gaussians prior (Dilokthanakul et al. 2016)",
        options=(_COMPONENTS,),
        fixed={"prior": "mixture"},
    )
)
register(
    ModelSpec(
        "vamp_prior",
        "tfvae.models.vae:build",
        "the VampPrior, q(z|u) at learned pseudo-inputs (Tomczak & Welling 2018)",
        options=(_PSEUDO_INPUTS,),
        fixed={"prior": "vamp"},
    )
)
register(
    ModelSpec(
        "vqvae",
        "tfvae.models.vqvae:build",
        "discrete codes by vector quantisation (van den Oord et al. 2017)",
        options=(_CODES, _EMA),
        beta=0.25,
    )
)
register(
    ModelSpec(
        "hierarchical",
        "tfvae.models.hierarchical:build",
        "two stochastic layers, ladder-style inference (Sønderby et al. 2016)",
    )
)
register(
    ModelSpec(
        "stacked",
        "tfvae.models.hierarchical:build_stacked",
        "two stochastic layers, bottom-up inference q(z1|x) q(z2|z1), tanh MLPs, trained on L_k "
        "(Burda et al. 2016; --k 1 for the two-layer VAE)",
        options=(_K,),
    )
)
register(
    ModelSpec(
        "semi_supervised",
        "tfvae.models.semi_supervised:build",
        "M2: a classifier q(y|x) fills in missing labels (Kingma et al. 2014); M1+M2 on a VAE",
        options=(_ALPHA,),
        conditional=True,
        data_options=("labelled_fraction", "features", "feature_dims"),
    )
)
register(
    ModelSpec(
        "beta_tcvae",
        "tfvae.models.tcvae:build",
        "beta = 6 on the total correlation of q(z), minibatch-weighted (Chen et al. 2018)",
        beta=6.0,
        data_options=("dataset_size",),
    )
)
register(
    ModelSpec(
        "factor_vae",
        "tfvae.models.factor:build",
        "a discriminator estimates the total correlation, weighted by gamma (Kim & Mnih 2018)",
        options=(_GAMMA, _DISCRIMINATOR_UNITS, _DISCRIMINATOR_DEPTH),
    )
)
register(
    ModelSpec(
        "dip_vae_i",
        "tfvae.models.dip:build",
        "the covariance of the posterior means pushed to I (Kumar et al. 2018)",
        options=(_LAMBDA_OD,),
        fixed={"dip_type": "i", "lambda_d_factor": 10.0},
    )
)
register(
    ModelSpec(
        "dip_vae_ii",
        "tfvae.models.dip:build",
        "the covariance of q(z) pushed to I (Kumar et al. 2018)",
        options=(_LAMBDA_OD,),
        fixed={"dip_type": "ii", "lambda_d_factor": 1.0},
    )
)
register(
    ModelSpec(
        "capacity_vae",
        "tfvae.models.capacity:build",
        "beta = gamma = 1000 on |KL - C|, C rising linearly to --capacity (Burgess et al. 2018)",
        options=(_CAPACITY, _CAPACITY_STEPS),
        beta=1000.0,
    )
)
