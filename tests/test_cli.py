"""The `tfvae` command, run as a user runs it: in a subprocess (`run`), and, where a
test runs many commands, in this process (`run_here`, the same `cli.main`)."""

import argparse
import json
import os
import subprocess
import sys

import keras
import matplotlib.image
import numpy as np
import pytest
from conftest import run_here
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_dashboards import read_projector, read_session

import tfvae
from tfvae import cli, data, plots
from tfvae.config import RunConfig
from tfvae.models import registry

SCALARS = {"epoch_loss", "epoch_distortion", "epoch_rate", "epoch_elbo"}


def run(*args, cwd=None, env=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop(data.MANUAL_DIR_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "tfvae", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=600,
    )


def scalar_tags(folder):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return set(events.Tags()["tensors"]), events


def test_train_on_the_embedded_default_writes_a_complete_run(tmp_path):
    result = run("train", "--epochs", "3", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    assert "validation ELBO" in result.stdout
    expected = {
        "model.keras",
        "config.json",
        "history.json",
        "samples.png",
        "reconstructions.png",
        "logs",
    }
    assert expected <= {p.name for p in run_dir.iterdir()}

    vae = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    assert isinstance(vae, tfvae.VAE) and vae.data_shape == (8, 8, 1)
    x_test, _ = data.load_arrays("digits", "test")
    assert np.isfinite(vae.evaluate(x_test, verbose=0, return_dict=True)["elbo"])

    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "digits" and config["epochs"] == 3
    # The training defaults chosen by benchmarks/run.py are the ones `tfvae train` used.
    assert config["steps_per_execution"] == tfvae.training.DEFAULT_STEPS_PER_EXECUTION
    assert config["jit_compile"] == "auto"  # the flag as given, so --resume can reuse it
    assert config["xla"] is tfvae.training.auto_jit_compile(vae)  # what it resolved to
    assert config["fused_steps"] is config["xla"]
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["val_elbo"]) == 3

    for name, shape in [("samples.png", (8, 8)), ("reconstructions.png", (8, 8))]:
        image = matplotlib.image.imread(run_dir / name)
        assert image.shape[0] >= 8 * shape[0] and image.std() > 0.05  # not blank

    for split in ("train", "validation"):
        tags, events = scalar_tags(run_dir / "logs" / split)
        assert SCALARS <= tags, tags
        assert len(events.Tensors("epoch_elbo")) == 3

    # The HParams session: the flags, the final validation ELBO and log p(x).
    hparams, metrics, group = read_session(run_dir / "logs")
    assert group == "run" and hparams["latent_dim"] == 20 and hparams["model"] == "vae"
    assert hparams["epochs"] == 3 and "output_dir" not in hparams
    step, elbo = metrics["final/validation_elbo"]
    assert step == 3 and elbo == pytest.approx(history["val_elbo"][-1], rel=1e-6)
    assert metrics["final/validation_log_likelihood"][1] > elbo  # L_100 >= L_1
    # The projector: the latent means of the 360 test digits, their labels and a sprite.
    embedding, values, labels, sprite = read_projector(run_dir / "logs")
    x_test, y_test = data.load_arrays("digits", "test")
    means = vae.encode(x_test).mean().numpy()
    np.testing.assert_allclose(values, means, rtol=1e-4, atol=1e-5)
    assert labels == [str(y) for y in y_test]
    assert tuple(sprite.shape) == (19 * 8, 19 * 8, 1)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "no_such_set"], "Unknown data set 'no_such_set'"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer, received '0'"),
        (["--batch-size", "x"], "argument --batch-size: expected a positive integer"),
        (["--beta", "-1"], "argument --beta: expected a number >= 0"),
        (["--learning-rate", "nan"], "argument --learning-rate: expected a number > 0"),
        (["--likelihood", "poisson"], "argument --likelihood: invalid choice: 'poisson'"),
        (["--network", "rnn"], "argument --network: invalid choice: 'rnn'"),
        (["--manual-dir", "/no/such/folder"], "--manual-dir '/no/such/folder' does not exist"),
        (["--dataset", "digits", "--split", "valid"], "Unknown split 'valid' for 'digits'"),
    ],
)
def test_bad_flags_give_one_clear_line_and_a_nonzero_exit(args, message):
    # The first case as a real process (its exit status); the others in-process.
    command = run if args == ["--dataset", "no_such_set"] else run_here
    result = command("train", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfvae") and message in lines[0]


def test_offline_with_no_data_says_what_to_do(tmp_path):
    result = run("train", "--dataset", "mnist", "--offline", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'mnist' is not prepared" in lines[0] and "--manual-dir" in lines[0]


def test_an_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "model.keras").write_text("precious")
    result = run_here("train", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr
    assert (tmp_path / "model.keras").read_text() == "precious"


def test_help_lists_every_setting_and_model_option():
    result = run("train", "--help")
    assert result.returncode == 0
    flags = [cli._flag(s.name) for s in RunConfig.settings()]
    flags += [option.flag for option, _ in registry.options_by_name().values()]
    for flag in [*flags, "--resume"]:
        assert flag in result.stdout, flag


PARSE_ONLY = """
import sys
from tfvae import cli
try:
    cli.main({argv!r})
except SystemExit as stop:
    code = stop.code
print(code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        (["train", "--help"], 0),
        (["plot", "--help"], 0),
        (["train", "--epochs", "0"], 2),
        (["train", "--network", "rnn"], 2),
        (["evaluate"], 2),
    ],
)
def test_parsing_the_flags_imports_no_tensorflow(argv, code):
    result = subprocess.run(
        [sys.executable, "-c", PARSE_ONLY.format(argv=argv)], capture_output=True, text=True
    )
    assert result.stdout.split()[-3:] == [str(code), "False", "False"], result.stderr


def test_library_argument_names_are_shown_as_flags():
    train = next(
        action.choices["train"]
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    shown = cli._in_flags(
        "`latent_dim` must be an integer >= 1. Received: latent_dim=0; pass `overwrite=True`; "
        "`k` applies to `model` iwae; `x` is empty.",
        train,
    )
    assert shown == (
        "--latent-dim must be an integer >= 1. Received: latent_dim=0; pass `overwrite=True`; "
        "--k applies to --model iwae; `x` is empty."
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("exports") / "run"
    result = run("train", "--epochs", "1", "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow  # long; CI runs it with -m slow
def test_export_and_sample_round_trip_through_all_three_formats(trained_run, tmp_path):
    # The .tflite export and its sampling run as a subprocess; the rest in-process.
    for command, args in (
        (run_here, ["--format", "saved_model"]),
        (run, ["--format", "tflite"]),
        (run_here, ["--format", "tflite", "--quantize", "float16"]),
    ):
        result = command("export", str(trained_run), *args)
        assert result.returncode == 0, result.stderr
    assert (trained_run / "saved_model" / "saved_model.pb").is_file()
    assert (trained_run / "model.tflite").stat().st_size > 10_000
    assert (trained_run / "model.float16.tflite").stat().st_size < (
        trained_run / "model.tflite"
    ).stat().st_size

    for source in ("model.keras", "saved_model", "model.tflite", "model.float16.tflite"):
        out = tmp_path / f"{source}.png"
        command = run if source == "model.tflite" else run_here
        result = command("sample", str(trained_run / source), "-n", "16", "--out", str(out))
        assert result.returncode == 0, result.stderr
        image = matplotlib.image.imread(out)
        assert image.shape[0] >= 4 * 8 and image.std() > 0.05


@pytest.mark.parametrize(
    "make_args,message",
    [
        (
            lambda run_dir, tmp: [
                "export",
                str(run_dir),
                "--format",
                "tflite",
                "--quantize",
                "int4",
            ],
            "argument --quantize: invalid choice: 'int4'",
        ),
        (
            lambda run_dir, tmp: [
                "export",
                str(run_dir),
                "--format",
                "saved_model",
                "--quantize",
                "float16",
            ],
            "--quantize applies to --format tflite only",
        ),
        (lambda run_dir, tmp: ["export", str(tmp), "--format", "tflite"], "No model at"),
        (
            lambda run_dir, tmp: ["sample", str(tmp / "noise.tflite"), "--out", str(tmp / "a.png")],
            "is not a TFLite model",
        ),
        (
            lambda run_dir, tmp: ["sample", str(tmp / "cut.tflite"), "--out", str(tmp / "a.png")],
            "damaged or truncated TFLite model",
        ),
        (
            lambda run_dir, tmp: ["sample", str(tmp / "saved_model"), "--out", str(tmp / "a.png")],
            "Could not read the SavedModel",
        ),
        (
            lambda run_dir, tmp: [
                "sample",
                str(run_dir / "model.keras"),
                "--out",
                str(tmp / "a.jpg"),
            ],
            "--out must name a .png file",
        ),
        (
            lambda run_dir, tmp: [
                "sample",
                str(run_dir / "model.keras"),
                "-n",
                "0",
                "--out",
                str(tmp / "a.png"),
            ],
            "argument -n: expected a positive integer",
        ),
    ],
)
def test_bad_export_and_sample_input_gives_one_clear_line(
    trained_run, tmp_path, make_args, message
):
    (tmp_path / "noise.tflite").write_bytes(np.random.default_rng(0).bytes(2048))
    tflite = trained_run / "model.tflite"
    if not tflite.exists():
        assert run_here("export", str(trained_run), "--format", "tflite").returncode == 0
    content = tflite.read_bytes()
    (tmp_path / "cut.tflite").write_bytes(content[: len(content) // 2])
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"\x08garbage")
    result = run_here(*make_args(trained_run, tmp_path))  # subprocess exits: test_bad_flags
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "a.png").exists()


def test_export_never_replaces_an_existing_file_without_overwrite(trained_run):
    target = trained_run / "kept.tflite"
    target.write_bytes(b"precious")
    result = run_here("export", str(trained_run), "--format", "tflite", "--out", str(target))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert target.read_bytes() == b"precious"
    result = run_here(
        "export", str(trained_run), "--format", "tflite", "--out", str(target), "--overwrite"
    )
    assert result.returncode == 0 and target.read_bytes()[4:8] == b"TFL3"


def test_another_models_flag_is_refused_in_one_line(tmp_path):
    result = run_here("train", "--model", "vae", "--k", "50", "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--k applies to --model iwae or stacked, not vae" in result.stderr
    assert not (tmp_path / "r").exists()
    help_text = run_here("train", "--help").stdout
    for name, (option, models) in tfvae.models.registry.options_by_name().items():
        assert option.flag in help_text and all(m in help_text for m in models), name


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, shared_data, tfds_dir):
    """A short MNIST run (28 x 28 images, not the 8 x 8 digits), prepared offline."""
    run_dir = tmp_path_factory.mktemp("mnist") / "run"
    data_dir = tfds_dir
    result = run_here(
        "train", "--dataset", "mnist", "--split", "train[:512]", "--validation-split",
        "test[:256]", "--manual-dir", str(shared_data), "--data-dir", data_dir, "--epochs", "1",
        "--latent-dim", "4", "--output-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["jit_compile"] == "auto" and isinstance(config["xla"], bool)  # the flag kept
    return run_dir, ["--manual-dir", str(shared_data), "--data-dir", data_dir]


def test_plot_and_evaluate_a_checkpoint_with_its_runs_data(mnist_run):
    run_dir, source = mnist_run
    (checkpoint,) = (run_dir / "checkpoints").glob("ckpt-*")
    result = run_here("plot", str(checkpoint), "--what", "reconstructions", *source)
    assert result.returncode == 0, result.stderr
    picture = run_dir / "plots" / f"{checkpoint.name}-reconstructions.png"
    assert matplotlib.image.imread(picture).shape[:2] == ((8 * 29 + 1) * 2,) * 2  # 28 x 28
    result = run_here("evaluate", str(checkpoint), "--k", "10", "--examples", "100", *source)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / f"{checkpoint.name}-metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["log_likelihood"] > metrics["elbo"]
    # A model file with no run config anywhere above it: one line asking for --dataset.
    alone = run_dir.parent / "alone" / "deeper" / "still" / "vae.keras"
    alone.parent.mkdir(parents=True)
    alone.write_bytes((checkpoint / "model.keras").read_bytes())
    result = run_here("plot", str(alone), "--what", "reconstructions", *source)
    assert result.returncode == 2 and "pass --dataset" in result.stderr, result.stderr
    result = run_here("plot", str(alone), "--what", "latent_map", "--dataset", "mnist", *source)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # long; CI runs it with -m slow
def test_evaluate_measures_sample_quality_with_its_floor_and_class_accuracy(tmp_path):
    run_dir = tmp_path / "cvae"
    result = run_here("train", "--model", "conditional", "--epochs", "5", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr
    result = run_here("evaluate", run_dir, "--k", "10", "--sample-quality")
    assert result.returncode == 0, result.stderr
    quality = json.loads((run_dir / "metrics.json").read_text())["sample_quality"]
    assert quality["samples"] == 360 and quality["feature_test_accuracy"] > 0.95
    assert quality["fid"] > quality["fid_floor"] > 0
    assert set(quality["class_accuracy"]) == {str(c) for c in range(10)}
    assert 0 <= quality["mean_class_accuracy"] <= 1
    for line in ("FID", "train vs test", "KID", "precision", "recall", "class accuracy"):
        assert line in result.stdout
    # ... and in the run's HParams session, beside the measures of training.
    _, measures, _ = read_session(run_dir / "logs")
    assert measures["final/test_fid"] == (5, pytest.approx(quality["fid"], rel=1e-5))
    assert {"final/validation_elbo", "final/test_precision"} <= set(measures)
    # A bad count is refused in one line, before anything is computed.
    result = run_here("evaluate", run_dir, "--sample-quality", "--num-samples", "0")
    assert result.returncode == 2 and "--num-samples" in result.stderr


@pytest.mark.slow  # every picture of one run; the matrix draws each of every model
def test_plot_command_draws_each_picture_of_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "tfvae", "train", "--epochs", "2", "--latent-dim", "2"]
        + ["--output-dir", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    for what in plots.PLOTS:  # in-process: one subprocess above shows the real command
        refused = {"analogies": "takes no labels", "factor_information": "--dataset dsprites"}
        if what in refused:  # for models of labels or of dSprites (the matrix checks both)
            assert cli.main(["plot", str(run), "--what", what]) == 2
            assert refused[what] in capsys.readouterr().err
            continue
        assert cli.main(["plot", str(run), "--what", what]) == 0, capsys.readouterr().err
        read(run / "plots" / f"{what}.png")
    capsys.readouterr()
    assert cli.main(["plot", str(run), "--what", "curves"]) == 2
    assert "already exists" in capsys.readouterr().err


def read(path):
    image = matplotlib.image.imread(path)
    assert image.std() > 0.05, f"{path} looks blank"
    return image.shape[:2]
