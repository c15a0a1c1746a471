"""Reading a numeric CSV file fast, in blocks, on every core, with bounded memory.

pandas' C parser is the fastest CSV reader on these machines, and it releases the GIL while
it parses; but read whole, it holds about four copies of the table at its peak. So the file
is cut into blocks of whole lines, a pool of threads reads and parses them, and each block's
columns are copied, in order, into one float32 array per output. Memory beyond the result is
the few blocks in flight, whatever the file's size.

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

import numpy as np
from numpy.typing import NDArray

__all__ = ["BLOCK_BYTES", "read_csv_float32"]

BLOCK_BYTES = 8 << 20  # 8 MiB of text per block: about 50,000 rows of 17 numbers
PROBE_BYTES = 1 << 16  # read this much past a block's nominal end to find its last line end

Arrays = tuple[NDArray[np.float32], NDArray[np.float32]]
Columns = list[NDArray[np.float32]]


def read_csv_float32(
    path: Path,
    columns: Sequence[str],
    features: Sequence[str],
    target: Sequence[str],
    threads: int,
) -> Arrays | None:
    """Return the (rows, features) and (rows, targets) float32 arrays of a CSV file.

    `columns` are the header's names. Returns None when the file must be read
    sequentially instead: it holds quotes, or a block fails to parse.
    """
    names = [*features, *target]
    # Choosing columns costs pandas as much as parsing them: skip it when all are wanted.
    usecols = None if sorted(names) == sorted(columns) else names

    with open(path, "rb") as file, ThreadPoolExecutor(max_workers=threads) as pool:
        header = file.readline()
        if b'"' in header:
            return None
        descriptor, size = file.fileno(), os.fstat(file.fileno()).st_size

        def read_and_parse(start: int, stop: int) -> Columns | None:
            text = os.pread(descriptor, stop - start, start)  # in the worker: no GIL held
            return _parse(text, columns, usecols, names)

        output = _Output(len(features), len(target), size - len(header))
        pending: deque[tuple[int, Future[Columns | None]]] = deque()
        for start, stop in _blocks(descriptor, len(header), size):  # taken in file order
            pending.append((stop - start, pool.submit(read_and_parse, start, stop)))
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
    text: bytes, columns: Sequence[str], usecols: list[str] | None, names: list[str]
) -> Columns | None:
    import pandas as pd

    if b'"' in text:
        return None
    try:
        # Beyond float32's range is infinity, reported by the caller's check, not a warning
        # (numpy's error state is per thread: the caller's does not reach this one).
        with np.errstate(over="ignore"):
            frame = pd.read_csv(
                io.BytesIO(text),
                engine="c",
                header=None,
                names=list(columns),
                usecols=usecols,
                dtype=np.float32,
                low_memory=False,  # the block at once, not in pieces joined afterwards
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None  # the sequential read says what and where
    return [frame[name].to_numpy(dtype=np.float32) for name in names]


class _Output:
    """Growing float32 arrays that parsed blocks are copied into, in file order."""

    def __init__(self, features: int, targets: int, text_bytes: int) -> None:
        self.X = np.empty((0, features), dtype=np.float32)
        self.y = np.empty((0, targets), dtype=np.float32)
        self.rows = 0
        self.bytes_left = text_bytes
        self.failed = False

    def take(self, text_bytes: int, future: Future[Columns | None]) -> bool:
        """Copy a parsed block in after the others; False if it failed to parse."""
        parsed = future.result()
        if parsed is None:
            self.failed = True
            return False
        rows = len(parsed[0])
        self.bytes_left -= text_bytes
        if self.rows + rows > len(self.X):
            # Room for the rest of the file at this block's bytes per row, and 5% more:
            # the arrays are sized once, rarely twice, and never copied at the end.
            rows_per_byte = rows / max(text_bytes, 1)
            self._grow(self.rows + rows + math.ceil(1.05 * self.bytes_left * rows_per_byte))
        end = self.rows + rows
        width = self.X.shape[1]
        for index, values in enumerate(parsed):  # pandas keeps columns apart: one at a time
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
