"""Training checkpoints that survive a killed process: atomic, verified, in generations.

A checkpoint is a folder `ckpt-<optimizer step>` holding `model.keras` (weights,
beta, the posterior-noise seed state and the optimizer with its slots and step
count), `state.json` (epoch, steps done in that epoch, the history so far) and,
written last, `manifest.json` with the SHA-256 of each file. Each one is written into
a hidden `.partial` folder, every file fsynced, and then renamed into place, so a
process killed at any point leaves either a complete checkpoint or none.

`latest_checkpoint` returns the newest checkpoint whose files match its manifest; a
damaged newest one (truncated, flipped bytes) is skipped with a warning. With none
intact it raises `CheckpointError` and deletes nothing. The newest `keep`
generations are kept.

Keras' `BackupAndRestore` (Keras 3.15.1; its source, and a run that crashes it
mid-epoch and flips a byte) overwrites `latest.weights.h5` in place and keeps one
previous copy. It has no checksums: the weights file with a flipped byte was loaded
silently, and training went on. Only an `OSError` triggers its fallback. It
restores the epoch but not the step: with `save_freq` in batches, the batches
before the save are trained twice. The resumed epoch's data order is not the
original one. This module closes those gaps, and the CLI (`tfvae train --resume`)
also restores the data order of each epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import keras

from tfvae import scaling
from tfvae.arguments import check_integer
from tfvae.files import sha256_of
from tfvae.loading import load_vae

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "write_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "verify_checkpoint",
    "EpochCheckpoint",
]

MANIFEST = "manifest.json"
_PREFIX = "ckpt-"


class CheckpointError(ValueError):
    """No intact checkpoint could be used."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older one."""


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_keep(keep) -> int:
    return check_integer("keep", keep)


def _generations(directory: Path) -> list[Path]:
    """Checkpoint folders, newest (highest step) first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]), reverse=True)


def write_checkpoint(
    model: keras.Model, directory, *, epoch: int, step_in_epoch: int = 0, history=None, keep=3
) -> Path:
    """Writes a checkpoint of `model` atomically and keeps the newest `keep` of them.

    Args:
        model: a compiled `tfvae.VAE`.
        directory: the folder of checkpoints (created if needed).
        epoch: the epoch to resume at (epochs fully done, 0-based next epoch).
        step_in_epoch: steps of that epoch already done (a mid-epoch stop).
        history: the per-epoch metrics so far (`History.history`), or None.
        keep: how many generations to keep, >= 1.

    Returns:
        The checkpoint folder.

    Raises:
        ValueError: if `keep < 1`.
    """
    _check_keep(keep)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    iterations = scaling.steps_taken(model)
    final = directory / f"{_PREFIX}{iterations:09d}"
    if final.is_dir() and verify_checkpoint(final) is None:
        return final  # this very state is already saved
    partial = directory / f".{final.name}.partial"
    try:
        _write_generation(model, partial, epoch, step_in_epoch, iterations, history)
    except OSError as error:  # a full disk, a folder gone: the older generations stand
        shutil.rmtree(partial, ignore_errors=True)
        reason = error.strerror or str(error)
        raise OSError(
            f"Could not write the checkpoint {str(final)!r} ({reason}); the previous "
            "checkpoints are intact: make room and run again with --resume."
        ) from None
    shutil.rmtree(final, ignore_errors=True)  # a damaged copy of the same step
    os.replace(partial, final)
    _fsync(directory)
    for old in _generations(directory)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_generation(model, partial: Path, epoch, step_in_epoch, iterations, history) -> None:
    """Writes one checkpoint's files into the folder `partial`: model, state, manifest."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    model.save(partial / "model.keras")
    state = {
        "epoch": int(epoch),
        "step_in_epoch": int(step_in_epoch),
        "iterations": iterations,
        "history": history or {},
    }
    (partial / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    files = {}
    for name in ("model.keras", "state.json"):
        _fsync(partial / name)
        files[name] = sha256_of(partial / name)
    (partial / MANIFEST).write_text(json.dumps({"format": 1, "sha256": files}, indent=2) + "\n")
    _fsync(partial / MANIFEST)


def verify_checkpoint(path) -> str | None:
    """Returns None when the checkpoint's files match its manifest, else what is wrong."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        expected = dict(manifest["sha256"])
    except FileNotFoundError:
        return "no manifest.json (the write did not finish)"
    except (OSError, ValueError, KeyError, TypeError):  # a directory there, bad bytes, ...
        return "manifest.json is damaged"
    for name, digest in expected.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if sha256_of(path / name) != digest:
            return f"{name} does not match its checksum in manifest.json"
    return None


def latest_checkpoint(directory) -> tuple[Path, dict] | None:
    """Returns `(folder, state)` of the newest intact checkpoint, or None if there is none.

    Args:
        directory: the folder of checkpoints.

    Returns:
        The folder and its `state.json`, or None when the folder holds no checkpoint.

    Raises:
        CheckpointError: if there are checkpoints but none is intact (none is deleted).

    Warns:
        CheckpointWarning: for each damaged checkpoint skipped.
    """
    generations = _generations(Path(directory))
    for path in generations:
        problem = verify_checkpoint(path)
        if problem is None:
            return path, json.loads((path / "state.json").read_text())
        warnings.warn(
            f"Checkpoint {str(path)!r} is damaged ({problem}); trying the previous one.",
            CheckpointWarning,
            stacklevel=2,
        )
    if generations:
        raise CheckpointError(
            f"No intact checkpoint in {str(directory)!r}: all {len(generations)} are "
            "damaged (see the warnings). Nothing was deleted."
        )
    return None


def load_checkpoint(path) -> keras.Model:
    """Loads the model of a verified checkpoint, compiled, with its optimizer state.

    Raises:
        CheckpointError: if its files do not match its manifest.
    """
    problem = verify_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"Refusing checkpoint {str(path)!r}: {problem}.")
    return load_vae(Path(path) / "model.keras")


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes a checkpoint (see `write_checkpoint`) at the end of every epoch.

    Resume in Python with `latest_checkpoint` and `load_checkpoint`, then
    `fit(..., initial_epoch=state["epoch"])`.

    Args:
        directory: the folder of checkpoints.
        keep: how many generations to keep.

    Example:

    >>> vae.fit(x, epochs=10, callbacks=[EpochCheckpoint("run/checkpoints")])
    >>> path, state = latest_checkpoint("run/checkpoints")
    >>> vae = load_checkpoint(path)
    >>> vae.fit(x, epochs=10, initial_epoch=state["epoch"])
    """

    def __init__(self, directory, keep: int = 3):
        super().__init__()
        self.directory, self.keep = Path(directory), _check_keep(keep)
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        write_checkpoint(
            self.model, self.directory, epoch=epoch + 1, history=self.history, keep=self.keep
        )
