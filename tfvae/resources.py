"""Memory a training run will ask for, estimated from its settings before anything is made.

A flag such as `--latent-dim 2000000000` would otherwise end in TensorFlow's
`ResourceExhaustedError` (with a 40-line traceback) after minutes of set-up. The
estimate counts, in float32 bytes:

    weights      the layers each size setting scales, x 4 (weights, gradients and
                 Adam's two slots)
    activations  the largest tensors of one step: batch x k x (data + latent) values,
                 x 4 for the backward pass; a VQ-VAE's batch x positions x codes distances

It is a floor, not a forecast (it leaves out the fixed layers and the framework), so
a run it refuses could never have fitted: it asks for more than the machine's memory.

References:
    (none: the counts follow `tfvae.networks`' layer sizes.)
"""

from __future__ import annotations

import math
import os

__all__ = ["MemoryNeed", "machine_memory", "training_needs", "check_training_memory"]

_FLOAT = 4  # bytes
_TRAINING_COPIES = 4  # weights, gradients, Adam's first and second moments
_BACKWARD = 4  # activations kept for the backward pass, and their gradients


class MemoryNeed(tuple):
    """`(flag, value, bytes)`: what one setting asks for."""

    __slots__ = ()

    def __new__(cls, flag: str, value, size: float):
        return super().__new__(cls, (flag, value, size))

    flag = property(lambda self: self[0])
    value = property(lambda self: self[1])
    bytes = property(lambda self: self[2])


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def training_needs(config, data_shape) -> list[MemoryNeed]:
    """What each size setting of `config` (a `RunConfig`) asks for, largest first."""
    d = math.prod(int(n) for n in data_shape)
    latent = config.latent_dim
    options = config.model_spec_options()
    k = options.get("k", 1)
    batch = config.batch_size
    # Every network maps its last hidden layer (256 units) to 2 latent parameters per
    # dimension, and the decoder's first layer maps z back to 256 (`tfvae.networks`).
    needs = [
        MemoryNeed("--latent-dim", latent, _TRAINING_COPIES * _FLOAT * 3 * 256 * latent),
        MemoryNeed("--batch-size", batch, _BACKWARD * _FLOAT * batch * (d + latent + 768)),
    ]
    if "k" in options:  # the k copies of each example of the batch, and their latents
        needs.append(MemoryNeed("--k", k, _BACKWARD * _FLOAT * batch * k * (d + latent)))
    if "num_codes" in options:
        codes = options["num_codes"]
        positions = max(1, d // 16)  # the encoder's grid (two stride-2 convolutions)
        size = _TRAINING_COPIES * _FLOAT * codes * latent + _FLOAT * batch * positions * codes
        needs.append(MemoryNeed("--num-codes", codes, size))
    return sorted(needs, key=lambda need: -need.bytes)


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} PB"


def check_training_memory(config, data_shape, available: int | None = None) -> None:
    """Raises a one-line ValueError when the run's settings ask for more than the memory.

    Args:
        config: a `RunConfig`.
        data_shape: the shape of one example.
        available: bytes to compare with (default: `machine_memory()`).

    Raises:
        ValueError: naming the setting that asks for the most, how much, and what the
            machine has.

    Example:

    >>> check_training_memory(config, (28, 28, 1))
    """
    available = machine_memory() if available is None else available
    if not available:
        return
    needs = training_needs(config, data_shape)
    total = sum(need.bytes for need in needs)
    if total <= available:
        return
    top = needs[0]
    raise ValueError(
        f"{top.flag} {top.value} asks for about {_human(top.bytes)} of memory "
        f"({_human(total)} in all for data of shape {tuple(data_shape)}), more than this "
        f"machine's {_human(available)}; lower {top.flag}."
    )
