"""Every kind of file tfvae writes, damaged every way, read by every command that reads it.

Kinds: model.keras, a checkpoint's state.json and manifest.json, config.json,
history.json, a SavedModel folder and a .tflite file. Damages: truncated, bytes
flipped, emptied, deleted, replaced by a directory, replaced by valid JSON of the
wrong shape. Each command must answer in one line (exit 2), or go on with a warning
(a damaged newest checkpoint: the previous generation), never with a traceback; and
no file that was good changes (checksums before and after). The README's reliability
section lists the table this file checks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_here

from tfvae import export, loading

DAMAGES = ("truncated", "flipped", "emptied", "deleted", "directory", "wrong_json")

#: file kind -> its path in a run folder (the newest checkpoint's, for state and manifest).
KINDS = {
    "model.keras": "model.keras",
    "state.json": "checkpoints/ckpt-000000024/state.json",
    "manifest.json": "checkpoints/ckpt-000000024/manifest.json",
    "config.json": "config.json",
    "history.json": "history.json",
    "saved_model": "saved_model",
    "tflite": "model.tflite",
}

#: file kind -> the commands that read it (each a list of arguments; RUN is the run folder).
COMMANDS = {
    "model.keras": {
        "evaluate": ["evaluate", "RUN", "--k", 5, "--examples", 50],
        "export": ["export", "RUN", "--format", "tflite", "--out", "OUT/model.tflite"],
        "sample": ["sample", "RUN/model.keras", "--out", "OUT/s.png"],
        "plot": ["plot", "RUN", "--what", "samples", "--out", "OUT/p.png"],
    },
    "state.json": {"resume": ["train", "--resume", "--epochs", 3, "--output-dir", "RUN"]},
    "manifest.json": {"resume": ["train", "--resume", "--epochs", 3, "--output-dir", "RUN"]},
    "config.json": {
        "resume": ["train", "--resume", "--epochs", 3, "--output-dir", "RUN"],
        "evaluate": ["evaluate", "RUN", "--k", 5, "--examples", 50],
        "plot": ["plot", "RUN", "--what", "reconstructions", "--out", "OUT/p.png"],
    },
    "history.json": {
        "plot": ["plot", "RUN", "--what", "curves", "--out", "OUT/p.png"],
        "resume": ["train", "--resume", "--epochs", 3, "--output-dir", "RUN"],
    },
    "saved_model": {"sample": ["sample", "RUN/saved_model", "--out", "OUT/s.png"]},
    "tflite": {"sample": ["sample", "RUN/model.tflite", "--out", "OUT/s.png"]},
}

#: The cases of the default run (the others: -m slow): one damage per kind and command.
DEFAULT_DAMAGE = {kind: DAMAGES[i % len(DAMAGES)] for i, kind in enumerate(KINDS)}


def _cases():
    for kind, commands in COMMANDS.items():
        for command in commands:
            for damage in DAMAGES:
                marks = () if DEFAULT_DAMAGE[kind] == damage else (pytest.mark.slow,)
                yield pytest.param(
                    kind, damage, command, marks=marks, id=f"{kind}-{damage}-{command}"
                )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A run of 2 epochs (2 checkpoint generations), its SavedModel and .tflite file."""
    run = tmp_path_factory.mktemp("pristine") / "run"
    flags = ["--epochs", 2, "--latent-dim", 2, "--jit-compile", "off", "--output-dir", run]
    result = run_here("train", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    vae = loading.load_vae(run / "model.keras")
    export.export_saved_model(vae, run / "saved_model")
    export.to_tflite(run / "saved_model", run / "model.tflite")
    return run


def damage(path: Path, how: str) -> None:
    data = b"" if path.is_dir() else path.read_bytes()
    if path.is_dir():  # a SavedModel: damage its graph, the file every reader opens first
        path = path / "saved_model.pb"
        data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    elif how == "emptied":
        path.write_bytes(b"")
    elif how in ("deleted", "directory"):
        path.unlink()
        if how == "directory":
            path.mkdir()
    elif how == "wrong_json":
        path.write_text('{"valid": ["json", "of", "the", "wrong", "shape"]}')


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("kind", "how", "command"), list(_cases()))
def test_a_damaged_file_gives_one_line_or_a_warning_and_changes_nothing_good(
    pristine, tmp_path, kind, how, command
):
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    out = tmp_path / "out"
    out.mkdir()
    target = run / KINDS[kind]
    damage(target, how)
    before = checksums(run)
    args = [
        str(a).replace("RUN", str(run)).replace("OUT", str(out)) for a in COMMANDS[kind][command]
    ]
    result = run_here(*args)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if command == "resume" and kind in ("state.json", "manifest.json"):
        # The newest generation is damaged: a warning, and the previous one resumes.
        assert result.returncode == 0, result.stderr[-3000:]
        assert "resuming from" in result.stdout and "ckpt-000000012" in result.stdout
    elif command == "resume" and kind == "history.json":
        # Resuming reads the checkpoint's history (its 2 epochs) and writes history.json again.
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(json.loads((run / "history.json").read_text())["loss"]) == 2
    else:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
        assert len(lines) == 1 and lines[0].startswith(f"tfvae {args[0]}: error: "), lines
    after = checksums(run)
    if command == "resume":  # a resumed run writes its model, history and checkpoints again
        rewritten = {"model.keras", "history.json"}
        before = {
            name: digest
            for name, digest in before.items()
            if name not in rewritten and not name.startswith(("checkpoints/", "logs/"))
        }
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, (changed, result.stderr[-2000:])
