"""tfvae: variational autoencoders on Keras 3 and TensorFlow Probability.

Build a VAE from functional encoders and decoders that return TFP distributions,
train it with `model.fit`, and watch it in TensorBoard.

Example:

>>> import tfvae
>>> encoder, decoder = tfvae.networks.build("mlp", (28, 28, 1), latent_dim=20)
>>> vae = tfvae.VAE(encoder, decoder)
>>> vae.compile()
>>> vae.fit(tfvae.data.load("mnist", "train", binarize="dynamic"), epochs=5)
"""

from tfvae import _startup

_startup.import_tensorflow()

from tfvae import (
    callbacks,
    checkpoints,
    data,
    evaluation,
    export,
    files,
    flows,
    layers,
    losses,
    models,
    networks,
    plots,
    priors,
    scaling,
    schedules,
    training,
)
from tfvae.layers import (
    IndependentBernoulli,
    IndependentContinuousBernoulli,
    IndependentNormal,
    MultivariateNormalDiag,
)
from tfvae.models import (
    IWAE,
    VAE,
    VQVAE,
    BetaVAE,
    ConditionalVAE,
    FreeBitsVAE,
    HierarchicalVAE,
)
from tfvae.priors import StandardNormal

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "BetaVAE",
    "FreeBitsVAE",
    "IWAE",
    "ConditionalVAE",
    "VQVAE",
    "HierarchicalVAE",
    "MultivariateNormalDiag",
    "IndependentBernoulli",
    "IndependentNormal",
    "IndependentContinuousBernoulli",
    "StandardNormal",
    "callbacks",
    "checkpoints",
    "data",
    "evaluation",
    "export",
    "files",
    "flows",
    "layers",
    "losses",
    "models",
    "networks",
    "plots",
    "priors",
    "scaling",
    "schedules",
    "training",
    "__version__",
]
