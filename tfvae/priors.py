"""Priors p(z) as Keras layers, so that learned priors keep their weights in the model.

A prior layer is called with no data: `prior.distribution(encoder)` returns the
`tfd.Distribution` over z, with batch shape `()` and event shape `(latent_dim,)`.

    StandardNormal:      p(z) = N(0, I)
    MixtureOfGaussians:  p(z) = sum_k pi_k N(mu_k, diag(sigma_k^2)), all learned
    VampPrior:           p(z) = 1/K sum_k q(z | u_k), u_k learned pseudo-inputs

The learned priors have no analytic KL from a Gaussian posterior; the VAE then uses
the one-sample Monte-Carlo estimate log q(z|x) - log p(z).

References:
    Dilokthanakul, N. et al. (2016). Deep Unsupervised Clustering with Gaussian Mixture
        Variational Autoencoders. arXiv:1611.02648.
    Tomczak, J. M. & Welling, M. (2018). VAE with a VampPrior. AISTATS.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.arguments import check_integer

tfd = tfp.distributions

__all__ = ["Prior", "StandardNormal", "MixtureOfGaussians", "VampPrior", "PRIORS"]


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
        kwargs.setdefault("dtype", "float32")  # p(z) stays float32 under mixed precision
        super().__init__(**kwargs)
        latent_dim = check_integer("latent_dim", latent_dim)
        self.latent_dim = latent_dim

    def build(self, input_shape=None):
        """Creates the prior's weights (none by default); priors take no input."""
        self.built = True

    def distribution(self, encoder=None) -> tfd.Distribution:
        """Returns p(z). `encoder` is q(z|x), for priors built from it (VampPrior)."""
        raise NotImplementedError

    def stateful_sample(self, n, encoder=None) -> tf.Tensor:
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

    def distribution(self, encoder=None):
        return tfd.MultivariateNormalDiag(
            loc=tf.zeros([self.latent_dim]), scale_diag=tf.ones([self.latent_dim])
        )

    def stateful_sample(self, n, encoder=None):
        return tf.random.normal(tf.stack([n, self.latent_dim]))


@keras.saving.register_keras_serializable(package="tfvae")
class MixtureOfGaussians(Prior):
    """A learned mixture of `num_components` diagonal Gaussians.

    Means start at random (standard normal), scales at one, weights equal; all are
    trained with the VAE.

    Args:
        latent_dim: size of z.
        num_components: K, >= 1.
        min_scale: floor of the components' standard deviations.

    Raises:
        ValueError: for `num_components < 1`.

    Example:

    >>> vae = tfvae.VAE(encoder, decoder, prior=MixtureOfGaussians(20, num_components=10))
    """

    def __init__(
        self, latent_dim: int, num_components: int = 10, min_scale: float = 1e-3, **kwargs
    ):
        super().__init__(latent_dim, **kwargs)
        self.num_components = check_integer("num_components", num_components, 1)
        self.min_scale = float(min_scale)

    def build(self, input_shape=None):
        shape = (self.num_components, self.latent_dim)
        self.locs = self.add_weight(
            name="locs", shape=shape, initializer=keras.initializers.RandomNormal(stddev=1.0)
        )
        self.raw_scales = self.add_weight(
            name="raw_scales", shape=shape, initializer=keras.initializers.Constant(0.5413)
        )
        self.logits = self.add_weight(
            name="logits", shape=(self.num_components,), initializer="zeros"
        )
        self.built = True

    def _scales(self):
        return tf.nn.softplus(self.raw_scales) + self.min_scale

    def distribution(self, encoder=None):
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.convert_to_tensor(self.logits)),
            tfd.MultivariateNormalDiag(tf.convert_to_tensor(self.locs), self._scales()),
        )

    def stateful_sample(self, n, encoder=None):
        component = tf.random.categorical(self.logits[tf.newaxis], n)[0]
        noise = tf.random.normal(tf.stack([n, self.latent_dim]))
        return tf.gather(self.locs, component) + tf.gather(self._scales(), component) * noise

    def get_config(self):
        return {
            **super().get_config(),
            "num_components": self.num_components,
            "min_scale": self.min_scale,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class VampPrior(Prior):
    """The VampPrior: the encoder's posteriors at K learned pseudo-inputs, mixed equally.

    The pseudo-inputs live in data space (clipped to [0, 1], as the hard-tanh of
    Tomczak & Welling) and start at random uniform values.

    Args:
        latent_dim: size of z.
        data_shape: shape of one example (the encoder's input).
        num_pseudo_inputs: K, >= 1.

    Raises:
        ValueError: for `num_pseudo_inputs < 1`, or when used without an encoder.

    Example:

    >>> prior = VampPrior(20, (28, 28, 1), num_pseudo_inputs=500)
    >>> vae = tfvae.VAE(encoder, decoder, prior=prior)
    """

    def __init__(self, latent_dim: int, data_shape, num_pseudo_inputs: int = 100, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.num_pseudo_inputs = check_integer("num_pseudo_inputs", num_pseudo_inputs, 1)

    def build(self, input_shape=None):
        self.pseudo_inputs = self.add_weight(
            name="pseudo_inputs",
            shape=(self.num_pseudo_inputs,) + self.data_shape,
            initializer=keras.initializers.RandomUniform(0.0, 1.0),
        )
        self.built = True

    def _components(self, encoder):
        if encoder is None:
            raise ValueError("A VampPrior is built from the encoder; pass encoder=.")
        return encoder(tf.clip_by_value(self.pseudo_inputs, 0.0, 1.0))

    def distribution(self, encoder=None):
        components = self._components(encoder)
        weights = tfd.Categorical(logits=tf.zeros([self.num_pseudo_inputs]))
        return tfd.MixtureSameFamily(weights, components)

    def stateful_sample(self, n, encoder=None):
        components = self._components(encoder)
        logits = tf.zeros([1, self.num_pseudo_inputs])
        index = tf.random.categorical(logits, n)[0]
        noise = tf.random.normal(tf.stack([n, self.latent_dim]))
        return tf.gather(components.mean(), index) + tf.gather(components.stddev(), index) * noise

    def get_config(self):
        return {
            **super().get_config(),
            "data_shape": list(self.data_shape),
            "num_pseudo_inputs": self.num_pseudo_inputs,
        }


#: Prior names accepted by the CLI.
PRIORS = ("standard_normal", "mixture", "vamp")
