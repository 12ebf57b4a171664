"""tfvae.faults: a non-finite loss stops training in one clear error; signals stop it cleanly."""

import signal

import keras
import pytest
from conftest import make_vae

from tfvae import checkpoints
from tfvae.faults import NonFiniteLossError, StopOnSignal


def test_an_exploding_learning_rate_stops_training_naming_epoch_and_term(digits, tmp_path):
    vae = make_vae(seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=1)
    x = digits[0][:512]
    vae.fit(
        x, batch_size=64, epochs=1, verbose=0, callbacks=[checkpoints.EpochCheckpoint(tmp_path)]
    )
    vae.optimizer.learning_rate.assign(1e12)
    with pytest.raises(NonFiniteLossError) as caught:
        vae.fit(
            x,
            batch_size=64,
            epochs=3,
            initial_epoch=1,
            verbose=0,
            callbacks=[checkpoints.EpochCheckpoint(tmp_path)],
        )
    error = caught.value
    assert error.epoch == 1 and error.first_step == error.last_step > 8
    assert set(error.terms) <= {"distortion", "rate"} and error.terms
    assert f"in epoch 2, step {error.last_step}" in str(error)
    assert "went non-finite" in str(error)
    path, state = checkpoints.latest_checkpoint(tmp_path)  # the last good one is kept
    assert state["epoch"] == 1 and checkpoints.verify_checkpoint(path) is None


def test_stop_on_signal_records_the_signal_and_restores_the_handlers(digits):
    before = signal.getsignal(signal.SIGINT)
    stop = StopOnSignal()
    with stop:
        assert signal.getsignal(signal.SIGINT) is not before
        signal.raise_signal(signal.SIGINT)  # would be KeyboardInterrupt outside
        assert stop.received == signal.SIGINT and stop.signal_name == "SIGINT"
        vae = make_vae()
        vae.compile(steps_per_execution=1, jit_compile=False)
        history = vae.fit(digits[0][:64], batch_size=16, epochs=3, verbose=0, callbacks=[stop])
    assert signal.getsignal(signal.SIGINT) is before
    # The stop comes at the first batch end: one step of the first epoch, then no more.
    assert int(vae.optimizer.iterations.numpy()) == 1 and len(history.history["loss"]) == 1
