"""Priors p(z) as Keras layers, so that learned priors keep their weights in the model.

A prior layer is called with no data: `prior.distribution()` returns the
`tfd.Distribution` over z, with batch shape `()` and event shape `(latent_dim,)`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = ["Prior", "StandardNormal"]


class Prior(keras.layers.Layer):
    """Base class of priors over a `latent_dim`-dimensional z.

    Subclasses implement `distribution()`.

    Args:
        latent_dim: size of z.
        **kwargs: standard `keras.layers.Layer` arguments.

    Raises:
        ValueError: if `latent_dim` is not a positive integer.
    """

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ValueError(
                f"`latent_dim` must be a positive integer. Received: latent_dim={latent_dim!r}"
            )
        self.latent_dim = latent_dim

    def build(self, input_shape=None):
        """Creates the prior's weights (none by default); priors take no input."""
        self.built = True

    def distribution(self) -> tfd.Distribution:
        raise NotImplementedError

    def stateful_sample(self, n) -> tf.Tensor:
        """Draws `n` samples with TensorFlow's stateful random ops only.

        TFP samples through stateless random ops, which TFLite runs only as Flex
        (TensorFlow) ops; the stateful ones convert to builtin TFLite ops, so exported
        `sample` signatures use this method. It gives new numbers on every call.

        Raises:
            NotImplementedError: for priors that cannot be sampled this way.
        """
        raise NotImplementedError(
            f"The prior {type(self).__name__} has no stateful sampler, so its samples "
            "cannot be exported to TFLite."
        )

    def call(self, inputs=None):
        return self.distribution()

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormal(Prior):
    """The standard normal prior N(0, I), the default of `tfvae.VAE`.

    Its KL divergence from a `tfd.MultivariateNormalDiag` posterior is registered in
    TFP, so the rate is computed in closed form.

    Example:

    >>> StandardNormal(20).distribution()  # tfd.MultivariateNormalDiag, event (20,)
    """

    def distribution(self):
        return tfd.MultivariateNormalDiag(
            loc=tf.zeros([self.latent_dim]), scale_diag=tf.ones([self.latent_dim])
        )

    def stateful_sample(self, n):
        return tf.random.normal(tf.stack([n, self.latent_dim]))
