"""FactorVAE: the ELBO minus gamma times the total correlation, estimated by a discriminator.

A discriminator D tells draws of q(z) (one z per example of the batch) from draws of
prod_j q(z_j) (each dimension shuffled across the batch on its own). Its logit
estimates the density ratio, so the total correlation is

    TC = KL(q(z) || prod_j q(z_j)) ~ E_q(z)[log D(z) - log(1 - D(z))] = E_q(z)[logit(z)]

    loss(x)           = distortion + beta * rate + gamma * logit(z)
    adversary_loss(x) = -1/2 [log D(z) + log(1 - D(z_shuffled))]     (D's weights only)

Both are minimised in the one `train_step` (`tfvae.training.Trainer.adversary_variables`):
the gradient of `loss` trains the encoder and decoder, the gradient of `adversary_loss`
the discriminator, in the same step and by the same optimizer (Kim & Mnih use a second
Adam with beta_1 = 0.5, beta_2 = 0.9 for D; here D shares the model's), so neither
loss moves the other's weights.

References:
    Kim, H. & Mnih, A. (2018). Disentangling by Factorising. ICML.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import networks
from tfvae.arguments import check_number
from tfvae.models.vae import VAE, _check_functional

__all__ = ["FactorVAE", "permute_dimensions", "build"]


def permute_dimensions(z: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Shuffles each column of `z` `(batch, d)` across the batch, each by its own order:
    a draw of prod_j q(z_j) per row when the rows are draws of q(z)."""
    keys = tf.random.stateless_uniform(tf.shape(z), seed=seed)
    order = tf.argsort(keys, axis=0)
    # out[i, j] = z[order[i, j], j]
    return tf.transpose(tf.gather(tf.transpose(z), tf.transpose(order), batch_dims=1))


@keras.saving.register_keras_serializable(package="tfvae")
class FactorVAE(VAE):
    """A VAE with a discriminator that estimates, and a loss that penalises, the TC of q(z).

    Tracks `total_correlation` (the discriminator's estimate), `adversary_loss` and
    `discriminator_accuracy` beside the standard terms.

    Args:
        encoder, decoder, prior, beta, seed: as in `VAE`.
        discriminator: a functional model z -> one logit per example
            (`tfvae.networks.build_discriminator`).
        gamma: the weight of the total correlation, >= 0.

    Raises:
        TypeError: if the discriminator is not a functional Keras model.
        ValueError: if it does not map `(batch, latent_dim)` to `(batch, 1)`, or
            `gamma` is negative.

    Example:

    >>> discriminator = tfvae.networks.build_discriminator(10)
    >>> vae = FactorVAE(encoder, decoder, discriminator, gamma=40.0)
    """

    term_names = VAE.term_names + (
        "total_correlation",
        "adversary_loss",
        "discriminator_accuracy",
    )

    def __init__(self, encoder, decoder, discriminator, gamma: float = 40.0, **kwargs):
        _check_functional(discriminator, "discriminator")
        self.gamma = check_number("gamma", gamma)
        # Made before `VAE.__init__` builds the model (a built model takes no new state).
        seed = kwargs.get("seed")
        self._shuffle_noise = keras.random.SeedGenerator(
            None if seed is None else seed + 2, name="shuffle_noise"
        )
        self.discriminator = discriminator
        super().__init__(encoder, decoder, **kwargs)
        shape = (
            tuple(discriminator.inputs[0].shape[1:]),
            tuple(discriminator.outputs[0].shape[1:]),
        )
        if shape != ((self.latent_dim,), (1,)):
            raise ValueError(
                f"The discriminator must map z of shape (batch, {self.latent_dim}) to one logit "
                f"(batch, 1). Received: {shape[0]} -> {shape[1]}"
            )

    @property
    def discriminator_depth(self) -> int:
        """The number of hidden Dense layers of the discriminator."""
        dense = [
            layer for layer in self.discriminator.layers if isinstance(layer, keras.layers.Dense)
        ]
        return len(dense) - 1

    @property
    def discriminator_units(self) -> int | None:
        """The units of the discriminator's first hidden layer (None with no hidden layer)."""
        dense = [
            layer for layer in self.discriminator.layers if isinstance(layer, keras.layers.Dense)
        ]
        return dense[0].units if len(dense) > 1 else None

    @property
    def adversary_variables(self) -> list:
        return self.discriminator.trainable_variables

    def loss_terms(self, x, y=None, training=False):
        parts = self.elbo_parts(x, y, training=training)
        z = tf.cast(parts.z, tf.float32)
        shuffled = permute_dimensions(z, tf.cast(self._shuffle_noise.next(), tf.int32))
        # One pass over both halves. `train_step` takes the gradient of `loss` for the
        # encoder and decoder only and that of `adversary_loss` for D only, so neither
        # loss moves the other's weights.
        logits = self.discriminator(tf.concat([z, shuffled], 0), training=training)
        logits = tf.cast(tf.squeeze(logits, -1), tf.float32)  # float32 under mixed precision
        joint, product = tf.split(logits, 2)
        adversary_loss = 0.5 * (
            tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(joint), joint)
            + tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(product), product)
        )
        accuracy = 0.5 * (tf.cast(joint > 0, tf.float32) + tf.cast(product < 0, tf.float32))
        loss = parts.distortion + self.beta * parts.rate + self.gamma * joint
        return {
            **self.terms(parts.distortion, parts.rate, loss),
            "total_correlation": joint,
            "adversary_loss": adversary_loss,
            "discriminator_accuracy": accuracy,
        }

    _SHUFFLE_STATE = "shuffle_noise_state"

    def save_own_variables(self, store):
        """Also saves the shuffling noise's seed state, so a resumed run shuffles alike."""
        super().save_own_variables(store)
        store[self._SHUFFLE_STATE] = self._shuffle_noise.state

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if self._SHUFFLE_STATE in store.keys():
            self._shuffle_noise.state.assign(store[self._SHUFFLE_STATE])

    def get_config(self):
        return {
            **super().get_config(),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "gamma": self.gamma,
        }

    _layer_config_keys = VAE._layer_config_keys + ("discriminator",)


def build(
    data_shape,
    network: str,
    latent_dim: int,
    likelihood: str,
    discriminator_units: int = 1000,
    discriminator_depth: int = 6,
    **options,
) -> FactorVAE:
    """The registry's builder of `"factor_vae"` (`options`: `gamma`, `beta`, `seed`)."""
    encoder, decoder = networks.build(network, data_shape, latent_dim, likelihood)
    discriminator = networks.build_discriminator(
        latent_dim, discriminator_units, discriminator_depth
    )
    return FactorVAE(encoder, decoder, discriminator, **options)
