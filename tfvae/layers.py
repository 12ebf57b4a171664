"""Keras 3 layers whose `call` returns a TensorFlow Probability distribution.

These layers end the encoder (q(z|x)) and the decoder (p(x|z)) of a VAE. Each takes a
tensor of distribution parameters and returns a `tfd.Distribution`, so
`encoder(x).kl_divergence(...)` and `decoder(z).log_prob(x)` come straight from TFP.

Keras needs to know what such a layer "outputs" while it builds a functional model,
so every layer here overrides `compute_output_spec` to return a `keras.KerasTensor`
of the *sample* shape: `(batch, latent_dim)` for the posterior, `(batch, *event_shape)`
for a likelihood. `model(x)` on real tensors returns the distribution itself.

Each layer has a static `params_size(...)`: how many parameters the layer before it
must produce (as TFP's own distribution layers do; those work with Keras 2 only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.arguments import check_integer

tfd = tfp.distributions

__all__ = [
    "DistributionLayer",
    "MultivariateNormalDiag",
    "IndependentBernoulli",
    "IndependentNormal",
    "IndependentContinuousBernoulli",
    "OneHotCategorical",
    "GatedDense",
    "LIKELIHOODS",
    "likelihood_layer",
]


def _event_shape_tuple(event_shape) -> tuple[int, ...]:
    """Checks and normalises an event shape to a tuple of positive ints."""
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    try:
        shape = tuple(int(d) for d in event_shape)
    except (TypeError, ValueError):
        raise ValueError(
            "`event_shape` must be a tuple of positive integers, such as (784,) or "
            f"(28, 28, 1). Received: event_shape={event_shape!r}"
        ) from None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(
            "`event_shape` must be a non-empty tuple of positive integers. "
            f"Received: event_shape={event_shape!r}"
        )
    return shape


class DistributionLayer(keras.layers.Layer):
    """Base class of layers that map a parameter tensor to a `tfd.Distribution`.

    Subclasses implement `make_distribution(params)` and `sample_shape(input_shape)`.
    The base class gives them `compute_output_spec`, so they can end a functional
    model, and keeps their math in float32 whatever the compute dtype of the model:
    under a mixed-precision policy the layer still computes (and reads its weights)
    in float32, and its distribution's samples, log-probs and KLs are float32.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, params):
        return self.make_distribution(tf.cast(params, tf.float32))

    def make_distribution(self, params: tf.Tensor) -> tfd.Distribution:
        raise NotImplementedError

    def sample_shape(self, input_shape: tuple) -> tuple:
        raise NotImplementedError

    def compute_output_spec(self, params):
        return keras.KerasTensor(self.sample_shape(tuple(params.shape)), dtype="float32")


