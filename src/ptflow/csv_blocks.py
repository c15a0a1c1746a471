"""Reading a numeric CSV file fast, in blocks, on every core, with bounded memory.

pandas' C parser is the fastest CSV reader on these machines, and it releases the GIL while
it parses; but read whole, it holds about four copies of the table at its peak. So the file
is cut into blocks of whole lines, a pool of threads parses them, and each block's columns
are copied, in order, into one float32 array per output. Memory beyond the result is the
few blocks in flight, whatever the file's size.

A worker hands pandas its block as a file that reads a piece at a time from the shared
descriptor (`os.pread`): the text goes from the page cache to the parser through a buffer
that stays in the CPU's cache, never through a copy of the whole block.

Cutting at line ends is only safe without quotes (a quoted field may hold a newline), and a
parse error's line number is only right in a sequential read: in those cases
`read_csv_float32` returns None, and the caller reads the file in one sequential pass.
"""

from __future__ import annotations

import io
import math
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

__all__ = ["BLOCK_BYTES", "read_csv_float32"]

BLOCK_BYTES = 8 << 20  # 8 MiB of text per block: about 50,000 rows of 17 numbers
PROBE_BYTES = 1 << 16  # read this much past a block's nominal end to find its last line end

Arrays = tuple[NDArray[np.float32], NDArray[np.float32]]


class _Parsed(NamedTuple):
    columns: list[NDArray[np.float32]]  # one float32 array per output column, in order
    text: list[bytes]  # the block's bytes as they were parsed, for the file's hash


def read_csv_float32(
    path: Path,
    columns: Sequence[str],
    features: Sequence[str],
    target: Sequence[str],
    threads: int,
    digest: Hash,
) -> Arrays | None:
    """Return the (rows, features) and (rows, targets) float32 arrays of a CSV file.

    `columns` are the header's names. `digest` (a hashlib object) is fed the file's bytes
    in order, the very bytes that were parsed: the file's hash without reading it twice.
    Returns None when the file must be read sequentially instead: it holds quotes, or a
    block fails to parse. The digest is then incomplete.
    """
    names = [*features, *target]
    # Choosing columns costs pandas as much as parsing them: skip it when all are wanted.
    usecols = None if sorted(names) == sorted(columns) else names

    with open(path, "rb") as file, ThreadPoolExecutor(max_workers=threads) as pool:
        header = file.readline()
        if b'"' in header:
            return None
        digest.update(header)
        descriptor, size = file.fileno(), os.fstat(file.fileno()).st_size

        def parse(start: int, stop: int) -> _Parsed | None:
            return _parse(_Range(descriptor, start, stop), columns, usecols, names)

        output = _Output(len(features), len(target), size - len(header), digest)
        pending: deque[tuple[int, Future[_Parsed | None]]] = deque()
        for start, stop in _blocks(descriptor, len(header), size):  # taken in file order
            pending.append((stop - start, pool.submit(parse, start, stop)))
            if len(pending) >= 2 * threads and not output.take(*pending.popleft()):
                break
        else:
            while pending and output.take(*pending.popleft()):
                pass
        for _, future in pending:
            future.cancel()
    return None if output.failed else output.arrays()


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
    text: _Range, columns: Sequence[str], usecols: list[str] | None, names: list[str]
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


class _Output:
    """Growing float32 arrays that parsed blocks are copied into, in file order."""

    def __init__(self, features: int, targets: int, text_bytes: int, digest: Hash) -> None:
        self.X = np.empty((0, features), dtype=np.float32)
        self.y = np.empty((0, targets), dtype=np.float32)
        self.rows = 0
        self.bytes_left = text_bytes
        self.digest = digest
        self.failed = False

    def take(self, text_bytes: int, future: Future[_Parsed | None]) -> bool:
        """Hash a parsed block and copy it in after the others; False if it failed to parse."""
        parsed = future.result()
        if parsed is None:
            self.failed = True
            return False
        for piece in parsed.text:  # hashing releases the GIL: the workers parse on
            self.digest.update(piece)
        rows = len(parsed.columns[0])
        self.bytes_left -= text_bytes
        if self.rows + rows > len(self.X):
            # Room for the rest of the file at this block's bytes per row, and 5% more:
            # the arrays are sized once, rarely twice, and never copied at the end.
            rows_per_byte = rows / max(text_bytes, 1)
            self._grow(self.rows + rows + math.ceil(1.05 * self.bytes_left * rows_per_byte))
        end = self.rows + rows
        width = self.X.shape[1]
        for index, values in enumerate(parsed.columns):  # pandas keeps columns apart: one at a time
            if index < width:
                self.X[self.rows : end, index] = values
            else:
                self.y[self.rows : end, index - width] = values
        self.rows = end
        return True

    def _grow(self, rows: int) -> None:
        for name in ("X", "y"):
            old = getattr(self, name)
            new = np.empty((rows, old.shape[1]), dtype=np.float32)
            new[: self.rows] = old[: self.rows]
            setattr(self, name, new)

    def arrays(self) -> Arrays:
        return self.X[: self.rows], self.y[: self.rows]
