"""Model families; each file holds one, and each overrides `VAE.loss_terms` only.

`build(name, data_shape, ...)` makes any of them with the default networks; the CLI's
`tfvae train --model NAME` uses it.
"""

from __future__ import annotations

from tfvae.models.beta import BetaVAE
from tfvae.models.conditional import ConditionalVAE
from tfvae.models.free_bits import FreeBitsVAE
from tfvae.models.hierarchical import HierarchicalVAE
from tfvae.models.iwae import IWAE
from tfvae.models.vae import VAE, ElboParts
from tfvae.models.vqvae import VQVAE, VectorQuantizer

__all__ = [
    "VAE",
    "ElboParts",
    "BetaVAE",
    "FreeBitsVAE",
    "IWAE",
    "ConditionalVAE",
    "VQVAE",
    "HierarchicalVAE",
    "VectorQuantizer",
    "MODELS",
    "build",
]

#: Model names accepted by `build` and `tfvae train --model`.
MODELS = (
    "vae",
    "beta_vae",
    "free_bits",
    "iwae",
    "conditional",
    "flow",
    "mixture_prior",
    "vamp_prior",
    "vqvae",
    "hierarchical",
)


def build(
    name: str,
    data_shape,
    network: str = "mlp",
    latent_dim: int = 20,
    likelihood: str = "bernoulli",
    *,
    beta: float | None = None,
    seed: int | None = None,
    k: int = 5,
    free_bits: float = 0.25,
    num_classes: int = 10,
    num_components: int = 10,
    num_pseudo_inputs: int = 100,
    num_codes: int = 128,
    ema: bool = False,
) -> VAE:
    """Returns the model called `name` with the default networks of `tfvae.networks.build`.

    Args:
        name: one of `MODELS`: `"vae"`, `"beta_vae"` (beta 4 unless given),
            `"free_bits"`, `"iwae"`, `"conditional"`, `"flow"` (IAF posterior),
            `"mixture_prior"` (learned mixture of Gaussians), `"vamp_prior"`, `"vqvae"`
            (whose `latent_dim` is the size of each code vector), `"hierarchical"` (two
            stochastic layers of `latent_dim` and `latent_dim // 2`, at least 2).
        data_shape, network, latent_dim, likelihood: as in `tfvae.networks.build`.
        beta: the rate weight (default: the model's own, 1 or 4).
        seed: seed of the posterior sampling.
        k: importance samples of `"iwae"`.
        free_bits: nats per dimension of `"free_bits"`.
        num_classes: classes of `"conditional"`.
        num_components: mixture components of `"mixture_prior"`.
        num_pseudo_inputs: pseudo-inputs of `"vamp_prior"`.
        num_codes: codebook size of `"vqvae"`.
        ema: codebook updated by moving averages (`"vqvae"`).

    Returns:
        A `tfvae.VAE` (or subclass), not compiled.

    Raises:
        ValueError: for an unknown name or a bad setting.

    Example:

    >>> iwae = tfvae.models.build("iwae", (28, 28, 1), k=50)
    """
    from tfvae import networks, priors

    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Expected one of: {', '.join(MODELS)}.")
    options = {"seed": seed} if beta is None else {"seed": seed, "beta": beta}
    if name == "hierarchical":
        sizes = (latent_dim, max(2, latent_dim // 2))
        encoder, top_down, decoder = networks.build_hierarchical(
            data_shape, sizes, likelihood=likelihood
        )
        return HierarchicalVAE(encoder, top_down, decoder, **options)
    if name == "vqvae":
        encoder, decoder = networks.build_vq(network, data_shape, latent_dim, likelihood=likelihood)
        return VQVAE(encoder, decoder, num_codes=num_codes, ema=ema, **options)
    labels = num_classes if name == "conditional" else None
    posterior = "iaf" if name == "flow" else "gaussian"
    encoder, decoder = networks.build(
        network, data_shape, latent_dim, likelihood, num_classes=labels, posterior=posterior
    )
    if name == "beta_vae":
        return BetaVAE(encoder, decoder, **options)
    if name == "free_bits":
        return FreeBitsVAE(encoder, decoder, free_bits=free_bits, **options)
    if name == "iwae":
        return IWAE(encoder, decoder, k=k, **options)
    if name == "conditional":
        return ConditionalVAE(encoder, decoder, num_classes=num_classes, **options)
    if name == "mixture_prior":
        options["prior"] = priors.MixtureOfGaussians(latent_dim, num_components, name="prior")
    if name == "vamp_prior":
        options["prior"] = priors.VampPrior(latent_dim, data_shape, num_pseudo_inputs, name="prior")
    return VAE(encoder, decoder, **options)
