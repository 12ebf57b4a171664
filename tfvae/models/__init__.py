"""Model families; each file holds one, and each overrides `VAE.loss_terms` only.

The contract every model keeps
==============================

Plots, evaluation, TensorBoard callbacks, export and the CLI call these methods and
nothing else, so every tool works for every model. Labels are keyword `labels=` and
are required by conditional models (`is_conditional`) and refused by the others.

* `encode(x[, labels])` returns q(z|x) as a TFP distribution: a
  `tfd.MultivariateNormalDiag` (VAE family), a `tfd.TransformedDistribution` (IAF
  flow), a `tfd.Independent(tfd.Deterministic)` over the quantised vectors (VQ-VAE),
  or a `tfd.JointDistributionCoroutine` over (z_L, ..., z_1) (hierarchical).
* `central_latent(x[, labels])` is the point of the latent space that stands for each
  example, what plots interpolate and traverse: the posterior mean, the flow of the
  base mean, the nearest codes' vectors, or z_1 at the posterior means top-down.
* `decode(z[, labels])` returns p(x|z) for `z` of shape `(n, *latent_shape)`, as given
  by `central_latent`, `sample_latent` or a sample of `encode`.
* `sample_latent(n, seed=None)` is the one hook that draws latents from the prior
  (stateful random ops when `seed` is None, as TFLite runs them); `sample(n[, labels])`
  decodes them.
* `log_importance_weights(x, k[, labels])` gives log p(x, z_i) - log q(z_i|x) for k
  draws, shape `(k, batch)`, for every model with a density (`has_density`); for a
  conditional model it is log p(x, z | y) - log q(z | x, y), so the estimate is
  log p(x | y). IWAE trains on it, `tfvae.evaluation` estimates log p(x) with it.
* `posterior_tensors(x[, labels])` names q(z|x) as tensors (`latent` and the
  parameters), for the exported `encode` signature.
* `classify(x)` gives the most probable class of each example, for a model with a
  classifier q(y|x) (`classifies`: the semi-supervised VAE).
* `is_conditional`, `has_density`, `latent_is_discrete` and `classifies` say what a
  model has; a tool that cannot apply refuses in one line that gives the reason.

The registry
============

`tfvae.models.registry.REGISTRY` maps each name to its builder, defaults and own
options. `build(name, data_shape, ...)` and `tfvae train --model NAME` read it; a new
variant is one new file plus one registration.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tfvae.models import registry

if TYPE_CHECKING:
    from tfvae.models.beta import BetaVAE
    from tfvae.models.capacity import CapacityVAE
    from tfvae.models.conditional import ConditionalVAE
    from tfvae.models.dip import DIPVAE
    from tfvae.models.factor import FactorVAE
    from tfvae.models.free_bits import FreeBitsVAE
    from tfvae.models.hierarchical import HierarchicalVAE
    from tfvae.models.iwae import IWAE
    from tfvae.models.semi_supervised import SemiSupervisedVAE
    from tfvae.models.tcvae import BetaTCVAE
    from tfvae.models.vae import VAE, ElboParts, ImportanceSample
    from tfvae.models.vqvae import VQVAE, VectorQuantizer

__all__ = [
    "VAE",
    "ElboParts",
    "ImportanceSample",
    "BetaVAE",
    "FreeBitsVAE",
    "IWAE",
    "ConditionalVAE",
    "SemiSupervisedVAE",
    "VQVAE",
    "HierarchicalVAE",
    "VectorQuantizer",
    "BetaTCVAE",
    "FactorVAE",
    "DIPVAE",
    "CapacityVAE",
    "MODELS",
    "build",
    "registry",
]

#: Model names accepted by `build` and `tfvae train --model` (the registry's).
MODELS = tuple(registry.REGISTRY)

#: Where each class lives; they are imported (with TensorFlow) on first use, so the
#: registry can be read without TensorFlow.
_CLASSES = {
    "VAE": "vae",
    "ElboParts": "vae",
    "ImportanceSample": "vae",
    "BetaVAE": "beta",
    "FreeBitsVAE": "free_bits",
    "IWAE": "iwae",
    "ConditionalVAE": "conditional",
    "SemiSupervisedVAE": "semi_supervised",
    "VQVAE": "vqvae",
    "VectorQuantizer": "vqvae",
    "HierarchicalVAE": "hierarchical",
    "BetaTCVAE": "tcvae",
    "FactorVAE": "factor",
    "DIPVAE": "dip",
    "CapacityVAE": "capacity",
}


def import_all() -> None:
    """Imports every model module, so that Keras can find each class by its registered name
    (loading a `.keras` file of a model whose module was not imported yet)."""
    for module in sorted(set(_CLASSES.values())):
        importlib.import_module(f"tfvae.models.{module}")


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"tfvae.models.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'tfvae.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def build(
    name: str,
    data_shape,
    network: str = "mlp",
    latent_dim: int = 20,
    likelihood: str = "bernoulli",
    *,
    beta: float | None = None,
    seed: int | None = None,
    **options,
) -> VAE:
    """Returns the model called `name`, with the default networks of `tfvae.networks`.

    Args:
        name: a registered model (`MODELS`): `"vae"`, `"beta_vae"`, `"free_bits"`,
            `"iwae"`, `"conditional"`, `"semi_supervised"`, `"flow"`, `"mixture_prior"`,
            `"vamp_prior"`,
            `"vqvae"` (whose `latent_dim` is the size of each code vector) or
            `"hierarchical"` (layers of `latent_dim` and `latent_dim // 2`, at least 2),
            or `"stacked"` (the same sizes, Burda et al.'s bottom-up two-layer model);
            the disentangling objectives `"beta_tcvae"`, `"factor_vae"`, `"dip_vae_i"`,
            `"dip_vae_ii"` and `"capacity_vae"`.
        data_shape, network, latent_dim, likelihood: as in `tfvae.networks.build`.
        beta: the rate weight (default: the model's own, such as 4 for `"beta_vae"`).
        seed: seed of the posterior sampling.
        **options: the model's own settings, each with its registered default: `k`
            (iwae, stacked), `free_bits`, `num_components` (mixture_prior), `num_pseudo_inputs`
            (vamp_prior), `num_codes` and `ema` (vqvae), `num_classes` (conditional,
            semi_supervised), `alpha`, `labelled_fraction`, `features` (an M1 VAE)
            and `feature_dims` (semi_supervised), `dataset_size` (beta_tcvae), `gamma`,
            `discriminator_units` and `discriminator_depth` (factor_vae), `lambda_od`
            (dip_vae_i, dip_vae_ii), `capacity` and `capacity_steps` (capacity_vae).

    Returns:
        A `tfvae.VAE` (or subclass), not compiled.

    Raises:
        ValueError: for an unknown name, an option the model does not take, or a bad
            setting.

    Example:

    >>> iwae = tfvae.models.build("iwae", (28, 28, 1), k=50)
    """
    model = registry.spec(name)
    arguments = {}
    for key, value in options.items():
        option = model.option(key)
        from_data = (model.conditional and key == "num_classes") or key in model.data_options
        if option is None and not from_data:
            takes = ", ".join(o.name for o in model.options) or "no options"
            raise ValueError(f"Model {name!r} does not take `{key}`; it takes: {takes}.")
        arguments[key] = option.check(value) if option is not None else value
    for option in model.options:
        arguments.setdefault(option.name, option.default)
    if model.conditional:
        arguments.setdefault("num_classes", 10)
    builder = model.load_builder()
    return builder(
        data_shape,
        network,
        latent_dim,
        likelihood,
        beta=model.beta if beta is None else beta,
        seed=seed,
        **model.fixed,
        **arguments,
    )
