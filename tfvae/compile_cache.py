"""XLA's persistent compilation cache: a second run of the same model skips compiling it.

TensorFlow can keep each program XLA compiles on disk (its
`--tf_xla_persistent_cache_directory` flag) and load it in a later process instead
of compiling again: for the MLP VAE on MNIST, about 1 s of the first epoch
(`benchmarks/README.md`, "Fixed costs"). tfvae turns it on when it is imported,
before TensorFlow reads its XLA flags, in a directory of its own:

- `TFVAE_XLA_CACHE=DIR` puts it in DIR; `TFVAE_XLA_CACHE=off` (or `0`, or empty)
  turns it off;
- by default it is `$XDG_CACHE_HOME/tfvae/xla`, else `~/.cache/tfvae/xla`;
- the entries go to a sub-folder per TensorFlow version and host CPU
  (`host_directory`): XLA's entries are machine code for the CPU that compiled them,
  and TensorFlow loads an entry from another CPU with only a log line ("could lead
  to execution errors such as SIGILL"), as it may where a home folder is shared by
  machines of different kinds;
- a `--tf_xla_persistent_cache_directory` already in `TF_XLA_FLAGS` is left as
  the user set it;
- a directory that cannot be created or written leaves the cache off (TensorFlow
  would otherwise fail every compilation).

TensorFlow writes each entry to a temporary file and renames it, so a process killed
while writing leaves no partial entry. But it fails a compilation outright, and for
the rest of the process, when an entry it reads is damaged (truncated, overwritten).
So `enable` first checks every entry's protobuf framing (a few bytes read per
field, not the file) and deletes those that do not parse, and `call_checking_cache`
turns a failure TensorFlow still reports into a one-line error that says the cache
was cleared. The entries are only a cache: `clear()` (or deleting the directory) is
always safe.

Loading an entry, TensorFlow logs two lines of noise on CPUs with AVX-512 (its
loader compares the pseudo-features "+prefer-no-scatter" and "+prefer-no-gather" it
adds when compiling with the features of the host, which never list them), and on
every load an "Error parsing text-format" line before it reads the entry as binary.
`call_checking_cache` keeps those lines, and TensorFlow's informational ("I") lines
on compiling, off stderr; TFVAE_TF_LOGS=1 shows them.

This module imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

from tfvae._startup import filtered_stderr
from tfvae.arguments import first_line
from tfvae.files import user_cache_dir

__all__ = [
    "ENV",
    "enable",
    "active_directory",
    "host_directory",
    "is_whole_entry",
    "clear",
    "call_checking_cache",
]

#: The environment variable that places or turns off the cache.
ENV = "TFVAE_XLA_CACHE"
_FLAG = "--tf_xla_persistent_cache_directory"
_OFF = {"", "0", "off", "false", "no"}
#: What TensorFlow says when an entry cannot be read back.
_DAMAGE = (
    "Read less bytes than requested",
    "Serialized cache key does not match",
    "xla_compile_cache",
)


#: TensorFlow's log lines on loading a good entry (see the module docstring), and its
#: informational ("I") lines on compiling ("Compiled cluster using XLA!", ...).
_LOAD_NOISE = re.compile(
    r"^I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "
    r"|"
    r"text_format\.cc:\d+\] Error parsing text-format tensorflow\.XlaSerializedCacheEntry"
    r"|cpu_aot_loader\.cc:\d+\] Loading XLA:CPU AOT result\. Target machine feature "
    r"\+prefer-no-(scatter|gather) is not +supported on the host machine"
)


def _cpu_description() -> str:
    """The host CPU's model and instruction-set flags (Linux), else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            wanted = {}
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "flags", "features", "cpu part") and key not in wanted:
                    wanted[key] = " ".join(sorted(value.split()))
                if not line.strip() and wanted:
                    break  # the first processor is described
            if wanted:
                return ";".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    except OSError:
        pass
    return f"{platform.processor()};{platform.platform(terse=True)}"


def _tensorflow_version() -> str:
    from importlib import metadata

    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def host_directory(root: Path | str) -> Path:
    """The sub-folder of a cache root for this TensorFlow version and host CPU.

    Args:
        root: the cache root (`TFVAE_XLA_CACHE` or the default).

    Returns:
        `root / "tf<version>-<machine>-<hash of the CPU's model and flags>"`.
    """
    cpu = hashlib.sha256(_cpu_description().encode()).hexdigest()[:12]
    return Path(root) / f"tf{_tensorflow_version()}-{platform.machine() or 'cpu'}-{cpu}"


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe"):
            pass
        return True
    except OSError:
        return False


def _read_varint(file) -> int | None:
    value = shift = 0
    while True:
        byte = file.read(1)
        if not byte or shift > 63:
            return None
        value |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            return value


