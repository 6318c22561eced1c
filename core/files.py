"""Writing files safely: atomically (temp file + rename), owner-only, safe names.

Owner-only whatever the process umask: files are created 0600 and folders (with any
missing parent) 0700. `private_dir` and `make_private` (defined in `core.db`, which
needs them for the SQLite file) are the same tools for code that writes by itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.db import make_private, private_dir

__all__ = [
    "SAFE_NAME",
    "WrittenFile",
    "atomic_writer",
    "make_private",
    "private_dir",
    "safe_filename",
    "write_bytes_atomic",
]

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def safe_filename(name: str) -> str:
    """Return `name` if it is a plain file name (no path, no leading dot), else raise."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:  # fullmatch: `$` lets a final "\n" in
        raise ValueError(f"unsafe file name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


@dataclass
class WrittenFile:
    """What `atomic_writer` wrote: final path, size and SHA-256."""

    path: Path
    bytes: int = 0
    sha256: str = ""


class _HashingWriter:
    """A binary file wrapper that counts and hashes what goes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.count = 0
        self.result: WrittenFile | None = None

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


@contextmanager
def atomic_writer(directory: Path | str, name: str, mode: int = 0o600) -> Iterator[_HashingWriter]:
    """Write `directory/name` atomically: a temp file in the same folder, renamed on success.

    If the block raises, the temp file is removed and no file is left behind.
    The final file is created with `mode` (owner-only by default). A folder made for
    it (and any missing parent) is 0700, whatever the umask. After the block, the
    writer's `result` attribute holds a WrittenFile.
    """
    folder = private_dir(directory)
    final = folder / safe_filename(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as raw:
            writer = _HashingWriter(raw)
            yield writer
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, final)
        writer.result = WrittenFile(final, writer.count, writer.digest.hexdigest())
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(
    directory: Path | str, name: str, data: bytes, mode: int = 0o600
) -> WrittenFile:
    """Write a whole bytes object atomically; return the WrittenFile."""
    with atomic_writer(directory, name, mode) as out:
        out.write(data)
    assert out.result is not None
    return out.result
