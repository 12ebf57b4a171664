"""tfvae: variational autoencoders on Keras 3 and TensorFlow Probability.

Build a VAE from functional encoders and decoders that return TFP distributions,
train it with `model.fit`, and watch it in TensorBoard.

`import tfvae` imports no TensorFlow: each module (and each name below) is imported
on first use, so `tfvae --help` and scripts that only read a run's config start at
once. `tfvae.VAE`, `tfvae.networks` and the like import TensorFlow then.

Example:

>>> import tfvae
>>> encoder, decoder = tfvae.networks.build("mlp", (28, 28, 1), latent_dim=20)
>>> vae = tfvae.VAE(encoder, decoder)
>>> vae.compile()
>>> vae.fit(tfvae.data.load("mnist", "train", binarize="dynamic"), epochs=5)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfvae import (
        arguments,
        callbacks,
        checkpoints,
        choices,
        code_prior,
        compile_cache,
        config,
        dashboards,
        data,
        disentanglement,
        dsprites,
        evaluation,
        export,
        faults,
        feature_network,
        files,
        flows,
        fused,
        layers,
        loading,
        losses,
        models,
        networks,
        optimizers,
        plots,
        priors,
        resources,
        runs,
        sample_quality,
        samplers,
        scaling,
        schedules,
        serving,
        training,
        validation,
    )
    from tfvae.layers import (
        IndependentBernoulli,
        IndependentContinuousBernoulli,
        IndependentNormal,
        MultivariateNormalDiag,
        OneHotCategorical,
    )
    from tfvae.models import (
        DIPVAE,
        IWAE,
        VAE,
        VQVAE,
        BetaTCVAE,
        BetaVAE,
        CapacityVAE,
        ConditionalVAE,
        FactorVAE,
        FreeBitsVAE,
        HierarchicalVAE,
        SemiSupervisedVAE,
    )
    from tfvae.priors import StandardNormal

__version__ = "0.1.0"

# Before anything imports TensorFlow: XLA's persistent compilation cache
# (`tfvae.compile_cache`; TFVAE_XLA_CACHE=off turns it off).
from tfvae import compile_cache as _compile_cache  # noqa: E402

_compile_cache.enable()

#: Modules that import no TensorFlow.
_TF_FREE = {"arguments", "choices", "compile_cache", "config", "disentanglement", "files"}
_TF_FREE |= {"resources"}

#: Top-level names and the module each comes from.
_NAMES = {
    "VAE": "models",
    "BetaVAE": "models",
    "FreeBitsVAE": "models",
    "IWAE": "models",
    "ConditionalVAE": "models",
    "SemiSupervisedVAE": "models",
    "VQVAE": "models",
    "HierarchicalVAE": "models",
    "BetaTCVAE": "models",
    "FactorVAE": "models",
    "DIPVAE": "models",
    "CapacityVAE": "models",
    "MultivariateNormalDiag": "layers",
    "IndependentBernoulli": "layers",
    "IndependentNormal": "layers",
    "IndependentContinuousBernoulli": "layers",
    "OneHotCategorical": "layers",
    "StandardNormal": "priors",
}

__all__ = [
    "VAE",
    "BetaVAE",
    "FreeBitsVAE",
    "IWAE",
    "ConditionalVAE",
    "SemiSupervisedVAE",
    "VQVAE",
    "HierarchicalVAE",
    "BetaTCVAE",
    "FactorVAE",
    "DIPVAE",
    "CapacityVAE",
    "MultivariateNormalDiag",
    "IndependentBernoulli",
    "IndependentNormal",
    "IndependentContinuousBernoulli",
    "OneHotCategorical",
    "StandardNormal",
    "arguments",
    "callbacks",
    "checkpoints",
    "choices",
    "code_prior",
    "compile_cache",
    "config",
    "dashboards",
    "data",
    "disentanglement",
    "dsprites",
    "evaluation",
    "export",
    "faults",
    "feature_network",
    "files",
    "flows",
    "fused",
    "layers",
    "loading",
    "losses",
    "models",
    "networks",
    "optimizers",
    "plots",
    "priors",
    "resources",
    "runs",
    "sample_quality",
    "samplers",
    "scaling",
    "schedules",
    "serving",
    "training",
    "validation",
    "__version__",
]

#: The modules (every public name that is not a class).
_MODULES = tuple(n for n in __all__ if n not in _NAMES and n != "__version__")


def __getattr__(name: str):
    if name in _MODULES or name in _NAMES:
        if name not in _TF_FREE:
            from tfvae import _startup

            _startup.import_tensorflow()  # its start-up notices kept off stderr
        module = importlib.import_module(f"tfvae.{_NAMES.get(name, name)}")
        value = module if name in _MODULES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
