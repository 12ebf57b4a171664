"""tf.distribute for real on this CPU: MirroredStrategy over two logical devices, and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Each runs in processes of its own (tests/distributed_script.py, `tfvae train`): the
CPU can be split into logical devices, and a multi-worker strategy made, only before
TensorFlow starts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import make_vae

import tfvae
from tfvae import cli, fused, models, scaling

tfd = tfp.distributions
SIXTEEN_BIT = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}

SCRIPT = Path(__file__).with_name("distributed_script.py")
#: Seconds a multi-worker run may take before its processes are killed.
WORKER_TIMEOUT = 240


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """The results of tests/distributed_script.py mirrored (one process, ~50 s)."""
    out = tmp_path_factory.mktemp("mirrored") / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "mirrored", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_mirrored_strategy_runs_on_two_replicas(mirrored):
    assert mirrored["replicas"] == 2


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_mirrored_vqvae_matches_one_device_to_rounding(mirrored):
    # VQ-VAE's objective draws no noise, so two replicas must reproduce one device:
    # the mean over the global batch (also split unevenly), the summed gradients,
    # the metrics summed over replicas, and the EMA codebook updated from the global
    # batch's statistics.
    vq = mirrored["vqvae"]
    # One SGD step is the gradient: equal to rounding, where a loss summed instead of
    # averaged over the two replicas would make it twice as large.
    assert vq["one_step_difference"] < 1e-5 * vq["one_step"]
    assert vq["one_step"] > 0.01
    # 58 Adam steps (2 epochs, each ending with a batch of 5 split 3 + 2).
    assert vq["steps"] == 2 * 29
    np.testing.assert_allclose(vq["mirrored"], vq["one_device"], rtol=1e-5)
    assert vq["weights_mirrored"] < 1e-3
    assert vq["codebook_copies"] == 0.0  # the two replicas' copies stay identical


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_mirrored_vae_loss_after_40_steps_matches_one_device(mirrored):
    # Stated tolerance: 2% of the test loss after 40 full-batch Adam steps. Each
    # replica draws its own posterior noise, so the runs differ by sampling noise
    # only (0.8% here; one device with other seeds: 0.4-1.1%). Doubling Adam's
    # learning rate moves it by 4%. (The exact check of the averaging is the
    # VQ-VAE's, under SGD.)
    vae = mirrored["vae"]
    assert vae["steps"] == 40
    one, two = vae["one_device"], vae["mirrored"]
    assert abs(two - one) / one < 0.02
    assert abs(vae["double_learning_rate"] - one) / one > 0.02


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_mirrored_metrics_average_over_all_replicas_and_an_uneven_batch(mirrored):
    vae = mirrored["vae"]
    np.testing.assert_allclose(vae["rate_mirrored"], vae["rate_one_device"], rtol=1e-5)


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_replicas_draw_different_posterior_noise(mirrored):
    first, second = mirrored["vae"]["replica_seeds"]
    assert first != second


@pytest.mark.slow  # two logical CPU devices, trained twice (about a minute with its fixture)
def test_checkpoint_written_under_mirrored_strategy_resumes_exactly(mirrored):
    resume = mirrored["resume"]
    assert resume["mirrored_variables"] == "MirroredVariable"  # loaded into the scope
    assert resume["steps"] == 2 * 29
    assert resume["weights"] == 0.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def _workers(commands: list[list[str]], cwd=None):
    """Starts one process per worker, each with its TF_CONFIG on free local ports;
    kills whatever still runs on the way out (a failure or a timeout)."""
    ports = _free_ports(len(commands))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index, command in enumerate(commands):
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(task), "TF_CPP_MIN_LOG_LEVEL": "2"}
            processes.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _finish(processes) -> list[subprocess.CompletedProcess]:
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=WORKER_TIMEOUT)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out))
    return results


def _run_workers(commands: list[list[str]], cwd=None) -> list[subprocess.CompletedProcess]:
    """Runs one process per worker to the end (at most WORKER_TIMEOUT seconds)."""
    with _workers(commands, cwd) as processes:
        return _finish(processes)


@pytest.mark.slow  # two worker processes (about 10 s)
def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    prefixes = [str(tmp_path / f"worker{i}") for i in range(2)]
    done = _run_workers([[sys.executable, str(SCRIPT), "worker", p] for p in prefixes])
    for result in done:
        assert result.returncode == 0, result.stdout[-3000:]
    reports = [json.loads(Path(p + ".json").read_text()) for p in prefixes]
    weights = [np.load(p + ".npz") for p in prefixes]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    assert [r["steps"] for r in reports] == [20, 20]  # 640 examples, global batch 64, 2 epochs
    assert reports[0]["moved"] > 0.01  # it trained
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    assert reports[0]["history"] == reports[1]["history"]
    assert reports[0]["history"]["loss"][1] < reports[0]["history"]["loss"][0]


@pytest.mark.slow  # long; CI runs it with -m slow
def test_cli_trains_real_mnist_with_multi_worker_strategy(tmp_path, mnist_source):
    # TFDS's MNIST split is one file: TensorFlow's default sharding by file fails
    # with two workers; tfvae shards it by batch (scaling.sharded_by_batch).
    tfvae.data.load_arrays("mnist", "test[:1]", **mnist_source)  # prepared once, not twice
    run = tmp_path / "run"
    command = [sys.executable, "-m", "tfvae", "train", "--dataset", "mnist", "--epochs", "1"]
    command += ["--split", "train[:2000]", "--validation-split", "test[:500]", "--offline"]
    command += ["--manual-dir", mnist_source["manual_dir"], "--data-dir", mnist_source["data_dir"]]
    command += ["--batch-size", "128", "--strategy", "multi_worker", "--output-dir", str(run)]
    done = _run_workers([command, command], cwd=tmp_path)
    for result in done:
        assert result.returncode == 0, result.stdout[-3000:]
    assert "worker 0 writes the run folder" in done[1].stdout
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == "multi_worker" and config["replicas"] == 2
    assert (run / "model.keras").is_file()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt-000000016"]
    assert "wrote" not in done[1].stdout


def test_cli_multi_worker_without_tf_config_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(["train", "--strategy", "multi_worker", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "TF_CONFIG" in err and "Received: TF_CONFIG is not set" in err


def test_cli_multi_worker_with_bad_tf_config_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    assert cli.main(["train", "--strategy", "multi_worker", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cluster.worker" in err


@pytest.mark.slow  # long; CI runs it with -m slow
def test_cli_resumes_a_mirrored_run_to_the_same_weights(tmp_path, digits):
    # A run under MirroredStrategy (one CPU: one replica, the distributed code path),
    # then the same run with its last epoch lost and resumed from the checkpoint.
    import keras

    flags = ["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "64"]
    flags += ["--strategy", "mirrored", "--latent-dim", "4"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli.main([*flags, "--output-dir", str(whole)]) == 0
    assert cli.main([*flags, "--output-dir", str(cut)]) == 0
    config = json.loads((whole / "config.json").read_text())
    assert config["strategy"] == "mirrored" and config["fused_steps"] is False
    newest = sorted((cut / "checkpoints").iterdir())[-1]
    for path in [*newest.iterdir(), cut / "model.keras"]:
        path.unlink()
    newest.rmdir()
    assert cli.main(["train", "--resume", "--output-dir", str(cut)]) == 0
    a = keras.saving.load_model(whole / "model.keras")
    b = keras.saving.load_model(cut / "model.keras")
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_xla_is_off_under_a_strategy_and_an_explicit_request_warns():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        automatic, explicit = make_vae(), make_vae()
        automatic.compile()
        with pytest.warns(UserWarning, match="ignored under tf.distribute"):
            explicit.compile(jit_compile=True)
    for vae in (automatic, explicit):
        assert vae.jit_compile is False
        assert scaling.uses_distributed_steps(vae) and not fused.uses_fused_steps(vae)


@pytest.mark.slow  # two worker processes trained, stopped and resumed (about a minute)
def test_sigterm_to_one_worker_stops_all_at_one_step_and_all_resume(tmp_path):
    # SIGTERM reaches worker 1 only (not the one that writes checkpoints). The workers
    # agree at every batch end, so both stop after the same step: worker 0 writes a
    # mid-run checkpoint, both exit 75, and --resume on both finishes the run.
    run = tmp_path / "run"
    command = [sys.executable, "-m", "tfvae", "train", "--dataset", "digits", "--epochs", "3"]
    command += ["--batch-size", "64", "--steps-per-execution", "2", "--latent-dim", "4"]
    command += ["--strategy", "multi_worker", "--output-dir", str(run)]
    with _workers([command, command], cwd=tmp_path) as processes:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir()):
            assert time.monotonic() < deadline and processes[0].poll() is None
            time.sleep(0.1)
        processes[1].send_signal(signal.SIGTERM)
        stopped = _finish(processes)
    assert [r.returncode for r in stopped] == [75, 75], [r.stdout[-1500:] for r in stopped]
    assert "stopped by SIGTERM to another worker" in stopped[0].stdout
    assert "stopped by SIGTERM in epoch" in stopped[1].stdout
    newest = sorted((run / "checkpoints").iterdir())[-1]
    state = json.loads((newest / "state.json").read_text())
    assert 23 <= state["iterations"] < 3 * 23  # past epoch 1, before the end

    resume = [sys.executable, "-m", "tfvae", "train", "--resume", "--output-dir", str(run)]
    resumed = _run_workers([resume, resume], cwd=tmp_path)
    assert [r.returncode for r in resumed] == [0, 0], resumed[0].stdout[-2000:]
    assert f"resuming from {newest}" in resumed[1].stdout  # worker 1 read worker 0's
    assert sorted((run / "checkpoints").iterdir())[-1].name == "ckpt-000000069"
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3


@pytest.fixture
def precision():
    """Sets a global dtype policy for one test and restores float32 after it."""
    yield scaling.set_precision
    keras.mixed_precision.set_global_policy("float32")


def _hidden_dtype(model: keras.Model) -> str:
    """The dtype of the first Dense layer's output: what the network computes in."""
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    probe = keras.Model(model.inputs[0], dense.output)
    return probe(np.zeros((1, *model.inputs[0].shape[1:]), "float32")).dtype.name


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_networks_run_in_16_bits_and_distributions_kl_and_loss_in_float32(
    policy, precision, digits
):
    precision(policy)
    vae = models.build("vae", (8, 8, 1), latent_dim=4, seed=1)
    vae.compile()
    x = tf.constant(digits[0][:16])
    assert _hidden_dtype(vae.encoder) == SIXTEEN_BIT[policy]  # mixed precision is on
    posterior = vae.encode(x)
    likelihood = vae.decode(posterior.sample(seed=[1, 2]))
    assert posterior.dtype == tf.float32 and likelihood.dtype == tf.float32
    assert tfd.kl_divergence(posterior, vae.prior_distribution()).dtype == tf.float32
    terms = vae.loss_terms(x, training=True)
    assert {name: value.dtype for name, value in terms.items()} == dict.fromkeys(terms, tf.float32)
    scaled = policy == "mixed_float16"
    assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer) == scaled


