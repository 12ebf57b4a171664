"""Image data sets for VAEs: TFDS (offline through `manual_dir`) and the embedded digits.

`load` returns a `tf.data` pipeline of float32 images in [0, 1], of shape
`(batch, height, width, channels)` (or flat with `flatten=True`); `load_arrays`
returns a whole split as NumPy arrays.

Data sets:
    "digits": scikit-learn's bundled 8x8 digits (1,797 images), needs no files or
        network; splits "train" (80%), "test" (20%) and "all".
    "dsprites": dSprites' 737,280 images of 64x64 (`tfvae.dsprites`): the original
        file through TFDS when prepared or in `manual_dir`, else rendered on the fly;
        splits "train" (all) and "test" (10,000 of them). `tfvae.dsprites` gives
        the ground-truth factors of each image.
    any TFDS image data set ("mnist", "binarized_mnist", "fashion_mnist", "cifar10",
        ...): prepared by `tensorflow_datasets` into `data_dir`. With `manual_dir`
        (or the environment variable TFVAE_MANUAL_DIR) TFDS prepares it from the
        original files in that folder, with no network. `manual_dir` may be the
        folder that holds the files or its parent, with one sub-folder per data set
        (`.../data/mnist/train-images-idx3-ubyte.gz`).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import tensorflow as tf

from tfvae import choices
from tfvae.arguments import check_integer

__all__ = [
    "load",
    "load_arrays",
    "labelled_subset",
    "ground_truth",
    "WITH_FACTORS",
    "num_classes",
    "num_examples",
    "MANUAL_DIR_ENV",
    "DATA_DIR_ENV",
    "BINARIZATIONS",
]

#: Environment variable naming the folder of original data files (TFDS `manual_dir`).
MANUAL_DIR_ENV = "TFVAE_MANUAL_DIR"
#: Environment variable naming where TFDS keeps prepared data sets (default: TFDS's own).
DATA_DIR_ENV = "TFVAE_DATA_DIR"
#: Accepted values of `binarize`.
BINARIZATIONS = (None, *choices.BINARIZATIONS)

_DIGITS_SPLITS = ("train", "test", "all")
# Data sets whose images are stored as 0/1 rather than 0..255.
_PIXEL_MAX = {"binarized_mnist": 1.0}


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits, read once a process (scikit-learn parses a CSV file each call)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in _DIGITS_SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for 'digits'. Expected one of: {', '.join(_DIGITS_SPLITS)}."
        )
    images, labels = _all_digits()
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    index = {"train": order[:cut], "test": order[cut:], "all": order}[split]
    return images[index], labels[index]


def _manual_dir(name: str, manual_dir) -> Path | None:
    manual_dir = manual_dir or os.environ.get(MANUAL_DIR_ENV) or None
    if manual_dir is None:
        return None
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"The manual_dir {str(path)!r} does not exist or is not a folder.")
    return path / name if (path / name).is_dir() else path


def _expected_files(builder) -> list[str]:
    try:
        return sorted({Path(urlparse(url).path).name for url in builder.url_infos or {}})
    except Exception:  # builders without registered checksums
        return []


def _hosts_resolve(builder) -> bool:
    try:
        hosts = {urlparse(url).hostname for url in builder.url_infos or {}}
    except Exception:
        return True
    for host in hosts - {None}:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            return False
    return True


def _tfds_builder(name: str, data_dir, manual_dir, offline: bool):
    """Returns a prepared TFDS builder, preparing it offline from manual_dir if needed."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown data set {name!r}. Expected 'digits' or a TensorFlow Datasets image "
            "data set such as 'mnist', 'binarized_mnist', 'fashion_mnist' or 'cifar10'."
        ) from None
    if builder.is_prepared():
        return builder
    manual = _manual_dir(name, manual_dir)
    expected = _expected_files(builder)
    if manual is not None:
        present = {p.name for p in manual.iterdir()}
        missing = [f for f in expected if f not in present]
        if expected and len(missing) == len(expected):
            raise ValueError(
                f"The `manual_dir` {str(manual)!r} holds none of the files {name!r} is prepared "
                f"from. Expected: {', '.join(expected)}."
            )
        config = tfds.download.DownloadConfig(manual_dir=str(manual), try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
        return builder
    if offline or not _hosts_resolve(builder):
        files = f" ({', '.join(expected)})" if expected else ""
        raise ValueError(
            f"{name!r} is not prepared in {builder.data_dir!r} and cannot be downloaded "
            f"(offline). Pass `manual_dir` or set {MANUAL_DIR_ENV} to a folder "
            f"holding its original files{files}."
        )
    builder.download_and_prepare()
    return builder


def _tfds_features(name: str, builder) -> tuple[str, str | None]:
    import tensorflow_datasets as tfds

    features = builder.info.features
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    if not images:
        raise ValueError(f"{name!r} is not an image data set: it has no image feature.")
    image_key = "image" if "image" in images else images[0]
    label_key = "label" if "label" in features else None
    return image_key, label_key


def _check_split(name: str, builder, split: str) -> None:
    try:
        builder.info.splits[split]
    except (KeyError, ValueError):
        raise ValueError(
            f"Unknown split {split!r} for {name!r}. Expected one of: "
            f"{', '.join(builder.info.splits)} (or a slice such as 'train[:10%]')."
        ) from None


def _source(name, split, data_dir, manual_dir, offline) -> tuple[tf.data.Dataset, float, int]:
    """Returns ((image, label) dataset of un-scaled images, the pixel maximum, its size)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a data set name. Received: name={name!r}")
    if name == "digits":
        images, labels = _digits(split)
        return tf.data.Dataset.from_tensor_slices((images, labels)), 1.0, len(images)
    builder = _tfds_builder(name, data_dir, manual_dir, offline)
    _check_split(name, builder, split)
    image_key, label_key = _tfds_features(name, builder)
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    size = int(dataset.cardinality())

    def pick(example):
        label = example[label_key] if label_key else tf.constant(-1, tf.int64)
        return example[image_key], tf.cast(label, tf.int64)

    return dataset.map(pick), _PIXEL_MAX.get(name, 255.0), size


def labelled_subset(labels, num_labelled: int, seed: int = 0) -> np.ndarray:
    """Keeps the labels of a class-balanced subset of `num_labelled` examples; -1 elsewhere.

    Each class keeps `num_labelled // K` labels (the first `num_labelled % K` classes
    one more), chosen at random by `seed`, as in Kingma et al. (2014), Table 1 (100,
    600, 1000 or 3000 labels of MNIST).

    Args:
        labels: integer labels, `(n,)`, in [0, K).
        num_labelled: how many to keep, from K up to n.
        seed: which examples keep theirs.

    Returns:
        An int64 copy of `labels` with -1 ("no label") for all but the kept ones.

    Raises:
        ValueError: for labels that are not integers in [0, K), or a count below K,
            above n, or above what a class holds.

    Example:

    >>> y_semi = labelled_subset(y_train, 100, seed=0)  # 10 labels per digit
    >>> m2.fit(x_train, y_semi, epochs=50)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise ValueError(
            f"`labels` must be a non-empty 1-D integer array. Received: dtype={labels.dtype}, "
            f"shape={labels.shape}"
        )
    if labels.min() < 0:
        raise ValueError(
            "`labels` must all be given (>= 0) to choose from. "
            f"Received a minimum of {labels.min()}."
        )
    classes = np.unique(labels)
    num_labelled = check_integer("num_labelled", num_labelled, len(classes))
    if num_labelled > len(labels):
        raise ValueError(
            f"`num_labelled` must be at most the {len(labels)} examples. "
            f"Received: num_labelled={num_labelled}"
        )
    rng = np.random.default_rng(seed)
    per_class, extra = divmod(num_labelled, len(classes))
    kept = []
    for i, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        count = per_class + (i < extra)
        if count > len(members):
            raise ValueError(
                f"Class {c} has {len(members)} examples, fewer than the {count} labels a "
                f"class-balanced subset of {num_labelled} needs."
            )
        kept.append(rng.choice(members, count, replace=False))
    out = np.full(labels.shape, -1, np.int64)
    kept = np.concatenate(kept)
    out[kept] = labels[kept]
    return out


@functools.lru_cache(maxsize=8)
def _kept_labels(name, split, data_dir, manual_dir, offline, num_labelled, seed) -> np.ndarray:
    """`labelled_subset` of a split's labels, read once a process (a run loads its
    training split again every epoch, and reading MNIST's labels decodes every image)."""
    if name == "digits":
        labels = _digits(split)[1]
    else:
        dataset = _source(name, split, data_dir, manual_dir, offline)[0]
        labels = np.concatenate([y for _, y in dataset.batch(10_000).as_numpy_iterator()])
    kept = labelled_subset(labels, num_labelled, seed)
    kept.setflags(write=False)
    return kept


def _with_labelled_subset(dataset, kept: np.ndarray):
    """`dataset` of (image, label) with the labels `kept` (-1 outside the subset)."""
    return tf.data.Dataset.zip(dataset, tf.data.Dataset.from_tensor_slices(kept)).map(
        lambda example, label: (example[0], label)
    )


def _check_options(batch_size, binarize):
    if binarize not in BINARIZATIONS:
        raise ValueError(
            f"`binarize` must be one of {BINARIZATIONS}. Received: binarize={binarize!r}"
        )
    if batch_size is not None:
        check_integer("batch_size", batch_size)


def load(
    name: str = "digits",
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    binarize: str | None = None,
    flatten: bool = False,
    with_labels: bool = False,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    offline: bool = False,
    seed: int | None = None,
    cache: bool = True,
    num_labelled: int | None = None,
    label_seed: int = 0,
) -> tf.data.Dataset:
    """Returns a batched, prefetched `tf.data` pipeline of images in [0, 1].

    The decoded images are cached in memory (as stored, e.g. uint8), shuffled each
    epoch, batched, and then scaled to float32 in [0, 1]; binarisation and
    flattening happen per batch.

    Args:
        name: `"digits"` or a TFDS image data set name.
        split: `"train"`, `"test"`, ... or a TFDS slice such as `"train[:10%]"`.
        batch_size: examples per batch.
        shuffle: shuffle each epoch; default True for splits starting with "train".
        binarize: None, `"dynamic"` (a fresh Bernoulli draw of every pixel each epoch,
            the usual set-up for Bernoulli likelihoods) or `"threshold"` (x >= 0.5).
        flatten: give each example as a flat vector.
        with_labels: yield `(x, label)` instead of `x` (label -1 where there is none).
        data_dir: where TFDS keeps prepared data (default: $TFVAE_DATA_DIR or TFDS's).
        manual_dir: folder of the original files, to prepare with no network
            (default: $TFVAE_MANUAL_DIR).
        offline: never try to download; fail at once when nothing is prepared.
        seed: seed of the shuffling and the binarisation.
        cache: keep the decoded images in memory after the first pass (turn off when
            only a few batches will be read).
        num_labelled: with `with_labels`, keep the labels of a class-balanced subset
            of this many examples (chosen by `label_seed`) and give -1 for the others,
            for semi-supervised training (`labelled_subset`); None keeps all.
        label_seed: which examples keep their labels.

    Returns:
        A `tf.data.Dataset` of float32 batches `(batch, H, W, C)` (or `(batch, H*W*C)`).

    Raises:
        ValueError: for an unknown data set, split or option, a missing manual_dir,
            or data that is not prepared and cannot be downloaded.

    Example:

    >>> train = tfvae.data.load("mnist", "train", manual_dir="data/", binarize="dynamic")
    """
    _check_options(batch_size, binarize)
    if name == "dsprites":
        sprites = ground_truth(name, data_dir=data_dir, manual_dir=manual_dir)
        dataset = sprites.dataset(split, batch_size=batch_size, shuffle=shuffle, seed=seed)
        return _prepared(dataset, 1.0, binarize, flatten, with_labels, seed)
    dataset, pixel_max, size = _source(name, split, data_dir, manual_dir, offline)
    if num_labelled is not None:
        kept = _kept_labels(name, split, data_dir, manual_dir, offline, num_labelled, label_seed)
        dataset = _with_labelled_subset(dataset, kept)
    if cache:
        dataset = dataset.cache()
    if shuffle if shuffle is not None else split.startswith("train"):
        buffer = size if size > 0 else 10_000
        dataset = dataset.shuffle(min(buffer, 100_000), seed=seed, reshuffle_each_iteration=True)
    return _prepared(dataset.batch(batch_size), pixel_max, binarize, flatten, with_labels, seed)


def _prepared(dataset, pixel_max, binarize, flatten, with_labels, seed) -> tf.data.Dataset:
    """Batches of stored images (or (images, labels)) scaled to [0, 1], binarised and
    flattened as asked, and prefetched."""

    # One sequential map for all the per-batch work: each map with
    # `num_parallel_calls` starts its own threads whenever an iterator is made (about
    # 4 ms each, twice per `fit` epoch), and vectorised work on whole batches gains
    # nothing from them; `prefetch` still overlaps it with training.
    @tf.autograph.experimental.do_not_convert
    def prepare(images, labels=None, noise_seed=None):
        images = tf.cast(images, tf.float32) / pixel_max
        if binarize == "dynamic":
            uniform = tf.random.stateless_uniform(tf.shape(images), seed=noise_seed)
            images = tf.cast(uniform < images, tf.float32)
        elif binarize == "threshold":
            images = tf.cast(images >= 0.5, tf.float32)
        if flatten:
            images = tf.reshape(images, (tf.shape(images)[0], -1))
        if labels is None:  # a data set without labels (dSprites)
            labels = tf.fill(tf.shape(images)[:1], tf.constant(-1, tf.int64))
        return (images, labels) if with_labels else images

    def element(item):
        return item if isinstance(item, tuple) else (item,)

    if binarize == "dynamic":
        noise_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, noise_seeds)
        dataset = dataset.map(
            lambda item, noise_seed: prepare(*element(item), noise_seed=noise_seed)
        )
    else:
        dataset = dataset.map(lambda *item: prepare(*item))
    return dataset.prefetch(tf.data.AUTOTUNE)


