"""Published optimisers: Burda et al.'s staged learning rate and Adam settings."""

import keras
import numpy as np
import pytest

import tfvae
from tfvae.optimizers import BurdaSchedule, burda_adam


def test_burda_schedule_has_the_papers_stages_epochs_and_rates():
    schedule = BurdaSchedule(steps_per_epoch=7)
    assert schedule.epochs == (1, 3, 9, 27, 81, 243, 729, 2187)
    assert schedule.total_epochs == 3280
    # 1e-3 * 10^(-i/7), rounded as the authors' code rounds it.
    np.testing.assert_allclose(
        schedule.learning_rates, [1e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1e-4]
    )
    np.testing.assert_allclose(
        schedule.learning_rates, [1e-3 * 10 ** (-i / 7) for i in range(8)], rtol=0.03
    )
    # Stage i starts after 3^0 + ... + 3^(i-1) epochs of 7 steps each.
    starts = np.cumsum((0,) + schedule.epochs[:-1]) * 7
    for stage, start in enumerate(starts):
        assert float(schedule(start)) == pytest.approx(schedule.learning_rates[stage])
        if stage:
            assert float(schedule(start - 1)) == pytest.approx(schedule.learning_rates[stage - 1])
        assert schedule.stage_of(start // 7) == stage
    assert float(schedule(10**9)) == pytest.approx(1e-4)  # after the last stage: the last rate
    assert schedule.stage_of(10**6) == 7


def test_burda_adam_is_the_authors_update_on_a_mean_loss():
    optimizer = burda_adam(steps_per_epoch=100, batch_size=20)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.99, 0.999)
    assert optimizer.epsilon == pytest.approx(1e-4 / 20)  # their 1e-4 on the batch *sum*
    assert isinstance(optimizer.learning_rate, BurdaSchedule) or hasattr(
        optimizer, "_learning_rate"
    )
    restored = keras.optimizers.Adam.from_config(optimizer.get_config())
    schedule = restored._learning_rate
    assert isinstance(schedule, BurdaSchedule) and schedule.steps_per_epoch == 100


def test_a_vae_trains_on_the_schedule_and_keeps_it_through_a_keras_file(digits, tmp_path):
    x_train, _ = digits
    vae = tfvae.VAE(
        tfvae.networks.mlp_encoder((8, 8, 1), 4, (16,), activation="tanh"),
        tfvae.networks.mlp_decoder(4, (8, 8, 1), (16,), activation="tanh"),
    )
    steps = int(np.ceil(len(x_train) / 100))
    vae.compile(optimizer=burda_adam(steps_per_epoch=steps, stages=3))
    vae.fit(x_train, batch_size=100, epochs=2, verbose=0)  # stage 0 (1 epoch), then stage 1
    assert int(vae.optimizer.iterations) == 2 * steps
    assert float(vae.optimizer.learning_rate) == pytest.approx(7.2e-4)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert int(loaded.optimizer.iterations) == 2 * steps
    assert float(loaded.optimizer.learning_rate) == pytest.approx(7.2e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps_per_epoch": 0}, "`steps_per_epoch` must be an integer >= 1. Received"),
        ({"steps_per_epoch": 2.5}, "`steps_per_epoch` must be an integer"),
        ({"steps_per_epoch": 10, "stages": 0}, "`stages` must be an integer >= 1"),
    ],
)
def test_bad_schedule_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BurdaSchedule(**kwargs)
    with pytest.raises(ValueError, match="`batch_size` must be"):
        burda_adam(10, batch_size=0)


def test_normalized_adam_steps_as_adam_on_the_unit_gradient():
    from tfvae.optimizers import NormalizedAdam

    gradient = np.array([3.0, -4.0], np.float32)  # norm 5
    ours, reference = keras.Variable([1.0, 1.0]), keras.Variable([1.0, 1.0])
    normalized, plain = NormalizedAdam(0.1), keras.optimizers.Adam(0.1)
    for scale in (1.0, 10.0, 0.01):  # the gradient's scale never matters
        normalized.apply_gradients([(gradient * scale, ours)])
        plain.apply_gradients([(gradient / 5.0, reference)])
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5)
    original = NormalizedAdam(5e-4, name="normalized")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert isinstance(restored, NormalizedAdam) and restored.get_config() == original.get_config()
