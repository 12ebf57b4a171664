"""The feature network that sample-quality metrics measure in: a small convnet classifier.

FID, KID and precision/recall compare two sets of images in the feature space of a
network trained on the data. The Inception network of the original FID is trained on
ImageNet photographs and needs a download; for MNIST-like data sets the usual choice
(and the one that runs offline) is a compact classifier trained on the data set's own
training split, whose penultimate layer gives the features.

`load_feature_network(dataset)` trains one the first time (a few epochs of Adam) and
keeps it, with its test accuracy, in a cache folder (`$TFVAE_FEATURE_CACHE`, default
`~/.cache/tfvae/features`); later calls load it. A cached network whose files are
damaged or do not match their manifest is trained again, with a warning.

The architecture (`build_classifier`): two 3x3 convolutions with max pooling (one for
images of 16 pixels or less), a 128-unit dense layer (the features), and the class
logits. On MNIST it reaches about 99 % test accuracy in 5 epochs.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import keras
import numpy as np

from tfvae import data
from tfvae.arguments import check_integer
from tfvae.files import atomic_output, sha256_of, user_cache_dir
from tfvae.validation import check_array

__all__ = [
    "FeatureNetwork",
    "build_classifier",
    "load_feature_network",
    "CACHE_ENV",
    "FEATURES_LAYER",
]

#: The environment variable naming the folder where trained feature networks are kept.
CACHE_ENV = "TFVAE_FEATURE_CACHE"
#: The name of the penultimate layer, whose activations are the features.
FEATURES_LAYER = "features"
#: Changes whenever the architecture or its training changes (old files are not reused).
_VERSION = 1


def build_classifier(data_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> keras.Model:
    """Returns the (uncompiled) convnet classifier of images of shape `data_shape`.

    Args:
        data_shape: `(height, width, channels)`.
        num_classes: the number of classes (logits).
        seed: seed of the initial weights.

    Returns:
        A functional `keras.Model` from images to logits, with a layer named
        `FEATURES_LAYER` (128 units) before the logits.
    """
    if len(data_shape) != 3:
        raise ValueError(
            f"The feature network needs images of shape (height, width, channels). "
            f"Received: data_shape={tuple(data_shape)}"
        )
    init = keras.initializers.GlorotUniform(seed=seed)
    images = keras.Input(data_shape, name="images")
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init)(
        images
    )
    if min(data_shape[:2]) > 16:
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=init)(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.3, seed=seed)(h)
    features = keras.layers.Dense(
        128, activation="relu", kernel_initializer=init, name=FEATURES_LAYER
    )(h)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init, name="logits")(features)
    return keras.Model(images, logits, name="feature_classifier")


class FeatureNetwork:
    """A trained classifier and the feature extractor of its penultimate layer.

    Attributes:
        classifier: the `keras.Model` from images to logits.
        test_accuracy: its accuracy on the data set's test split.
        dataset: the data set it was trained on.
        path: the `.keras` file it was loaded from or saved to (None if not saved).
    """

    def __init__(self, classifier: keras.Model, test_accuracy: float, dataset: str, path=None):
        self.classifier = classifier
        self.test_accuracy = float(test_accuracy)
        self.dataset = dataset
        self.path = None if path is None else Path(path)
        self._extractor = keras.Model(
            classifier.inputs[0], classifier.get_layer(FEATURES_LAYER).output
        )

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.classifier.inputs[0].shape[1:])

    def _checked(self, x) -> np.ndarray:
        return check_array(x, self.data_shape, (0.0, 1.0), "images")

    def features(self, x, batch_size: int = 1000) -> np.ndarray:
        """Returns the features of images `x` in [0, 1]: shape `(n, 128)`, float64.

        Raises:
            ValueError / TypeError: for images of another shape, outside [0, 1], or
                not finite.
        """
        x = self._checked(x)
        out = [
            self._extractor(x[i : i + batch_size], training=False).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).astype(np.float64)

    def predict_classes(self, x, batch_size: int = 1000) -> np.ndarray:
        """Returns the predicted class of each image of `x` (int64)."""
        x = self._checked(x)
        out = [
            np.argmax(self.classifier(x[i : i + batch_size], training=False).numpy(), axis=-1)
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"FeatureNetwork(dataset={self.dataset!r}, data_shape={self.data_shape}, "
            f"test_accuracy={self.test_accuracy:.4f})"
        )


def _cache_dir(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return user_cache_dir("features")


def _load_cached(model_path: Path, manifest_path: Path, dataset: str):
    """The cached network, or None (with a warning when the files are damaged)."""
    if not model_path.is_file() and not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("sha256") != sha256_of(model_path):
            raise ValueError("the model file does not match its checksum")
        classifier = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        return FeatureNetwork(classifier, manifest["test_accuracy"], dataset, model_path)
    except Exception as error:  # any damage: train again rather than fail
        warnings.warn(
            f"The cached feature network {str(model_path)!r} is damaged ({error}); "
            "training it again.",
            stacklevel=3,
        )
        return None


def load_feature_network(
    dataset: str = "mnist",
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    offline: bool = False,
    cache_dir: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> FeatureNetwork:
    """Returns the feature network of `dataset`: cached, or trained now and cached.

    Args:
        dataset: `"digits"` or a labelled TFDS image data set.
        data_dir, manual_dir, offline: where the data comes from (`tfvae.data.load`).
        cache_dir: where trained networks are kept (default: `$TFVAE_FEATURE_CACHE`, else
            `~/.cache/tfvae/features`).
        epochs: training epochs (default: 5, or 60 for the 1,437 digits).
        seed: seed of the weights and of the data order.
        verbose: print the test accuracy after training.

    Returns:
        A `FeatureNetwork`.

    Raises:
        ValueError: for a data set without labels or images, or one that cannot be
            loaded.

    Example:

    >>> network = load_feature_network("mnist", manual_dir="../shared/data")
    >>> network.test_accuracy  # about 0.99
    """
    num_classes = data.num_classes(
        dataset, data_dir=data_dir, manual_dir=manual_dir, offline=offline
    )
    if not num_classes:
        raise ValueError(f"The feature network needs a labelled data set; {dataset!r} has none.")
    epochs = check_integer("epochs", epochs) if epochs is not None else None
    source = dict(data_dir=data_dir, manual_dir=manual_dir, offline=offline)
    x_test, y_test = data.load_arrays(dataset, "test", **source)
    epochs = epochs or (60 if len(x_test) < 1000 else 5)
    name = f"{dataset}-{'x'.join(map(str, x_test.shape[1:]))}-v{_VERSION}-s{seed}-e{epochs}"
    folder = _cache_dir(cache_dir)
    model_path, manifest_path = folder / f"{name}.keras", folder / f"{name}.json"
    cached = _load_cached(model_path, manifest_path, dataset)
    if cached is not None:
        return cached

    x_train, y_train = data.load_arrays(dataset, "train", **source)
    keras.utils.set_random_seed(seed)
    classifier = build_classifier(x_train.shape[1:], num_classes, seed=seed)
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0)
    predictions = np.argmax(classifier.predict(x_test, batch_size=1000, verbose=0), axis=-1)
    accuracy = float(np.mean(predictions == y_test))
    if verbose:
        print(f"feature network for {dataset}: test accuracy {accuracy:.4f} ({epochs} epochs)")
    try:
        with atomic_output(model_path, overwrite=True) as partial:
            classifier.save(partial)
        manifest = {
            "dataset": dataset,
            "test_accuracy": accuracy,
            "epochs": epochs,
            "seed": seed,
            "version": _VERSION,
            "sha256": sha256_of(model_path),
        }
        with atomic_output(manifest_path, overwrite=True) as partial:
            partial.write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as error:
        warnings.warn(
            f"Could not cache the feature network in {str(folder)!r}: {error}", stacklevel=2
        )
        return FeatureNetwork(classifier, accuracy, dataset)
    return FeatureNetwork(classifier, accuracy, dataset, model_path)
