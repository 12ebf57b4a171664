"""Latent samplers fitted after training, in place of the prior: ex-post GMM and two-stage.

A VAE's prior p(z) and its aggregate posterior q(z) = E_x q(z|x) differ after
training (the "holes" of the latent space), and decoding prior draws that land where
q(z) has little mass gives poor samples. Two remedies fit a second density to the
codes of the training data and sample from it instead:

- **Ex-post density estimation** (Ghosh et al. 2020): a Gaussian mixture (10
  components, full covariances) fitted to the posterior means of the training data.
- **Two-stage VAE** (Dai & Wipf 2019): a second, small VAE trained on those codes
  (standardised); u ~ N(0, I), a code z ~ p(z|u) from the second VAE, then x from the
  first.

`GaussianMixtureSampler` and `TwoStageSampler` are Keras layers that hold what was
fitted (so they are saved with the model in `.keras` files) and draw `n` codes, with
TensorFlow's stateful random ops when no seed is given (builtin TFLite ops) and TFP's
stateless sampling with a seed. `VAE.fit_sampler` fits them; `VAE.sample(n,
sampler="gmm")` uses them.

References:
    Ghosh, P., Sajjadi, M. S. M., Vergari, A., Black, M. & Schölkopf, B. (2020). From
        Variational to Deterministic Autoencoders. ICLR.
    Dai, B. & Wipf, D. (2019). Diagnosing and Enhancing VAE Models. ICLR.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import choices
from tfvae.arguments import check_integer

tfd = tfp.distributions

__all__ = [
    "GaussianMixtureSampler",
    "TwoStageSampler",
    "fit_gaussian_mixture",
    "stateless_seed",
    "SAMPLERS",
]

#: The samplers `VAE.sample` takes: the model's own prior, and the fitted ones
#: (`"pixelcnn"`, a prior over a VQ-VAE's codes, is in `tfvae.code_prior`).
SAMPLERS = choices.SAMPLERS


def stateless_seed(seed, stream: int = 0):
    """An int seed as the stateless seed pair `[seed, stream]`, so the same int gives the
    same draws (TFP treats a bare int as a stateful op seed, which draws anew on every
    call); anything else (a seed tensor) is returned as it is."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), stream], tf.int32)
    return seed


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianMixtureSampler(keras.layers.Layer):
    """A Gaussian mixture over codes: `num_components` full-covariance components.

    Args:
        latent_dim: the size of a code.
        num_components: the number of components.
        **kwargs: standard layer arguments.

    Example:

    >>> sampler = GaussianMixtureSampler(20, 10)
    >>> sampler.set_mixture(*fit_gaussian_mixture(codes, 10))
    >>> z = sampler.sample(64)
    """

    def __init__(self, latent_dim: int, num_components: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = check_integer("latent_dim", latent_dim)
        self.num_components = check_integer("num_components", num_components)
        k, d = self.num_components, self.latent_dim
        self.logits = self.add_weight(
            name="logits", shape=(k,), initializer="zeros", trainable=False
        )
        self.means = self.add_weight(
            name="means", shape=(k, d), initializer="zeros", trainable=False
        )
        eye = np.broadcast_to(np.eye(d, dtype=np.float32), (k, d, d))
        self.scale_tril = self.add_weight(
            name="scale_tril",
            shape=(k, d, d),
            initializer=keras.initializers.Constant(eye),
            trainable=False,
        )
        self.built = True

    def set_mixture(self, weights, means, covariances) -> None:
        """Sets the mixture's weights `(K,)`, means `(K, d)` and covariances `(K, d, d)`.

        Raises:
            ValueError: for arrays of other shapes, weights that are not positive, or
                covariances that are not positive definite.
        """
        k, d = self.num_components, self.latent_dim
        weights = np.asarray(weights, np.float64)
        means = np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        if weights.shape != (k,) or means.shape != (k, d) or covariances.shape != (k, d, d):
            raise ValueError(
                f"A mixture of {k} components over codes of size {d} needs weights {(k,)}, "
                f"means {(k, d)} and covariances {(k, d, d)}. Received: {weights.shape}, "
                f"{means.shape} and {covariances.shape}"
            )
        if not (weights > 0).all() or not np.isfinite(means).all():
            raise ValueError("The mixture's weights must be positive and its means finite.")
        try:
            tril = np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError:
            raise ValueError("The mixture's covariances must be positive definite.") from None
        self.logits.assign(np.log(weights / weights.sum()).astype(np.float32))
        self.means.assign(means.astype(np.float32))
        self.scale_tril.assign(tril.astype(np.float32))

    def distribution(self) -> tfd.Distribution:
        """The mixture as a TFP distribution over codes of shape `(latent_dim,)`."""
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=self.logits),
            tfd.MultivariateNormalTriL(loc=self.means, scale_tril=self.scale_tril),
        )

    def sample(self, n, seed=None) -> tf.Tensor:
        """Draws `n` codes `(n, latent_dim)`; stateful random ops when `seed` is None."""
        if seed is not None:
            return self.distribution().sample(n, seed=stateless_seed(seed))
        component = tf.random.categorical(self.logits[tf.newaxis], n, dtype=tf.int32)[0]
        noise = tf.random.normal(tf.stack([n, self.latent_dim]))
        scale = tf.gather(self.scale_tril, component)
        return tf.gather(self.means, component) + tf.linalg.matvec(scale, noise)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "num_components": self.num_components,
        }


