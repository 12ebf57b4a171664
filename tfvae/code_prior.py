"""An autoregressive prior over a VQ-VAE's code grid: a gated PixelCNN, in Keras 3.

A VQ-VAE is trained with a uniform prior over its codes, and codes drawn uniformly
decode to noise. Its second stage (van den Oord et al. 2017) fits an autoregressive
prior to the codes c of the training images, in raster order over the grid:

    p(c) = prod_i p(c_i | c_<i),   p(c_i | c_<i) = Categorical(logits_i(c_<i))

The logits come from a gated PixelCNN (van den Oord et al. 2016): a vertical stack
that sees the rows above, a horizontal stack that sees the codes to the left on the
same row, no blind spot, and gated units tanh(a) * sigmoid(b). Causality comes from
padding and cropping (no masked kernels): the vertical stack is shifted down a row
before it feeds the horizontal one, and the first horizontal layer's input is shifted
right by one code. A grid of one row (the MLP VQ-VAE's) gets horizontal kernels as
wide as the row, so every code sees all earlier ones.

With the prior fitted, the VQ-VAE has a likelihood: q(c|x) is a point mass on the
encoder's codes, so the ELBO is

    log p(x) >= log p(x | z_q(c)) + log p(c)

and `-log p(c)`, in nats per image, is the code NLL that `CodePrior.log_prob` gives
(TFP's `Categorical` over every position). Sampling draws one code at a time in a
`tf.while_loop` (TFLite's WHILE) by the Gumbel-max trick, with noise from
`tf.random.uniform` (TFLite's builtin RANDOM_UNIFORM) unless a seed is given.

References:
    van den Oord, A., Kalchbrenner, N., Vinyals, O., Espeholt, L., Graves, A. &
        Kavukcuoglu, K. (2016). Conditional Image Generation with PixelCNN Decoders.
        NeurIPS.
    van den Oord, A., Vinyals, O. & Kavukcuoglu, K. (2017). Neural Discrete
        Representation Learning. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.arguments import check_integer
from tfvae.samplers import stateless_seed

tfd = tfp.distributions

__all__ = ["gated_pixelcnn", "CodePrior", "fit_code_prior"]

_TINY = 1e-20  # the smallest uniform draw, so that the Gumbel noise is finite
_JIT_FROM = 10_000  # code grids from which `fit_code_prior` compiles with XLA


def _shift_down(x):
    """Row i gets row i - 1 (zeros on the first row)."""
    x = keras.layers.ZeroPadding2D(((1, 0), (0, 0)))(x)
    return keras.layers.Cropping2D(((0, 1), (0, 0)))(x)


def _shift_right(x):
    """Column j gets column j - 1 (zeros in the first column)."""
    x = keras.layers.ZeroPadding2D(((0, 0), (1, 0)))(x)
    return keras.layers.Cropping2D(((0, 0), (0, 1)))(x)


def _gate(x):
    a, b = keras.ops.split(x, 2, axis=-1)
    return keras.ops.tanh(a) * keras.ops.sigmoid(b)


def gated_pixelcnn(
    grid_shape: Sequence[int],
    num_codes: int,
    filters: int = 64,
    num_layers: int = 6,
    kernel_size: int = 3,
    name: str = "pixelcnn",
) -> keras.Model:
    """A gated PixelCNN from a grid of codes to the logits of each code given the earlier ones.

    Args:
        grid_shape: `(H, W)`, or `(P,)` for a grid of one row.
        num_codes: K, the codebook's size.
        filters: channels of both stacks.
        num_layers: gated layers (the first one included).
        kernel_size: odd width of the kernels, >= 3.
        name: the model's name.

    Returns:
        A functional model from int32 codes `(batch, *grid_shape)` to float32 logits
        `(batch, *grid_shape, K)`, where the logits at a position depend on the codes
        before it (raster order) only.

    Raises:
        ValueError: for a grid that is not 1-D or 2-D, or bad sizes.

    Example:

    >>> network = gated_pixelcnn((7, 7), num_codes=128)
    >>> network(tf.zeros((2, 7, 7), tf.int32)).shape
    TensorShape([2, 7, 7, 128])
    """
    grid_shape = tuple(check_integer("grid_shape", d) for d in grid_shape)
    if len(grid_shape) not in (1, 2):
        raise ValueError(f"A code grid is 1-D or 2-D. Received: grid_shape={grid_shape}")
    num_codes = check_integer("num_codes", num_codes, minimum=2)
    filters = check_integer("filters", filters)
    num_layers = check_integer("num_layers", num_layers)
    kernel_size = check_integer("kernel_size", kernel_size, minimum=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
    height, width = (1, *grid_shape) if len(grid_shape) == 1 else grid_shape
    half = kernel_size // 2
    # Horizontal kernels see `reach` codes: the current one and those to its left.
    reach = width if height == 1 else half + 1

    codes = keras.Input(grid_shape, dtype="int32", name="codes")
    x = keras.layers.Embedding(num_codes, filters, name="embed")(codes)
    x = keras.layers.Reshape((height, width, filters))(x)
    vertical, horizontal = x, _shift_right(x)
    for i in range(num_layers):
        # Vertical: rows i - half .. i (it feeds the horizontal stack a row lower).
        v = keras.layers.ZeroPadding2D(((half, 0), (half, half)))(vertical)
        v = keras.layers.Conv2D(2 * filters, (half + 1, kernel_size), name=f"vertical_{i}")(v)
        # Horizontal: codes j - reach + 1 .. j of its (right-shifted at first) input.
        h = keras.layers.ZeroPadding2D(((0, 0), (reach - 1, 0)))(horizontal)
        h = keras.layers.Conv2D(2 * filters, (1, reach), name=f"horizontal_{i}")(h)
        link = keras.layers.Conv2D(2 * filters, 1, name=f"link_{i}")(_shift_down(v))
        gated = keras.layers.Conv2D(filters, 1, name=f"out_{i}")(_gate(h + link))
        horizontal = gated if i == 0 else horizontal + gated
        vertical = _gate(v)
    x = keras.layers.Conv2D(4 * filters, 1, activation="relu", name="head")(horizontal)
    logits = keras.layers.Conv2D(num_codes, 1, name="logits")(x)
    logits = keras.layers.Reshape((*grid_shape, num_codes), name="grid_logits")(logits)
    return keras.Model(codes, logits, name=name)


@keras.saving.register_keras_serializable(package="tfvae")
class CodePrior(keras.layers.Layer):
    """An autoregressive prior p(c) over code grids, from a network like `gated_pixelcnn`.

    Args:
        network: a functional model from int32 codes `(batch, *grid_shape)` to causal
            logits `(batch, *grid_shape, K)`.
        **kwargs: standard layer arguments.

    Example:

    >>> prior = CodePrior(gated_pixelcnn((7, 7), 128))
    >>> codes = prior.sample(16)          # (16, 7, 7) int32
    >>> prior.log_prob(codes)             # (16,) nats
    """

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        network.trainable = False  # fitted once; not trained with the model that holds it
        self.network = network
        self.grid_shape = tuple(int(d) for d in network.inputs[0].shape[1:])
        self.num_codes = int(network.outputs[0].shape[-1])
        self.positions = math.prod(self.grid_shape)
        self.built = True

    def distribution(self, codes) -> tfd.Distribution:
        """p(c_i | c_<i) at every position, as one TFP distribution over the grid."""
        logits = self.network(tf.convert_to_tensor(codes, tf.int32))
        return tfd.Independent(
            tfd.Categorical(logits=logits), reinterpreted_batch_ndims=len(self.grid_shape)
        )

    def log_prob(self, codes) -> tf.Tensor:
        """log p(c) of each grid, `(batch,)`, in nats."""
        return self.distribution(codes).log_prob(tf.convert_to_tensor(codes, tf.int32))

    def sample(self, n, seed=None) -> tf.Tensor:
        """Draws `n` code grids `(n, *grid_shape)`, one position at a time.

        Args:
            n: how many (an int, or an int32 scalar tensor inside a graph).
            seed: an int for reproducible draws (stateless); None draws with
                TensorFlow's stateful `tf.random.uniform`, which LiteRT runs.
        """
        n = tf.convert_to_tensor(n, tf.int32)
        # Gumbel-max: argmax(logits + g) is a draw from Categorical(logits). The noise of
        # every position is drawn before the loop: a random op inside a TFLite WHILE body
        # restarts from its seed at every iteration, and would repeat its draws.
        noise_shape = tf.stack([n, self.positions, self.num_codes])
        if seed is None:
            uniform = tf.random.uniform(noise_shape, _TINY, 1.0)
        else:
            uniform = tf.random.stateless_uniform(noise_shape, stateless_seed(seed), _TINY, 1.0)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        flat = tf.zeros(tf.stack([n, self.positions]), tf.int32)

        def step(position, flat):
            logits = self.network(tf.reshape(flat, tf.concat([[n], self.grid_shape], 0)))
            logits = tf.reshape(logits, tf.stack([n, self.positions, self.num_codes]))
            scores = tf.gather(logits + gumbel, position, axis=1)
            drawn = tf.argmax(scores, axis=-1, output_type=tf.int32)[:, tf.newaxis]
            at = tf.one_hot(position, self.positions, dtype=tf.int32)[tf.newaxis]
            return position + 1, flat * (1 - at) + drawn * at

        _, flat = tf.while_loop(
            lambda position, _: position < self.positions,
            step,
            (tf.constant(0), flat),
            maximum_iterations=self.positions,
        )
        return tf.reshape(flat, tf.concat([[n], self.grid_shape], 0))

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def fit_code_prior(
    codes,
    num_codes: int,
    *,
    epochs: int = 15,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    verbose: int = 0,
    name: str = "code_prior",
    **network_kwargs,
) -> CodePrior:
    """Trains a gated PixelCNN on code grids by maximum likelihood; returns the prior.

    Args:
        codes: int codes `(n, *grid_shape)` in `[0, num_codes)`, e.g. a VQ-VAE's
            codes of its training images (`VQVAE.fit_sampler("pixelcnn", x)` does this).
        num_codes: K, the codebook's size.
        epochs: passes over `codes` (Adam, cross-entropy of each code given the earlier
            ones, XLA-compiled).
        batch_size: grids per step.
        learning_rate: Adam's step size.
        verbose: passed to `fit`.
        name: the prior layer's name.
        **network_kwargs: `filters`, `num_layers`, `kernel_size` of `gated_pixelcnn`.

    Returns:
        A `CodePrior`, its network frozen.

    Raises:
        ValueError: for codes that are not integers in `[0, num_codes)` on a 1-D or
            2-D grid.

    Example:

    >>> prior = fit_code_prior(vqvae_codes, num_codes=128, epochs=15)
    >>> prior.log_prob(vqvae_codes[:10])
    """
    codes = np.asarray(codes)
    num_codes = check_integer("num_codes", num_codes, minimum=2)
    if (
        codes.ndim not in (2, 3)
        or not len(codes)
        or not np.issubdtype(codes.dtype, np.integer)
        or codes.min() < 0
        or codes.max() >= num_codes
    ):
        raise ValueError(
            f"A prior over codes needs integer code grids (n, P) or (n, H, W) in [0, "
            f"{num_codes}). Received: shape={codes.shape}, dtype={codes.dtype}"
            + (f", range [{codes.min()}, {codes.max()}]" if codes.size else "")
        )
    network = gated_pixelcnn(codes.shape[1:], num_codes, **network_kwargs)

    def negative_log_prob(codes, logits):  # nats per grid, through TFP's Categorical
        grid = tfd.Independent(tfd.Categorical(logits=logits), len(network.inputs[0].shape) - 1)
        return -grid.log_prob(tf.cast(codes, tf.int32))

    # Trained through a model that shares its layers, so that the prior saved with a
    # model carries no optimizer of its own.
    trainer = keras.Model(network.inputs, network.outputs)
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=negative_log_prob,
        # XLA halves the step time on CPU; its compilation (seconds) pays off on large sets.
        jit_compile=len(codes) >= _JIT_FROM,
    )
    batch_size = min(check_integer("batch_size", batch_size), len(codes))
    codes = tf.constant(codes.astype(np.int32))
    # Whole batches only: one shape, one compilation (the remainder is another each epoch).
    batches = (
        tf.data.Dataset.from_tensor_slices((codes, codes))
        .shuffle(len(codes))
        .batch(batch_size, drop_remainder=True)
        .prefetch(2)
    )
    trainer.fit(batches, epochs=check_integer("epochs", epochs), verbose=verbose, shuffle=False)
    return CodePrior(network, name=name)  # which freezes the network
