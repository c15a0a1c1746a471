"""Writing files so that a crash never leaves a half-written one behind.

Every file is written to a temporary file in the same folder, flushed to disk, and
renamed into place: readers see the old complete file or the new complete file. The
temporary file is removed on every exit Python sees (errors, Ctrl-C, SIGTERM, which the CLI
turns into an exception). A SIGKILL leaves it behind: its name carries the writer's host and
process id, and the next write into that folder removes those whose process is gone.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ptflow.errors import WorkflowError

__all__ = [
    "atomic_path",
    "check_not_an_input",
    "check_output_path",
    "check_regular_file",
    "current_umask",
    "is_temporary_name",
    "quoted",
    "remove_own_temporaries",
    "remove_stale_temporaries",
    "to_json_safe",
    "write_json",
    "write_text",
]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    import tempfile

    path = Path(path)
    _remove_dead_writers_temporaries(path.parent)
    prefix = f".{path.name}.{host_tag()}-{os.getpid()}-"
    # No Ctrl-C between making the file and noting it: its handler runs once unblocked.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        _LIVE.add(tmp)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        os.close(fd)
        tmp.chmod(0o666 & ~current_umask())  # mkstemp makes it private: a normal file's mode
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _LIVE.discard(tmp)  # not reached if a second Ctrl-C lands in unlink: the exit's turn
        raise
    _LIVE.discard(tmp)


# This process's temporary files not yet renamed or removed. A second Ctrl-C can land
# anywhere, even in the lines above that remove one: the exit removes what is left.
_LIVE: set[Path] = set()


def remove_own_temporaries() -> None:
    """Delete the temporary files this process made and has not renamed: it is exiting."""
    for tmp in list(_LIVE):
        tmp.unlink(missing_ok=True)
        _LIVE.discard(tmp)


# A temporary file's name: .NAME.HOST-PID-RANDOM.tmp (HOST: a hash of the host name).
_OURS = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)-[^.]+\.tmp$")


@functools.cache
def host_tag() -> str:
    """This machine in eight hex digits, for temporary files' names."""
    import socket
    import zlib

    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _remove_dead_writers_temporaries(folder: Path) -> None:
    """Delete the temporary files of writers on this host that no longer run (killed)."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".tmp")]
    except OSError:
        return  # the write itself will say what is wrong with the folder
    for name in names:
        match = _OURS.match(name)
        if match and match[1] == host_tag() and not _is_running(int(match[2])):
            (folder / name).unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def is_temporary_name(name: str) -> bool:
    """True for the name of a temporary file `atomic_path` makes (never a user's `.x.tmp`)."""
    return _OURS.match(name) is not None


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Delete the temporary files a killed process left in `folder` (it had no time to).

    Only names `atomic_path` makes: a user's own `.notes.tmp` stays.
    """
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            if is_temporary_name(path.name):
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


def check_output_path(output: str | os.PathLike[str], option: str) -> Path:
    """Refuse an output file that cannot be written as a file: a folder, or in no folder."""
    output = Path(output)
    if output.is_dir():
        raise WorkflowError(f"{option} {quoted(output)} is a folder; give a file name.")
    if not output.parent.is_dir():
        raise WorkflowError(
            f"{option} {quoted(output)}: the folder {quoted(output.parent)} does not exist; "
            f"create it first, or write elsewhere."
        )
    return output


def check_not_an_input(
    output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], option: str
) -> None:
    """Refuse an output path that is one of the inputs, after resolving symbolic links."""
    target = Path(output).resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise WorkflowError(
                f"{option} {quoted(output)} is also an input; writing it would destroy it: "
                f"choose another file name."
            )


def quoted(path: str | os.PathLike[str]) -> str:
    """A path as it can be printed on one line: repr-quoted when it holds odd characters."""
    text = os.fsdecode(path)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def check_regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse a path that is not a regular file, saying what it is instead."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise WorkflowError(f"{what} {quoted(path)} does not exist; check the path.") from None
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise WorkflowError(f"{what} {quoted(path)} is a folder, not a file; give a file.")
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
    )
    raise WorkflowError(
        f"{what} {quoted(path)} is {kind}, not a regular file; ptflow reads its inputs more "
        f"than once, so save the data to a file first."
    )