#: The data sets whose images come with ground-truth factors (`ground_truth`).
WITH_FACTORS = ("dsprites",)


def ground_truth(name: str = "dsprites", *, data_dir=None, manual_dir=None):
    """Returns the images of a data set with known factors, and the factors
    (`tfvae.dsprites.DSprites`), for the disentanglement metrics.

    Args:
        name: `"dsprites"`, the one data set with factors (`WITH_FACTORS`).
        data_dir, manual_dir: as in `load` (the original dSprites file through TFDS;
            rendered when it is not at hand).

    Raises:
        ValueError: for a data set without ground-truth factors.

    Example:

    >>> sprites = tfvae.data.ground_truth("dsprites")
    >>> sprites.images(sprites.sample_factors(8, np.random.default_rng(0))).shape
    (8, 64, 64, 1)
    """
    if name not in WITH_FACTORS:
        raise ValueError(
            f"{name!r} has no ground-truth factors; the data sets with them are: "
            f"{', '.join(WITH_FACTORS)} (train with --dataset dsprites)."
        )
    manual_dir = manual_dir or os.environ.get(MANUAL_DIR_ENV)
    return _dsprites(data_dir or os.environ.get(DATA_DIR_ENV), manual_dir)


@functools.lru_cache(maxsize=4)
def _dsprites(data_dir, manual_dir):
    """dSprites, opened once per process (`tfvae.dsprites.open_dsprites`)."""
    from tfvae import dsprites

    return dsprites.open_dsprites(data_dir, manual_dir)


