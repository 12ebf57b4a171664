"""A hierarchical VAE with L stochastic layers and ladder-style top-down inference.

Generative model, top to bottom:

    p(z_L) = N(0, I),  p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), sigma_l(z_{l+1})),  p(x | z_1)

Inference: a deterministic bottom-up pass gives each layer an estimate (mu^_l, sigma^_l).
A top-down pass then combines it with the generative prior of that layer, precision-weighted:

    q(z_L | x) = N(mu^_L, sigma^_L)
    q(z_l | z_{l+1}, x) = N(mu_q, sigma_q),  sigma_q^-2 = sigma^_l^-2 + sigma_l^-2,
                                             mu_q = (mu^_l sigma^_l^-2 + mu_l sigma_l^-2) sigma_q^2

    ELBO = E_q[log p(x|z_1)] - KL(q(z_L|x) || p(z_L))
           - sum_{l<L} E_q[KL(q(z_l|.) || p(z_l|z_{l+1}))]

Each KL is TFP's analytic Gaussian KL at the sampled z_{l+1}. They are reported as
`kl_1` (bottom) ... `kl_L` (top), and `rate` is their sum.

References:
    Sønderby, C. K. et al. (2016). Ladder Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import copy

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import losses
from tfvae.models.vae import VAE, _check_functional

tfd = tfp.distributions

__all__ = ["HierarchicalVAE"]

_MIN_SCALE = 1e-4


def _gaussian_parts(params):
    loc, raw_scale = tf.split(tf.cast(params, tf.float32), 2, axis=-1)
    return loc, tf.nn.softplus(raw_scale) + _MIN_SCALE


def _combine(estimate, prior):
    """The precision-weighted combination of two Gaussians given as (loc, scale)."""
    (mu_hat, sigma_hat), (mu_p, sigma_p) = estimate, prior
    precision_hat, precision_p = sigma_hat**-2, sigma_p**-2
    variance = 1.0 / (precision_hat + precision_p)
    return (mu_hat * precision_hat + mu_p * precision_p) * variance, tf.sqrt(variance)


@keras.saving.register_keras_serializable(package="tfvae")
class HierarchicalVAE(VAE):
    """A VAE with stochastic layers z_1 (bottom) ... z_L (top), L >= 2.

    Args:
        encoder: bottom-up functional model: x -> L tensors, the l-th holding
            `2 * latent_dims[l]` parameters (loc, raw scale) of layer l's estimate.
        top_down: L - 1 functional models; `top_down[l]` maps z_{l+1} (size
            `latent_dims[l + 1]`) to the `2 * latent_dims[l]` parameters of p(z_l | z_{l+1}).
        decoder: functional model z_1 -> p(x|z_1).
        beta, seed: as in `VAE` (beta weights the whole rate).

    Raises:
        ValueError: for fewer than two layers or networks whose sizes do not fit.

    Example:

    >>> encoder, top_down, decoder = tfvae.networks.build_hierarchical((28, 28, 1), (32, 16))
    >>> vae = HierarchicalVAE(encoder, top_down, decoder)
    """

    def __init__(self, encoder, top_down, decoder, prior=None, **kwargs):
        _check_functional(encoder, "encoder")
        top_down = list(top_down)
        for i, model in enumerate(top_down):
            _check_functional(model, f"top_down[{i}]")
        self.latent_dims = tuple(int(t.shape[-1]) // 2 for t in encoder.outputs)
        if len(self.latent_dims) < 2:
            raise ValueError(
                "A HierarchicalVAE needs two or more stochastic layers: an encoder with one "
                f"output per layer. Received: {len(self.latent_dims)} output(s)."
            )
        if len(top_down) != len(self.latent_dims) - 1:
            raise ValueError(
                f"Expected {len(self.latent_dims) - 1} top-down models for "
                f"{len(self.latent_dims)} layers. Received: {len(top_down)}"
            )
        for i, model in enumerate(top_down):
            wanted_in, wanted_out = (self.latent_dims[i + 1],), (2 * self.latent_dims[i],)
            got_in, got_out = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
            if (got_in, got_out) != (wanted_in, wanted_out):
                raise ValueError(
                    f"top_down[{i}] must map z of shape {wanted_in} to {wanted_out} parameters. "
                    f"Received: {got_in} -> {got_out}"
                )
        self.top_down = top_down  # set before the base class builds (and locks) the model
        self.term_names = VAE.term_names + tuple(
            f"kl_{i + 1}" for i in range(len(self.latent_dims))
        )
        super().__init__(encoder, decoder, prior=prior, **kwargs)

    def _check_latent(self, encoder, decoder):
        bottom = self.latent_dims[0]
        if tuple(decoder.inputs[0].shape[1:]) != (bottom,):
            raise ValueError(
                f"The decoder must take z_1 of shape (batch, {bottom}). Received: decoder "
                f"input shape={tuple(decoder.inputs[0].shape)}"
            )
        return (bottom,)

    def _check_prior(self, prior):
        if prior is not None:
            raise ValueError("A HierarchicalVAE's prior is its top-down model; no `prior`.")
        return None

    def _top_prior(self):
        size = self.latent_dims[-1]
        return tfd.MultivariateNormalDiag(tf.zeros([size]), tf.ones([size]))

    def _posteriors(self, x, training=False, sample=True):
        """Runs inference top-down; returns [(q_l, p_l, z_l)] from bottom to top."""
        estimates = [_gaussian_parts(p) for p in self.encoder(x, training=training)]
        q = tfd.MultivariateNormalDiag(*estimates[-1])
        z = q.sample(seed=self._posterior_seed(training)) if sample else q.mean()
        layers = [(q, self._top_prior(), z)]
        for level in reversed(range(len(self.latent_dims) - 1)):
            prior_parts = _gaussian_parts(self.top_down[level](z, training=training))
            p = tfd.MultivariateNormalDiag(*prior_parts)
            q = tfd.MultivariateNormalDiag(*_combine(estimates[level], prior_parts))
            z = q.sample(seed=self._posterior_seed(training)) if sample else q.mean()
            layers.insert(0, (q, p, z))
        return layers

    def loss_terms(self, x, y=None, training=False):
        layers = self._posteriors(x, training=training)
        distortion = losses.distortion(self.decoder(layers[0][2], training=training), x)
        kls = [losses.rate(q, p, z) for q, p, z in layers]
        terms = self.terms(distortion, tf.add_n(kls))
        return {**terms, **{f"kl_{i + 1}": kl for i, kl in enumerate(kls)}}

    def call(self, x, training=False):
        """Returns the decoder mean at the posterior means, taken top-down."""
        z_1 = self._posteriors(x, training=training, sample=False)[0][2]
        return self.decoder(z_1, training=training).mean()

    def encode(self, x):
        """Returns the posteriors [q(z_1|.), ..., q(z_L|x)] at the posterior means above them."""
        return [q for q, _, _ in self._posteriors(self._checked(x), sample=False)]

    def _ancestral(self, n, noise):
        z = noise(n, self.latent_dims[-1])
        for level in reversed(range(len(self.latent_dims) - 1)):
            loc, scale = _gaussian_parts(self.top_down[level](z))
            z = loc + scale * noise(n, self.latent_dims[level])
        return z

    def _sample(self, n, y, seed, output):
        generator = keras.random.SeedGenerator(seed)
        z_1 = self._ancestral(
            n, lambda rows, size: keras.random.normal((rows, size), seed=generator)
        )
        likelihood = self.decoder(z_1)
        return likelihood.mean() if output == "mean" else tf.cast(likelihood.sample(), tf.float32)

    def stateful_latent_sample(self, n):
        return self._ancestral(n, lambda rows, size: tf.random.normal(tf.stack([rows, size])))

    def get_config(self):
        config = super().get_config()
        config["top_down"] = [keras.saving.serialize_keras_object(m) for m in self.top_down]
        return config

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)
        config["top_down"] = [keras.saving.deserialize_keras_object(m) for m in config["top_down"]]
        return super().from_config(config)
