"""Reading a numeric CSV file fast, in blocks, on every core, with bounded memory.

pandas' C parser is the fastest CSV reader on these machines, and it releases the GIL while
it parses; but read whole, it holds about four copies of the table at its peak. So the file
is read in blocks of whole lines, a pool of threads parses them, and each block's numbers
are copied, in order, into one float32 array per output. Memory beyond the result is the
few blocks in flight, whatever the file's size.

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
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

__all__ = ["BLOCK_BYTES", "read_csv_float32"]

BLOCK_BYTES = 8 << 20  # 8 MiB of text per block: about 50,000 rows of 17 numbers

Arrays = tuple[NDArray[np.float32], NDArray[np.float32]]


def read_csv_float32(
    path: Path,
    columns: Sequence[str],
    features: Sequence[str],
    target: Sequence[str],
    threads: int,
    digest: Hash | None = None,
) -> Arrays | None:
    """Return the (rows, features) and (rows, targets) float32 arrays of a CSV file.

    `columns` are the header's names. Returns None when the file must be read
    sequentially instead: it holds quotes, or a block fails to parse. `digest` (a hashlib
    object) is fed every byte read: the file's hash without reading it twice.
    """
    names = [*features, *target]
    # Choosing columns costs pandas as much as parsing them: skip it when all are wanted.
    usecols = None if sorted(names) == sorted(columns) else names

    def parse(text: bytes) -> Arrays | None:
        return _parse(text, columns, usecols, features, target)

    with open(path, "rb") as file, ThreadPoolExecutor(max_workers=threads) as pool:
        header = file.readline()
        if b'"' in header:
            return None
        if digest is not None:
            digest.update(header)
        output = _Output(len(features), len(target), os.fstat(file.fileno()).st_size)
        pending: deque[tuple[int, Future[Arrays | None]]] = deque()
        for text in _whole_lines(file, digest):  # a few blocks in flight, taken in order
            pending.append((len(text), pool.submit(parse, text)))
            if len(pending) >= 2 * threads and not output.take(*pending.popleft()):
                break
        else:
            while pending and output.take(*pending.popleft()):
                pass
        for _, future in pending:
            future.cancel()
    return None if output.failed else output.arrays()


def _whole_lines(file: BinaryIO, digest: Hash | None = None) -> Iterator[bytes]:
    """Yield the rest of the file in blocks of about BLOCK_BYTES that end at a line end."""
    tail = b""
    while piece := file.read(BLOCK_BYTES):
        if digest is not None:
            digest.update(piece)  # releases the GIL: the parsing threads run on
        last = piece.rfind(b"\n")
        if last < 0:  # one long line so far: the block grows
            tail += piece
            continue
        yield tail + piece[: last + 1]
        tail = piece[last + 1 :]
    if tail:  # a last line without a newline
        yield tail


def _parse(
    text: bytes,
    columns: Sequence[str],
    usecols: list[str] | None,
    features: Sequence[str],
    target: Sequence[str],
) -> Arrays | None:
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
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None  # the sequential read says what and where
    # pandas stores columns apart: copy each output into contiguous rows.
    X = np.ascontiguousarray(frame[list(features)].to_numpy(dtype=np.float32))
    y = np.ascontiguousarray(frame[list(target)].to_numpy(dtype=np.float32))
    return X, y


class _Output:
    """Growing float32 arrays that parsed blocks are copied into, in file order."""

    def __init__(self, features: int, targets: int, file_bytes: int) -> None:
        self.X = np.empty((0, features), dtype=np.float32)
        self.y = np.empty((0, targets), dtype=np.float32)
        self.rows = 0
        self.bytes_left = file_bytes
        self.failed = False

    def take(self, text_bytes: int, future: Future[Arrays | None]) -> bool:
        """Copy a parsed block in after the others; False if it failed to parse."""
        parsed = future.result()
        if parsed is None:
            self.failed = True
            return False
        X, y = parsed
        self.bytes_left -= text_bytes
        if self.rows + len(X) > len(self.X):
            # Room for the rest of the file at this block's bytes per row, and 5% more:
            # the arrays are sized once, rarely twice, and never copied at the end.
            rows_per_byte = len(X) / max(text_bytes, 1)
            self._grow(self.rows + len(X) + math.ceil(1.05 * self.bytes_left * rows_per_byte))
        self.X[self.rows : self.rows + len(X)] = X
        self.y[self.rows : self.rows + len(y)] = y
        self.rows += len(X)
        return True

    def _grow(self, rows: int) -> None:
        for name in ("X", "y"):
            old = getattr(self, name)
            new = np.empty((rows, old.shape[1]), dtype=np.float32)
            new[: self.rows] = old[: self.rows]
            setattr(self, name, new)

    def arrays(self) -> Arrays:
        return self.X[: self.rows], self.y[: self.rows]