def load_arrays(
    name: str = "digits",
    split: str = "train",
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    offline: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns a whole split as `(images, labels)` NumPy arrays.

    Args:
        name, split, data_dir, manual_dir, offline: as in `load`.

    Returns:
        `images`, float32 in [0, 1] of shape `(n, H, W, C)`, and `labels`, int64 of
        shape `(n,)` (-1 where the data set has no labels).

    Raises:
        ValueError: as in `load`.

    Example:

    >>> x_test, y_test = tfvae.data.load_arrays("mnist", "test", manual_dir="data/")
    """
    if name == "dsprites":
        if split != "test":
            raise ValueError(
                "load_arrays('dsprites') gives the 'test' split only: 'train' is 737,280 "
                "images (12 GB as float32); train on tfvae.data.load('dsprites') instead. "
                f"Received: split={split!r}"
            )
        sprites = ground_truth(name, data_dir=data_dir, manual_dir=manual_dir)
        batches = list(sprites.dataset(split, batch_size=5000, shuffle=False).as_numpy_iterator())
        x = np.concatenate(batches).astype(np.float32)
        return x, np.full(len(x), -1, np.int64)
    dataset, pixel_max, size = _source(name, split, data_dir, manual_dir, offline)
    batch = max(size, 1) if size > 0 else 100_000
    images, labels = [], []
    for x, y in dataset.batch(batch).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    if not images:
        raise ValueError(f"The split {split!r} of {name!r} is empty.")
    x = (images[0] if len(images) == 1 else np.concatenate(images)).astype(np.float32)
    x /= pixel_max  # in place: no second copy
    return x, np.concatenate(labels)


def num_examples(
    name: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    offline: bool = False,
) -> int:
    """Returns the number of examples of a split (as `load` and `load_arrays` give it).

    Example:

    >>> num_examples("mnist", "train")
    60000
    """
    if name == "dsprites":
        return ground_truth(name, data_dir=data_dir, manual_dir=manual_dir).num_examples(split)
    size = _source(name, split, data_dir, manual_dir, offline)[2]
    if size < 0:
        raise ValueError(f"The size of the split {split!r} of {name!r} is unknown.")
    return size


def num_classes(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    offline: bool = False,
) -> int | None:
    """Returns the number of label classes of a data set, or None if it has no labels.

    Example:

    >>> num_classes("mnist")
    10
    """
    if name == "digits":
        return 10
    if name == "dsprites":
        return None  # five factors, no class label
    builder = _tfds_builder(name, data_dir, manual_dir, offline)
    _, label_key = _tfds_features(name, builder)
    if label_key is None:
        return None
    return getattr(builder.info.features[label_key], "num_classes", None)
