"""dSprites with its ground-truth factors: the original file through TFDS, or rendered.

dSprites (Matthey et al. 2017) holds one 64x64 binary image of a white sprite for
each of the 737,280 combinations of five factors:

    shape        3   square, ellipse, heart
    scale        6   linearly spaced in [0.5, 1]
    orientation 40   linearly spaced in [0, 2 pi]
    x position  32   linearly spaced in [0, 1]
    y position  32   linearly spaced in [0, 1]

`open_dsprites` reads the original file (`dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`)
through TFDS's `dsprites` builder when it is prepared or when `manual_dir` holds it.
Otherwise it renders the same factor grid procedurally, lazily and on the fly, in
TensorFlow: the sprite of half-size 0.16 * scale (of the image side) is centred at
0.25 + 0.5 * position (so every sprite lies inside the frame at every orientation)
and rotated by the orientation; a pixel is white when its centre is inside the
shape. **The rendered set is not the original file**: the factors, their values and
the image size are the dataset's, but its outlines, sizes and margins are our own.

Every image comes with its factors, `(5,)` integer indices in the order above; the
disentanglement metrics (`tfvae.disentanglement`) draw factors and ask for the images
of them (`DSprites.images`).

References:
    Matthey, L., Higgins, I., Hassabis, D. & Lerchner, A. (2017). dSprites:
        Disentanglement testing Sprites dataset. https://github.com/deepmind/dsprites-dataset
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.arguments import check_integer

__all__ = [
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "FILE_NAME",
    "IMAGE_SHAPE",
    "NUM_IMAGES",
    "DSprites",
    "open_dsprites",
    "render",
]

FACTOR_NAMES = ("shape", "scale", "orientation", "x_position", "y_position")
FACTOR_SIZES = (3, 6, 40, 32, 32)
IMAGE_SHAPE = (64, 64, 1)
NUM_IMAGES = int(np.prod(FACTOR_SIZES))  # 737,280
#: The original file's name (TFDS's `dsprites` builder looks for it in `manual_dir`).
FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: The rendered set's "test" split: this many combinations drawn with seed 0.
TEST_SIZE = 10_000

_HALF_SIZE = 0.16  # of the image side, at scale 1
_SPLITS = ("train", "test")
_TFDS_FACTORS = ("label_shape", "label_scale", "label_orientation", "label_x_position",
                 "label_y_position")  # fmt: skip


def _inside(shape: tf.Tensor, u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """Whether the points (u, v) of the sprite's own frame (unit half-size) are inside."""
    square = tf.maximum(tf.abs(u), tf.abs(v)) <= 1.0
    ellipse = u**2 + (v / 0.5) ** 2 <= 1.0
    # The heart curve (x^2 + y^2 - 1)^3 = x^2 y^3, scaled into the unit square, point up.
    hx, hy = u * 1.15, -v * 1.15 + 0.12
    heart = (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0
    shape = shape[:, tf.newaxis, tf.newaxis]
    return tf.where(shape == 0, square, tf.where(shape == 1, ellipse, heart))


@tf.function(input_signature=[tf.TensorSpec((None, 5), tf.int64)], reduce_retracing=True)
def render(factors: tf.Tensor) -> tf.Tensor:
    """Renders the sprites of a batch of factor indices `(n, 5)`: `(n, 64, 64, 1)` uint8 0/1.

    Example:

    >>> images = render(tf.constant([[2, 5, 0, 16, 16]], tf.int64))  # a large heart
    """
    f = tf.cast(factors, tf.float32)
    scale = 0.5 + 0.5 * f[:, 1] / (FACTOR_SIZES[1] - 1)
    angle = 2.0 * math.pi * f[:, 2] / (FACTOR_SIZES[2] - 1)
    centre_x = 0.25 + 0.5 * f[:, 3] / (FACTOR_SIZES[3] - 1)
    centre_y = 0.25 + 0.5 * f[:, 4] / (FACTOR_SIZES[4] - 1)
    side = IMAGE_SHAPE[0]
    grid = (tf.range(side, dtype=tf.float32) + 0.5) / side
    px = grid[tf.newaxis, tf.newaxis, :] - centre_x[:, tf.newaxis, tf.newaxis]  # columns: x
    py = grid[tf.newaxis, :, tf.newaxis] - centre_y[:, tf.newaxis, tf.newaxis]  # rows: y
    cos = tf.cos(angle)[:, tf.newaxis, tf.newaxis]
    sin = tf.sin(angle)[:, tf.newaxis, tf.newaxis]
    half = (_HALF_SIZE * scale)[:, tf.newaxis, tf.newaxis]
    u = (cos * px + sin * py) / half  # rotated by -angle into the sprite's frame
    v = (-sin * px + cos * py) / half
    inside = _inside(factors[:, 0], u, v)
    return tf.cast(inside, tf.uint8)[..., tf.newaxis]


def _factors_of(indices: tf.Tensor) -> tf.Tensor:
    """The factor indices `(n, 5)` of flat image indices `(n,)` (the file's order)."""
    return tf.transpose(tf.unravel_index(indices, tf.constant(FACTOR_SIZES, tf.int64)))


def _indices_of(factors: np.ndarray) -> np.ndarray:
    return np.ravel_multi_index(tuple(np.asarray(factors).T), FACTOR_SIZES)


@functools.lru_cache(maxsize=1)
def _test_indices() -> np.ndarray:
    """The "test" split: `TEST_SIZE` image indices drawn once with seed 0."""
    indices = np.sort(np.random.default_rng(0).choice(NUM_IMAGES, TEST_SIZE, replace=False))
    indices.flags.writeable = False
    return indices


class DSprites:
    """dSprites' images and factors: `source` is `"file"` (the original) or `"rendered"`.

    Args:
        images: for the original file, all 737,280 images `(n, 64, 64, 1)` uint8 in
            the file's order; None to render them.

    Example:

    >>> sprites = open_dsprites()
    >>> factors = sprites.sample_factors(64, np.random.default_rng(0))
    >>> x = sprites.images(factors)  # (64, 64, 64, 1) float32 in {0, 1}
    """

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    image_shape = IMAGE_SHAPE

    def __init__(self, images: np.ndarray | None = None):
        if images is not None and images.shape != (NUM_IMAGES, *IMAGE_SHAPE):
            raise ValueError(
                f"dSprites holds {NUM_IMAGES} images of {IMAGE_SHAPE}. "
                f"Received: an array of shape {images.shape}"
            )
        self._images = images

    @property
    def source(self) -> str:
        return "rendered" if self._images is None else "file"

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` factor vectors drawn uniformly from the grid: `(n, 5)` int64."""
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], 1)

    def images(self, factors) -> np.ndarray:
        """The images of factor vectors `(n, 5)`: `(n, 64, 64, 1)` float32 in {0, 1}.

        Raises:
            ValueError: for factors of another shape or outside the grid.
        """
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(f"`factors` must be (n, 5). Received: shape {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(self.factor_sizes)).any():
            raise ValueError(f"`factors` must index the grid {self.factor_sizes}.")
        if self._images is not None:
            return self._images[_indices_of(factors)].astype(np.float32)
        return render(tf.constant(factors, tf.int64)).numpy().astype(np.float32)

    def split_indices(self, split: str) -> np.ndarray | None:
        """The flat indices of a split: None for "train" (every image), else "test"'s."""
        if split not in _SPLITS:
            raise ValueError(
                f"Unknown split {split!r} for 'dsprites'. Expected one of: {', '.join(_SPLITS)} "
                f"('train': all {NUM_IMAGES}; 'test': {TEST_SIZE} of them, drawn with seed 0, "
                "as dSprites has no held-out split)."
            )
        return None if split == "train" else _test_indices()

    def num_examples(self, split: str) -> int:
        indices = self.split_indices(split)
        return NUM_IMAGES if indices is None else len(indices)

    def dataset(
        self,
        split: str = "train",
        *,
        batch_size: int = 64,
        shuffle: bool | None = None,
        seed: int | None = None,
        with_factors: bool = False,
    ) -> tf.data.Dataset:
        """A lazy `tf.data` pipeline of uint8 image batches (and factors): `(images,
        factors)` with `factors` `(batch, 5)` int64, or images alone.

        Only the image indices are shuffled; images are rendered (or gathered) per batch.
        """
        check_integer("batch_size", batch_size)
        chosen = self.split_indices(split)
        indices = (
            tf.data.Dataset.range(NUM_IMAGES)
            if chosen is None
            else tf.data.Dataset.from_tensor_slices(chosen.astype(np.int64))
        )
        if shuffle if shuffle is not None else split == "train":
            indices = indices.shuffle(self.num_examples(split), seed, reshuffle_each_iteration=True)
        images = self._images

        def batch_of(flat):
            factors = _factors_of(flat)
            if images is None:
                pictures = render(factors)
            else:
                pictures = tf.numpy_function(lambda i: images[i], [flat], tf.uint8)
                pictures = tf.ensure_shape(pictures, (None, *IMAGE_SHAPE))
            return (pictures, factors) if with_factors else pictures

        return indices.batch(batch_size).map(batch_of)


def _tfds_images(data_dir, manual_dir) -> np.ndarray | None:
    """All images of the original file through TFDS, or None when it is not at hand."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("dsprites", data_dir=data_dir)
    if not builder.is_prepared():
        if manual_dir is None or not (Path(manual_dir) / FILE_NAME).is_file():
            return None
        config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        builder.download_and_prepare(download_config=config)
    data = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1, shuffle_files=False))
    factors = np.stack([data[name] for name in _TFDS_FACTORS], 1)
    order = np.argsort(_indices_of(factors))
    return data["image"][order]


def open_dsprites(data_dir=None, manual_dir=None) -> DSprites:
    """Returns dSprites from the original file (through TFDS) if at hand, else rendered.

    The original is never downloaded here: it is used when TFDS has it prepared in
    `data_dir`, or when `manual_dir` holds the file.

    Args:
        data_dir: where TFDS keeps prepared data sets.
        manual_dir: a folder holding `FILE_NAME` (or its parent, with a `dsprites/`
            sub-folder), to prepare the original with no network.

    Returns:
        A `DSprites`.

    Example:

    >>> sprites = open_dsprites(manual_dir="data/")
    >>> sprites.source
    'rendered'
    """
    if manual_dir is not None and (Path(manual_dir) / "dsprites" / FILE_NAME).is_file():
        manual_dir = Path(manual_dir) / "dsprites"
    images = _tfds_images(data_dir, manual_dir)
    return DSprites(images)
