"""The conditional VAE: encoder and decoder both see a label y.

    log p(x|y) >= E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || p(z))

Trained on `(x, y)` pairs; `sample(n, labels)` generates examples of chosen classes.
Labels are integers in [0, num_classes) or one-hot rows; the networks receive them
one-hot (see `tfvae.networks.build(..., num_classes=...)`).

References:
    Sohn, K., Lee, H. & Yan, X. (2015). Learning Structured Output Representation using
        Deep Conditional Generative Models. NeurIPS.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfvae import networks
from tfvae.arguments import check_integer
from tfvae.models.vae import VAE

__all__ = ["ConditionalVAE", "build"]


@keras.saving.register_keras_serializable(package="tfvae")
class ConditionalVAE(VAE):
    """A VAE whose encoder takes `[x, label]` and whose decoder takes `[z, label]`.

    Args:
        encoder: functional model `[x, one-hot label] -> q(z|x, y)`.
        decoder: functional model `[z, one-hot label] -> p(x|z, y)`.
        num_classes: number of classes, >= 2.
        prior, beta, seed: as in `VAE`.

    Raises:
        ValueError: for `num_classes < 2`, networks without a label input of that size,
            and (when training, evaluating or sampling) missing or out-of-range labels.

    Example:

    >>> encoder, decoder = tfvae.networks.build("mlp", (28, 28, 1), 20, num_classes=10)
    >>> cvae = ConditionalVAE(encoder, decoder, num_classes=10)
    >>> cvae.compile(); cvae.fit(x_train, y_train, epochs=10)
    >>> sevens = cvae.sample(16, labels=7)
    """

    def __init__(self, encoder, decoder, num_classes: int, **kwargs):
        num_classes = check_integer("num_classes", num_classes, 2)
        for role, model in (("encoder", encoder), ("decoder", decoder)):
            shapes = [tuple(t.shape[1:]) for t in getattr(model, "inputs", None) or []]
            if len(shapes) != 2 or shapes[1] != (num_classes,):
                raise ValueError(
                    f"The {role} of a ConditionalVAE must take two inputs, the second a one-hot "
                    f"label of shape (batch, {num_classes}). Received input shapes: {shapes}. "
                    "Build them with tfvae.networks.build(..., num_classes=...)."
                )
        super().__init__(encoder, decoder, **kwargs)
        self.num_classes = num_classes

    def _one_hot(self, y):
        if y is None:
            raise ValueError(
                "A ConditionalVAE needs labels: train and evaluate on (x, y) pairs "
                "(fit(x, y), or a dataset of (x, label) batches) and pass labels= to sample."
            )
        y = tf.convert_to_tensor(y)
        if y.shape.rank == 2:
            return tf.cast(y, tf.float32)
        return tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), self.num_classes)

    def _encode(self, x, y=None, training=False):
        return self.encoder([x, self._one_hot(y)], training=training)

    def _decode(self, z, y=None, training=False):
        return self.decoder([z, self._one_hot(y)], training=training)

    def call(self, inputs, training=False):
        """Returns reconstructions of `inputs = (x, labels)` at the posterior mean."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("A ConditionalVAE is called on (x, labels).")
        x, y = inputs
        return self._reconstruct(x, y, training=training)

    @property
    def _default_save_signature(self):
        """None: Keras would trace `call(x)` for a SavedModel, but this model is called on
        (x, labels); `tfvae.export` writes signatures that take both."""
        return None

    def _labels(self, labels, n: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.ndim == 0:
            labels = np.full((n,), labels)
        if labels.ndim == 2 and labels.shape[1] == self.num_classes:
            labels = labels.astype(np.float32)  # one-hot rows
        elif labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                "Labels must be integers (one for all examples or one per example) or "
                f"one-hot rows of {self.num_classes}. Received: dtype={labels.dtype}, "
                f"shape={labels.shape}"
            )
        elif labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"Labels must lie in [0, {self.num_classes}). Received values in "
                f"[{labels.min()}, {labels.max()}]."
            )
        if labels.shape[0] != n:
            raise ValueError(f"Expected {n} labels. Received: {labels.shape[0]}")
        return labels

    def _label_batch(self, labels, examples):
        if labels is None:
            self._one_hot(None)  # raises the missing-labels error
        n = examples if isinstance(examples, (int, np.integer)) else len(examples)
        return self._labels(labels, int(n))

    def _checked_labels(self, x, y):
        if isinstance(x, tf.data.Dataset):
            return y
        return self._label_batch(y, x)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def build(
    data_shape, network: str, latent_dim: int, likelihood: str, *, num_classes: int, **options
) -> ConditionalVAE:
    """The registry's builder of `"conditional"`: networks that take a one-hot label."""
    encoder, decoder = networks.build(
        network, data_shape, latent_dim, likelihood, num_classes=num_classes
    )
    return ConditionalVAE(encoder, decoder, num_classes=num_classes, **options)
