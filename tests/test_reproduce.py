"""benchmarks/reproduce: the protocol files, and the runner's resume after kills."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = sorted((ROOT / "benchmarks" / "reproduce" / "protocols").glob("*.toml"))
RUNNER = ROOT / "benchmarks" / "reproduce" / "run.py"


def test_every_protocol_states_its_paper_data_model_schedule_and_the_k_5000_estimator():
    assert len(PROTOCOLS) >= 7
    for path in PROTOCOLS:
        spec = tomllib.loads(path.read_text())
        assert spec["paper"]["cite"] and spec["paper"]["table"], path.name
        assert 80 < spec["paper"]["reference_nll"] < 90, path.name
        assert spec["data"]["name"] in ("mnist", "binarized_mnist"), path.name
        assert spec["data"]["binarize"] in ("dynamic", "none"), path.name
        assert spec["model"]["kind"] in ("vae", "iwae", "stacked"), path.name
        assert spec["evaluation"]["k"] == 5000, path.name
        training = spec["training"]
        if training["optimizer"] == "burda_adam":  # Burda et al.: 3,280 epochs, batch 20
            assert (training["batch_size"], training["stages"]) == (20, 8), path.name
            assert spec["model"]["activation"] == "tanh" and spec["model"]["depth"] == 2
        if spec["model"]["kind"] == "iwae" or "iwae" in path.stem:
            assert spec["model"]["k"] == 50, path.name


TINY = """
[paper]
cite = "a test"
table = "none"
reference_nll = 30.0
[data]
name = "digits"
binarize = "dynamic"
train = "train"
test = "test"
[model]
kind = "{kind}"
k = {k}
latent_dims = {latent}
hidden_units = {hidden}
depth = 2
activation = "tanh"
output_bias = "train_mean"
[training]
optimizer = "burda_adam"
batch_size = 20
stages = 3
[evaluation]
k = 20
"""


def _runner(tmp_path, name, out, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TFVAE_XLA_CACHE": "off"}
    command = [sys.executable, str(RUNNER), name, "--protocols", str(tmp_path), "--out", str(out)]
    return subprocess.Popen(
        [*command, "--curve-every", "1", "--k", "20", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _newest_epoch(checkpoints):
    epochs = [0]
    for state in checkpoints.glob("ckpt-*/state.json"):
        try:
            epochs.append(json.loads(state.read_text())["epoch"])
        except (OSError, ValueError):  # an old generation being removed
            pass
    return max(epochs)


def _curve(out, name):
    result = json.loads((out / "reproduce" / f"{name}.json").read_text())
    return result, [point["train_loss"] for point in result["curve"]]


@pytest.mark.slow  # a dozen runner processes (about three minutes)
@pytest.mark.parametrize(
    "kind, k, latent, hidden", [("vae", 1, [4], [16]), ("stacked", 3, [6, 3], [16, 8])]
)
def test_a_run_killed_at_many_moments_resumes_to_the_same_curve(tmp_path, kind, k, latent, hidden):
    (tmp_path / "tiny.toml").write_text(TINY.format(kind=kind, k=k, latent=latent, hidden=hidden))
    whole = _runner(tmp_path, "tiny", tmp_path / "whole", "--epochs", "6")
    output = whole.communicate(timeout=300)[0]
    assert whole.returncode == 0, output
    reference, losses = _curve(tmp_path / "whole", "tiny")
    assert len(losses) == 6 and reference["epochs"] == 6 and not reference["full_protocol"]

    out = tmp_path / "killed"
    checkpoints = out / ".reproduce" / "tiny" / "checkpoints"
    # SIGKILL in start-up (before any epoch), then as soon as epochs 1, 3 and 5 are saved:
    # each time the process may be in training, evaluating or writing a checkpoint.
    for moment in (None, 1, 3, 5):
        run = _runner(tmp_path, "tiny", out, "--epochs", "6")
        deadline = time.monotonic() + 240
        if moment is None:
            time.sleep(2)
        while moment and run.poll() is None and time.monotonic() < deadline:
            if _newest_epoch(checkpoints) >= moment:
                break
            time.sleep(0.02)
        run.kill()
        run.wait(timeout=60)
    final = _runner(tmp_path, "tiny", out, "--epochs", "6")
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0, output
    result, resumed = _curve(out, "tiny")
    assert resumed == losses  # bit for bit: weights, optimizer, noise and data order resume
    assert result["epochs"] == 6 and result["nll"] > 0

    # A larger budget continues the same run: 13 epochs is the whole (3-stage) protocol.
    more = _runner(tmp_path, "tiny", out)
    output = more.communicate(timeout=300)[0]
    assert more.returncode == 0, output
    result, longer = _curve(out, "tiny")
    assert longer[:6] == losses and len(longer) == 13 and result["full_protocol"] is True
