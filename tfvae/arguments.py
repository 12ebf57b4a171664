"""Checks of the arguments of tfvae's public functions, one message shape for all.

Every message names the argument in backticks and repeats what was received, as
Keras does (`` `k` must be an integer >= 1. Received: k=0 ``). The command line
rewrites a backticked argument name into its flag (`--k`), so the library never
names flags itself. This module imports no TensorFlow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["check_integer", "check_number", "check_choice", "first_line"]


def check_integer(name: str, value: Any, minimum: int = 1) -> int:
    """Returns `value` as an int if it is an integer (not a bool) >= `minimum`.

    Args:
        name: the argument's name, for the message.
        value: what was received.
        minimum: the smallest value allowed.

    Returns:
        `value` as a Python int.

    Raises:
        ValueError: if `value` is not an integer >= `minimum`.

    Example:

    >>> check_integer("k", 5)
    5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_number(name: str, value: Any, minimum: float = 0.0, *, inclusive: bool = True) -> float:
    """Returns `value` as a float if it is a finite real number above `minimum`.

    Args:
        name: the argument's name, for the message.
        value: what was received.
        minimum: the bound.
        inclusive: whether `minimum` itself is allowed.

    Returns:
        `value` as a Python float.

    Raises:
        TypeError: if `value` is not a real number (a bool is not one).
        ValueError: if it is not finite and >= (or >) `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
    above = value >= minimum if inclusive else value > minimum
    if not (above and math.isfinite(value)):
        bound = ">=" if inclusive else ">"
        raise ValueError(
            f"`{name}` must be a finite number {bound} {minimum:g}. Received: {name}={value!r}"
        )
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Returns `value` if it is one of `choices`.

    Raises:
        ValueError: naming the choices, if it is not.
    """
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {listed}. Received: {name}={value!r}")
    return value


#: Longest message `first_line` keeps (Keras puts a whole model config on one line).
_LONGEST = 300


def first_line(error: Exception) -> str:
    """The first line of an error's message (or its type's name), for one-line errors.

    A line longer than 300 characters is cut there, with "..." after it.
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= _LONGEST else line[:_LONGEST].rstrip() + " ..."