def test_every_model_keeps_its_terms_float32_under_mixed_bfloat16(precision, digits):
    precision("mixed_bfloat16")
    x = tf.constant(digits[0][:8])
    labels = tf.zeros(8, tf.int32)
    for name in models.MODELS:
        model = models.build(name, (8, 8, 1), latent_dim=4, seed=1)
        y = labels if name == "conditional" else None
        terms = model.loss_terms(x, y, training=True)
        wrong = {key: value.dtype.name for key, value in terms.items() if value.dtype != tf.float32}
        assert not wrong, f"{name}: {wrong}"


@pytest.mark.slow  # trains real MNIST in three precisions
def test_mixed_precision_training_reaches_the_float32_test_elbo(precision, mnist_source):
    # Stated tolerance: a test ELBO within 2.5% of float32's after the same 188 batches
    # (6,000 MNIST images, 2 epochs of 64). Measured: bfloat16 0.3% and float16 1.4%
    # from float32; float32 with another seed 0.8%. Training moves the ELBO by ~70%.
    x_train, _ = tfvae.data.load_arrays("mnist", "train[:6000]", **mnist_source)
    x_test, _ = tfvae.data.load_arrays("mnist", "test[:2000]", **mnist_source)
    x_train, x_test = (x_train >= 0.5).astype("float32"), (x_test >= 0.5).astype("float32")
    results = {}
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        precision(policy)
        keras.utils.set_random_seed(0)
        vae = models.build("vae", (28, 28, 1), seed=1)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        if policy == "float32":
            untrained = vae.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)
        history = vae.fit(x_train, batch_size=64, epochs=2, verbose=0).history
        assert all(math.isfinite(v) for values in history.values() for v in values), policy
        # Under float16 the loss scale starts at 2**15; the first steps overflow and
        # the LossScaleOptimizer skips them (3 of 188 here) while it lowers the scale.
        skipped = 2 * 94 - int(vae.optimizer.iterations.numpy())
        assert skipped == 0 if policy != "mixed_float16" else 0 < skipped < 10
        results[policy] = vae.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)
    reference = results["float32"]["elbo"]
    for policy in SIXTEEN_BIT:
        assert abs(results[policy]["elbo"] - reference) / abs(reference) < 0.025, results
    assert abs(untrained["elbo"] - reference) / abs(reference) > 0.5


