"""The variational autoencoder, trained with `model.fit`.

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)) = -(distortion + rate)
    loss(x) = distortion + beta * rate

`VAE.loss_terms` computes the per-example terms; it is the one method that variants
override; `train_step` and `test_step` are written once, in `tfvae.training.Trainer`,
which `VAE` extends. The methods every tool
calls (`encode`, `central_latent`, `decode`, `sample_latent`, `log_importance_weights`)
are the contract written down in `tfvae/models/__init__.py`.

Importance weights, for k draws z_i ~ q(z|x):

    log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x),  L_k = logsumexp_i log w_i - log k

References:
    Kingma, D. P. & Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
    Higgins, I. et al. (2017). beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework. ICLR.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import losses, networks, priors, samplers, scaling
from tfvae.arguments import check_integer, check_number
from tfvae.layers import DistributionLayer, MultivariateNormalDiag
from tfvae.training import Trainer
from tfvae.validation import check_array

tfd = tfp.distributions

__all__ = ["VAE", "ElboParts", "ImportanceSample", "build"]


class ElboParts(NamedTuple):
    """What one pass through a VAE gives: q(z|x), its sample z, p(x|z) and the ELBO terms."""

    posterior: tfd.Distribution
    z: tf.Tensor
    likelihood: tfd.Distribution
    distortion: tf.Tensor
    rate: tf.Tensor


class ImportanceSample(NamedTuple):
    """k draws from q(z|x) and their log importance weights (`VAE._importance_sample`)."""

    log_weights: tf.Tensor  # (k, batch): log p(x, z_i) - log q(z_i|x)
    log_likelihood: tf.Tensor  # (k, batch): log p(x|z_i)
    posterior: tfd.Distribution | None
    z: tf.Tensor | None  # (k, batch, *latent_shape)


def _tiled(t, k) -> tf.Tensor:
    """`t` repeated k times along its first axis (k copies of the batch, one after another)."""
    t = tf.convert_to_tensor(t)
    return tf.tile(t, tf.concat([[k], tf.ones_like(tf.shape(t)[1:])], 0))


def _central_point(posterior: tfd.Distribution) -> tf.Tensor:
    """The posterior mean, or for flows (no analytic mean) the flow of the base mean."""
    try:
        return posterior.mean()
    except NotImplementedError:
        return posterior.bijector.forward(posterior.distribution.mean())


def _check_functional(model, role: str) -> None:
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        raise TypeError(
            f"The {role} must be a built Keras functional (or Sequential) model. "
            f"Received: {type(model).__name__}"
        )


def _output_layer(model: keras.Model, role: str) -> DistributionLayer:
    """Returns the layer that produces `model`'s output, checking it is a distribution layer."""
    _check_functional(model, role)
    if len(model.outputs) != 1:
        raise ValueError(f"The {role} must have one output. Received: {len(model.outputs)}")
    layer = model.outputs[0]._keras_history.operation
    if not isinstance(layer, DistributionLayer):
        raise TypeError(
            f"The {role} must end in a tfvae distribution layer (such as "
            "tfvae.layers.MultivariateNormalDiag or IndependentBernoulli). "
            f"Received: its last layer is {type(layer).__name__} {layer.name!r}"
        )
    return layer


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(Trainer):
    """A VAE made of a functional encoder q(z|x), a decoder p(x|z) and a prior p(z).

    The encoder ends in a layer that returns the posterior distribution (such as
    `tfvae.layers.MultivariateNormalDiag`); the decoder ends in a likelihood layer
    (such as `tfvae.layers.IndependentBernoulli`). The rate is TFP's registered
    analytic KL where one exists, a one-sample Monte-Carlo estimate otherwise.

    Metrics (per example, in nats, reset each epoch): `loss` (distortion + beta*rate),
    `distortion` (-log p(x|z)), `rate` (KL) and `elbo` (-(distortion + rate)).

    Args:
        encoder: functional model mapping x to q(z|x).
        decoder: functional model mapping z to p(x|z).
        prior: a `tfvae.priors.Prior` layer; default `StandardNormal(latent_dim)`.
        beta: weight of the rate in the loss, >= 0. Stored in the non-trainable
            variable `vae.beta`, so schedules can change it without retracing.
        seed: seed of the posterior sampling during training, or None.
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Raises:
        TypeError: if the encoder or decoder does not end in a distribution layer,
            or the prior is not a `tfvae.priors.Prior`.
        ValueError: if their shapes do not fit together, or `beta` is negative.

    Example:

    >>> encoder = tfvae.networks.mlp_encoder((28, 28, 1), latent_dim=20)
    >>> decoder = tfvae.networks.mlp_decoder(20, (28, 28, 1), likelihood="bernoulli")
    >>> vae = tfvae.VAE(encoder, decoder)
    >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> vae.fit(x_train, epochs=5, validation_data=x_test)
    """

    #: Names of the per-example terms `loss_terms` returns, each tracked as a metric.
    term_names: tuple[str, ...] = ("loss", "distortion", "rate", "elbo")

    def __init__(
        self, encoder, decoder, prior=None, beta: float = 1.0, seed=None, samplers=None, **kwargs
    ):
        super().__init__(**kwargs)
        _check_functional(encoder, "encoder")
        self.likelihood = _output_layer(decoder, "decoder")
        self.encoder = encoder
        self.decoder = decoder
        self.data_shape = tuple(encoder.inputs[0].shape[1:])
        self.latent_shape = self._check_latent(encoder, decoder)
        self.latent_dim = self.latent_shape[-1]
        if tuple(decoder.outputs[0].shape[1:]) != self.data_shape:
            raise ValueError(
                f"The decoder's likelihood must be over data of shape {self.data_shape}, the "
                f"encoder's input. Received: event shape={tuple(decoder.outputs[0].shape[1:])}"
            )
        self.prior = self._check_prior(prior)
        self.seed = seed
        self.beta = self.add_weight(
            name="beta",
            shape=(),
            initializer=keras.initializers.Constant(check_number("beta", beta)),
            trainable=False,
        )
        self._noise = keras.random.SeedGenerator(seed, name="posterior_noise")
        evaluation_seed = None if seed is None else seed + 1
        self._evaluation_noise = keras.random.SeedGenerator(
            evaluation_seed, name="evaluation_noise"
        )
        # Latent samplers fitted after training (`fit_sampler`), saved with the model.
        self.fitted_samplers = dict(samplers or {})
        # Every weight exists now; marking the model built means `.keras` files and
        # exports carry all of them, even when it is only ever trained by `fit`.
        self.build((None,) + self.data_shape)

    def _check_latent(self, encoder, decoder) -> tuple[int, ...]:
        """Checks that the encoder ends in a distribution over z that the decoder takes.

        Returns:
            The shape of one z, `(latent_dim,)`.
        """
        _output_layer(encoder, "encoder")
        latent_dim = int(encoder.outputs[0].shape[-1])
        if tuple(decoder.inputs[0].shape[1:]) != (latent_dim,):
            raise ValueError(
                f"The decoder must take z of shape (batch, {latent_dim}), the encoder's "
                f"latent size. Received: decoder input shape={tuple(decoder.inputs[0].shape)}"
            )
        return (latent_dim,)

    def _check_prior(self, prior):
        """Returns the prior layer: `StandardNormal` by default, else a checked `Prior`."""
        if prior is None:
            return priors.StandardNormal(self.latent_dim, name="prior")
        if not isinstance(prior, priors.Prior):
            raise TypeError(
                "`prior` must be a tfvae.priors.Prior layer (such as StandardNormal). "
                f"Received: {type(prior).__name__}"
            )
        if prior.latent_dim != self.latent_dim:
            raise ValueError(
                f"The prior is over {prior.latent_dim} dimensions but the encoder's latent "
                f"size is {self.latent_dim}."
            )
        return prior

    def build(self, input_shape=None):
        if self.prior is not None and not self.prior.built:
            self.prior.build()
        self.built = True

    # ------------------------------------------------------------------ the contract
    # Every tool calls these (see tfvae/models/__init__.py); variants override the
    # private hooks (`_encode`, `_decode`, `_central_latent`, `sample_latent`,
    # `_importance_sample`), never the checked public methods.

    #: The number of classes of a conditional model; None for the others.
    num_classes: int | None = None
    #: Whether the model defines a density p(x), so `log_importance_weights` exists.
    has_density: bool = True
    #: Whether the latent is a grid of discrete codes (VQ-VAE) rather than continuous.
    latent_is_discrete: bool = False
    #: Whether the model has a classifier q(y|x) (`classify`; the semi-supervised VAE).
    classifies: bool = False

    @property
    def data_support(self) -> tuple[float, float] | None:
        """The interval the likelihood needs every value of x in (such as [0, 1])."""
        return self.likelihood.support

    @property
    def is_conditional(self) -> bool:
        """True when the encoder and decoder take a label (`labels=` is then required)."""
        return self.num_classes is not None

    def call(self, x, training=False):
        """Returns the mean of p(x|z) at the central latent: a deterministic reconstruction."""
        return self._reconstruct(x, training=training)

    def _reconstruct(self, x, y=None, training=False) -> tf.Tensor:
        """The mean of p(x|z) at the central latent (what `call` and exports return)."""
        z = self._central_latent(x, y, training=training)
        return self._decode(z, y, training=training).mean()

    def _encode(self, x, y=None, training=False) -> tfd.Distribution:
        """q(z|x): how the encoder is called (conditional models also pass y)."""
        return self.encoder(x, training=training)

    def _decode(self, z, y=None, training=False) -> tfd.Distribution:
        """p(x|z): how the decoder is called (conditional models also pass y)."""
        return self.decoder(z, training=training)

    def _central_latent(self, x, y=None, training=False) -> tf.Tensor:
        """The latent point that stands for each example (see `central_latent`)."""
        return _central_point(self._encode(x, y, training=training))

    @property
    def has_gaussian_posterior(self) -> bool:
        """True when q(z|x) is a plain diagonal Gaussian (not a flow, codes or a hierarchy)."""
        layer = self.encoder.outputs[0]._keras_history.operation
        return type(layer) is MultivariateNormalDiag

    def prior_distribution(self) -> tfd.Distribution:
        """Returns p(z) (the VampPrior builds it through the encoder).

        Raises:
            ValueError: for a model without a prior layer (VQ-VAE, hierarchical VAE),
                whose prior only `sample_latent` draws from.
        """
        if self.prior is None:
            raise ValueError(
                f"{type(self).__name__} has no prior layer p(z): its prior is drawn from by "
                "sample_latent (uniform codes, or the top-down layers)."
            )
        return self.prior.distribution(encoder=self.encoder)

    def _checked(self, x, name="x"):
        if tf.executing_eagerly() and not isinstance(x, keras.KerasTensor):
            return tf.constant(check_array(x, self.data_shape, self.data_support, name))
        return x

    def _label_batch(self, labels, examples):
        """The labels of `examples` (a batch, or a count); None for an unconditional model.

        Raises:
            ValueError: for labels given to a model that takes none.
        """
        if labels is not None:
            raise ValueError(
                f"{type(self).__name__} is not conditional: it takes no labels. "
                f"Received: labels of type {type(labels).__name__}"
            )
        return None

    def encode(self, x, labels=None) -> tfd.Distribution:
        """Returns the posterior q(z|x) for a batch `x` of shape `(batch, *data_shape)`.

        Args:
            x: the data.
            labels: one label per example (or one for all), for conditional models only.

        Returns:
            A TFP distribution over z with batch shape `(batch,)`; what kind depends on
            the model (see `tfvae.models`).

        Raises:
            ValueError / TypeError: for data of the wrong shape, type or range, or
                labels missing (conditional models) or given (the others).
        """
        x = self._checked(x)
        return self._encode(x, self._label_batch(labels, x))

    def central_latent(self, x, labels=None) -> tf.Tensor:
        """Returns the point of the latent space that stands for each example of `x`.

        The posterior mean where it is analytic; for a flow the flow of the base
        distribution's mean; for a VQ-VAE the nearest codes' vectors; for a hierarchical
        VAE z_1 at the posterior means taken top-down. `decode` accepts it.

        Returns:
            A float32 tensor of shape `(batch, *latent_shape)`.
        """
        x = self._checked(x)
        return self._central_latent(x, self._label_batch(labels, x))

    def decode(self, z, labels=None) -> tfd.Distribution:
        """Returns the likelihood p(x|z) for latents `z` of shape `(batch, *latent_shape)`.

        Raises:
            ValueError / TypeError: for latents of another shape or type, or labels
                missing (conditional models) or given (the others).
        """
        if tf.executing_eagerly():
            z = tf.constant(check_array(z, self.latent_shape, None, "z"))
        return self._decode(z, self._label_batch(labels, z))

    def reconstruct(self, x, labels=None) -> tf.Tensor:
        """Returns the mean of p(x|z) at the central latent of each example of `x`."""
        x = self._checked(x)
        return self._reconstruct(x, self._label_batch(labels, x))

    def posterior_tensors(self, x, y=None) -> dict[str, tf.Tensor]:
        """q(z|x) as named tensors, for the exported `encode` signature.

        `latent` is the central latent; the others are the posterior's parameters:
        `loc` and `scale` of a Gaussian, or `base_loc` and `base_scale` of a flow's base.
        """
        posterior = self._encode(x, y)
        if self.has_gaussian_posterior:
            return {
                "latent": posterior.mean(),
                "loc": posterior.mean(),
                "scale": posterior.stddev(),
            }
        base = posterior.distribution  # a flow's base Gaussian
        return {
            "latent": _central_point(posterior),
            "base_loc": base.mean(),
            "base_scale": base.stddev(),
        }

    def sample_latent(self, n, seed=None) -> tf.Tensor:
        """Draws `n` latents from the prior: the one hook behind `sample` and exports.

        Args:
            n: how many (an int, or an int32 scalar tensor inside a graph).
            seed: an int for reproducible draws (TFP's stateless sampling), or None for
                TensorFlow's stateful random ops, which give new draws each call and
                convert to builtin TFLite ops.

        Returns:
            A float32 tensor of shape `(n, *latent_shape)`.
        """
        if seed is None:
            return self.prior.stateful_sample(n, encoder=self.encoder)
        return self.prior_distribution().sample(n, seed=samplers.stateless_seed(seed))

    #: The samplers `fit_sampler` fits to this model's latents.
    fittable_samplers: tuple[str, ...] = ("gmm", "two_stage")

    @property
    def default_sampler(self) -> str:
        """The sampler `sample` uses when none is named: `"prior"` here."""
        return "prior"

    def draw_latent(self, n, seed=None, sampler: str | None = None) -> tf.Tensor:
        """Draws `n` latents from the prior (`sample_latent`) or from a fitted sampler.

        Args:
            n: how many (an int, or an int32 scalar tensor inside a graph).
            seed: as in `sample_latent`.
            sampler: `"prior"`, a sampler fitted by `fit_sampler` (`"gmm"`,
                `"two_stage"`), or None for `default_sampler`.

        Raises:
            ValueError: for a sampler that is unknown or was not fitted.
        """
        sampler = self.check_sampler(sampler)
        if sampler == "prior":
            return self.sample_latent(n, seed)
        return self.fitted_samplers[sampler].sample(n, seed)

    def check_sampler(self, sampler: str | None) -> str:
        """Returns `sampler`, or `default_sampler` for None, once checked.

        Raises:
            ValueError: for a sampler that is unknown, or (other than the prior) was
                not fitted to this model.
        """
        if sampler is None:
            return self.default_sampler
        if sampler not in samplers.SAMPLERS:
            raise ValueError(
                f"Unknown sampler {sampler!r}. Expected one of: {', '.join(samplers.SAMPLERS)}."
            )
        if sampler != "prior" and sampler not in self.fittable_samplers:
            raise ValueError(
                f"{type(self).__name__} has no {sampler!r} sampler; it samples from 'prior' "
                f"or, once fitted, from: {', '.join(self.fittable_samplers)}."
            )
        if sampler != "prior" and sampler not in self.fitted_samplers:
            fitted = ", ".join(self.fitted_samplers) or "none"
            raise ValueError(
                f"The {sampler!r} sampler was not fitted to this model (fitted: {fitted}); "
                f"call vae.fit_sampler({sampler!r}, x_train), or `tfvae fit-sampler`."
            )
        return sampler

    def fit_sampler(
        self,
        sampler: str,
        x,
        labels=None,
        *,
        num_components: int = 10,
        epochs: int = 50,
        batch_size: int = 500,
        seed: int = 0,
        verbose: int = 0,
    ):
        """Fits a latent sampler to the codes of `x` (the training data), for `sample`.

        The codes are the central latents of q(z|x) (the posterior means of a Gaussian
        posterior). `"gmm"`: a Gaussian mixture of `num_components` full-covariance
        components (Ghosh et al. 2020). `"two_stage"`: a second VAE (MLP, 256-256
        units, Gaussian likelihood with a learned scale, latent of the same size)
        trained on the standardised codes for `epochs` epochs, sampled ancestrally
        (Dai & Wipf 2019). See
        `tfvae.samplers`; a VQ-VAE fits `"pixelcnn"` instead (`tfvae.code_prior`).
        A sampler fitted again replaces the previous one.

        Args:
            sampler: one of `fittable_samplers`.
            x: the data, `(n, *data_shape)`.
            labels: for a conditional model, the labels of `x`.
            num_components: components of the mixture.
            epochs: epochs of a trained sampler (two-stage VAE, PixelCNN).
            batch_size: examples per pass when computing the codes.
            seed: seed of the fit.
            verbose: passed to the sampler network's `fit`.

        Returns:
            The fitted sampler layer.

        Raises:
            ValueError: for a sampler this model cannot fit, or bad data.

        Example:

        >>> vae.fit_sampler("gmm", x_train)
        >>> images = vae.sample(64, sampler="gmm")
        """
        if sampler not in self.fittable_samplers:
            raise ValueError(
                f"{type(self).__name__} cannot fit the sampler {sampler!r}. Expected one of: "
                f"{', '.join(self.fittable_samplers)}."
            )
        epochs = check_integer("epochs", epochs)
        codes = self._codes(x, labels, check_integer("batch_size", batch_size))
        keras.utils.set_random_seed(seed)
        layer = self._new_sampler(sampler, codes, num_components, epochs, seed, verbose)
        self._attach_sampler(sampler, layer)
        return layer

    def _new_sampler(self, sampler, codes, num_components, epochs, seed, verbose):
        """A sampler layer fitted to `codes` (what `_codes` gives)."""
        codes = codes.reshape(len(codes), -1)
        if sampler == "gmm":
            layer = samplers.GaussianMixtureSampler(
                codes.shape[1], num_components, name="gmm_sampler"
            )
            layer.set_mixture(*samplers.fit_gaussian_mixture(codes, num_components, seed))
            return layer
        # Standardised codes: the second VAE's likelihood scale starts at their spread.
        shift, scale = codes.mean(0), np.maximum(codes.std(0), 1e-6)
        decoder = self._second_stage((codes - shift) / scale, epochs, seed, verbose)
        layer = samplers.TwoStageSampler(decoder, name="two_stage_sampler")
        layer.set_standardization(shift, scale)
        return layer

    def _attach_sampler(self, name: str, layer) -> None:
        """Adds a sampler layer to the built model (Keras locks a built layer's state;
        it unlocks it the same way to untrack a variable)."""
        was_locked = self._tracker.locked
        self._tracker.unlock()
        try:
            previous = self.fitted_samplers.get(name)
            if previous is not None:
                self._tracker.untrack(previous)
            self.fitted_samplers[name] = layer
        finally:
            if was_locked:
                self._tracker.lock()

    #: The `posterior_tensors` entry that samplers are fitted to.
    sampler_codes: str = "latent"

    def _codes(self, x, labels, batch_size: int) -> np.ndarray:
        """The `sampler_codes` of q(z|x) over `x`: `(n, ...)`."""
        x = check_array(x, self.data_shape, self.likelihood.support)
        y = self._label_batch(labels, x)
        out = []
        for start in range(0, len(x), batch_size):
            batch = tf.constant(x[start : start + batch_size])
            part = None if y is None else y[start : start + batch_size]
            out.append(self.posterior_tensors(batch, part)[self.sampler_codes].numpy())
        return np.concatenate(out)

    def _second_stage(self, codes: np.ndarray, epochs: int, seed: int, verbose: int):
        """Trains the second VAE of a two-stage VAE on `codes`; returns its decoder."""
        dim = codes.shape[1]
        inner = VAE(
            networks.mlp_encoder((dim,), dim, hidden_units=(256, 256), name="stage2_encoder"),
            networks.mlp_decoder(
                dim,
                (dim,),
                hidden_units=(256, 256),
                likelihood="gaussian_learned_scale",
                name="stage2_decoder",
            ),
            seed=seed,
        )
        inner.compile(optimizer=keras.optimizers.Adam(1e-3))
        inner.fit(codes.astype(np.float32), epochs=epochs, verbose=verbose)
        return inner.decoder

    def sample(
        self, n: int, labels=None, seed=None, output: str = "mean", sampler: str | None = None
    ) -> tf.Tensor:
        """Draws `n` examples: z from the prior (`sample_latent`) or a fitted sampler, then
        x through the decoder.

        Args:
            n: number of examples, >= 1.
            labels: conditional models only: the class of every example (an int) or one
                class per example.
            seed: optional seed of the draws (an int).
            output: `"mean"` for the mean of p(x|z) (what one plots) or `"sample"`
                for a draw from p(x|z).
            sampler: `"prior"`, one fitted by `fit_sampler` (`"gmm"`, `"two_stage"`,
                `"pixelcnn"`), or None for `default_sampler` (a VQ-VAE's fitted PixelCNN).

        Returns:
            A float32 tensor of shape `(n, *data_shape)`.

        Raises:
            ValueError: if `n < 1`, `output` is unknown, or labels are missing
                (conditional models) or given (the others).
        """
        if output not in ("mean", "sample"):
            raise ValueError(f'`output` must be "mean" or "sample". Received: output={output!r}')
        if not tf.is_tensor(n):
            n = check_integer("n", n)
        z = self.draw_latent(n, seed, sampler)
        likelihood = self._decode(z, self._label_batch(labels, n))
        if output == "mean":
            return likelihood.mean()
        return tf.cast(likelihood.sample(seed=samplers.stateless_seed(seed, 1)), tf.float32)

    def log_importance_weights(self, x, k: int, labels=None, seed=None) -> tf.Tensor:
        """Returns log p(x, z_i) - log q(z_i|x) for k draws z_i ~ q(z|x), shape `(k, batch)`.

        `logsumexp` over the k draws, minus log k, is the bound L_k of Burda et al.
        (2016), which rises to log p(x) as k grows (`tfvae.evaluation`). For a
        conditional model the weights are those of log p(x | y).

        Args:
            x: a batch of data.
            k: draws per example, >= 1.
            labels: conditional models only.
            seed: an int for reproducible draws.

        Raises:
            ValueError: for a model without a density (VQ-VAE), bad data or `k < 1`.
        """
        k = check_integer("k", k)
        self.require_density("log_importance_weights")
        x = self._checked(x)
        y = self._label_batch(labels, x)
        return self._importance_sample(x, y, k, samplers.stateless_seed(seed)).log_weights

    def require_density(self, what: str) -> None:
        """Raises a one-line ValueError when the model has no density p(x) for `what`."""
        if not self.has_density:
            raise ValueError(
                f"{what} needs a density p(x); {type(self).__name__} has none to importance-"
                f"sample: {self._no_density_reason}."
            )

    #: Why a model without a density has none (for `require_density`'s message).
    _no_density_reason = "it has no density p(x)"

    def _importance_sample(self, x, y, k, seed, training=False) -> ImportanceSample:
        """k draws from q(z|x) (k may be a tensor) and their log importance weights."""
        posterior = self._encode(x, y, training=training)
        z = posterior.sample(k, seed=seed)  # (k, batch, *latent_shape)
        batch = tf.shape(x)[0]
        flat_z = tf.reshape(z, tf.concat([[-1], self.latent_shape], 0))
        flat_y = None if y is None else _tiled(y, k)
        likelihood = self._decode(flat_z, flat_y, training=training)
        log_likelihood = tf.reshape(
            tf.cast(likelihood.log_prob(_tiled(x, k)), tf.float32), tf.stack([k, batch])
        )
        log_prior = tf.cast(self.prior_distribution().log_prob(z), tf.float32)
        log_posterior = tf.cast(posterior.log_prob(z), tf.float32)
        return ImportanceSample(
            log_likelihood + log_prior - log_posterior, log_likelihood, posterior, z
        )

    # ------------------------------------------------------------------ objective
    def _posterior_seed(self, training: bool = True) -> tf.Tensor:
        """A seed for sampling z: training draws from the checkpointed `_noise`;
        evaluation from its own generator, so validating never shifts training's noise."""
        seed = tf.cast((self._noise if training else self._evaluation_noise).next(), tf.int32)
        return scaling.replica_seed(seed)

    def elbo_parts(self, x, y=None, training: bool = False) -> ElboParts:
        """Encodes x, draws one z ~ q(z|x), decodes it, and returns the ELBO's parts.

        Args:
            x: a float32 batch of data.
            y: labels, used by conditional models only.
            training: passed to the encoder and decoder.

        Returns:
            `ElboParts(posterior, z, likelihood, distortion, rate)`; the last two per
            example, in nats.
        """
        posterior = self._encode(x, y, training=training)
        z = posterior.sample(seed=self._posterior_seed(training))
        likelihood = self._decode(z, y, training=training)
        distortion = losses.distortion(likelihood, x)
        rate = losses.rate(posterior, self.prior_distribution(), z)
        return ElboParts(posterior, z, likelihood, distortion, rate)

    def terms(self, distortion, rate, loss=None) -> dict[str, tf.Tensor]:
        """Returns the standard terms; `loss` defaults to distortion + beta * rate."""
        if loss is None:
            loss = distortion + self.beta * rate
        return {"loss": loss, "distortion": distortion, "rate": rate, "elbo": -(distortion + rate)}

    def loss_terms(self, x, y=None, training: bool = False) -> dict[str, tf.Tensor]:
        """Returns the per-example terms of the objective, each of shape `(batch,)`.

        The one extension point of the VAE family: a variant overrides this method and
        returns the same keys (`loss` is what is minimised), plus any of its own listed
        in `term_names`. `train_step` and `test_step` call it and nothing else.

        Args:
            x: a float32 batch of data.
            y: labels (the second item of each batch), used by conditional models only.
            training: passed to the encoder and decoder.

        Returns:
            A dict with `loss`, `distortion`, `rate` and `elbo`, in nats.
        """
        parts = self.elbo_parts(x, y, training=training)
        return self.terms(parts.distortion, parts.rate)

    _NOISE_STATE = "posterior_noise_state"

    def save_own_variables(self, store):
        """Saves beta and the posterior-noise seed state (Keras leaves seed states out)."""
        super().save_own_variables(store)
        store[self._NOISE_STATE] = self._noise.state

    def load_own_variables(self, store):
        """Loads what `save_own_variables` saved, so a resumed run draws the same noise."""
        own = self._trainable_variables + self._non_trainable_variables
        for i, variable in enumerate(own):
            variable.assign(store[f"{i}"])
        if self._NOISE_STATE in store.keys():
            self._noise.state.assign(store[self._NOISE_STATE])

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "prior": keras.saving.serialize_keras_object(self.prior),
            "beta": float(keras.ops.convert_to_numpy(self.beta)),
            "seed": self.seed,
            "samplers": {
                name: keras.saving.serialize_keras_object(layer)
                for name, layer in self.fitted_samplers.items()
            },
        }

    #: The config entries that are serialised layers (`from_config` rebuilds them).
    _layer_config_keys: tuple[str, ...] = ("encoder", "decoder", "prior")

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # Keras' deserialiser consumes nested dicts
        for key in cls._layer_config_keys:
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        config["samplers"] = {
            name: keras.saving.deserialize_keras_object(layer)
            for name, layer in (config.get("samplers") or {}).items()
        }
        return cls(**config)


def build(
    data_shape,
    network: str,
    latent_dim: int,
    likelihood: str,
    *,
    posterior: str = "gaussian",
    prior: str = "standard_normal",
    num_components: int = 10,
    num_pseudo_inputs: int = 100,
    **options,
) -> VAE:
    """The registry's builder of `"vae"`, `"flow"`, `"mixture_prior"` and `"vamp_prior"`.

    They differ only in one component: the posterior (`"gaussian"` or `"iaf"`) or the
    prior (`"standard_normal"`, `"mixture"` of `num_components`, or `"vamp"` with
    `num_pseudo_inputs`). `options` (`beta`, `seed`) go to `VAE`.
    """
    encoder, decoder = networks.build(
        network, data_shape, latent_dim, likelihood, posterior=posterior
    )
    if prior == "mixture":
        options["prior"] = priors.MixtureOfGaussians(latent_dim, num_components, name="prior")
    elif prior == "vamp":
        options["prior"] = priors.VampPrior(latent_dim, data_shape, num_pseudo_inputs, name="prior")
    elif prior != "standard_normal":
        raise ValueError(f"Unknown prior {prior!r}. Expected standard_normal, mixture or vamp.")
    return VAE(encoder, decoder, **options)
