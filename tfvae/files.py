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

__all__ = ["atomic_output", "sha256_of", "user_cache_dir"]


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