def test_float16_train_step_scales_the_loss_in_the_fused_xla_path(precision, digits):
    # The LossScaleOptimizer divides the gradients by its scale (2**15 at first), so
    # a train_step that did not multiply the loss by it (`optimizer.scale_loss`)
    # would move the weights 32,768 times less than float32 training does.
    moved = {}
    for policy in ("float32", "mixed_float16"):
        precision(policy)
        keras.utils.set_random_seed(0)
        vae = models.build("vae", (8, 8, 1), latent_dim=4, seed=1)
        vae.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
        start = vae.get_weights()
        history = vae.fit(digits[0], batch_size=64, epochs=2, verbose=0).history
        assert tfvae.fused.uses_fused_steps(vae)
        assert all(math.isfinite(v) for v in history["loss"])
        assert history["loss"][1] < history["loss"][0]
        moved[policy] = sum(
            float(np.sum((a - b) ** 2)) for a, b in zip(start, vae.get_weights(), strict=True)
        )
    assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert 0.5 < moved["mixed_float16"] / moved["float32"] < 2.0, moved


@pytest.mark.slow  # a CLI run in bfloat16 (about 12 s); the precision API is tested above
def test_cli_precision_flag_trains_in_bfloat16_and_restores_the_policy(tmp_path):
    run = tmp_path / "run"
    flags = ["train", "--dataset", "digits", "--epochs", "1", "--latent-dim", "4"]
    assert cli.main([*flags, "--precision", "mixed_bfloat16", "--output-dir", str(run)]) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    assert json.loads((run / "config.json").read_text())["precision"] == "mixed_bfloat16"
    vae = tfvae.loading.load_vae(run / "model.keras")
    assert _hidden_dtype(vae.encoder) == "bfloat16"  # the policy is saved with the layers
    history = json.loads((run / "history.json").read_text())
    assert math.isfinite(history["val_elbo"][-1])
