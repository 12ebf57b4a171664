"""tfvae.schedules: schedule formulas and the callback that applies them without retracing."""

import math

import keras
import numpy as np
import pytest
from conftest import CountingVAE, make_vae
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfvae
from tfvae import schedules


def test_linear_warmup_values():
    schedule = schedules.LinearWarmup(100)
    assert [schedule(t) for t in (0, 25, 50, 100, 1000)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    ranged = schedules.LinearWarmup(10, start=0.5, end=4.0)
    assert ranged(0) == 0.5 and ranged(5) == pytest.approx(2.25) and ranged(10) == 4.0


def test_cyclical_values_follow_fu_et_al():
    schedule = schedules.Cyclical(period=100, ratio=0.5)
    values = [schedule(t) for t in (0, 25, 50, 99, 100, 125, 150, 225)]
    assert values == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 0.5]


def test_sigmoid_values():
    schedule = schedules.Sigmoid(midpoint=100, steepness=0.1, end=2.0)
    assert schedule(100) == pytest.approx(1.0)
    assert schedule(0) == pytest.approx(2.0 / (1 + math.exp(10)))
    assert schedule(10**6) == pytest.approx(2.0) and schedule(-(10**6)) == 0.0


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: schedules.LinearWarmup(0), "warmup"),
        (lambda: schedules.LinearWarmup(10, start=-1.0), "start"),
        (lambda: schedules.Cyclical(100, ratio=0.0), "ratio"),
        (lambda: schedules.Cyclical(100, ratio=1.5), "ratio"),
        (lambda: schedules.Sigmoid(10, steepness=0.0), "steepness"),
        (lambda: schedules.Sigmoid(10, end=float("nan")), "end"),
        (lambda: schedules.KLScheduleCallback(schedules.LinearWarmup(5), unit="batch"), "unit"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "schedule",
    [schedules.LinearWarmup(7, 0.1, 2.0), schedules.Cyclical(9, 0.3), schedules.Sigmoid(5, 0.5)],
)
def test_config_round_trip(schedule):
    clone = type(schedule).from_config(schedule.get_config())
    assert [clone(t) for t in range(20)] == [schedule(t) for t in range(20)]


def test_callback_sets_beta_every_step_without_retracing(digits, tmp_path):
    encoder = tfvae.networks.mlp_encoder((8, 8, 1), 4, (32,))
    decoder = tfvae.networks.mlp_decoder(4, (8, 8, 1), (32,))
    vae = CountingVAE(encoder, decoder)
    vae.compile(steps_per_execution=1)  # callbacks (and so beta) act every step
    CountingVAE.traces = 0
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.beta.numpy()))

    schedule = schedules.Cyclical(period=10, ratio=0.5, end=2.0)
    x = digits[0][:1280]  # 20 full batches of 64 an epoch
    history = vae.fit(
        x,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[
            schedules.KLScheduleCallback(schedule),
            Watch(),
            keras.callbacks.TensorBoard(str(tmp_path), write_graph=False),
        ],
    )
    assert CountingVAE.traces == 1
    assert seen == pytest.approx([schedule(t) for t in range(40)])
    assert history.history["beta"] == pytest.approx([schedule(19), schedule(39)])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    events.Reload()
    assert "epoch_beta" in events.Tags()["tensors"]


def test_epoch_schedule_and_a_schedule_that_goes_negative(digits):
    vae = make_vae()
    vae.compile()
    history = vae.fit(
        digits[0][:256],
        batch_size=64,
        epochs=3,
        verbose=0,
        callbacks=[schedules.KLScheduleCallback(schedules.LinearWarmup(2), unit="epoch")],
    )
    assert history.history["beta"] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"beta=-1.0 at step 12; expected a finite number >= 0"):
        vae.fit(
            digits[0][:64],
            epochs=1,
            verbose=0,
            callbacks=[schedules.KLScheduleCallback(lambda t: -1.0)],
        )
    assert np.isfinite([w.numpy() for w in vae.trainable_weights][0]).all()
