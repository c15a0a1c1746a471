"""Step 1, data: the tutorial's straight line or a CSV/Parquet table, checked and split."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from ptflow.config import ROW_GROUP_ROWS, check_line_points
from ptflow.errors import WorkflowError
from ptflow.stats import Scaling

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.parquet as pq

# pandas and pyarrow are imported inside the functions that read tables: the tutorial and
# `ptflow --help` never pay for them.

__all__ = [
    "READ_BLOCK_ROWS",
    "Split",
    "Splits",
    "Table",
    "TableBlock",
    "check_parquet_numeric",
    "check_varying_target",
    "convert_table",
    "file_fingerprint",
    "iter_table",
    "load_table",
    "make_linear_data",
    "resolve_columns",
    "scale_splits",
    "split",
    "table_format",
]

# Tables are read this many rows at a time: memory beyond the result is one block.
READ_BLOCK_ROWS = 65_536
# `convert_table` parses CSV text this many bytes at a time.
CSV_BLOCK_BYTES = 8 << 20


class Split(NamedTuple):
    """Features and targets of one part of the data, X of shape (n, features)."""

    X: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Splits:
    """The train, optional validation, and test parts, with each part's row indices."""

    train: Split
    val: Split | None
    test: Split
    train_indices: torch.Tensor
    val_indices: torch.Tensor
    test_indices: torch.Tensor