@keras.saving.register_keras_serializable(package="tfvae")
class MultivariateNormalDiag(DistributionLayer):
    """Diagonal Gaussian q(z|x) from `2 * latent_dim` parameters.

    The first half of the parameters is the mean; the second half goes through
    `softplus` and a floor `min_scale` to give a positive standard deviation.

    Args:
        latent_dim: size of z.
        min_scale: smallest standard deviation, which keeps log-densities finite.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Returns (when called):
        `tfd.MultivariateNormalDiag` with batch shape `(batch,)` and event shape
        `(latent_dim,)`.

    Raises:
        ValueError: if `latent_dim < 1`, `min_scale <= 0`, or the parameters'
            last axis is not `2 * latent_dim`.

    Example:

    >>> params = keras.layers.Dense(MultivariateNormalDiag.params_size(2))(h)
    >>> q = MultivariateNormalDiag(2)(params)  # a tfd.MultivariateNormalDiag
    """

    def __init__(self, latent_dim: int, min_scale: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        latent_dim = check_integer("latent_dim", latent_dim)
        if not min_scale > 0:
            raise ValueError(f"`min_scale` must be > 0. Received: min_scale={min_scale!r}")
        self.latent_dim = latent_dim
        self.min_scale = float(min_scale)

    @staticmethod
    def params_size(latent_dim: int) -> int:
        """Number of parameters needed for a `latent_dim`-dimensional posterior."""
        return 2 * int(latent_dim)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.params_size(self.latent_dim):
            raise ValueError(
                f"{self.__class__.__name__}(latent_dim={self.latent_dim}) needs "
                f"{self.params_size(self.latent_dim)} parameters on the last axis. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def make_distribution(self, params):
        loc, raw_scale = tf.split(params, 2, axis=-1)
        scale = tf.nn.softplus(raw_scale) + self.min_scale
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def sample_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.latent_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "min_scale": self.min_scale,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class OneHotCategorical(DistributionLayer):
    """A categorical distribution over `num_classes` classes, from as many logits.

    Ends a classifier q(y|x) (the semi-supervised VAE's). Samples are one-hot rows,
    so the layer's output spec is `(batch, num_classes)` float32.

    Args:
        num_classes: number of classes, >= 2.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called):
        `tfd.OneHotCategorical` with batch shape `(batch,)` and event shape
        `(num_classes,)`, float32.

    Raises:
        ValueError: if `num_classes < 2` or the logits' last axis is not `num_classes`.

    Example:

    >>> logits = keras.layers.Dense(OneHotCategorical.params_size(10))(h)
    >>> q_y = OneHotCategorical(10)(logits)  # q_y.probs_parameter(): (batch, 10)
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_integer("num_classes", num_classes, 2)

    @staticmethod
    def params_size(num_classes: int) -> int:
        """Number of logits: one per class."""
        return int(num_classes)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_classes:
            raise ValueError(
                f"OneHotCategorical(num_classes={self.num_classes}) needs {self.num_classes} "
                f"logits on the last axis. Received: input_shape={tuple(input_shape)}"
            )

    def make_distribution(self, params):
        return tfd.OneHotCategorical(logits=params, dtype=tf.float32)

    def sample_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class _IndependentLikelihood(DistributionLayer):
    """Shared part of the likelihoods p(x|z): one parameter per element of x.

    The parameters may arrive flat, `(batch, prod(event_shape))`, or already in the
    event shape, `(batch, *event_shape)`; they are reshaped to the event shape and
    the elements are made one event with `tfd.Independent`, so `log_prob(x)` sums
    over every axis of x and returns one number per example.
    """

    #: The interval the data must lie in, or None when any finite value is valid.
    support: tuple[float, float] | None = None
    #: Names of the parameters of the element distribution (exported by `decode`).
    parameter_names: tuple[str, ...] = ("logits",)

    def __init__(self, event_shape: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.event_shape = _event_shape_tuple(event_shape)

    @staticmethod
    def params_size(event_shape: Sequence[int]) -> int:
        """Number of parameters needed for data of shape `event_shape`."""
        return math.prod(_event_shape_tuple(event_shape))

    def build(self, input_shape):
        received = input_shape[1:]
        size = self.params_size(self.event_shape)
        if tuple(received) != self.event_shape and tuple(received) != (size,):
            raise ValueError(
                f"{self.__class__.__name__}(event_shape={self.event_shape}) needs parameters "
                f"of shape (batch, {size}) or (batch, *{self.event_shape}). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _reshape(self, params):
        batch = tf.shape(params)[:1]
        return tf.reshape(params, tf.concat([batch, self.event_shape], axis=0))

    def _independent(self, distribution):
        return tfd.Independent(distribution, reinterpreted_batch_ndims=len(self.event_shape))

    def sample_shape(self, input_shape):
        return (input_shape[0],) + self.event_shape

    def named_parameters(self, distribution: tfd.Distribution) -> dict[str, tf.Tensor]:
        """Returns the parameters of p(x|z) by name, each of shape `(batch, *event_shape)`."""
        inner = distribution.distribution
        return {name: tf.convert_to_tensor(getattr(inner, name)) for name in self.parameter_names}

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.event_shape)}


@keras.saving.register_keras_serializable(package="tfvae")
class IndependentBernoulli(_IndependentLikelihood):
    """Bernoulli likelihood p(x|z) over data in [0, 1], parameterised by logits.

    `log_prob(x)` is minus the binary cross-entropy summed over the event, computed
    from logits (stable for any logit). Grey levels in [0, 1] are accepted, as in
    most VAE code; dynamically binarised data gives a proper likelihood.

    Args:
        event_shape: shape of one example, such as `(784,)` or `(28, 28, 1)`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called):
        `tfd.Independent(tfd.Bernoulli(logits))` with event shape `event_shape`; its
        `mean()` is `sigmoid(logits)`.

    Example:

    >>> logits = keras.layers.Dense(IndependentBernoulli.params_size((28, 28, 1)))(h)
    >>> p = IndependentBernoulli((28, 28, 1))(logits)
    """

    support = (0.0, 1.0)

    def make_distribution(self, params):
        return self._independent(tfd.Bernoulli(logits=self._reshape(params), dtype=tf.float32))


@keras.saving.register_keras_serializable(package="tfvae")
class IndependentContinuousBernoulli(_IndependentLikelihood):
    """Continuous Bernoulli likelihood over data in [0, 1] (Loaiza-Ganem & Cunningham 2019).

    The properly normalised density for grey-level data in [0, 1]: the Bernoulli
    cross-entropy plus the log normalising constant. Its `mean()` is not
    `sigmoid(logits)`.

    Args:
        event_shape: shape of one example.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called):
        `tfd.Independent(tfd.ContinuousBernoulli(logits))` with event shape `event_shape`.
    """

    support = (0.0, 1.0)

    def make_distribution(self, params):
        return self._independent(tfd.ContinuousBernoulli(logits=self._reshape(params)))


@keras.saving.register_keras_serializable(package="tfvae")
class IndependentNormal(_IndependentLikelihood):
    """Gaussian likelihood p(x|z) with a fixed or learned per-element scale.

    The parameters are the mean. The standard deviation is either the fixed number
    `scale` (with `scale=1.0`, `-log_prob` is half the summed squared error plus a
    constant) or, with `scale="learned"`, one trainable value per element of x
    (softplus of a weight, plus `min_scale`), shared across examples.

    Args:
        event_shape: shape of one example.
        scale: a positive float, or `"learned"`.
        min_scale: floor of the learned standard deviation.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called):
        `tfd.Independent(tfd.Normal(loc, scale))` with event shape `event_shape`.

    Raises:
        ValueError: if `scale` is neither a positive number nor `"learned"`.
    """

    parameter_names = ("loc", "scale")

    def __init__(self, event_shape, scale: float | str = 1.0, min_scale: float = 1e-3, **kwargs):
        super().__init__(event_shape, **kwargs)
        if scale != "learned":
            if isinstance(scale, str) or not isinstance(scale, (int, float)) or not scale > 0:
                raise ValueError(
                    f'`scale` must be a positive number or "learned". Received: scale={scale!r}'
                )
            scale = float(scale)
        if not min_scale > 0:
            raise ValueError(f"`min_scale` must be > 0. Received: min_scale={min_scale!r}")
        self.scale = scale
        self.min_scale = float(min_scale)

    def build(self, input_shape):
        super().build(input_shape)
        if self.scale == "learned":
            # softplus(0.5413) = 1.0: the learned scale starts at one.
            self.raw_scale = self.add_weight(
                name="raw_scale",
                shape=self.event_shape,
                initializer=keras.initializers.Constant(0.5413),
            )

    def make_distribution(self, params):
        loc = self._reshape(params)
        if self.scale == "learned":
            scale = tf.nn.softplus(tf.cast(self.raw_scale, tf.float32)) + self.min_scale
            scale = tf.broadcast_to(scale, tf.shape(loc))
        else:
            scale = tf.fill(tf.shape(loc), self.scale)
        return self._independent(tfd.Normal(loc=loc, scale=scale))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "min_scale": self.min_scale}


#: Likelihood names accepted by `likelihood_layer`, the network builders and the CLI.
LIKELIHOODS = {
    "bernoulli": lambda shape: IndependentBernoulli(shape, name="likelihood"),
    "continuous_bernoulli": lambda shape: IndependentContinuousBernoulli(shape, name="likelihood"),
    "gaussian": lambda shape: IndependentNormal(shape, scale=1.0, name="likelihood"),
    "gaussian_learned_scale": lambda shape: IndependentNormal(
        shape, scale="learned", name="likelihood"
    ),
}


def likelihood_layer(name: str, event_shape: Sequence[int]) -> _IndependentLikelihood:
    """Returns the likelihood layer called `name` for data of shape `event_shape`.

    Args:
        name: one of `"bernoulli"`, `"continuous_bernoulli"`, `"gaussian"` (fixed
            scale 1) and `"gaussian_learned_scale"`.
        event_shape: shape of one example.

    Returns:
        A layer named `"likelihood"` that maps parameters to p(x|z).

    Raises:
        ValueError: for an unknown name.

    Example:

    >>> layer = likelihood_layer("bernoulli", (28, 28, 1))
    """
    if name not in LIKELIHOODS:
        raise ValueError(
            f"Unknown likelihood {name!r}. Expected one of: {', '.join(sorted(LIKELIHOODS))}."
        )
    return LIKELIHOODS[name](event_shape)


@keras.saving.register_keras_serializable(package="tfvae")
class GatedDense(keras.layers.Layer):
    """A gated dense layer: (x W + b) * sigmoid(x V + c) (Dauphin et al. 2017).

    The hidden layer of Tomczak & Welling's (2018) VampPrior networks
    (`activation="gated"` in `tfvae.networks.mlp_encoder` and `mlp_decoder`).

    Args:
        units: output size, >= 1.

    Raises:
        ValueError: if `units < 1`.

    Example:

    >>> h = GatedDense(300)(x)  # (batch, 300)
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = check_integer("units", units)
        self.linear = keras.layers.Dense(self.units, name="linear")
        self.gate = keras.layers.Dense(self.units, activation="sigmoid", name="gate")

    def build(self, input_shape):
        self.linear.build(input_shape)
        self.gate.build(input_shape)
        self.built = True

    def call(self, x):
        return self.linear(x) * self.gate(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
