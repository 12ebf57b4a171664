"""tfvae.config: a run's settings, checked by the library with the names the CLI maps."""

import json

import pytest

from tfvae.config import RunConfig, read_config_file
from tfvae.models import registry


def test_defaults_validate_and_round_trip_through_config_json(tmp_path):
    config = RunConfig(model="iwae", model_options={"k": 3}, epochs=2, beta=0.5)
    config.validate()
    assert config.to_dict()["k"] == 3 and "model_options" not in config.to_dict()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config.to_dict(), "data_shape": [8, 8, 1], "xla": True}))
    assert RunConfig.from_dict(read_config_file(path)) == config
    assert config.model_spec_options() == {"k": 3}
    assert RunConfig(model="vqvae").model_spec_options() == {
        o.name: o.default for o in registry.spec("vqvae").options
    }


def test_every_setting_is_a_flag_with_help():
    for setting in RunConfig.settings():
        assert setting.metadata["help"] and setting.metadata["group"], setting.name
        if setting.metadata["kind"] == "choice":
            assert setting.default in setting.metadata["choices"], setting.name


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"epochs": 0}, ValueError, r"`epochs` must be an integer >= 1\. Received: epochs=0"),
        ({"learning_rate": 0.0}, ValueError, "`learning_rate` must be a finite number > 0"),
        ({"beta": -1.0}, ValueError, "`beta` must be a finite number >= 0"),
        ({"network": "resnet"}, ValueError, "`network` must be one of 'mlp', 'conv'"),
        ({"dataset": ""}, TypeError, "`dataset` must be a non-empty string"),
        ({"offline": "yes"}, TypeError, "`offline` must be True or False"),
        (
            {"model_options": {"k": 3}},
            ValueError,
            "`k` applies to `model` iwae or stacked, not vae",
        ),
        ({"model": "iwae", "model_options": {"k": 0}}, ValueError, "`k` must be an integer >= 1"),
        ({"manual_dir": "/nowhere"}, ValueError, "`manual_dir` '/nowhere' does not exist"),
        ({"model": "gan"}, ValueError, "gan"),
    ],
)
def test_bad_settings_name_the_argument(changes, error, message):
    with pytest.raises(error, match=message):
        RunConfig(**changes).validate()


def test_old_configs_and_damaged_files(tmp_path):
    old = RunConfig.from_dict({"model": "vae", "jit_compile": False, "command": "train"})
    assert old.jit_compile == "off"  # runs written before the choice existed
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not a readable run config"):
        read_config_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a run config"):
        read_config_file(path)
    path.write_text('{"model": "vae", "other": 1}')  # valid JSON, but not a run's settings
    with pytest.raises(ValueError, match="it has no dataset, latent_dim"):
        read_config_file(path)
