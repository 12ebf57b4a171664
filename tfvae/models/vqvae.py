"""VQ-VAE: a discrete latent code, learned by vector quantisation.

The encoder gives z_e(x), one D-vector at each latent position. Each position is
replaced by its nearest codebook vector e_k, z_q = e_argmin_k ||z_e - e_k||. The
decoder gives p(x|z_q). Gradients pass from z_q to z_e unchanged (straight-through).

    loss(x) = distortion + ||sg[z_e] - z_q||^2 + beta * ||z_e - sg[z_q]||^2
    distortion = -log p(x | z_q)
    rate = positions * log K   (KL of a one-hot posterior from the uniform prior over codes)

Here sg is stop-gradient, and the squared norms are summed over positions and
dimensions. beta is the commitment cost (0.25 in the paper); it lives in `vae.beta`.
With `ema=True` the codebook follows exponential moving averages of the vectors
assigned to it, and the codebook term is dropped. `perplexity` = exp(entropy of code
use in the batch) measures how many codes are in use. Sampling draws codes uniformly,
or, once `fit_sampler("pixelcnn", x_train)` has fitted a prior over codes
(`tfvae.code_prior`), from that prior; the VQ-VAE then has a likelihood bound too:

    log p(x) >= log p(x | z_q(c)) + log p(c),   c the encoder's codes of x

References:
    van den Oord, A., Vinyals, O. & Kavukcuoglu, K. (2017). Neural Discrete
        Representation Learning. NeurIPS.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import code_prior, losses, networks, scaling
from tfvae.arguments import check_integer
from tfvae.models.vae import VAE, _check_functional

tfd = tfp.distributions

__all__ = ["VectorQuantizer", "VQVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class VectorQuantizer(keras.layers.Layer):
    """A codebook of `num_codes` vectors of size `code_dim`, and nearest-code lookup.

    Args:
        num_codes: K, >= 2.
        code_dim: D, the size of each code vector.
        ema: update the codebook by exponential moving averages instead of gradients.
        decay: the moving averages' decay, in (0, 1).
        epsilon: smoothing of the code counts (Laplace), for the EMA update.

    Raises:
        ValueError: for `num_codes < 2`, `code_dim < 1` or a decay outside (0, 1).
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        ema: bool = False,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # distances and losses stay float32
        super().__init__(**kwargs)
        num_codes = check_integer("num_codes", num_codes, 2)  # the codebook size
        code_dim = check_integer("code_dim", code_dim)
        if not 0 < decay < 1:
            raise ValueError(f"`decay` must be in (0, 1). Received: decay={decay!r}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.ema, self.decay, self.epsilon = bool(ema), float(decay), float(epsilon)

    def build(self, input_shape=None):
        limit = 1.0 / self.num_codes
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.num_codes, self.code_dim),
            trainable=not self.ema,
            initializer=keras.initializers.RandomUniform(-limit, limit),
        )
        if self.ema:
            self.cluster_size = self.add_weight(
                name="cluster_size", shape=(self.num_codes,), initializer="ones", trainable=False
            )
            self.code_sum = self.add_weight(
                name="code_sum",
                shape=(self.num_codes, self.code_dim),
                initializer="zeros",
                trainable=False,
            )
            self.code_sum.assign(self.codebook)
        self.built = True

    def codes(self, z_e) -> tf.Tensor:
        """Returns the index of the nearest code at each position: shape `z_e.shape[:-1]`."""
        flat = tf.reshape(z_e, (-1, self.code_dim))
        distances = (
            tf.reduce_sum(flat**2, axis=1, keepdims=True)
            - 2.0 * tf.matmul(flat, self.codebook, transpose_b=True)
            + tf.reduce_sum(self.codebook**2, axis=1)[tf.newaxis]
        )
        return tf.reshape(tf.argmin(distances, axis=1, output_type=tf.int32), tf.shape(z_e)[:-1])

    def lookup(self, codes) -> tf.Tensor:
        """Returns the code vectors of integer `codes`: shape `codes.shape + (code_dim,)`."""
        return tf.gather(tf.convert_to_tensor(self.codebook), codes)

    def _update_ema(self, flat, one_hot):
        counts = tf.reduce_sum(one_hot, axis=0)
        sums = tf.matmul(one_hot, flat, transpose_a=True)
        context = scaling.replica_context()
        if context is not None:
            # Statistics of the global batch: every replica then makes the same update,
            # and the mirrored copies of the codebook stay identical.
            counts, sums = context.all_reduce(tf.distribute.ReduceOp.SUM, [counts, sums])
        self.cluster_size.assign(self.decay * self.cluster_size + (1 - self.decay) * counts)
        self.code_sum.assign(self.decay * self.code_sum + (1 - self.decay) * sums)
        total = tf.reduce_sum(self.cluster_size)
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon)
        self.codebook.assign(self.code_sum / (smoothed * total)[:, tf.newaxis])

    def call(self, z_e, training=False):
        """Returns `(straight-through z_q, codes, commitment, codebook_loss, perplexity)`.

        The two losses are per example (summed over positions and dimensions);
        perplexity is one number for the batch.
        """
        codes = self.codes(z_e)
        one_hot = tf.one_hot(tf.reshape(codes, [-1]), self.num_codes)
        if training and self.ema:
            self._update_ema(tf.reshape(tf.stop_gradient(z_e), (-1, self.code_dim)), one_hot)
        quantized = self.lookup(codes)
        axes = list(range(1, len(z_e.shape)))
        commitment = tf.reduce_sum((z_e - tf.stop_gradient(quantized)) ** 2, axis=axes)
        codebook_loss = tf.reduce_sum((tf.stop_gradient(z_e) - quantized) ** 2, axis=axes)
        usage = tf.reduce_mean(one_hot, axis=0)
        perplexity = tf.exp(-tf.reduce_sum(usage * tf.math.log(usage + 1e-10)))
        straight_through = z_e + tf.stop_gradient(quantized - z_e)
        return straight_through, codes, commitment, codebook_loss, perplexity

    def get_config(self):
        return {
            **super().get_config(),
            "num_codes": self.num_codes,
            "code_dim": self.code_dim,
            "ema": self.ema,
            "decay": self.decay,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class VQVAE(VAE):
    """A VQ-VAE: encoder -> nearest codebook vectors -> decoder (a likelihood).

    Args:
        encoder: functional model mapping x to z_e, a tensor `(batch, *positions, D)`.
        decoder: functional model mapping z_q (the same shape) to p(x|z_q).
        num_codes: codebook size K, >= 2.
        beta: the commitment cost (default 0.25).
        ema: update the codebook by moving averages (default: by gradients).
        decay: decay of those moving averages.
        seed: seed of sampling.

    Raises:
        ValueError: for a codebook size < 2, a negative beta, or networks whose shapes
            do not fit.

    Example:

    >>> encoder, decoder = tfvae.networks.build_vq("conv", (28, 28, 1), code_dim=16)
    >>> vqvae = VQVAE(encoder, decoder, num_codes=128)
    """

    term_names = VAE.term_names + ("commitment", "codebook", "perplexity")

    def __init__(
        self,
        encoder,
        decoder,
        num_codes: int = 128,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        prior=None,
        **kwargs,
    ):
        _check_functional(encoder, "encoder")
        code_dim = int(encoder.outputs[0].shape[-1])
        # Created before the base class builds (and so locks) the model.
        self.quantizer = VectorQuantizer(num_codes, code_dim, ema, decay, name="quantizer")
        super().__init__(encoder, decoder, prior=prior, beta=beta, **kwargs)
        self.positions = math.prod(self.latent_shape[:-1])

    def build(self, input_shape=None):
        if not self.quantizer.built:
            self.quantizer.build()
        super().build(input_shape)

    def _check_latent(self, encoder, decoder):
        _check_functional(encoder, "encoder")
        latent_shape = tuple(encoder.outputs[0].shape[1:])
        if tuple(decoder.inputs[0].shape[1:]) != latent_shape:
            raise ValueError(
                f"The decoder must take z_q of the encoder's output shape (batch, "
                f"{', '.join(map(str, latent_shape))}). Received: decoder input shape="
                f"{tuple(decoder.inputs[0].shape)}"
            )
        return latent_shape

    def _check_prior(self, prior):
        if prior is not None:
            raise ValueError("A VQVAE has a uniform prior over codes; do not pass `prior`.")
        return None

    def loss_terms(self, x, y=None, training=False):
        z_e = self.encoder(x, training=training)
        z_q, _, commitment, codebook_loss, perplexity = self.quantizer(z_e, training=training)
        distortion = losses.distortion(self.decoder(z_q, training=training), x)
        rate = tf.fill(tf.shape(distortion), self.positions * math.log(self.quantizer.num_codes))
        if self.quantizer.ema:
            codebook_loss = tf.zeros_like(codebook_loss)
        loss = distortion + codebook_loss + self.beta * commitment
        return {
            **self.terms(distortion, rate, loss=loss),
            "commitment": commitment,
            "codebook": codebook_loss,
            "perplexity": tf.broadcast_to(perplexity, tf.shape(distortion)),
        }

    _no_density_reason = (
        "its posterior is a point mass on codes (with a PixelCNN prior fitted, its ELBO is "
        "the code-prior ELBO)"
    )
    has_density = False
    latent_is_discrete = True

    def _encode(self, x, y=None, training=False):
        """q(z|x): a point mass on the nearest codes' vectors (the quantised encoding)."""
        z_q = self.quantizer.lookup(self.quantizer.codes(self.encoder(x, training=training)))
        return tfd.Independent(
            tfd.Deterministic(z_q), reinterpreted_batch_ndims=len(self.latent_shape)
        )

    def codes(self, x) -> tf.Tensor:
        """Returns the integer code at each latent position, `(batch, *positions)`."""
        return self.quantizer.codes(self.encoder(self._checked(x)))

    def decode_codes(self, codes):
        """Returns p(x|z_q) for integer codes of shape `(batch, *positions)`."""
        return self.decoder(self.quantizer.lookup(tf.convert_to_tensor(codes, tf.int32)))

    def posterior_tensors(self, x, y=None):
        """`latent` (the quantised vectors z_q) and `codes` (their indices), as tensors."""
        codes = self.quantizer.codes(self.encoder(x))
        return {"latent": self.quantizer.lookup(codes), "codes": codes}

    fittable_samplers = ("pixelcnn",)
    sampler_codes = "codes"

    @property
    def default_sampler(self) -> str:
        """`"pixelcnn"` once a prior over codes is fitted (`fit_sampler`), else `"prior"`."""
        return "pixelcnn" if "pixelcnn" in self.fitted_samplers else "prior"

    def sample_latent(self, n, seed=None):
        """Codes drawn uniformly and independently at every position (the prior the
        VQ-VAE is trained with), as their vectors."""
        return self.quantizer.lookup(self._uniform_codes(n, seed))

    def _uniform_codes(self, n, seed=None):
        shape = tf.concat([tf.reshape(n, [1]), tf.constant(self.latent_shape[:-1], tf.int32)], 0)
        if seed is None:
            logits = tf.zeros([1, self.quantizer.num_codes])
            codes = tf.random.categorical(logits, n * self.positions, dtype=tf.int32)[0]
            return tf.reshape(codes, shape)
        codes = keras.random.randint(shape, 0, self.quantizer.num_codes, seed=seed)
        return tf.cast(codes, tf.int32)

    def draw_codes(self, n, seed=None, sampler: str | None = None) -> tf.Tensor:
        """Draws `n` code grids `(n, *positions)`: uniform (`"prior"`) or from the fitted
        PixelCNN (`"pixelcnn"`); None for `default_sampler`.

        Raises:
            ValueError: for a sampler that is unknown or was not fitted.
        """
        sampler = self.check_sampler(sampler)
        if sampler == "prior":
            return self._uniform_codes(n, seed)
        if sampler != "pixelcnn":
            raise ValueError(
                f"A VQ-VAE draws codes from 'prior' (uniform) or 'pixelcnn'. Received: {sampler!r}"
            )
        return self.fitted_samplers[sampler].sample(n, seed)

    def draw_latent(self, n, seed=None, sampler: str | None = None) -> tf.Tensor:
        return self.quantizer.lookup(self.draw_codes(n, seed, sampler))

    def _new_sampler(self, sampler, codes, num_components, epochs, seed, verbose):
        """A gated PixelCNN prior trained on the code grids `codes`."""
        return code_prior.fit_code_prior(
            codes, self.quantizer.num_codes, epochs=epochs, verbose=verbose, name="pixelcnn_sampler"
        )

    def code_log_prob(self, x, batch_size: int = 500) -> np.ndarray:
        """log p(c(x)) under the fitted PixelCNN, of each example's codes, in nats.

        Raises:
            ValueError: if no prior over codes was fitted (`fit_sampler("pixelcnn", x)`).
        """
        self.check_sampler("pixelcnn")
        codes = self._codes(x, None, check_integer("batch_size", batch_size))
        prior = self.fitted_samplers["pixelcnn"]
        return np.concatenate(
            [
                prior.log_prob(codes[i : i + batch_size]).numpy()
                for i in range(0, len(codes), batch_size)
            ]
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_codes": self.quantizer.num_codes,
            "ema": self.quantizer.ema,
            "decay": self.quantizer.decay,
        }


def build(
    data_shape,
    network: str,
    latent_dim: int,
    likelihood: str,
    *,
    num_codes: int,
    ema: bool,
    **options,
) -> VQVAE:
    """The registry's builder of `"vqvae"`: `latent_dim` is the size of each code vector."""
    encoder, decoder = networks.build_vq(network, data_shape, latent_dim, likelihood=likelihood)
    return VQVAE(encoder, decoder, num_codes=num_codes, ema=ema, **options)