def fit_gaussian_mixture(codes, num_components: int = 10, seed: int = 0):
    """Fits a full-covariance Gaussian mixture to codes `(n, d)` (scikit-learn's EM).

    Returns:
        `(weights, means, covariances)` as NumPy arrays.

    Raises:
        ValueError: for codes that are not finite `(n, d)` with n >= num_components.
    """
    from sklearn.mixture import GaussianMixture

    codes = np.asarray(codes, np.float64)
    num_components = check_integer("num_components", num_components)
    if codes.ndim != 2 or len(codes) < num_components or not np.isfinite(codes).all():
        raise ValueError(
            f"A mixture of {num_components} components needs finite codes of shape (n, d) "
            f"with n >= {num_components}. Received: shape={codes.shape}"
        )
    mixture = GaussianMixture(
        num_components, covariance_type="full", reg_covar=1e-5, random_state=seed, n_init=1
    )
    mixture.fit(codes)
    return mixture.weights_, mixture.means_, mixture.covariances_


@keras.saving.register_keras_serializable(package="tfvae")
class TwoStageSampler(keras.layers.Layer):
    """The second stage of a two-stage VAE: u ~ N(0, I), then a code z ~ p(z|u).

    The second VAE is trained on standardised codes, (z - shift) / scale per dimension,
    so that its learned likelihood scale starts where the codes' spread is. A draw is
    ancestral: u ~ N(0, I), z ~ p(z|u) (the second decoder's Gaussian, with its learned
    scale), then `z * scale + shift`. Dai & Wipf decode the mean of p(z|u), which is
    the same once that scale has shrunk to zero; short second stages leave it larger,
    and the mean alone then draws codes less spread out than the data's.

    Args:
        decoder: the second VAE's decoder, a functional model from u `(inner_dim,)` to a
            tfvae distribution layer over codes `(latent_dim,)`; its mean is the code.
        **kwargs: standard layer arguments.

    Example:

    >>> sampler = TwoStageSampler(second_vae.decoder)
    >>> sampler.set_standardization(codes.mean(0), codes.std(0))
    >>> z = sampler.sample(64)
    """

    def __init__(self, decoder: keras.Model, **kwargs):
        super().__init__(**kwargs)
        decoder.trainable = False  # fitted once; not trained with the model that holds it
        self.decoder = decoder
        self.inner_dim = int(decoder.inputs[0].shape[-1])
        self.latent_dim = int(decoder.outputs[0].shape[-1])
        self.shift = self.add_weight(
            name="shift", shape=(self.latent_dim,), initializer="zeros", trainable=False
        )
        self.scale = self.add_weight(
            name="scale", shape=(self.latent_dim,), initializer="ones", trainable=False
        )
        self.built = True

    def set_standardization(self, shift, scale) -> None:
        """Sets the per-dimension `shift` and `scale` the codes were standardised with.

        Raises:
            ValueError: for arrays of another shape, or a scale that is not positive.
        """
        shift, scale = np.asarray(shift, np.float32), np.asarray(scale, np.float32)
        d = self.latent_dim
        if shift.shape != (d,) or scale.shape != (d,):
            raise ValueError(
                f"Codes of size {d} need a shift and a scale of shape {(d,)}. Received: "
                f"{shift.shape} and {scale.shape}"
            )
        if not np.isfinite(shift).all() or not (np.isfinite(scale) & (scale > 0)).all():
            raise ValueError("The shift must be finite and the scale positive and finite.")
        self.shift.assign(shift)
        self.scale.assign(scale)

    def sample(self, n, seed=None) -> tf.Tensor:
        """Draws `n` codes `(n, latent_dim)`; stateful random ops when `seed` is None."""
        # u, and the noise of p(z|u), drawn at once: ancestral sampling of the second VAE.
        shape = tf.stack([n, self.inner_dim + self.latent_dim])
        if seed is None:
            noise = tf.random.normal(shape)
        else:
            noise = tf.random.stateless_normal(shape, seed=stateless_seed(seed))
        u, eps = noise[:, : self.inner_dim], noise[:, self.inner_dim :]
        codes = self.decoder(u)
        return (codes.mean() + codes.stddev() * eps) * self.scale + self.shift

    def get_config(self):
        return {
            **super().get_config(),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)
