"""tfvae.data: the embedded digits, TFDS prepared offline from ../shared/data, pipelines."""

import time

import numpy as np
import pytest
import tensorflow as tf

from tfvae import data


def test_digits_splits_are_disjoint_images_in_the_unit_interval():
    x_train, y_train = data.load_arrays("digits", "train")
    x_test, y_test = data.load_arrays("digits", "test")
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and 0.0 == x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10))
    flat_train = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    overlap = sum(row.tobytes() in flat_train for row in x_test.reshape(len(x_test), -1))
    assert overlap <= 5  # a handful of digits are duplicated in the original data


def test_pipeline_batches_flattens_and_labels():
    batches = list(data.load("digits", "test", batch_size=100, flatten=True, with_labels=True))
    assert [tuple(x.shape) for x, _ in batches] == [(100, 64)] * 3 + [(60, 64)]
    assert all(x.dtype == tf.float32 and y.dtype == tf.int64 for x, y in batches)
    plain = next(iter(data.load("digits", "test", batch_size=8)))
    assert plain.shape == (8, 8, 8, 1)


def test_train_split_is_shuffled_each_epoch_and_test_split_is_not():
    train = data.load("digits", "train", batch_size=1437, seed=1)
    first, second = (next(iter(train)).numpy() for _ in range(2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first.ravel()), np.sort(second.ravel()))
    test = data.load("digits", "test", batch_size=360)
    np.testing.assert_array_equal(next(iter(test)), next(iter(test)))


def test_dynamic_binarisation_draws_fresh_bits_each_epoch_with_the_pixel_means():
    test = data.load("digits", "test", batch_size=360, binarize="dynamic", seed=3)
    first, second = (next(iter(test)).numpy() for _ in range(2))
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)
    grey, _ = data.load_arrays("digits", "test")
    draws = np.stack([next(iter(test)).numpy() for _ in range(200)])
    assert abs(draws.mean() - grey.mean()) < 0.005
    thresholded = next(iter(data.load("digits", "test", batch_size=360, binarize="threshold")))
    np.testing.assert_array_equal(thresholded, (grey >= 0.5).astype(np.float32))


def test_a_seeded_pipeline_built_again_gives_the_same_batches():
    # What a resumed run relies on: an epoch's order and binarisation noise come from
    # the seed alone, however often the pipeline is built.
    def batches():
        pipeline = data.load("digits", "train", batch_size=500, binarize="dynamic", seed=7)
        return [b.numpy() for b in pipeline]

    first, again = batches(), batches()
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
    other = [b.numpy() for b in data.load("digits", "train", batch_size=500, seed=8)]
    assert not np.array_equal(first[0], other[0])
    x, _ = data.load_arrays("digits", "train")
    x[0] = 0.0  # the arrays handed out are the caller's own
    assert data.load_arrays("digits", "train")[0][0].max() > 0.0


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="Unknown split 'valid' for 'digits'"):
        data.load("digits", "valid")
    with pytest.raises(ValueError, match="binarize"):
        data.load("digits", binarize="stochastic")
    with pytest.raises(ValueError, match="batch_size"):
        data.load("digits", batch_size=0)
    with pytest.raises(ValueError, match="Unknown data set 'no_such_set'"):
        data.load("no_such_set")


def test_mnist_is_prepared_offline_from_the_original_files(mnist_source):
    x_test, y_test = data.load_arrays("mnist", "test", **mnist_source)
    assert x_test.shape == (10000, 28, 28, 1) and x_test.dtype == np.float32
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    assert abs(x_test.mean() - 0.1325) < 0.001  # the published mean pixel of MNIST test
    assert np.bincount(y_test).tolist()[:3] == [980, 1135, 1032]
    sliced = data.load("mnist", "train[:1000]", batch_size=500, binarize="dynamic", **mnist_source)
    batches = list(sliced)
    assert [b.shape[0] for b in batches] == [500, 500]
    assert set(np.unique(batches[0])) == {0.0, 1.0}


@pytest.mark.slow  # TFDS prepares MNIST again (about 9 s)
def test_manual_dir_can_come_from_the_environment(monkeypatch, shared_data, tmp_path):
    monkeypatch.setenv(data.MANUAL_DIR_ENV, str(shared_data))
    x, labels = data.load_arrays("mnist", "test[:100]", data_dir=str(tmp_path), offline=True)
    assert x.shape == (100, 28, 28, 1) and labels.shape == (100,)


@pytest.mark.slow  # prepares the fixed binarized MNIST with TFDS (about 20 s)
def test_binarized_mnist_keeps_its_zero_one_pixels(shared_data, tfds_dir):
    x, labels = data.load_arrays(
        "binarized_mnist", "test", manual_dir=str(shared_data), data_dir=tfds_dir, offline=True
    )
    assert x.shape == (10000, 28, 28, 1)
    assert set(np.unique(x)) == {0.0, 1.0}
    assert (labels == -1).all()  # the data set has no labels
    with pytest.raises(ValueError, match="Unknown split 'train\\[' .*Expected one of"):
        data.load_arrays(
            "binarized_mnist", "train[", manual_dir=str(shared_data), data_dir=tfds_dir
        )


def test_offline_without_files_fails_at_once_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MANUAL_DIR_ENV, raising=False)
    start = time.monotonic()
    with pytest.raises(
        ValueError,
        match=r"'mnist' is not prepared .* cannot be downloaded "
        r"\(offline\). Pass `manual_dir` .*train-images-idx3-ubyte.gz",
    ):
        data.load("mnist", data_dir=str(tmp_path), offline=True)
    assert time.monotonic() - start < 30


def test_a_wrong_manual_dir_is_named(tmp_path):
    with pytest.raises(ValueError, match="manual_dir '.*nowhere' does not exist"):
        data.load("mnist", data_dir=str(tmp_path), manual_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="holds none of the files 'mnist' is prepared from"):
        data.load("mnist", data_dir=str(tmp_path), manual_dir=str(tmp_path))
