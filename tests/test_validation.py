"""tfvae.validation: bad arrays and datasets give one clear error, wherever they enter."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_vae


# ---------------------------------------------------------------- bad input
def fitted():
    vae = make_vae()
    vae.compile()
    return vae


@pytest.mark.parametrize(
    "x,error,message",
    [
        (
            np.zeros((10, 64), np.float32),
            ValueError,
            r"`x` must have shape \(batch, 8, 8, 1\). Received: shape=\(10, 64\). .*reshape it",
        ),
        (np.zeros((10, 8, 8), np.float32), ValueError, r"Received: shape=\(10, 8, 8\)"),
        (np.array([["a"] * 64] * 2).reshape(2, 8, 8, 1), TypeError, "real numbers.*dtype=<U1"),
        (np.zeros((0, 8, 8, 1), np.float32), ValueError, "`x` is empty: it holds 0 examples"),
        (
            np.where(np.eye(64)[:10].reshape(10, 8, 8, 1) > 0, np.nan, 0.5),
            ValueError,
            r"holds 10 NaN or Inf value\(s\), the first in example 0",
        ),
        (
            np.full((10, 8, 8, 1), 255.0),
            ValueError,
            r"values in \[255, 255\], but the likelihood needs values in \[0, 1\]. .*x / 255",
        ),
        (np.full((10, 8, 8, 1), -0.5), ValueError, r"values in \[-0.5, -0.5\]"),
    ],
)
def test_bad_arrays_give_clear_errors_everywhere(x, error, message):
    vae = fitted()
    weights = [w.numpy() for w in vae.weights]
    for call in (
        lambda: vae.fit(x, epochs=1, verbose=0),
        lambda: vae.evaluate(x, verbose=0),
        lambda: vae.predict(x, verbose=0),
        lambda: vae.encode(x),
        lambda: vae.reconstruct(x),
    ):
        with pytest.raises(error, match=message):
            call()
    for before, after in zip(weights, vae.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_bad_validation_data_and_latents():
    vae = fitted()
    good = np.full((8, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match="`validation_data` holds 1 NaN"):
        vae.fit(
            good,
            validation_data=(np.where(np.arange(512).reshape(8, 8, 8, 1) == 3, np.nan, 0.5),),
            epochs=1,
            verbose=0,
        )
    with pytest.raises(ValueError, match=r"`z` must have shape \(batch, 4\)"):
        vae.decode(np.zeros((3, 5), np.float32))


def test_gaussian_likelihood_accepts_values_outside_the_unit_interval():
    vae = make_vae(likelihood="gaussian")
    vae.compile()
    history = vae.fit(np.full((32, 8, 8, 1), 3.0, np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def dataset(*batches):
    return tf.data.Dataset.from_tensor_slices(np.stack(batches))


def test_bad_datasets_give_clear_errors():
    vae = fitted()
    ok = np.full((4, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"`x` must yield batches of shape \(batch, 8, 8, 1\)"):
        vae.fit(tf.data.Dataset.from_tensors(np.zeros((4, 64), np.float32)), verbose=0)
    with pytest.raises(ValueError, match="yields single examples of shape .*batch it first"):
        vae.fit(tf.data.Dataset.from_tensor_slices(ok), verbose=0)
    with pytest.raises(ValueError, match="`x` is empty: the dataset yields no batches"):
        vae.fit(dataset(ok).take(0), verbose=0)
    with pytest.raises(TypeError, match="real numbers.*string"):
        vae.fit(tf.data.Dataset.from_tensors(tf.fill((4, 8, 8, 1), "a")), verbose=0)


@pytest.mark.parametrize(
    "bad_batch,message",
    [
        (
            np.where(np.arange(256).reshape(4, 8, 8, 1) == 9, np.nan, 0.5).astype(np.float32),
            "`x` holds NaN or Inf values; expected finite numbers.",
        ),
        (
            np.full((4, 8, 8, 1), 7.0, np.float32),
            r"`x` holds values outside \[0, 1\], which the likelihood needs",
        ),
    ],
)
def test_a_bad_batch_in_the_middle_of_a_dataset_stops_with_a_clear_error(bad_batch, message):
    vae = fitted()
    ok = np.full((4, 8, 8, 1), 0.5, np.float32)
    data = dataset(ok, ok, ok, bad_batch, ok)
    with pytest.raises(ValueError, match=message) as caught:
        vae.fit(data, epochs=1, verbose=0)
    assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)
    assert all(np.isfinite(w.numpy()).all() for w in vae.weights)
    with pytest.raises(ValueError, match=message):
        vae.evaluate(data, verbose=0)


def test_a_dataset_given_again_reuses_its_check_and_still_refuses_a_bad_batch():
    vae = fitted()
    ok = np.full((4, 8, 8, 1), 0.5, np.float32)
    bad = np.full((4, 8, 8, 1), 7.0, np.float32)
    data = dataset(ok, ok, bad)
    checked = vae._checked_data(data, "x")
    assert vae._checked_data(data, "x") is checked  # checked once, as in a fit per epoch
    assert vae._checked_data(dataset(ok), "x") is not checked  # another dataset: checked
    for _ in range(2):  # as training data and as validation data, twice each
        with pytest.raises(ValueError, match="holds values outside"):
            vae.fit(data, epochs=1, verbose=0)
        with pytest.raises(ValueError, match="holds values outside"):
            vae.fit(dataset(ok), validation_data=data, epochs=1, verbose=0)


def test_a_batch_of_another_shape_in_a_ragged_dataset_is_refused():
    vae = fitted()
    gen = tf.data.Dataset.from_generator(
        lambda: iter(
            [np.full((4, 8, 8, 1), 0.5, np.float32), np.full((4, 8, 7, 1), 0.5, np.float32)]
        ),
        output_signature=tf.TensorSpec((None, 8, None, 1), tf.float32),
    )
    with pytest.raises(ValueError, match="a batch had another shape"):
        vae.fit(gen, epochs=1, verbose=0)


@pytest.mark.parametrize("bad_shape", [(4, 8, 8), (4, 8, 8, 1, 1), (4, 64)])
def test_a_batch_of_another_rank_in_a_dataset_of_unknown_shape_is_refused(bad_shape):
    vae = fitted()
    batches = [np.full((4, 8, 8, 1), 0.5, np.float32), np.full(bad_shape, 0.5, np.float32)]
    gen = tf.data.Dataset.from_generator(
        lambda: iter(batches), output_signature=tf.TensorSpec(None, tf.float32)
    )
    with pytest.raises(ValueError, match="a batch had another shape") as caught:
        vae.fit(gen, epochs=1, verbose=0)
    assert "\n" not in str(caught.value)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_an_empty_dataset_of_unknown_size_is_refused():
    vae = fitted()
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((8, 8, 8, 1), np.float32)).batch(4)
    empty = empty.filter(lambda x: tf.reduce_sum(x) > 1.0)  # cardinality unknown, yields nothing
    with pytest.raises(ValueError, match="empty"):
        vae.fit(empty, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        vae.evaluate(empty, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        vae.predict(empty, verbose=0)


def test_check_array_and_check_dataset_directly():
    from tfvae.validation import check_array, check_dataset, reraise_input_errors

    checked = check_array([[0, 1], [1, 0]], (2,), support=(0.0, 1.0))
    assert checked.dtype == np.float32 and checked.shape == (2, 2)
    with pytest.raises(ValueError, match=r"`z` must have shape \(batch, 3\)"):
        check_array(np.zeros((2, 2)), (3,), name="z")
    batches = tf.data.Dataset.from_tensor_slices(np.array([[[0.5]], [[2.0]]], np.float32))
    data = check_dataset(batches, (1,), support=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"^`x` holds values outside \[0, 1\]"):
        with reraise_input_errors():
            list(data)
