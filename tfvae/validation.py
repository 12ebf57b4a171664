"""Checks of user data before it reaches a model: type, shape, emptiness, finiteness, range.

Arrays are checked at once, in NumPy. A `tf.data.Dataset` is checked statically from
its `element_spec` and then batch by batch, through a `map` that asserts on each
batch; `reraise_input_errors` turns those assertion failures into one-line
`ValueError`s instead of TensorFlow stack traces.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

__all__ = ["check_array", "check_dataset", "reraise_input_errors"]

_MARKER = "tfvae input check: "


def _fmt_interval(support) -> str:
    return f"[{support[0]:g}, {support[1]:g}]"


def _expected(shape: tuple) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")"


def check_array(
    x,
    expected_shape: tuple[int, ...],
    support: tuple[float, float] | None = None,
    name: str = "x",
) -> np.ndarray:
    """Checks a batch of examples and returns it as a float32 NumPy array.

    Args:
        x: array-like of shape `(batch, *expected_shape)`: NumPy, a tensor or lists.
        expected_shape: the shape of one example.
        support: `(low, high)` that every value must lie in, or None.
        name: what to call `x` in error messages.

    Returns:
        `x` as a float32 `np.ndarray`: `x` itself when it is one already (a tensor
        on the CPU gives a read-only view of its memory), else one copy. The checks
        make no temporary copies.

    Raises:
        TypeError: if `x` does not hold numbers.
        ValueError: if `x` has the wrong shape, is empty, holds NaN or Inf, or lies
            outside `support`.

    Example:

    >>> check_array(images / 255.0, (28, 28, 1), support=(0.0, 1.0))
    """
    try:
        array = np.asarray(x)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"`{name}` must be an array of numbers. Received: {error}") from None
    if (
        array.dtype == object
        or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
        or np.iscomplexobj(array)
    ):
        raise TypeError(
            f"`{name}` must hold real numbers (float, int or bool). Received: dtype={array.dtype}"
        )
    expected = tuple(expected_shape)
    if array.shape[1:] != expected:
        hint = ""
        if array.ndim >= 1 and array[:1].size == int(np.prod(expected)):
            hint = " It has the right number of values per example: reshape it."
        raise ValueError(
            f"`{name}` must have shape {_expected(expected)}. Received: shape={array.shape}.{hint}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it holds 0 examples of shape {expected}.")
    # Two reductions, no temporary arrays: a NaN makes min and max NaN, an Inf makes
    # one of them infinite. Only a failing array is searched for the bad example.
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        count, first = _non_finite(array)
        raise ValueError(
            f"`{name}` holds {count} NaN or Inf value(s), the first in example "
            f"{first}; expected finite numbers."
        )
    array = array.astype(np.float32, copy=False)
    if support is not None:
        if low < support[0] or high > support[1]:
            hint = " Scale images to [0, 1], e.g. x / 255." if high > 1.0 else ""
            raise ValueError(
                f"`{name}` holds values in [{low:g}, {high:g}], but the likelihood needs "
                f"values in {_fmt_interval(support)}.{hint}"
            )
    return array


def _non_finite(array: np.ndarray, rows: int = 4096) -> tuple[int, int]:
    """How many values of `array` are NaN or Inf, and the first example holding one."""
    count, first = 0, -1
    for start in range(0, len(array), rows):
        chunk = array[start : start + rows]
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1))
        count += int(bad.sum())
        if first < 0 and bad.any():
            first = start + int(np.argmax(bad.any(axis=1)))
    return count, first


def _x_of(element):
    return element[0] if isinstance(element, tuple) else element


def _batch_check(expected: tuple, support, name: str):
    """The function `check_dataset` maps over batches: asserts, then passes x on."""

    # TensorFlow ops only, so no autograph conversion, and raw `Assert` ops rather than
    # `tf.debugging.assert_equal` (which builds its message formatting into the graph):
    # the check is mapped on every fit and evaluate call (about 85 ms each before).
    def verified(condition, message):
        return tf.debugging.Assert(condition, [f"{_MARKER}{message}"], name="tfvae_input_check")

    @tf.autograph.experimental.do_not_convert
    def check(*element):
        x = element[0]
        shape = tf.shape(x)[1:]
        # Compared as the first len(expected) dims (padded when fewer): a batch of another
        # rank fails the check instead of the comparison.
        first = tf.concat([shape, tf.fill([len(expected)], -1)], 0)[: len(expected)]
        shape_ok = tf.logical_and(
            tf.equal(tf.size(shape), len(expected)),
            tf.reduce_all(tf.equal(first, tf.constant(expected, tf.int32))),
        )
        checks = [
            verified(
                shape_ok,
                f"`{name}` must yield batches of shape {_expected(expected)}; "
                "a batch had another shape",
            )
        ]
        x = tf.cast(x, tf.float32)
        checks.append(
            verified(
                tf.reduce_all(tf.math.is_finite(x)),
                f"`{name}` holds NaN or Inf values; expected finite numbers",
            )
        )
        if support is not None:
            inside = tf.logical_and(tf.reduce_all(x >= support[0]), tf.reduce_all(x <= support[1]))
            checks.append(
                verified(
                    inside,
                    f"`{name}` holds values outside {_fmt_interval(support)}, "
                    "which the likelihood needs (scale images to [0, 1], e.g. x / 255)",
                )
            )
        with tf.control_dependencies(checks):
            x = tf.identity(x)
        return (x,) + element[1:] if len(element) > 1 else x

    return check


def check_dataset(
    dataset: tf.data.Dataset,
    expected_shape: tuple[int, ...],
    support: tuple[float, float] | None = None,
    name: str = "x",
) -> tf.data.Dataset:
    """Checks a batched dataset's spec now, and returns it with a check on every batch.

    The dataset yields `x` or a tuple whose first item is `x` (such as `(x, y)`).
    The returned dataset yields the same with `x` cast to float32, after asserting
    that each batch has the expected shape, finite values and values in `support`.
    Wrap the code that iterates it in `reraise_input_errors()`.

    Args:
        dataset: a batched `tf.data.Dataset`.
        expected_shape: the shape of one example.
        support: `(low, high)` that every value must lie in, or None.
        name: what to call the data in error messages.

    Returns:
        The checked `tf.data.Dataset`.

    Raises:
        TypeError: if the elements are not numeric tensors.
        ValueError: if the static shape is wrong, the dataset is not batched, or it
            is known to be empty.
    """
    spec = _x_of(dataset.element_spec)
    if not isinstance(spec, tf.TensorSpec):
        raise TypeError(
            f"`{name}` must yield tensors, or tuples whose first item is the data tensor. "
            f"Received: element_spec={dataset.element_spec}"
        )
    if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype == tf.bool):
        raise TypeError(
            f"`{name}` must hold real numbers (float, int or bool). "
            f"Received: dtype={spec.dtype.name}"
        )
    expected = tuple(expected_shape)
    shape = spec.shape
    if shape.rank is not None:
        if tuple(shape) == expected:
            raise ValueError(
                f"`{name}` yields single examples of shape {expected}; batch it first "
                f"(dataset.batch(128)). Expected batches of shape {_expected(expected)}."
            )
        if not shape.is_compatible_with((None,) + expected):
            raise ValueError(
                f"`{name}` must yield batches of shape {_expected(expected)}. "
                f"Received: element shape={tuple(shape)}"
            )
    if int(dataset.cardinality()) == 0:
        raise ValueError(f"`{name}` is empty: the dataset yields no batches.")

    check = _batch_check(expected, support, name)
    # Sequential: a parallel map starts threads at every iterator (see `tfvae.data.load`).
    return dataset.map(check)


@contextlib.contextmanager
def reraise_input_errors() -> Iterator[None]:
    """Turns a failed `check_dataset` assertion into a one-line `ValueError`.

    Raises:
        ValueError: with the assertion's message, instead of the TensorFlow error.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(re.escape(_MARKER) + r"([^\n]*)", error.message or "")
        if not found:
            raise
        message = found.group(1).split(". Condition x == y")[0].strip().rstrip("]").strip()
        raise ValueError(message.rstrip(".") + ".") from None
