"""Writing files and folders so that nothing already saved is lost.

`atomic_output(path)` hands out a temporary path beside `path`. Only when the block
that writes it succeeds is it renamed to `path` (an atomic rename on one file system).
An existing `path` is refused unless `overwrite=True`, and even then it is replaced
only after the new one is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "check_writable", "sha256_of", "user_cache_dir"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary path to write; renames it to `path` when the block succeeds.

    Args:
        path: the file or folder to produce.
        overwrite: replace an existing `path` (after the new one is complete).

    Yields:
        A path in the same folder, which does not exist yet. The suffix of `path` is
        kept (Keras and TFLite tools look at it).

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False.

    Example:

    >>> with atomic_output("run/model.keras") as partial:
    ...     vae.save(partial)
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists; choose another path or pass `overwrite=True`. "
            "Nothing was written."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    partial = path.with_name(f".{path.stem}.partial-{token}{path.suffix}")
    try:
        yield partial
        if not partial.exists():
            raise FileNotFoundError(f"Nothing was written to {str(partial)!r}.")
        if path.exists():
            old = path.with_name(f".{path.stem}.old-{token}{path.suffix}")
            os.replace(path, old)
            os.replace(partial, path)
            _remove(old)
        else:
            os.replace(partial, path)
    finally:
        _remove(partial)


def check_writable(path, flag: str, min_free: int, folder: bool = False) -> Path:
    """Checks, before any work, that `path` can be written; returns it as a `Path`.

    Args:
        path: the file (or, with `folder=True`, the folder) to be written.
        flag: the command-line flag that named it, for the message.
        min_free: bytes the disk holding it must have free.
        folder: whether `path` itself must be a folder (or not exist yet).

    Raises:
        ValueError: in one line, when `path` is a file where a folder is needed, lies
            under a file, sits in a folder that cannot be written, or on a disk with
            less than `min_free` bytes free.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a file; a folder is needed there.")
    start = path if folder else path.parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {str(path)!r} lies under the file {str(existing)!r}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r}: cannot write into {str(existing)!r}.")
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise ValueError(
            f"{flag} {str(path)!r}: the disk holding it has {free / 1e6:.0f} MB free; "
            f"{min_free / 1e6:.0f} MB are needed."
        )
    return path


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, as hex, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_cache_dir(name: str) -> Path:
    """tfvae's cache folder `name`: `$XDG_CACHE_HOME/tfvae/name`, else `~/.cache/tfvae/name`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tfvae" / name
