"""tfvae.arguments: one message shape for every argument check."""

import numpy as np
import pytest

from tfvae.arguments import check_choice, check_integer, check_number


def test_integers():
    assert check_integer("k", 5) == 5 and type(check_integer("k", np.int64(5))) is int
    assert check_integer("num_codes", 2, minimum=2) == 2
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(
            ValueError, match=rf"^`k` must be an integer >= 1\. Received: k={bad!r}$"
        ):
            check_integer("k", bad)


def test_numbers():
    assert check_number("beta", 0) == 0.0 and check_number("beta", np.float32(0.5)) == 0.5
    assert check_number("learning_rate", 1e-3, inclusive=False) == 1e-3
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"`beta` must be a finite number >= 0\. Received"):
            check_number("beta", bad)
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number > 0"):
        check_number("learning_rate", 0.0, inclusive=False)
    for bad in ("high", True, None):
        with pytest.raises(TypeError, match=rf"`beta` must be a number\. Received: beta={bad!r}"):
            check_number("beta", bad)


def test_choices():
    assert check_choice("network", "mlp", ("mlp", "conv")) == "mlp"
    with pytest.raises(ValueError, match=r"`network` must be one of 'mlp', 'conv'\. Received"):
        check_choice("network", "resnet", ("mlp", "conv"))
