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

from tfvae import losses, networks
from tfvae.models.vae import VAE, ImportanceSample, _check_functional, _tiled

tfd = tfp.distributions

__all__ = ["HierarchicalVAE", "build"]

_MIN_SCALE = 1e-4


def _gaussian_parts(params):
    loc, raw_scale = tf.split(tf.cast(params, tf.float32), 2, axis=-1)
    return loc, tf.nn.softplus(raw_scale) + _MIN_SCALE


def _on_last_axis(model, z):
    """Applies a Keras model on vectors to `z` with any leading axes (such as samples)."""
    flat = model(tf.reshape(z, [-1, z.shape[-1]]))
    return tf.reshape(flat, tf.concat([tf.shape(z)[:-1], [flat.shape[-1]]], 0))


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

    def _posteriors(self, x, training=False, sample=True, seed=None):
        """Runs inference top-down; returns [(q_l, p_l, z_l)] from bottom to top.

        Each z_l is a draw from q_l (`sample`, with one seed split over the layers)
        or its mean.
        """
        layers_count = len(self.latent_dims)
        seeds = tfp.random.split_seed(seed, n=layers_count) if sample else [None] * layers_count
        pick = (lambda q, s: q.sample(seed=s)) if sample else (lambda q, s: q.mean())  # noqa: E731
        estimates = [_gaussian_parts(p) for p in self.encoder(x, training=training)]
        q = tfd.MultivariateNormalDiag(*estimates[-1])
        z = pick(q, seeds[-1])
        layers = [(q, self._top_prior(), z)]
        for level in reversed(range(layers_count - 1)):
            prior_parts = _gaussian_parts(self.top_down[level](z, training=training))
            p = tfd.MultivariateNormalDiag(*prior_parts)
            q = tfd.MultivariateNormalDiag(*_combine(estimates[level], prior_parts))
            z = pick(q, seeds[level])
            layers.insert(0, (q, p, z))
        return layers

    def loss_terms(self, x, y=None, training=False):
        layers = self._posteriors(x, training=training, seed=self._posterior_seed(training))
        distortion = losses.distortion(self.decoder(layers[0][2], training=training), x)
        kls = [losses.rate(q, p, z) for q, p, z in layers]
        terms = self.terms(distortion, tf.add_n(kls))
        return {**terms, **{f"kl_{i + 1}": kl for i, kl in enumerate(kls)}}

    def _encode(self, x, y=None, training=False):
        """The joint q(z_L, ..., z_1 | x) as a `tfd.JointDistributionCoroutine`, top first.

        Its samples are tuples `(z_L, ..., z_1)`; `decode` takes one (it reads z_1).
        """
        estimates = [_gaussian_parts(p) for p in self.encoder(x, training=training)]
        top = len(self.latent_dims)

        def layers():
            z = yield tfd.JointDistributionCoroutine.Root(
                tfd.MultivariateNormalDiag(*estimates[-1], name=f"z_{top}")
            )
            for level in reversed(range(top - 1)):
                prior_parts = _gaussian_parts(_on_last_axis(self.top_down[level], z))
                z = yield tfd.MultivariateNormalDiag(
                    *_combine(estimates[level], prior_parts), name=f"z_{level + 1}"
                )

        return tfd.JointDistributionCoroutine(layers)

    def _central_latent(self, x, y=None, training=False):
        """z_1 at the posterior means, taken top-down."""
        return self._posteriors(x, training=training, sample=False)[0][2]

    def decode(self, z, labels=None):
        """Returns p(x|z_1) for z_1 `(batch, latent_dims[0])`, or a sample `(z_L, ..., z_1)`
        of `encode(x)`."""
        if isinstance(z, (list, tuple)):
            z = z[-1]
        return super().decode(z, labels)

    def posterior_tensors(self, x, y=None):
        """`latent` (z_1 at the means) and `loc_l`, `scale_l` of every layer's posterior."""
        layers = self._posteriors(x, sample=False)
        tensors = {"latent": layers[0][2]}
        for i, (q, _, _) in enumerate(layers):
            tensors[f"loc_{i + 1}"], tensors[f"scale_{i + 1}"] = q.mean(), q.stddev()
        return tensors

    def _importance_sample(self, x, y, k, seed, training=False):
        """Weights log p(x|z_1) + sum_l [log p(z_l|z_l+1) - log q(z_l|.)] of the joint."""
        batch, repeated = tf.shape(x)[0], _tiled(x, k)
        layers = self._posteriors(repeated, training=training, seed=seed)
        log_likelihood = self.decoder(layers[0][2], training=training).log_prob(repeated)
        log_ratio = tf.add_n([p.log_prob(z) - q.log_prob(z) for q, p, z in layers])
        shape = tf.stack([k, batch])
        return ImportanceSample(
            tf.reshape(log_likelihood + log_ratio, shape),
            tf.reshape(log_likelihood, shape),
            None,
            None,
        )

    def _ancestral(self, n, noise):
        z = noise(n, self.latent_dims[-1])
        for level in reversed(range(len(self.latent_dims) - 1)):
            loc, scale = _gaussian_parts(self.top_down[level](z))
            z = loc + scale * noise(n, self.latent_dims[level])
        return z

    def sample_latent(self, n, seed=None):
        """z_1 by ancestral sampling: z_L ~ N(0, I), then each z_l ~ p(z_l | z_l+1)."""
        if seed is None:
            return self._ancestral(n, lambda rows, size: tf.random.normal(tf.stack([rows, size])))
        generator = keras.random.SeedGenerator(seed)
        return self._ancestral(
            n, lambda rows, size: keras.random.normal((rows, size), seed=generator)
        )

    def get_config(self):
        config = super().get_config()
        config["top_down"] = [keras.saving.serialize_keras_object(m) for m in self.top_down]
        return config

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)
        config["top_down"] = [keras.saving.deserialize_keras_object(m) for m in config["top_down"]]
        return super().from_config(config)


def build(data_shape, network: str, latent_dim: int, likelihood: str, **options) -> HierarchicalVAE:
    """The registry's builder of `"hierarchical"`: MLP layers of `latent_dim` and
    `latent_dim // 2` (at least 2).

    Raises:
        ValueError: for a network other than `"mlp"` (the only one built here).
    """
    if network != "mlp":
        raise ValueError(
            f"The hierarchical VAE is built with MLP networks only. Received: network={network!r}"
        )
    sizes = (latent_dim, max(2, latent_dim // 2))
    encoder, top_down, decoder = networks.build_hierarchical(
        data_shape, sizes, likelihood=likelihood
    )
    return HierarchicalVAE(encoder, top_down, decoder, **options)
