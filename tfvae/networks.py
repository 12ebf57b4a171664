"""Builders of named Keras functional encoders and decoders.

Encoders map x of any shape to q(z|x) (`MultivariateNormalDiag`); decoders map z to
p(x|z) through the likelihood named by a string. The MLP default follows the
reference architecture 784 -> 512 -> 256 -> 20 (and back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from tfvae import choices
from tfvae.arguments import check_integer
from tfvae.layers import (
    GatedDense,
    IndependentBernoulli,
    MultivariateNormalDiag,
    OneHotCategorical,
    _event_shape_tuple,
    likelihood_layer,
)

__all__ = [
    "build_hierarchical",
    "build_stacked",
    "initialize_output_bias",
    "mlp_encoder",
    "mlp_decoder",
    "conv_encoder",
    "conv_decoder",
    "build",
    "build_classifier",
    "build_discriminator",
    "NETWORKS",
    "POSTERIORS",
]


def _positive_ints(values, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        values = ()
    if not values or any(v < 1 for v in values):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers.")
    return values


def _check_latent_dim(latent_dim) -> int:
    return check_integer("latent_dim", latent_dim)


def _image_shape(shape) -> tuple[int, int, int]:
    shape = _event_shape_tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            "Convolutional networks need images of shape (height, width, channels). "
            f"Received: shape={shape}. Add a channel axis for grey images: (28, 28, 1)."
        )
    return shape


#: Posterior names accepted by the encoder builders and the CLI.
POSTERIORS = choices.POSTERIORS


def _posterior(features, latent_dim: int, posterior: str, min_scale: float = 1e-5):
    """The encoder's head: a dense layer of posterior parameters, then q(z|x)."""
    if posterior not in POSTERIORS:
        raise ValueError(
            f"Unknown posterior {posterior!r}. Expected one of: {', '.join(POSTERIORS)}."
        )
    size = MultivariateNormalDiag.params_size(latent_dim)
    params = keras.layers.Dense(size, name="params")(features)
    if posterior == "iaf":
        from tfvae.flows import IAFPosterior

        return IAFPosterior(latent_dim, min_scale=min_scale, name="posterior")(params)
    return MultivariateNormalDiag(latent_dim, min_scale, name="posterior")(params)


def _hidden(units: int, activation: str, name: str) -> keras.layers.Layer:
    """A hidden layer: `Dense(units, activation)`, or `GatedDense(units)` for "gated"."""
    if activation == "gated":
        return GatedDense(units, name=name)
    return keras.layers.Dense(units, activation=activation, name=name)


def _label_input(num_classes):
    if num_classes is None:
        return None
    check_integer("num_classes", num_classes, 2)
    return keras.Input((num_classes,), name="label")


def _with_label(features, label):
    if label is None:
        return features
    return keras.layers.Concatenate(name="with_label")([features, label])


def _model(inputs, label, outputs, name):
    return keras.Model(inputs if label is None else [inputs, label], outputs, name=name)


