"""Model families; each file holds one, and each overrides `VAE.loss_terms` only."""

from tfvae.models.vae import VAE

__all__ = ["VAE"]
