"""The variational autoencoder, trained with `model.fit`.

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)) = -(distortion + rate)
    loss(x) = distortion + beta * rate

`VAE.loss_terms` computes the per-example terms; it is the one method that variants
override. `train_step` and `test_step` are written once, here. The methods every tool
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
import math
import warnings
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import losses, networks, priors
from tfvae import training as training_path
from tfvae.callbacks import StopOnNonFinite
from tfvae.layers import DistributionLayer, MultivariateNormalDiag
from tfvae.validation import check_array, check_dataset, reraise_input_errors

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


def _stateless(seed, stream: int = 0):
    """An int seed as TFP's stateless seed pair, so the same int gives the same draws
    (TFP treats a bare int as a stateful op seed, which draws anew on every call)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), stream], tf.int32)
    return seed


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


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)):
        raise TypeError(f"`beta` must be a number. Received: beta={beta!r}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"`beta` must be a finite number >= 0. Received: beta={beta!r}")
    return float(beta)


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(keras.Model):
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

    def __init__(self, encoder, decoder, prior=None, beta: float = 1.0, seed=None, **kwargs):
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
            initializer=keras.initializers.Constant(_check_beta(beta)),
            trainable=False,
        )
        self._noise = keras.random.SeedGenerator(seed, name="posterior_noise")
        evaluation_seed = None if seed is None else seed + 1
        self._evaluation_noise = keras.random.SeedGenerator(
            evaluation_seed, name="evaluation_noise"
        )
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.term_names}
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
            return tf.constant(check_array(x, self.data_shape, self.likelihood.support, name))
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
        return self.prior_distribution().sample(n, seed=_stateless(seed))

    def sample(self, n: int, labels=None, seed=None, output: str = "mean") -> tf.Tensor:
        """Draws `n` examples: z from the prior (`sample_latent`), then x through the decoder.

        Args:
            n: number of examples, >= 1.
            labels: conditional models only: the class of every example (an int) or one
                class per example.
            seed: optional seed of the draws (an int).
            output: `"mean"` for the mean of p(x|z) (what one plots) or `"sample"`
                for a draw from p(x|z).

        Returns:
            A float32 tensor of shape `(n, *data_shape)`.

        Raises:
            ValueError: if `n < 1`, `output` is unknown, or labels are missing
                (conditional models) or given (the others).
        """
        if output not in ("mean", "sample"):
            raise ValueError(f'`output` must be "mean" or "sample". Received: output={output!r}')
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n < 1:
            raise ValueError(f"`n` must be >= 1. Received: n={n}")
        likelihood = self._decode(self.sample_latent(n, seed), self._label_batch(labels, n))
        if output == "mean":
            return likelihood.mean()
        return tf.cast(likelihood.sample(seed=_stateless(seed, 1)), tf.float32)

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
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
        self.require_density("log_importance_weights")
        x = self._checked(x)
        y = self._label_batch(labels, x)
        return self._importance_sample(x, y, int(k), _stateless(seed)).log_weights

    def require_density(self, what: str) -> None:
        """Raises a one-line ValueError when the model has no density p(x) for `what`."""
        if not self.has_density:
            raise ValueError(
                f"{what} needs a density p(x); {type(self).__name__} has none: its prior over "
                "codes is uniform and not learned, so log p(x) is undefined."
            )

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
        return training_path.replica_seed(seed)

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

    @staticmethod
    def _unpack(data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return tf.cast(x, tf.float32), y

    def _record(self, terms):
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        return self._metric_results()

    def _metric_results(self) -> dict[str, tf.Tensor]:
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        x, y = self._unpack(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, y, training=True)
            # The mean over the global batch (this replica's share of it).
            loss = training_path.global_batch_mean(terms["loss"])
            if self.losses:
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                loss += tf.add_n(self.losses) / replicas  # gradients are summed over them
            # Multiplied by the loss scale under mixed_float16 (the optimizer is then a
            # LossScaleOptimizer, which unscales the gradients); unchanged otherwise.
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._record(terms)

    def test_step(self, data):
        x, y = self._unpack(data)
        return self._record(self.loss_terms(x, y, training=False))

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ------------------------------------------------------------------ Keras API
    def compile(
        self,
        optimizer="adam",
        loss=None,
        jit_compile=training_path.DEFAULT_JIT_COMPILE,
        steps_per_execution=training_path.DEFAULT_STEPS_PER_EXECUTION,
        **kwargs,
    ):
        """Configures training; the loss is the model's own, so `loss` must stay None.

        The defaults are the fastest measured training path (`tfvae.training`): XLA
        where it helps (GPU/TPU, or a CPU and networks without convolutions), with
        `steps_per_execution` steps fused into one XLA program. Callbacks (and a KL
        schedule) then act every `steps_per_execution` steps.

        Args:
            optimizer: a Keras optimizer or its name (default Adam, learning rate 1e-3).
            loss: must be None.
            jit_compile: True, False or `"auto"` (default; see
                `tfvae.training.auto_jit_compile`).
            steps_per_execution: train steps per call from `fit` (default 32); with
                XLA they run as one program.
            **kwargs: other `keras.Model.compile` arguments.

        Raises:
            ValueError: if a `loss` is given.
        """
        if loss is not None:
            raise ValueError(
                "A VAE computes its own loss (distortion + beta * rate); do not pass "
                f"`loss` to compile(). Received: loss={loss!r}"
            )
        if jit_compile == "auto" and not kwargs.get("run_eagerly"):
            jit_compile = training_path.auto_jit_compile(self)
        elif jit_compile is True and training_path.is_distributed(self):
            warnings.warn(
                "jit_compile=True is ignored under tf.distribute: Keras 3.15 cannot run a "
                "strategy's step inside XLA (see tfvae.training.distributed_function); "
                "training runs without XLA.",
                stacklevel=2,
            )
            jit_compile = False
        super().compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            **kwargs,
        )
        # Creating the optimizer's variables now, rather than inside the first traced
        # step, lets tf.function trace the train step once instead of twice.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skipped once built: a VAE has its weights from construction and its optimizer's
        from `compile`. (Under `tf.distribute`, Keras 3.15 builds from the replicas'
        first batches averaged together, which fails when a batch splits unevenly,
        e.g. 899 + 898 examples on two replicas.)"""
        if self.built and getattr(self.optimizer, "built", False):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """Keras' train function, or the fused multi-step XLA one where it applies."""
        if self.train_function is not None and not force:
            return self.train_function
        if training_path.uses_fused_steps(self):
            self.train_function = training_path.fused_train_function(self)
        elif training_path.uses_distributed_steps(self):
            self.train_function = training_path.distributed_function(self, self.train_step)
        else:
            return super().make_train_function(force)
        return self.train_function

    def make_test_function(self, force=False):
        """Keras' test function, without XLA: compiling it (per batch shape) costs more
        than it saves on the few evaluation steps of an epoch (`tfvae.training`)."""
        if self.test_function is not None and not force:
            return self.test_function
        if training_path.uses_distributed_steps(self):
            self.test_function = training_path.distributed_function(self, self.test_step)
            return self.test_function
        jit_compile, self._jit_compile = self._jit_compile, False
        try:
            return super().make_test_function(force)
        finally:
            self._jit_compile = jit_compile

    def compile_from_config(self, config):
        """Re-compiles a loaded model as saved, with its optimizer state (for `.keras` files)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def _checked_data(self, data, name):
        if data is None:
            return None
        support = self.likelihood.support
        if isinstance(data, tf.data.Dataset):
            checked = check_dataset(data, self.data_shape, support, name)
            return training_path.sharded_by_batch(checked, self)
        if isinstance(data, keras.utils.PyDataset) or callable(getattr(data, "__next__", None)):
            return data
        if isinstance(data, tuple):
            return (check_array(data[0], self.data_shape, support, name),) + data[1:]
        return check_array(data, self.data_shape, support, name)

    def _checked_labels(self, x, y):
        """Checks labels passed beside x (conditional models need them); returns them."""
        return y

    def _feeds_in_memory(self, x, args, kwargs) -> bool:
        """Whether fit feeds arrays through `tfvae.training.in_memory_dataset` (fused path)."""
        keras_only = ("validation_split", "sample_weight", "class_weight", "steps_per_epoch")
        return (
            not args
            and isinstance(x, (np.ndarray, tf.Tensor))
            and isinstance(kwargs.get("shuffle", True), bool)
            and not any(kwargs.get(name) for name in keras_only)
            and training_path.uses_fused_steps(self)
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, with the data checked first (see `tfvae.validation`).

        Training stops at the first non-finite loss term (`StopOnNonFinite` is added
        to the callbacks unless one is there).

        Raises:
            ValueError / TypeError: for data of the wrong shape, type or range, with
                NaN or Inf, or empty (also when a dataset batch goes wrong mid-epoch).
            tfvae.callbacks.NonFiniteLossError: when a loss term goes NaN or infinite,
                naming the term, the epoch and the steps.
        """
        x = self._checked_data(x, "x")
        y = self._checked_labels(x, y)
        if self._feeds_in_memory(x, args, kwargs):
            x = training_path.in_memory_dataset(
                x, y, kwargs.pop("batch_size", None), kwargs.pop("shuffle", True)
            )
            y = None
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself
        if kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = self._checked_data(
                kwargs["validation_data"], "validation_data"
            )
        callbacks = list(kwargs.get("callbacks") or [])
        if not any(isinstance(c, StopOnNonFinite) for c in callbacks):
            kwargs["callbacks"] = [StopOnNonFinite(), *callbacks]
        with reraise_input_errors():
            history = super().fit(x, y, *args, **kwargs)
        epochs = kwargs.get("epochs", args[1] if len(args) > 1 else 1)
        if not history.history and epochs > kwargs.get("initial_epoch", 0):
            raise ValueError(
                "`x` is empty: the dataset yielded no batches, so nothing was trained."
            )
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`, with the data checked first."""
        x = self._checked_data(x, "x")
        y = self._checked_labels(x, y)
        with reraise_input_errors():
            result = super().evaluate(x, y, *args, **kwargs)
        if result is None or (hasattr(result, "__len__") and len(result) == 0):
            raise ValueError("`x` is empty: the dataset yielded no batches to evaluate.")
        return result

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` (reconstruction means), with the data checked first."""
        x = self._checked_data(x, "x")
        if isinstance(x, tf.data.Dataset) and int(x.cardinality()) < 0:
            with reraise_input_errors():
                if not any(True for _ in x.take(1)):
                    raise ValueError("`x` is empty: the dataset yields no batches.")
        with reraise_input_errors():
            return super().predict(x, *args, **kwargs)

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
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # Keras' deserialiser consumes nested dicts
        for key in ("encoder", "decoder", "prior"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
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