def mlp_encoder(
    input_shape: Sequence[int],
    latent_dim: int = 20,
    hidden_units: Sequence[int] = (512, 256),
    activation: str = "relu",
    name: str = "encoder",
    num_classes: int | None = None,
    posterior: str = "gaussian",
    min_scale: float = 1e-5,
) -> keras.Model:
    """Returns an MLP encoder x -> q(z|x), flattening x first.

    Args:
        input_shape: shape of one example, such as `(784,)` or `(28, 28, 1)`.
        latent_dim: size of z.
        hidden_units: sizes of the hidden `Dense` layers.
        activation: their activation (a Keras name), or `"gated"` for `GatedDense`
            layers (Tomczak & Welling 2018).
        name: the model's name.
        num_classes: for a conditional VAE, the number of classes: the model then takes
            `[x, label]`, the label one-hot, and concatenates it to the flattened x.
        posterior: `"gaussian"` (`MultivariateNormalDiag`) or `"iaf"` (a diagonal
            Gaussian followed by inverse autoregressive flows, `tfvae.flows.IAFPosterior`).
        min_scale: the smallest standard deviation of q(z|x) (Tomczak & Welling bound
            the log-variance below by -6: `min_scale=exp(-3)`).

    Returns:
        A functional `keras.Model` whose output is a `tfd.MultivariateNormalDiag`.

    Raises:
        ValueError: for a bad shape, latent size or hidden sizes.

    Example:

    >>> encoder = mlp_encoder((28, 28, 1), latent_dim=20)
    >>> q = encoder(x)  # tfd.MultivariateNormalDiag, batch (n,), event (20,)
    """
    input_shape = _event_shape_tuple(input_shape)
    latent_dim = _check_latent_dim(latent_dim)
    x = inputs = keras.Input(input_shape, name="x")
    label = _label_input(num_classes)
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = _with_label(x, label)
    for i, units in enumerate(_positive_ints(hidden_units, "hidden_units")):
        x = _hidden(units, activation, f"hidden_{i}")(x)
    return _model(inputs, label, _posterior(x, latent_dim, posterior, min_scale), name)


def mlp_decoder(
    latent_dim: int,
    output_shape: Sequence[int],
    hidden_units: Sequence[int] = (256, 512),
    likelihood: str = "bernoulli",
    activation: str = "relu",
    name: str = "decoder",
    num_classes: int | None = None,
) -> keras.Model:
    """Returns an MLP decoder z -> p(x|z).

    Args:
        latent_dim: size of z.
        output_shape: shape of one example.
        hidden_units: sizes of the hidden `Dense` layers.
        likelihood: `"bernoulli"`, `"continuous_bernoulli"`, `"gaussian"` or
            `"gaussian_learned_scale"`.
        activation: activation of the hidden layers, or `"gated"` for `GatedDense`.
        name: the model's name.
        num_classes: for a conditional VAE: the model takes `[z, label]` (one-hot).

    Returns:
        A functional `keras.Model` whose output is p(x|z) with event shape `output_shape`.

    Raises:
        ValueError: for a bad shape, latent size, hidden sizes or likelihood name.

    Example:

    >>> decoder = mlp_decoder(20, (28, 28, 1), likelihood="bernoulli")
    """
    output_shape = _event_shape_tuple(output_shape)
    likelihood_out = likelihood_layer(likelihood, output_shape)
    z = inputs = keras.Input((_check_latent_dim(latent_dim),), name="z")
    label = _label_input(num_classes)
    z = _with_label(z, label)
    for i, units in enumerate(_positive_ints(hidden_units, "hidden_units")):
        z = _hidden(units, activation, f"hidden_{i}")(z)
    params = keras.layers.Dense(math.prod(output_shape), name="params")(z)
    return _model(inputs, label, likelihood_out(params), name)


def conv_encoder(
    input_shape: Sequence[int],
    latent_dim: int = 20,
    filters: Sequence[int] = (32, 64),
    dense_units: int = 256,
    name: str = "encoder",
    num_classes: int | None = None,
    posterior: str = "gaussian",
) -> keras.Model:
    """Returns a convolutional encoder for images of shape (H, W, C).

    Each entry of `filters` is a 3x3 convolution with stride 2 (halving H and W),
    followed by a dense layer and the posterior parameters.

    Args:
        input_shape: `(height, width, channels)`.
        latent_dim: size of z.
        filters: channels of the strided convolutions.
        dense_units: size of the dense layer after them.
        name: the model's name.
        num_classes: for a conditional VAE: the model takes `[x, label]` (one-hot),
            concatenated to the convolutional features.
        posterior: `"gaussian"` or `"iaf"` (see `mlp_encoder`).

    Returns:
        A functional `keras.Model` whose output is a `tfd.MultivariateNormalDiag`.

    Raises:
        ValueError: for a shape that is not 3-D, or bad sizes.

    Example:

    >>> encoder = conv_encoder((32, 32, 3), latent_dim=64)
    """
    input_shape = _image_shape(input_shape)
    latent_dim = _check_latent_dim(latent_dim)
    x = inputs = keras.Input(input_shape, name="x")
    label = _label_input(num_classes)
    for i, channels in enumerate(_positive_ints(filters, "filters")):
        x = keras.layers.Conv2D(
            channels, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}"
        )(x)
    x = _with_label(keras.layers.Flatten(name="flatten")(x), label)
    units = _positive_ints([dense_units], "dense_units")[0]
    x = keras.layers.Dense(units, "relu", name="hidden")(x)
    return _model(inputs, label, _posterior(x, latent_dim, posterior), name)


