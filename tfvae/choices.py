"""The string options of tfvae, in one place that imports no TensorFlow.

The library modules take their option names from here, and the command line offers
and checks them before TensorFlow is imported. Where a module maps the names to
classes (`tfvae.layers.LIKELIHOODS`, `tfvae.schedules.SCHEDULES`), a test checks that
its keys are these names.
"""

from __future__ import annotations

#: p(x|z) of `tfvae.networks.build(likelihood=...)` (`tfvae.layers.LIKELIHOODS`).
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian", "gaussian_learned_scale")
#: Encoder/decoder architectures of `tfvae.networks.build`.
NETWORKS = ("mlp", "conv")
#: q(z|x) families of `tfvae.networks.build(posterior=...)`.
POSTERIORS = ("gaussian", "iaf")
#: KL-weight schedules of `tfvae.schedules` (`SCHEDULES`).
SCHEDULES = ("linear", "cyclical", "sigmoid")
#: `binarize` of `tfvae.data.load`: a fresh Bernoulli draw each epoch, or x >= 0.5.
BINARIZATIONS = ("dynamic", "threshold")
#: `tf.distribute` strategies of `tfvae.scaling.make_strategy`.
STRATEGIES = ("none", "mirrored", "multi_worker")
#: Keras dtype policies of `tfvae.scaling.set_precision`.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: A run's `jit_compile`: tfvae's own "auto" (`tfvae.training.auto_jit_compile`), on or off.
JIT_COMPILE = ("auto", "on", "off")
#: Pictures of `tfvae plot --what` (`tfvae.plots`).
PLOTS = (
    "samples",
    "reconstructions",
    "interpolation",
    "traversal",
    "latent_map",
    "manifold",
    "analogies",
    "kl_traversal",
    "factor_information",
    "curves",
)
#: Signatures of exported models (`tfvae.export`).
SIGNATURES = ("encode", "decode", "sample", "reconstruct")
#: TFLite weight quantisations of `tfvae.export.to_tflite` (None: float32).
QUANTIZATIONS = ("float16", "dynamic_int8")
#: What `tfvae export --format` writes.
EXPORT_FORMATS = ("saved_model", "tflite")
#: Where `sample` draws latents from: the model's prior, or a sampler fitted after training.
SAMPLERS = ("prior", "gmm", "two_stage", "pixelcnn")
#: The samplers `fit_sampler` fits (all but the prior).
FITTED_SAMPLERS = SAMPLERS[1:]
