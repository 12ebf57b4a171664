"""The PyTorch reference VAEs, for benchmarking tfvae against.

`ReferenceVAE` is the model and objective of the PyTorch tutorial
(`pytorch/examples/vae/main.py`): a 784 -> 400 -> 20 Gaussian encoder with a
log-variance head, a 20 -> 400 -> 784 sigmoid decoder, the summed binary cross-entropy
plus the analytic KL to N(0, I), and Adam with learning rate 1e-3. Unlike the
tutorial's DataLoader, the images are already in memory as one tensor, so the timings
compare training, not data loading.

`ReferenceConvVAE` mirrors tfvae's default convolutional networks
(`tfvae.networks.conv_encoder` / `conv_decoder` for 28x28x1) layer for layer, with
the same loss (on logits).

PyTorch is a benchmark-only extra (`pip install torch==2.13.0`); tfvae never imports it.

Run on its own: `python benchmarks/reference_torch.py --epochs 2`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ReferenceVAE(nn.Module):
    """The tutorial's fully connected VAE."""

    def __init__(self, data_dim: int = 784, hidden: int = 400, latent_dim: int = 20):
        super().__init__()
        self.fc1 = nn.Linear(data_dim, hidden)
        self.fc21 = nn.Linear(hidden, latent_dim)
        self.fc22 = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, data_dim)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


class ReferenceConvVAE(ReferenceVAE):
    """tfvae's default convolutional VAE for 28x28x1 images, in PyTorch (decodes to logits)."""

    def __init__(self, latent_dim: int = 20):
        nn.Module.__init__(self)
        self.encoder = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 256),
            nn.ReLU(),
        )
        self.fc21 = nn.Linear(256, latent_dim)
        self.fc22 = nn.Linear(256, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 7 * 7 * 64),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 3, padding=1),
            nn.Flatten(),
        )

    def encode(self, x):
        h = self.encoder(x)
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return self.decoder(z)  # logits


def loss_function(recon_x, x, mu, logvar, logits: bool = False):
    """Summed binary cross-entropy plus the analytic KL (the tutorial's loss)."""
    if logits:
        bce = F.binary_cross_entropy_with_logits(recon_x, x, reduction="sum")
    else:
        bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class ReferenceTrainer:
    """Trains a reference VAE on in-memory data, one shuffled epoch at a time.

    Args:
        x_train: float32 array `(n, 784)` in [0, 1].
        batch_size: examples per step.
        seed: seeds the weights, the shuffling and the noise.
        network: `"mlp"` (the tutorial's `ReferenceVAE`) or `"conv"` (`ReferenceConvVAE`).
    """

    def __init__(
        self, x_train: np.ndarray, batch_size: int = 128, seed: int = 0, network: str = "mlp"
    ):
        torch.manual_seed(seed)
        self.x_train = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        self.batch_size = batch_size
        self.logits = network == "conv"
        self.model = ReferenceConvVAE() if self.logits else ReferenceVAE(self.x_train.shape[1])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(seed)

    def train_epoch(self) -> float:
        """Runs one epoch; returns the mean loss per example (nats)."""
        self.model.train()
        order = torch.randperm(len(self.x_train), generator=self.generator)
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            data = self.x_train[order[start : start + self.batch_size]]
            self.optimizer.zero_grad()
            recon, mu, logvar = self.model(data)
            loss = loss_function(recon, data, mu, logvar, self.logits)
            loss.backward()
            total += loss.item()
            self.optimizer.step()
        return total / len(self.x_train)

    @torch.no_grad()
    def negative_elbo(self, x: np.ndarray, batch_size: int = 1000) -> float:
        """Returns the mean negative ELBO per example (nats) on `x`, one z per example."""
        self.model.eval()
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        total = 0.0
        for start in range(0, len(x), batch_size):
            data = x[start : start + batch_size]
            recon, mu, logvar = self.model(data)
            total += loss_function(recon, data, mu, logvar, self.logits).item()
        return total / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.random((10_000, 784)) < 0.2).astype(np.float32)
    trainer = ReferenceTrainer(x, args.batch_size)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        loss = trainer.train_epoch()
        print(f"epoch {epoch + 1}: loss {loss:.2f} nats, {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