def conv_decoder(
    latent_dim: int,
    output_shape: Sequence[int],
    filters: Sequence[int] = (64, 32),
    dense_units: int = 256,
    likelihood: str = "bernoulli",
    name: str = "decoder",
    num_classes: int | None = None,
) -> keras.Model:
    """Returns a convolutional decoder z -> p(x|z) for images of shape (H, W, C).

    A dense layer makes a small feature map; each entry of `filters` is a 3x3
    transposed convolution with stride 2 (doubling H and W); a last convolution
    gives one parameter per pixel and channel. Sizes that are not multiples of
    `2 ** len(filters)` are cropped to (H, W).

    Args:
        latent_dim: size of z.
        output_shape: `(height, width, channels)`.
        filters: channels of the transposed convolutions.
        dense_units: size of the first dense layer.
        likelihood: name of the likelihood (see `mlp_decoder`).
        name: the model's name.
        num_classes: for a conditional VAE: the model takes `[z, label]` (one-hot).

    Returns:
        A functional `keras.Model` whose output is p(x|z) with event shape `output_shape`.

    Raises:
        ValueError: for a shape that is not 3-D, bad sizes or an unknown likelihood.

    Example:

    >>> decoder = conv_decoder(64, (32, 32, 3), likelihood="gaussian_learned_scale")
    """
    output_shape = _image_shape(output_shape)
    height, width, _ = output_shape
    likelihood_out = likelihood_layer(likelihood, output_shape)
    filters = _positive_ints(filters, "filters")
    factor = 2 ** len(filters)
    start_h, start_w = math.ceil(height / factor), math.ceil(width / factor)
    z = inputs = keras.Input((_check_latent_dim(latent_dim),), name="z")
    label = _label_input(num_classes)
    units = _positive_ints([dense_units], "dense_units")[0]
    x = keras.layers.Dense(units, "relu", name="hidden")(_with_label(z, label))
    x = keras.layers.Dense(start_h * start_w * filters[0], "relu", name="project")(x)
    x = keras.layers.Reshape((start_h, start_w, filters[0]), name="reshape")(x)
    return _model(inputs, label, likelihood_out(_upsample(x, filters, output_shape)), name)


def _upsample(x, filters, output_shape):
    """Strided transposed convolutions up to (H, W), a crop, and one parameter per pixel."""
    height, width, channels = output_shape
    for i, units in enumerate(filters):
        x = keras.layers.Conv2DTranspose(
            units, 3, strides=2, padding="same", activation="relu", name=f"deconv_{i}"
        )(x)
    extra_h, extra_w = x.shape[1] - height, x.shape[2] - width
    if extra_h or extra_w:
        x = keras.layers.Cropping2D(((0, extra_h), (0, extra_w)), name="crop")(x)
    return keras.layers.Conv2D(channels, 3, padding="same", name="params")(x)


#: Network names accepted by `build` and the CLI.
NETWORKS = choices.NETWORKS


