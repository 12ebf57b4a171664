"""Semi-supervised learning with a VAE: M2, and M1+M2 on a trained VAE's latents.

The generative model is p(y) p(z) p(x|y,z), p(y) uniform over K classes; inference is
a classifier q(y|x) and q(z|x,y) (Kingma et al. 2014). With the conditional VAE's bound

    L(x, y) = E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z))

a labelled example (eq. 6) and an unlabelled one (eq. 7, y summed out exactly, the K
classes in one batched pass) cost

    labelled:    -L(x, y) + alpha * (-log q(y|x))
    unlabelled:  U(x) = sum_y q(y|x) (-L(x, y)) - H(q(y|x))

The paper's objective (eq. 9) is J = sum_labelled + sum_unlabelled + a * E_labelled[-log
q(y|x)] with a = 0.1 N. Per example, as `fit` averages it, each labelled example's
cross-entropy then weighs `alpha = 0.1 N / N_labelled` (`paper_alpha`), which is how the
authors' code weighs it. Label -1 marks an unlabelled example; both kinds share batches.

The `elbo` metric is a bound itself: on log p(x | y) for a labelled example, L(x, y), the
conditional VAE's (and `log_importance_weights`'); on log p(x) for an unlabelled one,
-U(x) - log K, whose `label_rate` is KL(q(y|x) || p(y)) (0 for a labelled example).

M1+M2 (the paper's stacked model): M2 is trained on the latents of a trained VAE, M1,
which stays frozen (`features=`); classify, sample and decode still take and give
images. As in the authors' code, training draws the features from q(z1|x) and keeps
the dimensions M1 uses (`feature_dims`); evaluation takes their means.

References:
    Kingma, D. P., Rezende, D. J., Mohamed, S. & Welling, M. (2014). Semi-Supervised
        Learning with Deep Generative Models. NeurIPS.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfvae import losses, networks
from tfvae.arguments import check_integer, check_number
from tfvae.layers import OneHotCategorical
from tfvae.models.conditional import ConditionalVAE
from tfvae.models.vae import VAE, _output_layer, _tiled
from tfvae.validation import check_array

__all__ = ["SemiSupervisedVAE", "paper_alpha", "used_dimensions", "build"]

#: The paper's alpha / N (Kingma et al. 2014, section 4.1: alpha = 0.1 N).
PAPER_ALPHA_FRACTION = 0.1


def paper_alpha(num_examples: int, num_labelled: int, fraction: float = PAPER_ALPHA_FRACTION):
    """The per-labelled-example weight of -log q(y|x) that the paper's alpha = 0.1 N means.

    Args:
        num_examples: N, the training examples (labelled and unlabelled).
        num_labelled: how many of them have labels.
        fraction: alpha / N (0.1 in the paper).

    Returns:
        `fraction * num_examples / num_labelled` (60 for MNIST with 100 labels; 0.1 when
        every example is labelled).

    Raises:
        ValueError: unless `1 <= num_labelled <= num_examples`.
    """
    num_examples = check_integer("num_examples", num_examples)
    num_labelled = check_integer("num_labelled", num_labelled)
    if num_labelled > num_examples:
        raise ValueError(
            f"`num_labelled` must be at most `num_examples` ({num_examples}). "
            f"Received: num_labelled={num_labelled}"
        )
    return check_number("fraction", fraction) * num_examples / num_labelled


def used_dimensions(m1: VAE, x, threshold: float = 0.01) -> list[int]:
    """The latent dimensions of M1 that carry information: those whose posterior mean
    varies over `x` by more than `threshold` (the active units of Burda et al. 2016;
    Kingma et al.'s code keeps a standard deviation above 0.1 over 1,000 images).

    Args:
        m1: a trained unconditional `tfvae.VAE` with a Gaussian posterior.
        x: images, `(n, *m1.data_shape)`, n >= 2 (1,000 is plenty).
        threshold: the variance above which a dimension is used.

    Returns:
        The used dimensions, in order (all of them if none passes).

    Example:

    >>> dims = used_dimensions(m1, x_train[:1000])
    >>> m12 = tfvae.models.build("semi_supervised", (28, 28, 1), latent_dim=50,
    ...                          features=m1, feature_dims=dims)
    """
    x = check_array(x, m1.data_shape, m1.data_support)
    if len(x) < 2:
        raise ValueError(f"`x` must hold at least 2 examples. Received: {len(x)}")
    means = np.concatenate(
        [m1.central_latent(x[i : i + 500]).numpy() for i in range(0, len(x), 500)]
    )
    used = np.flatnonzero(means.astype(np.float64).var(axis=0) > threshold).tolist()
    return used or list(range(m1.latent_dim))


@keras.saving.register_keras_serializable(package="tfvae")
class SemiSupervisedVAE(ConditionalVAE):
    """M2: a conditional VAE with a classifier q(y|x) that fills in missing labels.

    Train it with `fit(x, y)` where `y[i] = -1` for the unlabelled examples
    (`tfvae.data.labelled_subset` makes such labels). The other tools take labels as
    for `ConditionalVAE`; `classify(x)` predicts them.

    Metrics: `loss`, `distortion` and `rate` (expected under q(y|x) when the label is
    summed out), `label_rate`, `elbo`, and over the labelled examples only,
    `cross_entropy` (-log q(y|x)) and `error` (the classifier's error rate).

    Args:
        encoder: functional model `[x, one-hot y] -> q(z|x, y)`.
        decoder: functional model `[z, one-hot y] -> p(x|z, y)`.
        classifier: functional model `x -> q(y|x)`, ending in
            `tfvae.layers.OneHotCategorical(num_classes)`.
        num_classes: K, >= 2.
        alpha: weight of each labelled example's -log q(y|x), >= 0 (see `paper_alpha`).
        features: for M1+M2, a trained `tfvae.VAE` (M1) whose latents the networks
            model; it is frozen. None for M2 on x itself.
        feature_dims: the dimensions of M1's latent that are used (default all).
        prior, beta, seed, samplers: as in `VAE`.

    Raises:
        TypeError / ValueError: for networks that do not fit together, a classifier
            that does not end in a `OneHotCategorical` of `num_classes`, and labels
            outside [-1, K) in training (or outside [0, K) elsewhere).

    Example:

    >>> m2 = tfvae.models.build("semi_supervised", (28, 28, 1), latent_dim=50,
    ...                         labelled_fraction=100 / 60000)  # alpha = 0.1 N
    >>> m2.compile(); m2.fit(x_train, tfvae.data.labelled_subset(y_train, 100), epochs=50)
    >>> error = np.mean(m2.classify(x_test) != y_test)
    """

    term_names = (
        "loss",
        "distortion",
        "rate",
        "label_rate",
        "elbo",
        "cross_entropy",
        "error",
    )
    term_weights = {"cross_entropy": "labelled", "error": "labelled"}
    classifies = True
    _layer_config_keys = VAE._layer_config_keys + ("classifier", "features")

    def __init__(
        self,
        encoder,
        decoder,
        classifier,
        num_classes: int,
        alpha: float = PAPER_ALPHA_FRACTION,
        features=None,
        feature_dims=None,
        **kwargs,
    ):
        layer = _output_layer(classifier, "classifier")
        if not isinstance(layer, OneHotCategorical) or layer.num_classes != num_classes:
            raise TypeError(
                "The classifier must end in tfvae.layers.OneHotCategorical"
                f"({num_classes}). Received: its last layer is {type(layer).__name__} "
                f"{layer.name!r}"
            )
        inputs = tuple(encoder.inputs[0].shape[1:]) if getattr(encoder, "inputs", None) else ()
        if tuple(classifier.inputs[0].shape[1:]) != inputs:
            raise ValueError(
                f"The classifier must take inputs of shape {inputs}, as the encoder does. "
                f"Received: {tuple(classifier.inputs[0].shape[1:])}"
            )
        if features is not None:
            size = features.latent_dim if feature_dims is None else len(feature_dims)
            if inputs != (size,):
                raise ValueError(
                    f"With M1's latents as features the networks must take inputs of shape "
                    f"({size},), the dimensions used. Received: {inputs}"
                )
        # Set before the base class builds (and locks) the model, so they are tracked.
        self.classifier = classifier
        self.features = self._check_features(features, feature_dims)
        self.feature_dims = None if feature_dims is None else tuple(int(d) for d in feature_dims)
        super().__init__(encoder, decoder, num_classes, **kwargs)
        self.alpha = check_number("alpha", alpha)
        if self.features is not None:  # the model still takes and gives x
            self.data_shape = self.features.data_shape
            # p(x|z, y) ends in M1's likelihood (already tracked through M1: set plainly).
            object.__setattr__(self, "likelihood", self.features.likelihood)

    @staticmethod
    def _check_features(features, feature_dims):
        if features is None:
            if feature_dims is not None:
                raise ValueError("`feature_dims` needs `features` (the M1 model).")
            return None
        _check_m1(features)
        if feature_dims is not None:
            dims = np.asarray(feature_dims)
            if dims.ndim != 1 or not len(dims) or dims.min() < 0:
                raise ValueError(f"`feature_dims` must list latent dimensions. Received: {dims}")
            if dims.max() >= features.latent_dim or len(set(dims.tolist())) != len(dims):
                raise ValueError(
                    f"`feature_dims` must be distinct dimensions below M1's latent size "
                    f"{features.latent_dim}. Received: {dims.tolist()}"
                )
        # An uncompiled copy: M1's optimizer state has no use here (and frozen, its
        # optimizer would not match the saved one when the model is loaded).
        frozen = type(features).from_config(features.get_config())
        frozen.set_weights(features.get_weights())
        frozen.trainable = False
        return frozen

    @property
    def model_input_shape(self) -> tuple[int, ...]:
        """What the encoder and classifier take: x's shape, or M1's used latent dimensions."""
        return tuple(self.encoder.inputs[0].shape[1:])

    _no_density_reason = (
        "M1+M2 models M1's latents of x, not x (its `elbo` is a bound over those latents)"
    )

    @property
    def has_density(self) -> bool:
        """False for M1+M2: it models M1's latents, so it has no importance weights of x."""
        return self.features is None

    # ------------------------------------------------------------------ M1's latents
    def _inputs(self, x, training=False):
        """What the networks take: x itself, or M1's latents of x (drawn when training)."""
        if self.features is None:
            return x
        posterior = self.features._encode(x)
        if training:
            z1 = posterior.sample(seed=self._posterior_seed(True))
        else:
            z1 = posterior.mean()
        if self.feature_dims is not None:
            z1 = tf.gather(z1, list(self.feature_dims), axis=-1)
        return tf.stop_gradient(z1)

    def _to_data(self, likelihood):
        """p(x|z, y) from the networks' p(f|z, y): M1 decodes the mean of its latent."""
        if self.features is None:
            return likelihood
        f = likelihood.mean()
        if self.feature_dims is not None:  # the unused dimensions at their prior mean, 0
            batch = tf.shape(f)[0]
            f = tf.transpose(
                tf.scatter_nd(
                    tf.constant(self.feature_dims, tf.int32)[:, None],
                    tf.transpose(f),
                    tf.stack([self.features.latent_dim, batch]),
                )
            )
        return self.features._decode(f)

    def _encode(self, x, y=None, training=False):
        return self.encoder([self._inputs(x, training), self._one_hot(y)], training=training)

    def _decode(self, z, y=None, training=False):
        return self._to_data(self._decode_inputs(z, y, training))

    def _decode_inputs(self, z, y=None, training=False):
        """p(f|z, y) over what the networks model (x itself for M2)."""
        return self.decoder([z, self._one_hot(y)], training=training)

    # ------------------------------------------------------------------ classifier
    def class_probabilities(self, x) -> tf.Tensor:
        """Returns q(y|x) as probabilities, `(batch, num_classes)` float32.

        Raises:
            ValueError / TypeError: for data of the wrong shape, type or range.
        """
        x = self._checked(x)
        return self.classifier(self._inputs(x), training=False).probs_parameter()

    def classify(self, x, batch_size: int = 1000) -> np.ndarray:
        """Returns the most probable class of each example of `x`, `(n,)` int64.

        Args:
            x: the data, `(n, *data_shape)`.
            batch_size: examples per pass.

        Raises:
            ValueError / TypeError: for data of the wrong shape, type or range.

        Example:

        >>> test_error = np.mean(m2.classify(x_test) != y_test)
        """
        x = check_array(x, self.data_shape, self.data_support)
        batch_size = check_integer("batch_size", batch_size)
        parts = [
            np.argmax(self.class_probabilities(x[i : i + batch_size]).numpy(), axis=-1)
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts).astype(np.int64)

    # ------------------------------------------------------------------ objective
    def _class_terms(self, f, training):
        """-log p(f|y,z) and KL(q(z|f,y) || p(z)) for every class y: two `(K, batch)`."""
        k, batch = self.num_classes, tf.shape(f)[0]
        classes = tf.repeat(tf.range(k), batch)  # class-major: K copies of the batch
        one_hot = tf.one_hot(classes, k)
        posterior = self.encoder([_tiled(f, k), one_hot], training=training)
        z = posterior.sample(seed=self._posterior_seed(training))
        likelihood = self.decoder([z, one_hot], training=training)
        distortion = losses.distortion(likelihood, _tiled(f, k))
        rate = losses.rate(posterior, self.prior_distribution(), z)
        shape = tf.stack([k, batch])
        return tf.reshape(distortion, shape), tf.reshape(rate, shape)

    def _split_labels(self, y, batch):
        """(class index, 1.0 where labelled): y as integers with -1, or one-hot rows."""
        if y is None:
            return tf.zeros([batch], tf.int32), tf.zeros([batch], tf.float32)
        y = tf.convert_to_tensor(y)
        if y.shape.rank == 2:
            labelled = tf.cast(tf.reduce_sum(y, axis=-1) > 0, tf.float32)
            return tf.argmax(y, axis=-1, output_type=tf.int32), labelled
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        return tf.maximum(y, 0), tf.cast(y >= 0, tf.float32)

    def loss_terms(self, x, y=None, training: bool = False) -> dict[str, tf.Tensor]:
        """The per-example terms of the objective above; `y` may hold -1 (unlabelled).

        Returns:
            A dict of `(batch,)` tensors: `loss`, `distortion`, `rate`, `label_rate`,
            `elbo`, `cross_entropy`, `error` and `labelled` (1.0 or 0.0, the weight
            of the last two).
        """
        f = self._inputs(x, training)
        classes, labelled = self._split_labels(y, tf.shape(x)[0])
        distortions, rates = self._class_terms(f, training)  # (K, batch)
        q_y = self.classifier(f, training=training)
        probs = q_y.probs_parameter()  # (batch, K)
        log_probs = tf.math.log_softmax(q_y.logits_parameter(), axis=-1)
        # Labelled: the terms of the given class.
        picked = tf.stack([classes, tf.range(tf.shape(classes)[0])], axis=-1)
        cross_entropy = -tf.gather(log_probs, classes, batch_dims=1)
        error = tf.cast(tf.argmax(probs, -1, output_type=tf.int32) != classes, tf.float32)
        # Unlabelled: the terms expected under q(y|x), and KL(q(y|x) || uniform).
        log_k = math.log(self.num_classes)
        kl_y = tf.reduce_sum(probs * log_probs, axis=-1) + log_k

        def either(given, summed_out):
            return labelled * given + (1.0 - labelled) * summed_out

        distortion = either(
            tf.gather_nd(distortions, picked), tf.reduce_sum(tf.transpose(probs) * distortions, 0)
        )
        rate = either(tf.gather_nd(rates, picked), tf.reduce_sum(tf.transpose(probs) * rates, 0))
        label_rate = (1.0 - labelled) * kl_y
        # -L(x, y) + alpha * CE when labelled; U(x) = sum_y q (-L) - H = ... + KL_y - log K.
        loss = distortion + self.beta * rate + label_rate
        loss += labelled * self.alpha * cross_entropy - (1.0 - labelled) * log_k
        return {
            "loss": loss,
            "distortion": distortion,
            "rate": rate,
            "label_rate": label_rate,
            "elbo": -(distortion + rate + label_rate),
            "cross_entropy": cross_entropy,
            "error": error,
            "labelled": labelled,
        }

    # ------------------------------------------------------------------ labels
    def _checked_labels(self, x, y):
        """Training labels: integers in [-1, K) (-1: no label), one per example."""
        if isinstance(x, tf.data.Dataset):
            return y
        if y is None:
            raise ValueError(
                "A SemiSupervisedVAE trains on (x, labels), with -1 for unlabelled examples "
                "(tfvae.data.labelled_subset makes them); received no labels."
            )
        labels = np.asarray(y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                "Training labels must be integers, one per example (-1: no label). "
                f"Received: dtype={labels.dtype}, shape={labels.shape}"
            )
        if labels.min() < -1 or labels.max() >= self.num_classes:
            raise ValueError(
                f"Training labels must lie in [-1, {self.num_classes}) (-1: no label). "
                f"Received values in [{labels.min()}, {labels.max()}]."
            )
        n = len(x[0]) if isinstance(x, tuple) else len(x)
        if len(labels) != n:
            raise ValueError(f"Expected {n} labels, one per example. Received: {len(labels)}")
        return labels

    # ------------------------------------------------------------------ saving
    def get_config(self):
        config = super().get_config()
        config.update(
            classifier=keras.saving.serialize_keras_object(self.classifier),
            alpha=self.alpha,
            features=None
            if self.features is None
            else keras.saving.serialize_keras_object(self.features),
            feature_dims=None if self.feature_dims is None else list(self.feature_dims),
        )
        return config


def build(
    data_shape,
    network: str,
    latent_dim: int,
    likelihood: str,
    *,
    num_classes: int,
    alpha: float = PAPER_ALPHA_FRACTION,
    labelled_fraction: float = 1.0,
    features: VAE | None = None,
    feature_dims=None,
    **options,
) -> SemiSupervisedVAE:
    """The registry's builder of `"semi_supervised"`: M2, or M1+M2 given `features`.

    `alpha` is the paper's alpha / N and `labelled_fraction` is N_labelled / N, so each
    labelled example's cross-entropy weighs `alpha / labelled_fraction` (`paper_alpha`).

    M2 takes the networks of `network` on x; M1+M2 takes MLPs on M1's latents (the
    `feature_dims` used) with a Gaussian likelihood of learned scale, whatever
    `network` and `likelihood` say (those were M1's).
    """
    if features is not None:
        _check_m1(features)
        size = features.latent_dim if feature_dims is None else len(feature_dims)
        data_shape, network, likelihood = (size,), "mlp", "gaussian_learned_scale"
    encoder, decoder = networks.build(
        network, data_shape, latent_dim, likelihood, num_classes=num_classes
    )
    classifier = networks.build_classifier(network, data_shape, num_classes)
    return SemiSupervisedVAE(
        encoder,
        decoder,
        classifier,
        num_classes,
        alpha=check_number("alpha", alpha) / _fraction(labelled_fraction),
        features=features,
        feature_dims=feature_dims,
        **options,
    )


def _fraction(value) -> float:
    value = check_number("labelled_fraction", value)
    if not 0 < value <= 1:
        raise ValueError(f"`labelled_fraction` must lie in (0, 1]. Received: {value}")
    return value


def _check_m1(features) -> None:
    if not isinstance(features, VAE) or not features.has_gaussian_posterior:
        raise TypeError(
            "`features` must be a trained tfvae.VAE with a Gaussian posterior (M1). "
            f"Received: {type(features).__name__}"
        )
    if features.is_conditional:
        raise ValueError("`features` must be an unconditional VAE (M1).")