def is_whole_entry(path: Path | str) -> bool:
    """Whether a cache entry's top-level protobuf fields run exactly to its end.

    A truncated entry, an empty one or one overwritten with other bytes fails; only
    each field's header is read, the rest is skipped.

    Args:
        path: an `xla_compile_cache__*.pb` file.

    Returns:
        True when every field has a valid number and wire type and the last one
        ends at the end of the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            fields = 0
            while file.tell() < size:
                tag = _read_varint(file)
                if tag is None or tag >> 3 == 0:
                    return False
                wire = tag & 7
                if wire == 0:
                    if _read_varint(file) is None:
                        return False
                    skip = 0
                elif wire == 2:
                    skip = _read_varint(file)
                    if skip is None:
                        return False
                elif wire in (1, 5):
                    skip = 8 if wire == 1 else 4
                else:
                    return False
                if file.tell() + skip > size:
                    return False
                file.seek(skip, 1)
                fields += 1
            return fields > 0
    except OSError:
        return False


def _drop_damaged_entries(directory: Path) -> None:
    for entry in directory.glob("xla_compile_cache*.pb"):
        if not is_whole_entry(entry):
            entry.unlink(missing_ok=True)


def active_directory() -> Path | None:
    """The directory TensorFlow is told to cache XLA programs in, or None.

    Returns:
        The last `--tf_xla_persistent_cache_directory` in `TF_XLA_FLAGS`, or None.
    """
    found = None
    for flag in os.environ.get("TF_XLA_FLAGS", "").split():
        if flag.startswith(_FLAG + "="):
            found = flag.split("=", 1)[1]
    return Path(found) if found else None


def enable() -> Path | None:
    """Turns on the persistent cache for this process, as `TFVAE_XLA_CACHE` says.

    Takes effect only if TensorFlow has not read its XLA flags yet (tfvae calls it on
    import); later, it changes nothing.

    Returns:
        The cache directory in use, or None when the cache is off.
    """
    current = active_directory()
    if current is not None:
        return current
    setting = os.environ.get(ENV)
    if setting is not None and setting.strip().lower() in _OFF:
        return None
    root = Path(setting).expanduser() if setting else user_cache_dir("xla")
    directory = host_directory(root)
    if not _writable(directory):
        return None
    _drop_damaged_entries(directory)
    flags = os.environ.get("TF_XLA_FLAGS", "")
    os.environ["TF_XLA_FLAGS"] = f"{flags} {_FLAG}={directory}".strip()
    return directory


def clear(directory: Path | str | None = None) -> int:
    """Deletes the cached programs, and re-creates the directory.

    Args:
        directory: the cache directory (default: the active one).

    Returns:
        How many entries were deleted (0 when no cache is active).
    """
    directory = Path(directory) if directory is not None else active_directory()
    if directory is None:
        return 0
    removed = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith("xla_compile_cache"):
                entry.unlink(missing_ok=True)
                removed += 1
    elif directory.exists():  # a file where the directory should be
        directory.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    return removed


def _is_cache_failure(error: Exception, directory: Path) -> bool:
    message = str(getattr(error, "message", None) or error)
    return str(directory) in message or any(text in message for text in _DAMAGE)


#: The argument shapes each function `call_checking_cache` called was called with.
_called: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _flat(value):
    """The leaves of nested tuples, lists and dicts (no TensorFlow needed)."""
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _flat(item)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _flat(value[key])
    else:
        yield value


def call_checking_cache(function: Callable, *args):
    """Calls a compiled function; a failure of the XLA cache becomes a one-line error.

    Args:
        function: a compiled (`jit_compile=True`) function.
        *args: its arguments.

    Returns:
        What `function` returns.

    Raises:
        RuntimeError: when TensorFlow could not read the cache (the entries are then
            deleted, so the next run compiles afresh). Anything else `function`
            raises passes unchanged.
    """
    try:
        # XLA compiles (or loads from the cache) at the first call with each shape:
        # only those calls have their notices filtered.
        shapes = tuple(tuple(getattr(a, "shape", ())) for a in _flat(args))
        seen = _called.setdefault(function, set())
        if shapes in seen:
            return function(*args)
        with filtered_stderr(_LOAD_NOISE):
            result = function(*args)
        seen.add(shapes)
        return result
    except Exception as error:
        import tensorflow as tf  # only on a failure: this runs on every training call

        directory = active_directory()
        if (
            not isinstance(error, tf.errors.OpError)
            or directory is None
            or not _is_cache_failure(error, directory)
        ):
            raise
        try:
            cleared = f"; its {clear(directory)} entries were deleted, so run again"
        except OSError:
            cleared = f"; delete {directory} and run again"
        raise RuntimeError(
            f"XLA's compilation cache in {directory} could not be read "
            f"({first_line(error)}){cleared}, or set {ENV}=off."
        ) from None
