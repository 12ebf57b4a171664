"""A hierarchical VAE with L stochastic layers: ladder-style or bottom-up inference.

Generative model, top to bottom:

    p(z_L) = N(0, I),  p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), sigma_l(z_{l+1})),  p(x | z_1)

Ladder inference (Sønderby et al. 2016; the default): a deterministic bottom-up pass
gives each layer an estimate (mu^_l, sigma^_l). A top-down pass then combines it with
the generative prior of that layer, precision-weighted:

    q(z_L | x) = N(mu^_L, sigma^_L)
    q(z_l | z_{l+1}, x) = N(mu_q, sigma_q),  sigma_q^-2 = sigma^_l^-2 + sigma_l^-2,
                                             mu_q = (mu^_l sigma^_l^-2 + mu_l sigma_l^-2) sigma_q^2

Bottom-up inference (Burda et al. 2016; pass `bottom_up` networks): a Markov chain
q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}), each layer sampled from the one below.

With k = 1 the training bound is the ELBO

    ELBO = E_q[log p(x|z_1)] - sum_l E_q[log q(z_l | .) - log p(z_l | z_{l+1})]

where each term is TFP's analytic Gaussian KL when its condition is sampled before it
(every layer of ladder inference, the top layer of bottom-up inference), and the
one-sample Monte-Carlo estimate otherwise. They are reported as `kl_1` (bottom) ...
`kl_L` (top), and `rate` is their sum. With k > 1 it is Burda et al.'s bound on the
joint importance weights w_i = p(x, z_1..L^(i)) / q(z_1..L^(i) | x):

    L_k(x) = logsumexp_i log w_i - log k     (reported as `iwae_bound`)

References:
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance Weighted Autoencoders. ICLR.
    Sønderby, C. K. et al. (2016). Ladder Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import copy

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import losses, networks
from tfvae.arguments import check_integer
from tfvae.models.vae import VAE, ImportanceSample, _check_functional, _tiled

tfd = tfp.distributions

__all__ = ["HierarchicalVAE", "build", "build_stacked"]

_MIN_SCALE = 1e-4


def _gaussian_parts(params):
    loc, raw_scale = tf.split(tf.cast(params, tf.float32), 2, axis=-1)
    return loc, tf.nn.softplus(raw_scale) + _MIN_SCALE


def _on_last_axis(model, z):
    """Applies a Keras model on vectors to `z` with any leading axes (such as samples)."""
    flat = model(tf.reshape(z, [-1, z.shape[-1]]))
    return tf.reshape(flat, tf.concat([tf.shape(z)[:-1], [flat.shape[-1]]], 0))


def _check_sizes(model, name, size_in, size_out):
    wanted_in, wanted_out = (size_in,), (2 * size_out,)
    got_in, got_out = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
    if (got_in, got_out) != (wanted_in, wanted_out):
        raise ValueError(
            f"{name} must map z of shape {wanted_in} to {wanted_out} parameters. "
            f"Received: {got_in} -> {got_out}"
        )


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
        encoder: for ladder inference, the bottom-up functional model x -> L tensors, the
            l-th holding `2 * latent_dims[l]` parameters (loc, raw scale) of layer l's
            estimate. For bottom-up inference, x -> the parameters of q(z_1 | x).
        top_down: L - 1 functional models; `top_down[l]` maps z_{l+1} (size
            `latent_dims[l + 1]`) to the `2 * latent_dims[l]` parameters of p(z_l | z_{l+1}).
        decoder: functional model z_1 -> p(x|z_1).
        bottom_up: None (ladder inference), or L - 1 functional models for bottom-up
            inference: `bottom_up[l]` maps z_{l+1} to the parameters of q(z_{l+2} | z_{l+1}).
        k: importance samples of the training bound (1: the ELBO; k > 1: L_k).
        beta, seed: as in `VAE` (beta weights the whole rate of the ELBO; it does not
            enter L_k).

    Raises:
        ValueError: for fewer than two layers, networks whose sizes do not fit, or
            `k < 1`.

    Example:

    >>> encoder, top_down, decoder = tfvae.networks.build_hierarchical((28, 28, 1), (32, 16))
    >>> vae = HierarchicalVAE(encoder, top_down, decoder)
    >>> parts = tfvae.networks.build_stacked((28, 28, 1), (100, 50), (200, 100))
    >>> iwae = HierarchicalVAE(*parts, k=50)  # Burda et al.'s two-layer IWAE
    """

    def __init__(self, encoder, top_down, decoder, bottom_up=None, k=1, prior=None, **kwargs):
        _check_functional(encoder, "encoder")
        top_down = list(top_down)
        for i, model in enumerate(top_down):
            _check_functional(model, f"top_down[{i}]")
        self.k = check_integer("k", k)
        if bottom_up is None:
            self.bottom_up = None
            self.latent_dims = tuple(int(t.shape[-1]) // 2 for t in encoder.outputs)
        else:
            self.bottom_up = list(bottom_up)
            for i, model in enumerate(self.bottom_up):
                _check_functional(model, f"bottom_up[{i}]")
            if len(encoder.outputs) != 1:
                raise ValueError(
                    "With bottom-up inference the encoder gives the parameters of q(z_1 | x) "
                    f"only: one output. Received: {len(encoder.outputs)} outputs"
                )
            self.latent_dims = (int(encoder.outputs[0].shape[-1]) // 2,) + tuple(
                int(m.outputs[0].shape[-1]) // 2 for m in self.bottom_up
            )
        if len(self.latent_dims) < 2:
            raise ValueError(
                "A HierarchicalVAE needs two or more stochastic layers: an encoder with one "
                "output per layer (ladder inference), or bottom-up networks. Received: "
                f"{len(self.latent_dims)} layer(s)."
            )
        if len(top_down) != len(self.latent_dims) - 1:
            raise ValueError(
                f"Expected {len(self.latent_dims) - 1} top-down models for "
                f"{len(self.latent_dims)} layers. Received: {len(top_down)}"
            )
        for i, model in enumerate(top_down):
            _check_sizes(model, f"top_down[{i}]", self.latent_dims[i + 1], self.latent_dims[i])
        for i, model in enumerate(self.bottom_up or ()):
            _check_sizes(model, f"bottom_up[{i}]", self.latent_dims[i], self.latent_dims[i + 1])
        self.top_down = top_down  # set before the base class builds (and locks) the model
        self.term_names = (
            VAE.term_names
            + tuple(f"kl_{i + 1}" for i in range(len(self.latent_dims)))
            + (("iwae_bound",) if self.k > 1 else ())
        )
        super().__init__(encoder, decoder, prior=prior, **kwargs)

    @property
    def inference(self) -> str:
        """`"ladder"` or `"bottom_up"`."""
        return "ladder" if self.bottom_up is None else "bottom_up"

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
        """Runs inference; returns [(q_l, p_l, z_l)] from bottom to top.

        Each z_l is a draw from q_l (`sample`, with one seed split over the layers)
        or its mean; p_l is p(z_l | z_{l+1}) at the z_{l+1} taken (N(0, I) for the top).
        """
        count = len(self.latent_dims)
        seeds = tfp.random.split_seed(seed, n=count) if sample else [None] * count
        pick = (lambda q, s: q.sample(seed=s)) if sample else (lambda q, s: q.mean())  # noqa: E731
        if self.bottom_up is not None:
            q = tfd.MultivariateNormalDiag(*_gaussian_parts(self.encoder(x, training=training)))
            posteriors, zs = [q], [pick(q, seeds[0])]
            for level, model in enumerate(self.bottom_up):
                parts = _gaussian_parts(model(zs[-1], training=training))
                posteriors.append(tfd.MultivariateNormalDiag(*parts))
                zs.append(pick(posteriors[-1], seeds[level + 1]))
            priors = [
                tfd.MultivariateNormalDiag(*_gaussian_parts(model(z, training=training)))
                for model, z in zip(self.top_down, zs[1:])
            ] + [self._top_prior()]
            return list(zip(posteriors, priors, zs))
        estimates = [_gaussian_parts(p) for p in self.encoder(x, training=training)]
        q = tfd.MultivariateNormalDiag(*estimates[-1])
        z = pick(q, seeds[-1])
        layers = [(q, self._top_prior(), z)]
        for level in reversed(range(count - 1)):
            prior_parts = _gaussian_parts(self.top_down[level](z, training=training))
            p = tfd.MultivariateNormalDiag(*prior_parts)
            q = tfd.MultivariateNormalDiag(*_combine(estimates[level], prior_parts))
            z = pick(q, seeds[level])
            layers.insert(0, (q, p, z))
        return layers

    def _layer_rates(self, layers):
        """Each layer's term of the rate, analytic where its condition is sampled first."""
        if self.bottom_up is None:
            return [losses.rate(q, p, z) for q, p, z in layers]
        monte_carlo = [q.log_prob(z) - p.log_prob(z) for q, p, z in layers[:-1]]
        return monte_carlo + [losses.rate(*layers[-1])]

    def loss_terms(self, x, y=None, training=False):
        seed = self._posterior_seed(training)
        if self.k > 1:
            draws = self._joint_weights(x, self.k, seed, training)
            bound = losses.importance_weighted_bound(draws["log_weights"])
            kls = [-ratio[0] for ratio in draws["log_ratios"]]
            terms = self.terms(-draws["log_likelihood"][0], tf.add_n(kls), loss=-bound)
            terms["iwae_bound"] = bound
        else:
            layers = self._posteriors(x, training=training, seed=seed)
            distortion = losses.distortion(self.decoder(layers[0][2], training=training), x)
            kls = self._layer_rates(layers)
            terms = self.terms(distortion, tf.add_n(kls))
        return {**terms, **{f"kl_{i + 1}": kl for i, kl in enumerate(kls)}}

    def _encode(self, x, y=None, training=False):
        """The joint q(z_1..L | x) as a `tfd.JointDistributionCoroutine`.

        Its samples are tuples in the order of sampling: `(z_L, ..., z_1)` for ladder
        inference, `(z_1, ..., z_L)` for bottom-up inference; `decode` takes either.
        """
        top = len(self.latent_dims)
        if self.bottom_up is not None:
            first = _gaussian_parts(self.encoder(x, training=training))

            def chain():
                z = yield tfd.JointDistributionCoroutine.Root(
                    tfd.MultivariateNormalDiag(*first, name="z_1")
                )
                for level, model in enumerate(self.bottom_up):
                    z = yield tfd.MultivariateNormalDiag(
                        *_gaussian_parts(_on_last_axis(model, z)), name=f"z_{level + 2}"
                    )

            return tfd.JointDistributionCoroutine(chain)
        estimates = [_gaussian_parts(p) for p in self.encoder(x, training=training)]

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
        """Returns p(x|z_1) for z_1 `(batch, latent_dims[0])`, or a sample of `encode(x)`."""
        if isinstance(z, (list, tuple)):
            z = z[0] if self.bottom_up is not None else z[-1]
        return super().decode(z, labels)

    def posterior_tensors(self, x, y=None):
        """`latent` (z_1 at the means) and `loc_l`, `scale_l` of every layer's posterior."""
        layers = self._posteriors(x, sample=False)
        tensors = {"latent": layers[0][2]}
        for i, (q, _, _) in enumerate(layers):
            tensors[f"loc_{i + 1}"], tensors[f"scale_{i + 1}"] = q.mean(), q.stddev()
        return tensors

    def _joint_weights(self, x, k, seed, training=False):
        """k draws of every layer per example, as `(k, batch)` tensors: `log_weights`
        log p(x|z_1) + sum_l [log p(z_l|z_l+1) - log q(z_l|.)], `log_likelihood`
        log p(x|z_1), and `log_ratios` (one per layer) log p(z_l|.) - log q(z_l|.)."""
        shape = tf.stack([k, tf.shape(x)[0]])
        repeated = _tiled(x, k)
        layers = self._posteriors(repeated, training=training, seed=seed)
        log_likelihood = self.decoder(layers[0][2], training=training).log_prob(repeated)
        ratios = [tf.reshape(p.log_prob(z) - q.log_prob(z), shape) for q, p, z in layers]
        log_likelihood = tf.reshape(log_likelihood, shape)
        return {
            "log_weights": log_likelihood + tf.add_n(ratios),
            "log_likelihood": log_likelihood,
            "log_ratios": ratios,
        }

    def _importance_sample(self, x, y, k, seed, training=False):
        """The joint importance weights (`_joint_weights`) as an `ImportanceSample`."""
        draws = self._joint_weights(x, k, seed, training)
        return ImportanceSample(draws["log_weights"], draws["log_likelihood"], None, None)

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
        config["bottom_up"] = (
            None
            if self.bottom_up is None
            else [keras.saving.serialize_keras_object(m) for m in self.bottom_up]
        )
        config["k"] = self.k
        return config

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)
        for key in ("top_down", "bottom_up"):
            if config.get(key) is not None:
                config[key] = [keras.saving.deserialize_keras_object(m) for m in config[key]]
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


def build_stacked(
    data_shape, network: str, latent_dim: int, likelihood: str, **options
) -> HierarchicalVAE:
    """The registry's builder of `"stacked"`: Burda et al.'s two-layer model.

    Layers of `latent_dim` and `latent_dim // 2` (at least 2), with networks of
    `2 * latent_dim` and `latent_dim` tanh units (`networks.build_stacked`); for
    `latent_dim=100` that is the paper's 100 and 50, with 200 and 100 units.

    Raises:
        ValueError: for a network other than `"mlp"`.
    """
    if network != "mlp":
        raise ValueError(
            f"The stacked VAE is built with MLP networks only. Received: network={network!r}"
        )
    sizes = (latent_dim, max(2, latent_dim // 2))
    encoder, top_down, decoder, bottom_up = networks.build_stacked(
        data_shape, sizes, (2 * latent_dim, latent_dim), likelihood=likelihood
    )
    return HierarchicalVAE(encoder, top_down, decoder, bottom_up, **options)
