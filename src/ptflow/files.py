"""Writing files so that a crash never leaves a half-written one behind.

Every file is written to a temporary file in the same folder, flushed to disk, and
renamed into place: readers see the old complete file or the new complete file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "current_umask",
    "remove_stale_temporaries",
    "to_json_safe",
    "write_json",
    "write_text",
]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~current_umask())  # mkstemp makes it private; give it a normal file's mode
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Delete the temporary files a killed process left in `folder` (it had no time to)."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text to a file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write data as indented JSON atomically; NaN and infinity become null."""
    write_text(path, json.dumps(to_json_safe(data), indent=2, allow_nan=False) + "\n")


def to_json_safe(data: Any) -> Any:
    """Return data with non-finite floats replaced by None, which JSON can represent."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: to_json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [to_json_safe(value) for value in data]
    return data


def current_umask() -> int:
    """Return the process's umask, which decides the permissions of new files."""
    umask = os.umask(0)
    os.umask(umask)
    return umask
