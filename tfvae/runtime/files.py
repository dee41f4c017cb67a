"""Files written whole or not at all, metrics.json merged in place, and one writer per directory.

Every writer of results in the package goes through `write_atomically` (text, JSON, npz, any
bytes) or `replace_directory` (a directory staged beside its target and renamed into place), so a
crash, a signal or a full disk never leaves a half-written file. A full disk raises `DiskFullError`,
one line naming the file, after the temporary file is removed. `DirectoryLock` is an OS file
lock (released by the kernel when its process dies, so a crash never leaves a stale lock) that
keeps a second process from writing a model directory, an experiment directory or a search.
TensorFlow-free: the experiment runner imports it without starting TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable

METRICS_FILE = "metrics.json"  # MODEL_DIR/metrics.json: merged by every evaluating tool
PER_EXAMPLE_FILE = "log_likelihood_per_example.npz"  # MODEL_DIR/..., written by bpp
LOCK_FILE = ".tfvae.lock"  # in every directory one process writes at a time


class DiskFullError(OSError):
    """No space left for a file: its message is one line naming the file and the bytes needed."""

    def __str__(self) -> str:
        return self.strerror  # the line, without OSError's "[Errno 28]"


def is_disk_full(error: BaseException) -> bool:
    """Whether an error (OSError, or TensorFlow's error for a failed write) means ENOSPC."""
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def describe_disk_full(path: str, needed_bytes: int | None = None) -> str:
    """'No space left on the device of PATH (needed N bytes, M free).' for one file."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    parts = [
        f"needed {needed_bytes:,} bytes" if needed_bytes else "",
        f"{free:,} free" if free is not None else "",
    ]
    detail = ", ".join(p for p in parts if p)
    return f"No space left on the device of {path}" + (f" ({detail})." if detail else ".")


def write_atomically(path: str, content: str | bytes | Callable[[io.IOBase], None]) -> str:
    """Writes `path` through a temporary file in its directory and a rename; returns `path`.

    Args:
      path: the file; its directory is created if absent.
      content: text, bytes, or a function writing to a binary file object (e.g. np.savez).

    Raises:
      DiskFullError: no space left; the temporary file is removed and `path` is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            needed = len(data) if isinstance(data, bytes) else None
            raise DiskFullError(errno.ENOSPC, describe_disk_full(path, needed)) from None
        raise
    return path


def write_json(path: str, value) -> str:
    """Writes a JSON value (indented; other objects as str) atomically; returns `path`."""
    return write_atomically(path, json.dumps(value, indent=2, default=str) + "\n")


_REQUIRED = object()  # read_json's default: a missing file is an error


def read_json(path: str, default=_REQUIRED):
    """The JSON value at `path`, or `default` when there is no such file (without a default, a
    missing file raises FileNotFoundError); a broken file raises ValueError naming it (one line).
    """
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        if default is _REQUIRED:
            raise
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno})."
        ) from None


def merge_metrics(path: str, metrics: dict) -> dict:
    """Adds `metrics` to the JSON object at `path` (created if absent), written atomically.

    Keys already there and not in `metrics` are kept. Returns the merged object.
    """
    merged = read_json(path, default={})
    merged.update(metrics)
    write_json(path, merged)
    return merged


def replace_directory(staging: str, target: str) -> str:
    """Renames the finished directory `staging` to `target` (both on one filesystem).

    An existing `target` is moved aside first and deleted only after the new one is in place,
    so `target` is always whole: the old or the new. Returns `target`.
    """
    if not os.path.exists(target):
        os.rename(staging, target)
        return target
    retired = tempfile.mkdtemp(
        prefix=".tmp-replaced-", dir=os.path.dirname(os.path.abspath(target))
    )
    os.rename(target, os.path.join(retired, "old"))
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
    return target


class LockHeldError(RuntimeError):
    """Another process holds the directory's lock: one line naming it, its pid and host."""


class DirectoryLock:
    """An exclusive OS lock on DIRECTORY/.tfvae.lock for one writing process.

    `with DirectoryLock(directory, "training"):` refuses with LockHeldError when another live
    process holds it. The kernel releases the lock when the holder exits or crashes, so a
    stale file never blocks; the file records the holder's pid, host and role for the message.
    """

    def __init__(self, directory: str, role: str = "writer"):
        self.directory, self.role = directory, role
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeldError(
                f"{self.directory} is in use by {holder}; one process writes it at a time "
                "(wait for it to finish or stop it)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({self.role})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