def build(
    network: str,
    data_shape: Sequence[int],
    latent_dim: int = 20,
    likelihood: str = "bernoulli",
    num_classes: int | None = None,
    posterior: str = "gaussian",
) -> tuple[keras.Model, keras.Model]:
    """Returns a matching `(encoder, decoder)` pair with default sizes.

    Args:
        network: `"mlp"` or `"conv"`.
        data_shape: shape of one example.
        latent_dim: size of z.
        likelihood: name of the likelihood.
        num_classes: for a conditional VAE, the number of classes (see `mlp_encoder`).
        posterior: `"gaussian"` or `"iaf"` (see `mlp_encoder`).

    Returns:
        `(encoder, decoder)`, functional models named "encoder" and "decoder".

    Raises:
        ValueError: for an unknown network, or arguments the builders refuse.

    Example:

    >>> encoder, decoder = build("conv", (28, 28, 1), latent_dim=16)
    """
    if network == "mlp":
        return (
            mlp_encoder(data_shape, latent_dim, num_classes=num_classes, posterior=posterior),
            mlp_decoder(latent_dim, data_shape, likelihood=likelihood, num_classes=num_classes),
        )
    if network == "conv":
        return (
            conv_encoder(data_shape, latent_dim, num_classes=num_classes, posterior=posterior),
            conv_decoder(latent_dim, data_shape, likelihood=likelihood, num_classes=num_classes),
        )
    raise ValueError(f"Unknown network {network!r}. Expected one of: {', '.join(NETWORKS)}.")


def build_classifier(
    network: str,
    data_shape: Sequence[int],
    num_classes: int,
    hidden_units: Sequence[int] = (500, 500),
    name: str = "classifier",
) -> keras.Model:
    """Returns a classifier x -> q(y|x) ending in a `OneHotCategorical` layer.

    `"mlp"`: dense layers of `hidden_units` (softplus, as Kingma et al. 2014) on the
    flattened x. `"conv"`: the convolutional encoder's trunk (two 3x3 stride-2
    convolutions of 32 and 64 channels), then one dense layer of `hidden_units[0]`.

    Args:
        network: `"mlp"` or `"conv"`.
        data_shape: shape of one example.
        num_classes: number of classes, >= 2.
        hidden_units: sizes of the hidden dense layers.
        name: the model's name.

    Returns:
        A functional `keras.Model` whose output is a `tfd.OneHotCategorical`.

    Raises:
        ValueError: for an unknown network, a bad shape or sizes.

    Example:

    >>> classifier = build_classifier("mlp", (28, 28, 1), 10)
    >>> q_y = classifier(x)  # q_y.probs_parameter(): (batch, 10)
    """
    units = _positive_ints(hidden_units, "hidden_units")
    num_classes = check_integer("num_classes", num_classes, 2)
    if network not in NETWORKS:
        raise ValueError(f"Unknown network {network!r}. Expected one of: {', '.join(NETWORKS)}.")
    shape = _image_shape(data_shape) if network == "conv" else _event_shape_tuple(data_shape)
    x = inputs = keras.Input(shape, name="x")
    if network == "conv":
        for i, channels in enumerate((32, 64)):
            x = keras.layers.Conv2D(
                channels, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}"
            )(x)
        units = units[:1]
    if len(x.shape) > 2:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, size in enumerate(units):
        x = keras.layers.Dense(size, activation="softplus", name=f"hidden_{i}")(x)
    logits = keras.layers.Dense(OneHotCategorical.params_size(num_classes), name="logits")(x)
    return keras.Model(inputs, OneHotCategorical(num_classes, name="q_y")(logits), name=name)