def make_linear_data(
    weight: float = 0.7,
    bias: float = 0.3,
    start: float = 0.0,
    end: float = 1.0,
    step: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return X = arange(start, end, step) as a column and y = weight * X + bias."""
    if step <= 0 or end <= start:
        raise WorkflowError(
            f"arange({start}, {end}, {step}) is empty; use start < end and a positive step."
        )
    check_line_points(start, end, step)
    X = torch.arange(start, end, step).unsqueeze(dim=1)  # (n, 1): one feature per row
    y = weight * X + bias
    return X, y


def split(
    X: torch.Tensor,
    y: torch.Tensor,
    train_fraction: float = 0.8,
    val_fraction: float = 0.0,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> Splits:
    """Split rows into train / validation / test by fractions; the rest is test.

    Sequential by default, as in the tutorial (first 80% train, last 20% test);
    with `shuffle=True` the rows are permuted first by a generator seeded with `seed`.
    """
    n = len(X)
    if len(y) != n:
        raise WorkflowError(f"X has {n} rows but y has {len(y)}; give one target row per X row.")
    if not (0 < train_fraction < 1 and 0 <= val_fraction < 1):
        raise WorkflowError(
            f"fractions must satisfy 0 < train < 1 and 0 <= val < 1, "
            f"got train={train_fraction}, val={val_fraction}."
        )
    n_train = _count(train_fraction, n)
    n_val = _count(val_fraction, n)
    n_test = n - n_train - n_val
    if n_train < 1 or n_test < 1 or (val_fraction > 0 and n_val < 1):
        raise WorkflowError(
            f"{n} rows are too few for fractions train={train_fraction}, val={val_fraction}: "
            f"that gives {n_train} train, {n_val} validation and {n_test} test rows; "
            f"use more data or change the fractions so that each part gets a row."
        )
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    train_indices, val_indices, test_indices = order.split([n_train, n_val, n_test])
    return Splits(
        train=Split(X[train_indices], y[train_indices]),
        val=Split(X[val_indices], y[val_indices]) if n_val else None,
        test=Split(X[test_indices], y[test_indices]),
        train_indices=train_indices,
        val_indices=val_indices,
        test_indices=test_indices,
    )


def check_varying_target(
    target: Sequence[str], low: NDArray[np.floating[Any]], high: NDArray[np.floating[Any]]
) -> None:
    """Refuse a target column whose every value is the same (`low` and `high`: per column)."""
    if constant := [name for name, lo, hi in zip(target, low, high, strict=True) if lo == hi]:
        raise WorkflowError(
            f"target column {', '.join(map(repr, constant))} has the same value in every row; "
            f"a model cannot learn from it, so choose another target."
        )


def _count(fraction: float, n: int) -> int:
    # The tutorial's int(0.8 * len(X)), made robust to 0.29 * 100 == 28.999999999999996.
    return math.floor(fraction * n + 1e-9)


def scale_splits(splits: Splits, scaling: Scaling) -> Splits:
    """Return the splits with every column standardised by `scaling`, indices unchanged."""

    def scale(part: Split) -> Split:
        return Split(
            (part.X - scaling.x_mean) / scaling.x_std, (part.y - scaling.y_mean) / scaling.y_std
        )

    return dataclasses.replace(
        splits,
        train=scale(splits.train),
        val=scale(splits.val) if splits.val is not None else None,
        test=scale(splits.test),
    )


@dataclass(frozen=True)
class Table:
    """The used columns of a data file as float32 tensors, with their names and origin."""

    X: torch.Tensor  # (rows, features)
    y: torch.Tensor  # (rows, targets); no columns when no target was asked for
    features: tuple[str, ...]
    target: tuple[str, ...]
    fingerprint: dict[str, Any]  # file name, size, SHA-256, rows, columns
    dropped_rows: int = 0  # rows with missing values removed by drop_missing
    ids: list[str] | None = None  # the id column's values, when one was asked for


def load_table(
    path: str | os.PathLike[str],
    target: Sequence[str] = (),
    features: Sequence[str] | None = None,
    *,
    format: str = "auto",
    drop_missing: bool = False,
    id_column: str | None = None,
) -> Table:
    """Read target and feature columns of a CSV or Parquet file, checking every value.

    Features default to every other numeric column. Missing or infinite values are an
    error unless `drop_missing`, which removes their rows. A constant target is an error.
    """
    path = Path(path)
    file_format = table_format(path, format)
    columns, features = resolve_columns(path, file_format, target, features, id_column)
    target = tuple(target)
    X_values, y_values, fingerprint = _read_numeric(path, file_format, columns, features, target)
    if len(X_values) == 0:
        raise WorkflowError(f"{path.name} has a header but no rows; give a file with data.")
    ids = _read_ids(path, file_format, columns, id_column) if id_column else None

    finite = _finite_rows(X_values, y_values)
    dropped = 0 if finite is None else int((~finite).sum())
    if dropped and not drop_missing:
        column, row = _first_missing(np.hstack([X_values, y_values]), [*features, *target])
        raise WorkflowError(
            f"{path.name} has missing, infinite or too large (beyond ±3.4e38, float32's "
            f"range) values in {dropped} rows, the first in column "
            f"{column!r} at row {row}; clean the data or pass --drop-missing to skip such rows."
        )
    if finite is not None and dropped:
        X_values, y_values = X_values[finite], y_values[finite]
        ids = [ids[row] for row in np.flatnonzero(finite)] if ids else ids
        if len(X_values) == 0:
            raise WorkflowError(f"every row of {path.name} has a missing value; clean the data.")
    X, y = torch.from_numpy(X_values), torch.from_numpy(y_values)
    if len(y) > 1:
        check_varying_target(target, y_values.min(axis=0), y_values.max(axis=0))
    return Table(
        X,
        y,
        features,
        target,
        {**fingerprint, "rows": len(X), "columns": len(columns)},
        dropped,
        ids,
    )


def _finite_rows(X: NDArray[np.float32], y: NDArray[np.float32]) -> NDArray[np.bool_] | None:
    """Which rows hold only finite values; None when all of them do (the usual case)."""
    # One pass over the whole arrays first: the row-by-row check is seven times slower.
    if np.isfinite(X).all() and np.isfinite(y).all():
        return None
    return np.asarray(np.isfinite(X).all(axis=1) & np.isfinite(y).all(axis=1))


def resolve_columns(
    path: Path,
    file_format: str,
    target: Sequence[str],
    features: Sequence[str] | None,
    id_column: str | None = None,
) -> tuple[list[str], tuple[str, ...]]:
    """Return the file's columns and the feature columns, checking every asked-for name.

    Features default to every numeric column that is not the target or the id column.
    """
    columns = _read_header(path, file_format)
    target = tuple(target)
    asked = [*target, *(features or ()), *([id_column] if id_column else [])]
    if unknown := [name for name in asked if name not in columns]:
        raise WorkflowError(
            f"{path.name} has no column {', '.join(map(repr, unknown))}; "
            f"its columns are: {', '.join(columns)}."
        )
    if features is None:
        numeric = _numeric_columns(path, file_format, columns)
        features = [name for name in numeric if name not in target and name != id_column]
        if not features:
            text = [name for name in columns if name not in (*target, id_column)]
            raise WorkflowError(
                f"{path.name} has no numeric column besides the target "
                f"({', '.join(text) or 'no other column'} holds text); "
                f"fix the values, or name the features with --features."
            )
    return columns, tuple(features)


@dataclass(frozen=True)
class TableBlock:
    """Consecutive rows of a table's columns, checked, as `iter_table` yields them."""

    X: torch.Tensor  # (rows, features), float32
    ids: list[str] | None  # the id column's values, when one was asked for
    first_row: int  # the row number (from 1) in the file of the block's first row
    y: torch.Tensor | None = None  # (rows, targets), float32, when targets were asked for
    dropped_rows: int = 0  # rows of the block left out for missing values (drop_missing)


def iter_table(
    path: str | os.PathLike[str],
    features: Sequence[str],
    *,
    target: Sequence[str] = (),
    format: str = "auto",
    id_column: str | None = None,
    block_rows: int = READ_BLOCK_ROWS,
    drop_missing: bool = False,
) -> Iterator[TableBlock]:
    """Yield a table's feature (and target) columns `block_rows` rows at a time, checked.

    Memory is one block, whatever the file's size: for predicting on and evaluating tables
    larger than memory. A non-numeric value raises `WorkflowError` naming its row; so does a
    missing or infinite one, unless `drop_missing`, which leaves its row out.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(path)
    file_format = table_format(path, format)
    columns = _read_header(path, file_format)
    numeric = [*features, *target]
    names = [*numeric, *([id_column] if id_column else [])]
    if unknown := [name for name in names if name not in columns]:
        raise WorkflowError(
            f"{path.name} has no column {', '.join(map(repr, unknown))}; "
            f"its columns are: {', '.join(columns)}."
        )
    frames: Iterator[pd.DataFrame]
    if file_format == "parquet":
        file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        unique = list(dict.fromkeys(names))
        frames = (batch.to_pandas() for batch in file.iter_batches(block_rows, columns=unique))
    else:
        text = {id_column: str} if id_column else {}  # ids as written: "007" stays "007"
        frames = _csv_blocks(path, columns, list(dict.fromkeys(names)), text, block_rows)
    first_row, any_rows = 1, False
    for frame in frames:
        ids = [str(value) for value in frame[id_column].tolist()] if id_column else None
        if id_column in numeric and not pd.api.types.is_numeric_dtype(frame[id_column].dtype):
            # the id is a feature too: its text, as numbers (a non-number names its row)
            _raise_non_numeric(path, id_column, frame[id_column], file_format == "csv", first_row)
            frame[id_column] = pd.to_numeric(frame[id_column])
        for name in numeric:
            kind = frame[name].dtype
            if pd.api.types.is_bool_dtype(kind) or not pd.api.types.is_numeric_dtype(kind):
                _raise_non_numeric(path, name, frame[name], file_format == "csv", first_row)
                raise WorkflowError(
                    f"column {name!r} of {path.name} holds {kind} values, not numbers; "
                    f"give the model the columns it was trained on."
                )
        with np.errstate(over="ignore"):  # beyond float32's range: infinity, caught below
            X = frame[list(features)].to_numpy(dtype=np.float32)
            y = frame[list(target)].to_numpy(dtype=np.float32)
        dropped = 0
        if (finite := _finite_rows(X, y)) is not None:
            if not drop_missing:
                column, row = _first_missing(np.hstack([X, y]), numeric)
                advice = (
                    "clean the data or pass --drop-missing to skip such rows"
                    if target
                    else "give every row a finite value"
                )
                raise WorkflowError(
                    f"{path.name} has a missing, infinite or too large value in column "
                    f"{column!r} at row {first_row + row - 1}; {advice}."
                )
            X, y, dropped = X[finite], y[finite], int((~finite).sum())
            ids = [ids[row] for row in np.flatnonzero(finite)] if ids is not None else None
        yield TableBlock(_tensor(X), ids, first_row, _tensor(y) if target else None, dropped)
        first_row, any_rows = first_row + len(frame), any_rows or len(frame) > 0
    if not any_rows:
        raise WorkflowError(f"{path.name} has a header but no rows; give a file with data.")


def _tensor(values: NDArray[np.float32]) -> torch.Tensor:
    return torch.from_numpy(_writable_rows(values))


def _writable_rows(values: NDArray[np.float32]) -> NDArray[np.float32]:
    # pandas stores columns apart and may hand out a read-only view: torch wants contiguous
    # rows it may write to.
    return np.require(values, requirements=["C_CONTIGUOUS", "WRITEABLE"])


def _csv_blocks(
    path: Path, columns: list[str], names: list[str], dtype: Any, block_rows: int
) -> Iterator[pd.DataFrame]:
    """Yield the `names` columns of a CSV file, `block_rows` rows at a time."""
    import pandas as pd

    # Choosing columns costs pandas as much as parsing them: skip it when all are wanted.
    selection = {} if sorted(names) == sorted(columns) else {"usecols": names}
    try:
        with pd.read_csv(
            path,
            engine="c",
            encoding="utf-8-sig",
            header=0,
            names=columns,  # the header as _read_header read it, stripped of spaces
            skipinitialspace=True,
            dtype=dtype,
            chunksize=block_rows,
            **selection,
        ) as reader:
            yield from reader
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise _unparsable(path, error) from None


def convert_table(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
    overwrite: bool = False,
) -> int:
    """Convert a CSV file to Parquet block by block, in row groups of `row_group_rows` rows.

    Memory stays at a few blocks whatever the file's size, so a CSV larger than memory
    becomes a Parquet file that `--stream` trains on. Columns whose first block holds whole
    numbers are written as float64, so a later decimal value is no error. The file appears
    complete or not at all. Returns the number of rows written.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from ptflow.files import atomic_path, check_not_an_input, check_output_path

    source, destination = Path(source), Path(destination)
    columns = _read_header(source, table_format(source))
    if table_format(destination) != "parquet":
        raise WorkflowError(f"{destination.name} must end in .parquet; choose another name.")
    check_output_path(destination, "the destination")
    check_not_an_input(destination, [source], "the destination")
    if destination.exists() and not overwrite:
        raise WorkflowError(
            f"{destination} already exists; choose another name or pass --overwrite."
        )
    if row_group_rows < 1:
        raise WorkflowError(f"row groups need at least 1 row, got {row_group_rows}.")
    read = pa_csv.ReadOptions(column_names=columns, skip_rows=1, block_size=CSV_BLOCK_BYTES)
    parse = pa_csv.ParseOptions()
    try:
        first = pa_csv.open_csv(source, read_options=read, parse_options=parse)
        schema = first.schema
        first.close()
        types = {
            field.name: pa.float64() if pa.types.is_integer(field.type) else field.type
            for field in schema
        }
        reader = pa_csv.open_csv(
            source,
            read_options=read,
            parse_options=parse,
            convert_options=pa_csv.ConvertOptions(column_types=types),
        )
        rows = 0
        with (
            atomic_path(destination) as tmp,
            reader,
            pq.ParquetWriter(tmp, reader.schema) as writer,
        ):
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for batch in reader:
                pending.append(batch)
                pending_rows += batch.num_rows
                while pending_rows >= row_group_rows:  # write whole row groups as they fill
                    table = pa.Table.from_batches(pending)
                    writer.write_table(table.slice(0, row_group_rows))
                    rest = table.slice(row_group_rows)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
                    rows += row_group_rows
            if pending_rows:
                writer.write_table(pa.Table.from_batches(pending, reader.schema))
                rows += pending_rows
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise WorkflowError(
            f"cannot convert {source.name} ({_first_line(error)}); fix the file so that every "
            f"row has one value per column and every column one type."
        ) from None
    return rows


def table_format(path: Path, format: str = "auto") -> str:
    """Return "csv" or "parquet" for a data file, from `format` or the file's extension."""
    if format in ("csv", "parquet"):
        return format
    if format != "auto":
        raise WorkflowError(f"unknown format {format!r}; choose auto, csv or parquet.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise WorkflowError(
        f"cannot tell the format of {path.name} from its extension; "
        f"pass --format csv or --format parquet."
    )


def file_fingerprint(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Return the file's name, size and SHA-256, to tell later whether data changed.

    `sha256` is the digest when the caller hashed the bytes as it read them.
    """
    if sha256 is None:
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256}


def _read_header(path: Path, file_format: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptflow.files import check_regular_file

    check_regular_file(path, "data file")
    if path.stat().st_size == 0:
        raise WorkflowError(f"data file {path} is empty; give a file with a header and rows.")
    if file_format == "parquet":
        try:
            columns = list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as error:
            raise WorkflowError(
                f"cannot read {path.name} as Parquet ({_first_line(error)}); "
                f"check the file, or pass --format csv if it is a CSV file."
            ) from None
    else:
        with open(path, "rb") as raw:
            start = raw.read(1 << 20)
        if b"\r" in start and b"\n" not in start:
            raise WorkflowError(
                f"{path.name} ends its lines with a carriage return alone (old Mac style); "
                f"convert them to newlines first, e.g. tr '\\r' '\\n' < {path.name} > fixed.csv"
            )
        try:
            with open(path, encoding="utf-8-sig", newline="") as file:
                columns = next(csv.reader(file), [])
        except (UnicodeDecodeError, csv.Error) as error:
            raise WorkflowError(
                f"cannot read {path.name} as CSV ({_first_line(error)}); give a UTF-8 CSV file, "
                f"or pass --format parquet if it is a Parquet file."
            ) from None
        columns = [name.strip() for name in columns]
        if not any(columns):
            raise WorkflowError(
                f"data file {path} has no header; its first line must name the columns."
            )
    if duplicates := sorted({name for name in columns if columns.count(name) > 1}):
        raise WorkflowError(
            f"{path.name} has duplicate column names {', '.join(map(repr, duplicates))}; "
            f"rename them so that each column has its own name."
        )
    if "" in columns:
        raise WorkflowError(f"{path.name} has a column without a name; name every column.")
    return columns


def _numeric_columns(path: Path, file_format: str, columns: list[str]) -> list[str]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file_format == "parquet":
        schema = pq.read_schema(path)
        return [
            name
            for name in columns
            if pa.types.is_integer(schema.field(name).type)
            or pa.types.is_floating(schema.field(name).type)
        ]
    # The first rows decide which columns are numeric; a later text value is still caught.
    sample = _read_csv(path, columns, nrows=1000)
    if sample.empty:
        raise WorkflowError(f"{path.name} has a header but no rows; give a file with data.")
    return [
        name
        for name in columns
        if pd.api.types.is_numeric_dtype(sample[name].dtype)
        and not pd.api.types.is_bool_dtype(sample[name].dtype)
    ]


def _read_numeric(
    path: Path,
    file_format: str,
    columns: list[str],
    features: tuple[str, ...],
    target: Sequence[str],
) -> tuple[NDArray[np.float32], NDArray[np.float32], dict[str, Any]]:
    """Read the feature and target columns as float32 arrays (rows, features), (rows, targets).

    Both formats are read in blocks, so memory beyond the arrays themselves is a few
    blocks, not a copy of the whole table. Also returns the file's fingerprint: a CSV file
    is hashed from the bytes its parallel reader parsed, a Parquet file in a background
    thread meanwhile (hashing releases the GIL).
    """
    # Values beyond float32's range become infinity here, without a warning: the check of
    # finite values that follows reports them with their row.
    with np.errstate(over="ignore"):
        if file_format == "parquet":
            with ThreadPoolExecutor(max_workers=1) as background:
                fingerprint = background.submit(file_fingerprint, path)
                X, y = _read_parquet_numeric(path, features, target)
                return X, y, fingerprint.result()
        from ptflow.csv_blocks import read_csv_float32

        digest = hashlib.sha256()
        parallel = read_csv_float32(
            path, columns, features, target, torch.get_num_threads(), digest
        )
        if parallel is not None:
            return *parallel, file_fingerprint(path, digest.hexdigest())
        # Quotes or a bad value: one sequential pass, which names a bad value's line.
        X, y = _read_csv_numeric(path, columns, features, target)
        return X, y, file_fingerprint(path)


def _read_parquet_numeric(
    path: Path, features: tuple[str, ...], target: Sequence[str]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    import pyarrow.parquet as pq

    # Streamed a megabyte at a time rather than whole column chunks: as fast, less memory.
    file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    names = [*features, *target]
    check_parquet_numeric(path, file, names)
    rows = file.metadata.num_rows  # known up front: fill preallocated arrays block by block
    X = np.empty((rows, len(features)), dtype=np.float32)
    y = np.empty((rows, len(target)), dtype=np.float32)
    start = 0
    for block in file.iter_batches(batch_size=READ_BLOCK_ROWS, columns=names):
        stop = start + block.num_rows
        for out, part in ((X, features), (y, target)):
            for i, name in enumerate(part):
                out[start:stop, i] = block.column(name).to_numpy(zero_copy_only=False)
        start = stop
    return X, y


def check_parquet_numeric(path: Path, file: pq.ParquetFile, names: Sequence[str]) -> None:
    """Refuse a column of the Parquet file whose type is not a number, naming a bad value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in names:
        kind = file.schema_arrow.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            column = pq.read_table(path, columns=[name]).column(name)
            _raise_non_numeric(path, name, column.to_pandas(), rows_are_lines=False)
            raise WorkflowError(
                f"column {name!r} of {path.name} has type {kind}, not numbers; "
                f"leave it out of --features."
            )


def _read_csv_numeric(
    path: Path, columns: list[str], features: tuple[str, ...], target: Sequence[str]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Read a CSV file in one sequential pass, in blocks, whose errors name the line."""
    names = [*features, *target]
    X_blocks: list[NDArray[np.float32]] = []
    y_blocks: list[NDArray[np.float32]] = []
    try:
        for block in _csv_blocks(path, columns, names, np.float32, READ_BLOCK_ROWS):
            for blocks, part in ((X_blocks, features), (y_blocks, target)):
                blocks.append(_writable_rows(block[list(part)].to_numpy(dtype=np.float32)))
    except ValueError:
        # Read again as text to say which value in which column is not a number.
        text = _read_csv(path, columns, usecols=names, dtype=str)
        for name in names:
            _raise_non_numeric(path, name, text[name], rows_are_lines=True)
        raise WorkflowError(
            f"cannot read the columns of {path.name} as numbers; check the file's values."
        ) from None
    X, y = _stack(X_blocks, len(features)), _stack(y_blocks, len(target))
    return X, y


def _stack(blocks: list[NDArray[np.float32]], width: int) -> NDArray[np.float32]:
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        return np.empty((0, width), dtype=np.float32)
    return np.concatenate(blocks)


def _read_ids(path: Path, file_format: str, columns: list[str], name: str) -> list[str]:
    import pyarrow.parquet as pq

    if file_format == "parquet":
        column = pq.read_table(path, columns=[name]).column(name)
        return [str(value) for value in column.to_pylist()]
    return [str(v) for v in _read_csv(path, columns, usecols=[name], dtype=str)[name].tolist()]


def _read_csv(path: Path, columns: list[str], **options: Any) -> pd.DataFrame:
    """Read a CSV file with `columns` (the header as `_read_header` read it) as its names."""
    import pandas as pd

    try:
        return pd.read_csv(
            path,
            engine="c",
            encoding="utf-8-sig",
            skipinitialspace=True,
            header=0,
            names=columns,
            **options,
        )
    # ValueError: a row with more fields than the header names (pandas' words for it)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise _unparsable(path, error) from None


def _unparsable(path: Path, error: BaseException) -> WorkflowError:
    return WorkflowError(
        f"cannot parse {path.name} as CSV ({_first_line(error)}); "
        f"fix the file so that every row has one value per column."
    )


def _raise_non_numeric(
    path: Path, name: str, column: pd.Series, rows_are_lines: bool, first_row: int = 1
) -> None:
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if not bad.any():
        return
    position = int(np.argmax(bad.to_numpy()))
    row = first_row + position
    where = f"row {row} (line {row + 1})" if rows_are_lines else f"row {row}"
    raise WorkflowError(
        f"column {name!r} of {path.name} has a non-numeric value {column.iloc[position]!r} at "
        f"{where}; fix the value, or leave the column out of --features."
    )


def _first_missing(values: NDArray[np.float32], names: list[str]) -> tuple[str, int]:
    bad = ~np.isfinite(values)
    row = int(np.argmax(bad.any(axis=1)))
    return names[int(np.argmax(bad[row]))], row + 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
