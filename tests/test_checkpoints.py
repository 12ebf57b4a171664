"""Checkpoints: atomic generations, checksums, fallback, and the NaN stop that keeps them."""

import json
import warnings

import numpy as np
import pytest
from conftest import make_vae

from tfvae import checkpoints


def trained(digits, epochs=1, directory=None):
    vae = make_vae(seed=0)
    vae.compile()
    callbacks = [checkpoints.EpochCheckpoint(directory, keep=2)] if directory else []
    vae.fit(digits[0][:512], batch_size=64, epochs=epochs, verbose=0, callbacks=callbacks)
    return vae


def test_a_checkpoint_round_trips_weights_optimizer_state_and_epoch(digits, tmp_path):
    vae = trained(digits)
    path = checkpoints.write_checkpoint(vae, tmp_path, epoch=1, history={"loss": [3.0]})
    assert checkpoints.verify_checkpoint(path) is None
    found, state = checkpoints.latest_checkpoint(tmp_path)
    assert found == path and state["epoch"] == 1 and state["iterations"] == 8
    restored = checkpoints.load_checkpoint(path)
    assert int(restored.optimizer.iterations) == 8
    for a, b in zip(
        vae.weights + vae.optimizer.variables, restored.weights + restored.optimizer.variables
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not list(tmp_path.glob(".*partial*"))  # nothing half-written is left


def test_damaged_newest_generation_falls_back_with_a_warning_and_none_intact_is_refused(
    digits, tmp_path
):
    trained(digits, epochs=3, directory=tmp_path)  # keep=2: generations of epochs 2 and 3
    generations = sorted(tmp_path.glob("ckpt-*"))
    assert [json.loads((g / "state.json").read_text())["epoch"] for g in generations] == [2, 3]
    older, newest = generations

    data = bytearray((newest / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (newest / "model.keras").write_bytes(bytes(data))
    with pytest.warns(checkpoints.CheckpointWarning, match="does not match its checksum"):
        found, state = checkpoints.latest_checkpoint(tmp_path)
    assert found == older and state["epoch"] == 2
    with pytest.raises(checkpoints.CheckpointError, match="Refusing checkpoint"):
        checkpoints.load_checkpoint(newest)

    model_file = older / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:100])  # truncated
    with (
        warnings.catch_warnings(record=True),
        pytest.raises(
            checkpoints.CheckpointError, match="No intact checkpoint.*Nothing was deleted"
        ),
    ):
        checkpoints.latest_checkpoint(tmp_path)
    assert sorted(tmp_path.glob("ckpt-*")) == generations


def test_a_write_killed_before_its_manifest_is_skipped(digits, tmp_path):
    vae = trained(digits)
    good = checkpoints.write_checkpoint(vae, tmp_path, epoch=1)
    unfinished = tmp_path / "ckpt-000000099"
    unfinished.mkdir()
    (unfinished / "model.keras").write_bytes(b"half")
    with pytest.warns(checkpoints.CheckpointWarning, match="no manifest.json"):
        assert checkpoints.latest_checkpoint(tmp_path)[0] == good


def test_keep_must_be_positive(tmp_path, digits):
    with pytest.raises(ValueError, match="Received: keep=0"):
        checkpoints.write_checkpoint(trained(digits), tmp_path, epoch=1, keep=0)