def build_discriminator(
    latent_dim: int, units: int = 1000, depth: int = 6, name: str = "discriminator"
) -> keras.Model:
    """Returns FactorVAE's discriminator z -> logit that z was drawn from q(z), not from
    the product of its marginals (Kim & Mnih 2018: 6 layers of 1000, leaky ReLU 0.2).

    Args:
        latent_dim: size of z.
        units: units of each hidden layer.
        depth: number of hidden layers.
        name: the model's name.

    Returns:
        A functional `keras.Model` mapping `(batch, latent_dim)` to logits `(batch, 1)`.

    Raises:
        ValueError: for sizes that are not positive integers.

    Example:

    >>> discriminator = build_discriminator(10, units=1000, depth=6)
    """
    latent_dim = _check_latent_dim(latent_dim)
    units = _positive_ints([units], "units")[0]
    depth = check_integer("depth", depth)
    x = inputs = keras.Input((latent_dim,), name="z")
    for i in range(depth):
        x = keras.layers.Dense(units, name=f"hidden_{i}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"leaky_relu_{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logit")(x), name=name)


def build_vq(
    network: str,
    data_shape: Sequence[int],
    code_dim: int = 16,
    num_latents: int = 16,
    likelihood: str = "bernoulli",
) -> tuple[keras.Model, keras.Model]:
    """Returns `(encoder, decoder)` for a VQ-VAE: x -> z_e tensor, z_q -> p(x|z_q).

    `"mlp"`: z_e has `num_latents` positions of `code_dim` (hidden sizes 512, 256).
    `"conv"`: z_e is a `(H/4, W/4, code_dim)` map (strided convolutions of 32 and 64
    channels, then a 1x1 convolution); the decoder mirrors it.

    Args:
        network: `"mlp"` or `"conv"`.
        data_shape: shape of one example (`(H, W, C)` for `"conv"`).
        code_dim: D, the size of each latent vector (and of each code).
        num_latents: positions of the MLP's latent.
        likelihood: name of the likelihood.

    Returns:
        `(encoder, decoder)`, functional models named "encoder" and "decoder".

    Raises:
        ValueError: for an unknown network or bad sizes.

    Example:

    >>> encoder, decoder = build_vq("conv", (28, 28, 1), code_dim=16)  # z_e: (7, 7, 16)
    """
    code_dim = _check_latent_dim(code_dim)
    if network == "mlp":
        data_shape = _event_shape_tuple(data_shape)
        num_latents = _positive_ints([num_latents], "num_latents")[0]
        x = inputs = keras.Input(data_shape, name="x")
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate((512, 256)):
            x = keras.layers.Dense(units, "relu", name=f"hidden_{i}")(x)
        x = keras.layers.Dense(num_latents * code_dim, name="project")(x)
        z_e = keras.layers.Reshape((num_latents, code_dim), name="z_e")(x)
        encoder = keras.Model(inputs, z_e, name="encoder")
        z = z_inputs = keras.Input((num_latents, code_dim), name="z")
        z = keras.layers.Flatten(name="flatten")(z)
        for i, units in enumerate((256, 512)):
            z = keras.layers.Dense(units, "relu", name=f"hidden_{i}")(z)
        params = keras.layers.Dense(math.prod(data_shape), name="params")(z)
        likelihood_out = likelihood_layer(likelihood, data_shape)
        return encoder, keras.Model(z_inputs, likelihood_out(params), name="decoder")
    if network == "conv":
        data_shape = _image_shape(data_shape)
        x = inputs = keras.Input(data_shape, name="x")
        for i, channels in enumerate((32, 64)):
            x = keras.layers.Conv2D(
                channels, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}"
            )(x)
        z_e = keras.layers.Conv2D(code_dim, 1, name="z_e")(x)
        encoder = keras.Model(inputs, z_e, name="encoder")
        z = z_inputs = keras.Input(tuple(z_e.shape[1:]), name="z")
        likelihood_out = likelihood_layer(likelihood, data_shape)
        params = _upsample(z, (64, 32), data_shape)
        return encoder, keras.Model(z_inputs, likelihood_out(params), name="decoder")
    raise ValueError(f"Unknown network {network!r}. Expected one of: {', '.join(NETWORKS)}.")


def build_hierarchical(
    data_shape: Sequence[int],
    latent_dims: Sequence[int] = (32, 16),
    hidden_units: Sequence[int] = (512, 256),
    likelihood: str = "bernoulli",
) -> tuple[keras.Model, list[keras.Model], keras.Model]:
    """Returns `(encoder, top_down, decoder)` MLPs for a `HierarchicalVAE`.

    The bottom-up encoder has one hidden layer per stochastic layer (sizes
    `hidden_units`, bottom first), each followed by that layer's Gaussian parameters;
    each top-down model is z_{l+1} -> Dense(hidden) -> parameters of p(z_l | z_{l+1});
    the decoder is z_1 -> the hidden sizes reversed -> p(x|z_1).

    Args:
        data_shape: shape of one example.
        latent_dims: sizes of z_1 (bottom) ... z_L (top), L >= 2.
        hidden_units: one hidden size per layer.
        likelihood: name of the likelihood.

    Returns:
        `(encoder, [top_down_1, ...], decoder)`.

    Raises:
        ValueError: for fewer than two layers, or sizes that do not match.

    Example:

    >>> encoder, top_down, decoder = build_hierarchical((28, 28, 1), (32, 16))
    """
    data_shape = _event_shape_tuple(data_shape)
    latent_dims = _positive_ints(latent_dims, "latent_dims")
    hidden_units = _positive_ints(hidden_units, "hidden_units")
    if len(latent_dims) < 2 or len(hidden_units) != len(latent_dims):
        raise ValueError(
            "A hierarchical VAE needs two or more latent sizes and one hidden size per layer. "
            f"Received: latent_dims={latent_dims}, hidden_units={hidden_units}"
        )
    x = inputs = keras.Input(data_shape, name="x")
    x = keras.layers.Flatten(name="flatten")(x)
    params = []
    for level, (units, size) in enumerate(zip(hidden_units, latent_dims)):
        x = keras.layers.Dense(units, "relu", name=f"up_{level + 1}")(x)
        params.append(keras.layers.Dense(2 * size, name=f"q_params_{level + 1}")(x))
    encoder = keras.Model(inputs, params, name="encoder")
    top_down = []
    for level in range(len(latent_dims) - 1):
        z = z_in = keras.Input((latent_dims[level + 1],), name=f"z_{level + 2}")
        z = keras.layers.Dense(hidden_units[level + 1], "relu", name="hidden")(z)
        out = keras.layers.Dense(2 * latent_dims[level], name="p_params")(z)
        top_down.append(keras.Model(z_in, out, name=f"top_down_{level + 1}"))
    z = z_in = keras.Input((latent_dims[0],), name="z_1")
    for i, units in enumerate(reversed(hidden_units)):
        z = keras.layers.Dense(units, "relu", name=f"hidden_{i}")(z)
    out = keras.layers.Dense(math.prod(data_shape), name="params")(z)
    decoder = keras.Model(z_in, likelihood_layer(likelihood, data_shape)(out), name="decoder")
    return encoder, top_down, decoder


def _dense_chain(x, units, depth, activation, prefix):
    for i in range(depth):
        x = _hidden(units, activation, f"{prefix}_{i}")(x)
    return x


def build_stacked(
    data_shape: Sequence[int],
    latent_dims: Sequence[int] = (100, 50),
    hidden_units: Sequence[int] = (200, 100),
    depth: int = 2,
    activation: str = "tanh",
    likelihood: str = "bernoulli",
) -> tuple[keras.Model, list[keras.Model], keras.Model, list[keras.Model]]:
    """Returns `(encoder, top_down, decoder, bottom_up)` MLPs for bottom-up inference.

    Burda et al.'s (2016) L-layer architecture: layer l's networks, in both
    directions, are `depth` dense layers of `hidden_units[l]` units. With the defaults
    (their two-layer model): q(z_1|x) x -> 200 -> 200 -> 100, q(z_2|z_1) 100 -> 100 ->
    100 -> 50, p(z_1|z_2) 50 -> 100 -> 100 -> 100, p(x|z_1) 100 -> 200 -> 200 -> x, all tanh.
    `HierarchicalVAE(*build_stacked(...))` is that model.

    Args:
        data_shape: shape of one example.
        latent_dims: sizes of z_1 (bottom) ... z_L (top), L >= 2.
        hidden_units: hidden size of each layer's networks, bottom first.
        depth: dense layers in each network.
        activation: their activation.
        likelihood: name of the likelihood.

    Returns:
        `(encoder, top_down, decoder, bottom_up)`.

    Raises:
        ValueError: for fewer than two layers, or sizes that do not match.

    Example:

    >>> encoder, top_down, decoder, bottom_up = build_stacked((28, 28, 1))
    >>> vae = tfvae.HierarchicalVAE(encoder, top_down, decoder, bottom_up, k=50)
    """
    data_shape = _event_shape_tuple(data_shape)
    latent_dims = _positive_ints(latent_dims, "latent_dims")
    hidden_units = _positive_ints(hidden_units, "hidden_units")
    depth = check_integer("depth", depth)
    if len(latent_dims) < 2 or len(hidden_units) != len(latent_dims):
        raise ValueError(
            "A stacked VAE needs two or more latent sizes and one hidden size per layer. "
            f"Received: latent_dims={latent_dims}, hidden_units={hidden_units}"
        )
    x = inputs = keras.Input(data_shape, name="x")
    x = _dense_chain(
        keras.layers.Flatten(name="flatten")(x), hidden_units[0], depth, activation, "up"
    )
    encoder = keras.Model(
        inputs, keras.layers.Dense(2 * latent_dims[0], name="q_params")(x), name="encoder"
    )
    bottom_up, top_down = [], []
    for level in range(len(latent_dims) - 1):
        size_below, size_above, units = (
            latent_dims[level],
            latent_dims[level + 1],
            hidden_units[level + 1],
        )
        z = z_in = keras.Input((size_below,), name=f"z_{level + 1}")
        z = _dense_chain(z, units, depth, activation, "hidden")
        out = keras.layers.Dense(2 * size_above, name="q_params")(z)
        bottom_up.append(keras.Model(z_in, out, name=f"bottom_up_{level + 1}"))
        z = z_in = keras.Input((size_above,), name=f"z_{level + 2}")
        z = _dense_chain(z, units, depth, activation, "hidden")
        out = keras.layers.Dense(2 * size_below, name="p_params")(z)
        top_down.append(keras.Model(z_in, out, name=f"top_down_{level + 1}"))
    z = z_in = keras.Input((latent_dims[0],), name="z_1")
    z = _dense_chain(z, hidden_units[0], depth, activation, "hidden")
    out = keras.layers.Dense(math.prod(data_shape), name="params")(z)
    decoder = keras.Model(z_in, likelihood_layer(likelihood, data_shape)(out), name="decoder")
    return encoder, top_down, decoder, bottom_up


def initialize_output_bias(decoder: keras.Model, x, clip: float = 1e-3) -> None:
    """Sets a Bernoulli decoder's output bias to the logits of the pixels' training means.

    The decoder then starts at the data's marginal, p(x_d = 1) = mean of x_d, as in
    Burda et al. (2016): the means are clipped to [clip, 1 - clip] first.

    Args:
        decoder: a decoder ending in a `Dense` layer named `"params"` and a Bernoulli
            likelihood (those `mlp_decoder`, `build_hierarchical` and `build_stacked` build).
        x: training data, shape `(n, *data_shape)`, values in [0, 1].
        clip: how far from 0 and 1 the means are kept.

    Raises:
        ValueError: for a decoder without that layer, a likelihood other than Bernoulli,
            or data of another shape.

    Example:

    >>> initialize_output_bias(decoder, x_train)
    """
    names = [layer.name for layer in decoder.layers]
    if "params" not in names or not isinstance(decoder.layers[-1], IndependentBernoulli):
        raise ValueError(
            "initialize_output_bias needs a decoder ending in a Dense layer 'params' and a "
            f"Bernoulli likelihood. Received layers: {names}"
        )
    dense = decoder.get_layer("params")
    mean = np.asarray(x, np.float64).reshape(len(x), -1).mean(axis=0)
    if mean.shape != (dense.units,):
        raise ValueError(
            f"Expected data with {dense.units} values per example. Received: shape {np.shape(x)}"
        )
    mean = np.clip(mean, clip, 1 - clip)
    dense.bias.assign(np.log(mean / (1 - mean)).astype(np.float32))
