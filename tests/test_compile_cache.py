"""XLA's persistent compilation cache (tfvae.compile_cache): on, off, damaged, reused.

The runs that compile are fresh processes: TensorFlow reads its XLA flags once per
process, so only a new one can show what a second run of the same model gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfvae import compile_cache

# Trains the MLP VAE on 1,000 digits at batch 16: 63 steps an epoch, i.e. executions of
# 32 and 31 steps, the last batch filled up. Prints the losses and the cache entries.
TRAIN = """
import json, sys
import numpy as np
import tfvae
from tfvae import compile_cache
damage = sys.argv[1] if len(sys.argv) > 1 else None
if damage:  # after tfvae's import checked the cache: what TensorFlow itself would read
    for entry in compile_cache.active_directory().glob("xla_compile_cache*.pb"):
        entry.write_bytes(entry.read_bytes()[: int(damage)])
import keras
keras.utils.set_random_seed(0)
x, _ = tfvae.data.load_arrays("digits", "train")
vae = tfvae.VAE(*tfvae.networks.build("mlp", (8, 8, 1), latent_dim=4), seed=0)
vae.compile()
try:
    history = vae.fit(x[:1000], batch_size=16, epochs=2, verbose=0).history
except RuntimeError as error:
    print("ERROR " + str(error))
    raise SystemExit(3)
entries = sorted(p.name for p in compile_cache.active_directory().glob("xla_compile_cache*"))
print("RESULT " + json.dumps({"loss": history["loss"], "entries": entries}))
"""


def _train(cache: Path, *args, **environment) -> subprocess.CompletedProcess:
    env = dict(os.environ, TFVAE_XLA_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_XLA_FLAGS", None)
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", TRAIN, *args], capture_output=True, text=True, env=env
    )


def _result(done: subprocess.CompletedProcess) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture
def no_flags(monkeypatch):
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    return monkeypatch


def test_enable_uses_the_setting_the_default_or_the_users_own_flag(no_flags, tmp_path):
    no_flags.setenv(compile_cache.ENV, str(tmp_path / "cache"))
    here = compile_cache.host_directory(tmp_path / "cache")
    assert compile_cache.enable() == here
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_persistent_cache_directory={here}"
    assert compile_cache.enable() == here  # idempotent: the flag is there
    assert os.environ["TF_XLA_FLAGS"].count("persistent_cache_directory") == 1

    no_flags.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/users/own")
    assert compile_cache.enable() == Path("/users/own")  # left as the user set it

    no_flags.delenv("TF_XLA_FLAGS")
    no_flags.delenv(compile_cache.ENV)
    no_flags.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "xdg" / "tfvae" / "xla"
    assert compile_cache.enable() == compile_cache.host_directory(root)


def test_entries_are_kept_per_tensorflow_version_and_host_cpu(tmp_path, monkeypatch):
    import tensorflow as tf

    here = compile_cache.host_directory(tmp_path)
    assert here.parent == tmp_path and here.name.startswith(f"tf{tf.__version__}-")
    assert compile_cache.host_directory(tmp_path) == here  # stable
    # Another CPU (another model or instruction set) gets another folder.
    monkeypatch.setattr(compile_cache, "_cpu_description", lambda: "model name=other;flags=sse2")
    assert compile_cache.host_directory(tmp_path) != here


@pytest.mark.parametrize("setting", ["off", "0", "", "OFF", "false"])
def test_the_cache_can_be_turned_off(no_flags, setting):
    no_flags.setenv(compile_cache.ENV, setting)
    assert compile_cache.enable() is None
    assert "TF_XLA_FLAGS" not in os.environ


def test_a_directory_that_cannot_be_written_leaves_the_cache_off(no_flags, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    no_flags.setenv(compile_cache.ENV, str(blocker / "xla"))
    assert compile_cache.enable() is None
    assert "TF_XLA_FLAGS" not in os.environ  # TensorFlow would fail every compilation


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    """A cache that one run of the training script filled, and that run's result."""
    cache = tmp_path_factory.mktemp("first_run") / "cache"
    return cache, _result(_train(cache))


@pytest.fixture
def cache_root(first_run, tmp_path) -> Path:
    """A copy of the filled cache, for one test to reuse or damage."""
    return Path(shutil.copytree(first_run[0], tmp_path / "cache"))


@pytest.fixture
def cache(cache_root) -> Path:
    """The folder of the copy that holds this host's entries."""
    return compile_cache.host_directory(cache_root)


def test_a_second_run_reuses_the_one_program_the_first_compiled(first_run, cache):
    first = first_run[1]
    # One entry: the short last execution and the filled-up last batch compile nothing new.
    assert len(first["entries"]) == 1
    second = _result(_train(cache.parent))
    assert second["entries"] == first["entries"]
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-6)


@pytest.mark.slow  # long; CI runs it with -m slow
def test_loading_an_entry_writes_none_of_tensorflows_noise_to_stderr(cache):
    # TensorFlow's C++ log lines, as a user sees them (no TF_CPP_MIN_LOG_LEVEL).
    noise = ("Error parsing text-format", "could lead to execution errors such as SIGILL")
    raw = _train(cache.parent, TF_CPP_MIN_LOG_LEVEL="0", TFVAE_TF_LOGS="1")
    _result(raw)
    if not any(line in raw.stderr for line in noise):
        pytest.skip("this TensorFlow logs nothing on loading a cache entry here")
    filtered = _train(cache.parent, TF_CPP_MIN_LOG_LEVEL="0")
    assert _result(filtered)["loss"] == _result(raw)["loss"]
    assert not any(line in filtered.stderr for line in noise), filtered.stderr[-2000:]
    assert "Compiled cluster using XLA" not in filtered.stderr


@pytest.mark.slow  # a fresh process on damaged entries (about 10 s)
def test_damaged_entries_are_dropped_before_tensorflow_reads_them(first_run, cache):
    first = first_run[1]
    entry = cache / first["entries"][0]
    whole = entry.read_bytes()
    assert compile_cache.is_whole_entry(entry)
    # Truncated at many points, emptied, overwritten: each is dropped and recompiled.
    for damaged in (whole[:1], whole[:100], whole[: len(whole) // 2], whole[:-1], b"", b"junk"):
        entry.write_bytes(damaged)
        assert not compile_cache.is_whole_entry(entry)
    entry.write_bytes(whole[: len(whole) // 3])
    again = _result(_train(cache.parent))
    assert again["entries"] == first["entries"]
    assert compile_cache.is_whole_entry(entry)  # recompiled and written anew
    assert again["loss"] == pytest.approx(first["loss"], rel=1e-6)


@pytest.mark.slow  # two fresh processes around a damaged entry (about 20 s)
def test_damage_tensorflow_reads_gives_one_line_and_a_clean_cache_for_the_next_run(cache):
    done = _train(cache.parent, "200")  # damaged after the import's check
    assert done.returncode == 3, done.stderr[-2000:]
    message = done.stdout.split("ERROR ", 1)[1].strip()
    assert str(cache) in message and "TFVAE_XLA_CACHE=off" in message
    assert "\n" not in message
    assert not list(cache.glob("xla_compile_cache*"))  # cleared
    assert len(_result(_train(cache.parent))["entries"]) == 1  # the next run compiles afresh


def test_clear_removes_entries_only(tmp_path):
    (tmp_path / "xla_compile_cache__1__2__XLA_CPU_JIT.pb").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not ours")
    assert compile_cache.clear(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
