"""Reading a numeric CSV file fast, in blocks, on every core, with bounded memory.

pandas' C parser is the fastest CSV reader on these machines, and it releases the GIL while
it parses; but read whole, it holds about four copies of the table at its peak. So the file
is cut into blocks of whole lines, a pool of threads parses them, and each block's columns
are handed on, in order, as float32 arrays. Memory beyond the result is the few blocks in
flight, whatever the file's size.

A worker hands pandas its block as a file that reads a piece at a time from the shared
descriptor (`os.pread`): the text goes from the page cache to the parser through a buffer
that stays in the CPU's cache, never through a copy of the whole block.

Cutting at line ends is only safe without quotes (a quoted field may hold a newline), and a
parse error's line number is only right in a sequential read: in those cases
`parallel_blocks` raises `SequentialReadNeeded`, and the caller reads on sequentially.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

__all__ = ["BLOCK_BYTES", "SequentialReadNeeded", "parallel_blocks"]

BLOCK_BYTES = 8 << 20  # 8 MiB of text per block: about 50,000 rows of 17 numbers
PROBE_BYTES = 1 << 16  # read this much past a block's nominal end to find its last line end


class SequentialReadNeeded(Exception):
    """The file holds quotes, or a block failed to parse: read it sequentially instead."""


class _Parsed(NamedTuple):
    columns: list[NDArray[np.float32]]  # one float32 array per output column, in order
    text: list[bytes]  # the block's bytes as they were parsed, for the file's hash


def parallel_blocks(
    path: Path,
    columns: Sequence[str],
    names: Sequence[str],
    threads: int,
    digest: Hash,
    missing: Sequence[str],
) -> Iterator[tuple[list[NDArray[np.float32]], float]]:
    """Yield the `names` columns of a CSV file as float32 arrays, block by block, in order.

    `columns` are the header's names, `missing` the cells read as NaN. Each block comes
    with the share of the file read once it is. `digest` (a hashlib object) is fed the
    file's bytes in order, the very bytes that were parsed: the file's hash without reading
    it twice. Raises `SequentialReadNeeded` when the file holds quotes or a block fails to
    parse; the blocks yielded before it are right, and the digest is then incomplete.
    """
    # Choosing columns costs pandas as much as parsing them: skip it when all are wanted.
    usecols = None if sorted(names) == sorted(columns) else list(names)

    with open(path, "rb") as file, ThreadPoolExecutor(max_workers=threads) as pool:
        header = file.readline()
        if b'"' in header:
            raise SequentialReadNeeded
        digest.update(header)
        descriptor, size = file.fileno(), os.fstat(file.fileno()).st_size

        def parse(start: int, stop: int) -> _Parsed | None:
            return _parse(_Range(descriptor, start, stop), columns, usecols, names, missing)

        pending: deque[tuple[int, Future[_Parsed | None]]] = deque()
        try:
            for start, stop in _blocks(descriptor, len(header), size):  # in file order
                pending.append((stop, pool.submit(parse, start, stop)))
                if len(pending) >= 2 * threads:
                    yield _taken(*pending.popleft(), size, digest)
            while pending:
                yield _taken(*pending.popleft(), size, digest)
        finally:
            for _, future in pending:
                future.cancel()


def _taken(
    stop: int, future: Future[_Parsed | None], size: int, digest: Hash
) -> tuple[list[NDArray[np.float32]], float]:
    """A parsed block's columns and the share of the file read; its bytes hashed."""
    parsed = future.result()
    if parsed is None:
        raise SequentialReadNeeded
    for piece in parsed.text:  # hashing releases the GIL: the workers parse on
        digest.update(piece)
    return parsed.columns, stop / max(size, 1)


def _blocks(descriptor: int, start: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (start, stop) byte ranges of about BLOCK_BYTES that end at a line end."""
    while start < size:
        stop = min(start + BLOCK_BYTES, size)
        while stop < size:  # move on to the end of the line that the block stops in
            probe = os.pread(descriptor, PROBE_BYTES, stop)
            if (newline := probe.find(b"\n")) >= 0:
                stop += newline + 1
                break
            stop += len(probe)  # a line longer than the probe: look further
        yield start, stop
        start = stop


def _parse(
    text: _Range,
    columns: Sequence[str],
    usecols: list[str] | None,
    names: Sequence[str],
    missing: Sequence[str],
) -> _Parsed | None:
    import pandas as pd

    try:
        # Beyond float32's range is infinity, reported by the caller's check, not a warning
        # (numpy's error state is per thread: the caller's does not reach this one).
        with np.errstate(over="ignore"):
            frame = pd.read_csv(
                text,
                engine="c",
                header=None,
                names=list(columns),
                usecols=usecols,
                dtype=np.float32,
                na_values=list(missing),
                keep_default_na=False,
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None  # the sequential read says what and where
    text.read()  # the rest, if pandas stopped short of the end: the hash needs every byte
    if text.quoted:
        return None
    return _Parsed([frame[name].to_numpy(dtype=np.float32) for name in names], text.pieces)


class _Range(io.RawIOBase):
    """Bytes start to stop of an open file, as a binary file that pandas reads in pieces.

    Reads with `os.pread`, so the pool's threads share one descriptor without seeking, and
    the GIL is released while the bytes are copied. Keeps the pieces it has read (until
    they are hashed), and notes whether any of them held a quote.
    """

    def __init__(self, descriptor: int, start: int, stop: int) -> None:
        super().__init__()
        self.descriptor, self.position, self.stop = descriptor, start, stop
        self.pieces: list[bytes] = []
        self.quoted = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        left = self.stop - self.position
        piece = os.pread(self.descriptor, left if size < 0 else min(size, left), self.position)
        self.position += len(piece)
        self.pieces.append(piece)
        self.quoted = self.quoted or b'"' in piece
        return piece
