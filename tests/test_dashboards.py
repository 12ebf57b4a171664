"""tfvae.dashboards: HParams sessions and projector files, read back as TensorBoard reads them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.projector import projector_config_pb2

from tfvae import dashboards


def read_session(log_dir):
    """(hparams, {metric tag: (step, value)}) of the HParams session in `log_dir`."""
    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    (start,) = [t for t in tags if t == "_hparams_/session_start_info"]
    content = events.SummaryMetadata(start).plugin_data.content
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    hparams = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        hparams[name] = getattr(value, kind)
    metrics = {}
    for tag in tags:
        if tag.startswith(dashboards.METRIC_PREFIX):
            (event,) = events.Tensors(tag)
            metrics[tag] = (event.step, float(tf.make_ndarray(event.tensor_proto)))
    return hparams, metrics, data.session_start_info.group_name


def read_projector(log_dir):
    folder = log_dir / dashboards.PROJECTOR_DIR
    config = text_format.Parse(
        (folder / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig()
    )
    (embedding,) = config.embeddings
    reader = tf.train.load_checkpoint(str(folder))
    values = reader.get_tensor(embedding.tensor_name)
    labels = None
    if embedding.metadata_path:
        labels = (folder / embedding.metadata_path).read_text().splitlines()
    sprite = None
    if embedding.sprite.image_path:
        sprite = tf.io.decode_png(tf.io.read_file(str(folder / embedding.sprite.image_path)))
    return embedding, values, labels, sprite


def test_an_hparams_session_holds_the_settings_and_the_final_measures(tmp_path):
    log_dir = tmp_path / "run-1" / "logs"
    settings = {"model": "vae", "latent_dim": 20, "beta": None, "deterministic": False}
    settings["learning_rate"] = 1e-3
    dashboards.write_hparams(log_dir, settings, {"validation_elbo": -95.5, "fid": None}, step=30)
    dashboards.write_metrics(log_dir, {"fid": 12.25}, step=30)  # added later (evaluate)
    hparams, metrics, group = read_session(log_dir)
    assert hparams == {
        "model": "vae",
        "latent_dim": 20.0,
        "deterministic": False,
        "learning_rate": 1e-3,
    }  # None left out; numbers are doubles in the plugin's protocol buffer
    assert metrics == {"final/validation_elbo": (30, -95.5), "final/fid": (30, 12.25)}
    assert group == "run-1"


def test_bad_hyperparameters_are_refused(tmp_path):
    with pytest.raises(TypeError, match="'shape' must be a bool, number, string or list"):
        dashboards.write_hparams(tmp_path, {"shape": {"a": 1}}, {})


def test_the_projector_gets_embeddings_labels_and_a_sprite(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(10, 4)).astype(np.float32)
    images = rng.uniform(size=(10, 8, 8, 1)).astype(np.float32)
    labels = np.arange(10) % 3
    dashboards.write_projector(tmp_path, embeddings, labels, images)
    embedding, values, read_labels, sprite = read_projector(tmp_path)
    np.testing.assert_array_equal(values, embeddings)
    assert read_labels == [str(label) for label in labels]
    # Ten 8x8 images on a 4x4 grid; each one where the projector looks for it.
    assert tuple(sprite.shape) == (32, 32, 1) and list(embedding.sprite.single_image_dim) == [8, 8]
    np.testing.assert_array_equal(sprite.numpy()[8:16, 0:8, 0], np.round(images[4, :, :, 0] * 255))


def test_bad_projector_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        dashboards.write_projector(tmp_path, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"`labels` must have one entry per embedding \(3\)"):
        dashboards.write_projector(tmp_path, np.zeros((3, 2)), labels=[1, 2])
    with pytest.raises(ValueError, match="at most 8192"):
        dashboards.write_projector(
            tmp_path, np.zeros((4, 2)), images=np.zeros((4, 5000, 5000, 1), np.float32)
        )
