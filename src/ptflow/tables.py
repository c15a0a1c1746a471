"""Step 1, data, for tables: every CSV and Parquet file is read here, through one reader.

`read_blocks` is that reader: it yields a table's used columns as float32, a block of rows
at a time, after every check a value needs, each written once, with one wording:

- the file (`open_table`): a regular, non-empty file, a header naming every column once;
- the columns (`choose_columns`): every asked-for name exists; features default to the
  numeric columns that are neither target nor id;
- the values: numbers (a true/false column reads as 1/0), else the first non-number is
  named with its row; missing values are kept for imputation, or refused with their row,
  or their rows left out (`keep_rows`); a row whose target is missing is left out.

Its consumers are `load_table` (the whole table in memory, for training), `iter_table`
(block by block, for `predict` and `evaluate` on tables larger than memory) and
`read_row_group` (`ptflow.streaming`, training with `--stream`). `convert_table` reads
the header here too, and the same missing-value markers.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from ptflow.config import ROW_GROUP_ROWS, MissingName
from ptflow.encoding import EncodeCounts, Encoding, FeatureKind, Vocabulary, text_of
from ptflow.errors import WorkflowError, first_line

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

# pandas and pyarrow are imported inside the functions that read tables: the tutorial and
# `ptflow --help` never pay for them.

__all__ = [
    "MISSING_MARKERS",
    "READ_BLOCK_ROWS",
    "ColumnRole",
    "KeptRows",
    "Table",
    "TableBlock",
    "TableColumns",
    "TableFile",
    "check_classes",
    "check_has_rows",
    "check_varying_target",
    "choose_columns",
    "class_order",
    "column_names",
    "column_roles",
    "convert_table",
    "describe_roles",
    "file_fingerprint",
    "holds_classes",
    "identifier_reason",
    "iter_table",
    "keep_rows",
    "known_classes",
    "leave_out",
    "load_table",
    "open_parquet",
    "open_table",
    "read_blocks",
    "read_row_group",
    "row_count",
    "rows_left_out",
    "table_format",
    "table_path",
    "whole_number_values",
]

logger = logging.getLogger(__name__)

# Tables are read this many rows at a time: memory beyond the result is one block.
READ_BLOCK_ROWS = 65_536
# `convert_table` parses CSV text this many bytes at a time.
CSV_BLOCK_BYTES = 8 << 20
# A CSV cell that is one of these is a missing value, not text: pandas' own list, and the
# dash and question mark people type for "unknown".
MISSING_MARKERS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "-", "?",
)  # fmt: skip
# A column of these words is true/false, read as 1/0 (pandas' own, and yes/no).
TRUE_WORDS = ("True", "true", "TRUE", "yes", "Yes", "YES")
FALSE_WORDS = ("False", "false", "FALSE", "no", "No", "NO")
_FLOAT32_RANGE = "beyond ±3.4e38, float32's range"


@dataclass(frozen=True)
class TableFile:
    """A CSV or Parquet file whose header has been read and checked."""

    path: Path
    format: Literal["csv", "parquet"]
    columns: tuple[str, ...]  # the header's names, stripped of spaces

    @property
    def name(self) -> str:
        return self.path.name

    @functools.cached_property
    def kinds(self) -> dict[str, ColumnKind]:
        """What each column holds, from the Parquet schema or a CSV file's first rows."""
        return _column_kinds(self)

    @functools.cached_property
    def sample(self) -> pd.DataFrame:
        """The file's first 1,000 rows, read once for every question about its columns."""
        if self.format == "parquet":
            sample = _read_parquet_head(self)
        else:
            sample = _check_fields(self, _read_csv(self, nrows=1000))
        if sample.empty:
            raise _no_rows(self)
        return sample


@dataclass(frozen=True)
class TableColumns:
    """The columns a reader uses: features and targets as numbers, the id as text.

    A categorical feature is read as text and numbered by a `Vocabulary`.
    """

    features: tuple[str, ...]
    target: tuple[str, ...] = ()
    id_column: str | None = None
    training: bool = True  # for training (advice names --features) or for a trained model
    categorical: tuple[str, ...] = ()  # features read as text: categories
    boolean: tuple[str, ...] = ()  # features of true/false values, read as 1/0
    ignored: tuple[tuple[str, str], ...] = ()  # (column, why) the rules left out
    inferred: tuple[str, ...] = ()  # features the rules chose (not named by the user)
    class_target: bool = False  # the target holds classes, read as text like a category

    @property
    def numeric(self) -> tuple[str, ...]:
        """The columns of a block's `values` (float32; categories as vocabulary numbers)."""
        return (*self.features, *self.target)

    @property
    def read(self) -> list[str]:
        """Every column read from the file, each once."""
        return list(dict.fromkeys([*self.numeric, *([self.id_column] if self.id_column else [])]))

    def kind(self, name: str) -> FeatureKind:
        """What a feature is to the model: numeric, boolean or categorical."""
        if name in self.categorical:
            return "categorical"
        return "boolean" if name in self.boolean else "numeric"


class _Values(NamedTuple):
    """Consecutive rows of a table's numeric columns, as `read_blocks` yields them."""

    columns: list[NDArray[np.float32]]  # one array per `TableColumns.numeric` name
    ids: list[str] | None  # the id column's values, as written
    first_row: int  # the row number (from 1) in the file of the block's first row
    done: float | None  # the share of the file read once this block is, when known


def table_format(path: Path, format: str = "auto") -> Literal["csv", "parquet"]:
    """Return "csv" or "parquet" for a data file, from `format` or the file's extension."""
    if format == "csv":
        return "csv"
    if format == "parquet":
        return "parquet"
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


def holds_classes(table: TableFile, target: Sequence[str]) -> bool:
    """True if a target column of the table holds text or true/false values: classes, for
    `task = "auto"` (only the header and the first rows are read)."""
    return any(table.kinds.get(name) in ("text", "true/false") for name in target)


# What a table may be handed as: a file's path, or rows in memory (see `table_path`).
TableData = Any  # str | os.PathLike[str] | pandas.DataFrame | pyarrow.Table | Arrow stream
FRAME_FILE = "DataFrame.parquet"


@contextmanager
def table_path(data: TableData, what: str = "data") -> Iterator[Path]:
    """A file holding `data`: its own path, or for rows in memory (a pandas DataFrame, an
    Arrow table, anything with `__arrow_c_stream__` or `__dataframe__`) a temporary
    Parquet file, removed afterwards, so that they are read and checked as a file is:
    column types kept (categories, booleans, nullable numbers, text)."""
    if isinstance(data, str | os.PathLike):
        yield Path(data)
        return
    import tempfile

    import pyarrow.parquet as pq

    arrow = _as_arrow(data, what)
    with tempfile.TemporaryDirectory(prefix="ptflow-") as folder:
        path = Path(folder) / FRAME_FILE
        pq.write_table(arrow, path)
        yield path


def _as_arrow(data: Any, what: str) -> pa.Table:
    import pyarrow as pa

    expected = "a CSV or Parquet file's path, a pandas DataFrame or an Arrow table"
    if isinstance(data, pa.Table):
        return data
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            if any(name is not None for name in data.index.names) or isinstance(
                data.index, pd.MultiIndex
            ):
                named = ", ".join(str(name) for name in data.index.names)
                logger.info(
                    "the DataFrame's index (%s) is not one of its columns and is not used; "
                    "df.reset_index() makes it one",
                    named,
                )
            frame = _string_names(data)
            try:
                return pa.Table.from_pandas(frame, preserve_index=False)
            except (pa.ArrowException, TypeError, ValueError):  # a column of mixed values
                return pa.Table.from_pandas(_as_cells(frame), preserve_index=False)
        if hasattr(data, "__arrow_c_stream__"):
            return pa.table(data)
        if hasattr(data, "__dataframe__"):
            from pyarrow.interchange import from_dataframe

            return from_dataframe(data)
    except (pa.ArrowException, TypeError, ValueError) as error:
        detail = ": ".join(str(part) for part in reversed(error.args)).strip() or str(error)
        raise WorkflowError(
            f"{what} could not be read as a table ({detail.splitlines()[0]}); give each column "
            f"one type (numbers, text, true/false), for example with df.astype."
        ) from None
    raise WorkflowError(f"{what} must be {expected}; got {type(data).__name__}.")


def _as_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each column of mixed Python values (numbers beside text, as a typed-in
    column often is) as text, so that it meets the rules a CSV file's cells meet: a column
    of numbers but for a few cells is named with its first such cell, not half-converted."""
    import pandas as pd
    import pyarrow as pa

    mixed = []
    for name in frame.columns[[dtype == np.dtype(object) for dtype in frame.dtypes]]:
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            mixed.append(name)
    if not mixed:
        return frame
    return frame.assign(**{str(name): frame[name].astype(pd.StringDtype()) for name in mixed})


def _string_names(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its column names as text (a Parquet file's names are text); two
    names that become the same text are refused."""
    names = [str(name) for name in frame.columns]
    if names == list(frame.columns):
        return frame
    if len(set(names)) < len(names):
        raise WorkflowError(
            "the DataFrame's column names are not distinct as text; rename its columns."
        )
    return frame.set_axis(names, axis="columns")


def column_names(names: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    """Column names as given: one name, or a list or tuple of names."""
    if names is None:
        return ()
    if isinstance(names, str):
        return (names,)
    if isinstance(names, Sequence) and all(isinstance(name, str) for name in names):
        return tuple(names)
    raise WorkflowError(f"{what} must be a column name or a list of column names; got {names!r}.")


def open_table(path: str | os.PathLike[str], format: str = "auto") -> TableFile:
    """Read and check a data file's header: every column named, and each name once."""
    from ptflow.files import check_regular_file

    path = Path(path)
    file_format = table_format(path, format)
    check_regular_file(path, "data file")
    if path.stat().st_size == 0:
        raise WorkflowError(f"data file {path} is empty; give a file with a header and rows.")
    columns = _parquet_header(path) if file_format == "parquet" else _csv_header(path)
    if duplicates := sorted({name for name in columns if columns.count(name) > 1}):
        raise WorkflowError(
            f"{path.name} has duplicate column names {', '.join(map(repr, duplicates))}; "
            f"rename them so that each column has its own name."
        )
    if "" in columns:
        raise WorkflowError(f"{path.name} has a column without a name; name every column.")
    return TableFile(path, file_format, tuple(columns))


def _read_parquet_head(table: TableFile) -> pd.DataFrame:
    import pandas as pd
    import pyarrow.parquet as pq

    file = pq.ParquetFile(table.path)
    for batch in file.iter_batches(batch_size=1000):
        return batch.to_pandas()
    return pd.DataFrame(columns=list(table.columns))


def _parquet_header(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as error:
        raise WorkflowError(
            f"cannot read {path.name} as Parquet ({first_line(error)}); "
            f"check the file, or pass --format csv if it is a CSV file."
        ) from None


def _csv_header(path: Path) -> list[str]:
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
            f"cannot read {path.name} as CSV ({first_line(error)}); give a UTF-8 CSV file, "
            f"or pass --format parquet if it is a Parquet file."
        ) from None
    columns = [name.strip() for name in columns]
    if not any(columns):
        raise WorkflowError(
            f"data file {path} has no header; its first line must name the columns."
        )
    return columns


def choose_columns(
    table: TableFile,
    target: Sequence[str] = (),
    features: Sequence[str] | None = None,
    id_column: str | None = None,
    *,
    training: bool = True,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    ignore: Sequence[str] = (),
    classes: bool = False,
) -> TableColumns:
    """Check every asked-for column name and give each feature its kind.

    Features default to every other column the rules keep (see `_default_features`);
    `categorical` and `numeric` override what a column's values suggest, `ignore` leaves
    columns out. With `classes`, the one target column holds classes.
    """
    target = tuple(target)
    if classes and len(target) != 1:
        raise WorkflowError(
            f"classification predicts one target column, and {len(target)} are named "
            f"({', '.join(target)}); name one, or train one run per target."
        )
    overrides = {
        "categorical": tuple(categorical),
        "numeric": tuple(numeric),
        "ignore": tuple(ignore),
    }
    asked = [*target, *(features or ()), *([id_column] if id_column else [])]
    asked += [name for names in overrides.values() for name in names]
    if unknown := list(dict.fromkeys(name for name in asked if name not in table.columns)):
        raise WorkflowError(
            f"{table.name} has no column {', '.join(map(repr, unknown))}; "
            f"its columns are: {', '.join(table.columns)}."
        )
    _refuse_conflicts(overrides, target, features, id_column)
    ignored: list[tuple[str, str]] = []
    inferred: tuple[str, ...] = ()
    others = [n for n in table.columns if n not in (*target, id_column, *overrides["ignore"])]
    kinds, overridden = table.kinds, (*categorical, *numeric)
    if training:  # a column the options read as they say: no typo
        candidates = others if features is None else features
        _refuse_typos(table, [n for n in candidates if kinds[n] == "text" and n not in overridden])
    if features is None:
        features, ignored = _default_features(table, others, set(overridden))
        inferred = tuple(n for n in features if n not in overridden)
    as_text = tuple(
        name for name in features
        if name in categorical or (kinds[name] == "text" and name not in numeric)
    )  # fmt: skip
    boolean = tuple(n for n in features if kinds[n] == "true/false" and n not in as_text)
    ignored += [(name, "--ignore") for name in overrides["ignore"]]
    return TableColumns(
        tuple(features), target, id_column, training, as_text, boolean, tuple(ignored), inferred,
        classes,
    )  # fmt: skip


def _refuse_conflicts(
    overrides: dict[str, tuple[str, ...]],
    target: tuple[str, ...],
    features: Sequence[str] | None,
    id_column: str | None,
) -> None:
    """A column may be in one of --categorical, --numeric and --ignore, and not the target."""
    seen: dict[str, str] = {}
    for option, names in overrides.items():
        for name in names:
            if name in seen:
                raise WorkflowError(
                    f"column {name!r} is in both --{seen[name]} and --{option}; name it in one."
                )
            seen[name] = option
            if name in target or name == id_column:
                raise WorkflowError(
                    f"column {name!r} is the {'target' if name in target else 'id column'} "
                    f"and in --{option}; leave it out of --{option}."
                )
            if option == "ignore" and features is not None and name in features:
                raise WorkflowError(
                    f"column {name!r} is in both --features and --ignore; name it in one."
                )
            if option != "ignore" and features is not None and name not in features:
                raise WorkflowError(
                    f"column {name!r} is in --{option} but not in --features, which names "
                    f"every column used; add it to --features, or leave it out of --{option}."
                )


# A text column with at least this share of distinct values (names, codes) looks like an
# identifier, not a category.
IDENTIFIER_SHARE = 0.5


def _default_features(
    table: TableFile, others: list[str], chosen: set[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The features the rules choose among `others`, and (column, why) for those left out.

    Numbers are numeric features, true/false values boolean ones, other text categorical.
    Left out: a column with no value in the first 1,000 rows; whole numbers that are
    distinct and increasing there (a row number), or distinct and named like an id
    (`id`, `..._id`), unless no other feature is left. Text columns that look like
    identifiers are left out after reading (`_drop_identifiers`). `chosen`: the columns
    the options name, kept whatever their values.
    """
    import pandas as pd

    features, ignored, row_numbers = [], [], []
    for name in others:
        column = table.sample[name].dropna()
        if table.kinds[name] == "numbers" and not pd.api.types.is_numeric_dtype(column.dtype):
            column = _as_numbers(_text_cells(column))[0].dropna()  # numbers written as text
        if name in chosen:
            features.append(name)
        elif column.empty:
            ignored.append((name, "no values in the first 1,000 rows"))
        elif table.kinds[name] == "numbers" and _looks_like_row_number(name, column):
            row_numbers.append(name)
        else:
            features.append(name)
    for name in row_numbers:
        if features:
            ignored.append(
                (name, f"looks like an identifier or row number; --numeric {_arg(name)} uses it")
            )
        else:
            features.append(name)  # the only candidate: a row number may be a trend
    if not features:
        raise _nothing_to_learn(table, ignored)
    return [name for name in others if name in features], ignored


def _nothing_to_learn(table: TableFile, left_out: Sequence[tuple[str, str]]) -> WorkflowError:
    """The error for a table whose every column besides the target was left out, and why."""
    reasons = ", ".join(f"{name}: {why}" for name, why in left_out) or "no other column"
    return WorkflowError(
        f"{table.name} has no column to learn from besides the target ({reasons}); name the "
        f"features with --features."
    )


def _looks_like_row_number(name: str, column: pd.Series) -> bool:
    """Whole numbers, distinct, and increasing or named like an id (in the sampled rows)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype) or len(column) < 3:
        return False
    values = column.to_numpy(dtype=np.float64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        return False
    if len(np.unique(values)) != len(values):
        return False
    named = name.lower() == "id" or name.lower().endswith(("_id", " id", "-id"))
    return named or bool((np.diff(values) > 0).all())


def _refuse_typos(table: TableFile, text_columns: list[str], keep: str = "") -> None:
    """A column of numbers but for a few cells ("five", "n/a " typed by hand) is neither
    silently text nor silently left out: name the first such cell. `keep`: how to keep
    the column as text instead (default: --categorical, for training)."""

    for name in text_columns:
        column = table.sample[name].dropna()
        bad = _as_numbers(column)[1]
        typos, numbers = int(bad.sum()), int((~bad).sum())
        if 0 < typos <= max(1, len(column) // 20) and numbers >= 2 * typos:
            at = int(table.sample.index.get_loc(bad[bad].index[0])) + 1
            how = keep or "to read the column as categories"
            raise WorkflowError(
                f"column {name!r} of {table.name} holds numbers but for {column[bad].iloc[0]!r} "
                f"at {_where(table, at)}; fix that cell (a missing value may be left blank), or "
                f"pass --categorical {_arg(name)} {how}."
            )


ColumnKind = Literal["numbers", "true/false", "text"]


def _column_kinds(table: TableFile) -> dict[str, ColumnKind]:
    """What each column holds: from the Parquet schema, or from a CSV file's first rows."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind_of(numeric: bool, boolean: bool) -> ColumnKind:
        return "true/false" if boolean else "numbers" if numeric else "text"

    if table.format == "parquet":
        schema = pq.read_schema(table.path)
        kinds = {
            name: kind_of(
                pa.types.is_integer(schema.field(name).type)
                or pa.types.is_floating(schema.field(name).type),
                pa.types.is_boolean(schema.field(name).type),
            )
            for name in table.columns
        }
        for name in table.columns:  # text written by another tool: read as a CSV cell is
            if _is_text(schema.field(name).type):
                cells = _text_cells(table.sample[name])
                kinds[name] = kind_of(not _as_numbers(cells)[1].any(), _holds_true_false(cells))
        return kinds
    # The first rows decide; a later text value in a numeric column is still caught.
    sample = table.sample
    return {
        name: kind_of(
            pd.api.types.is_numeric_dtype(sample[name].dtype), _holds_true_false(sample[name])
        )
        for name in table.columns
    }


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _text_cells(column: pd.Series) -> pd.Series:
    """A text column's cells as a CSV reader sees them: the missing-value markers missing,
    true/false words as booleans."""
    import pandas as pd

    cells = column.where(~column.isin(MISSING_MARKERS)).dropna()
    words = {**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)}
    if len(cells) and cells.isin(list(words)).all():
        return pd.Series([words[value] for value in cells], index=cells.index, dtype=bool)
    return cells


def _holds_true_false(column: pd.Series) -> bool:
    """A column pandas read as booleans, or as true/false values with blanks between them."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        return True
    present = column.dropna()
    return len(present) > 0 and all(isinstance(value, bool) for value in present)


@dataclass(frozen=True)
class ColumnRole:
    """What a run did with one column of its table, for the terminal, summary.json, report."""

    name: str
    role: Literal["target", "feature", "id", "ignored"]
    detail: str  # what it holds, how many values were missing, or why it was left out


def column_roles(
    table: TableFile,
    columns: TableColumns,
    missing: dict[str, int] | None = None,
    levels: dict[str, int] | None = None,
) -> tuple[ColumnRole, ...]:
    """Every column of the table and what the run does with it, in the file's order.

    `missing`: the missing values found in each used column; `levels`: the distinct
    values of each categorical feature.
    """
    missing, levels, ignored = missing or {}, levels or {}, dict(columns.ignored)
    roles = []
    for name in table.columns:
        if name in columns.features:
            kind = columns.kind(name)
            detail = (
                f"categories, {levels.get(name, 0)} values" if kind == "categorical"
                else "true/false as 1/0" if kind == "boolean" else "numbers"
            )  # fmt: skip
            if missing.get(name):
                detail += f", {missing[name]} missing"
            roles.append(ColumnRole(name, "feature", detail))
        elif name in columns.target:
            detail = f"classes, {levels.get(name, 0)} values" if columns.class_target else "numbers"
            if missing.get(name):
                detail += f", {missing[name]} missing"
            roles.append(ColumnRole(name, "target", detail))
        elif name == columns.id_column:
            roles.append(ColumnRole(name, "id", "kept as written"))
        else:
            roles.append(ColumnRole(name, "ignored", ignored.get(name, "not in --features")))
    return tuple(roles)


def describe_roles(roles: Sequence[ColumnRole]) -> str:
    """The roles as a short table: a line per column, its role and detail, under a title."""
    width = max((len(column.name) for column in roles), default=0)
    lines = [f"  {c.name:<{width}}  {c.role:<7}  {c.detail}" for c in roles]
    return "\n".join(["columns:", *lines])


def read_blocks(
    table: TableFile,
    columns: TableColumns,
    *,
    block_rows: int | None = None,
    threads: int | None = None,
    hashing: _Hashing | None = None,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Iterator[_Values]:
    """Yield the table's numeric columns as float32 (and its ids), a block at a time.

    A categorical column's values are numbered by its `vocabularies` entry (NaN: missing).

    Every value is a number or missing (NaN); the first that is neither raises
    `WorkflowError` naming its row. Blocks are of `block_rows` rows (default
    READ_BLOCK_ROWS). With `threads`, a CSV file is parsed by that many threads in blocks
    of about 8 MiB of text (`ptflow.csv_blocks`), handed on in order, and `hashing` is fed
    the file's bytes as they are parsed (complete unless the file needed a sequential read
    after all).
    """
    block_rows = block_rows or READ_BLOCK_ROWS
    vocabularies = vocabularies or {}
    if missing := [name for name in columns.categorical if name not in vocabularies]:
        raise ValueError(f"no vocabulary for categorical column(s) {missing}")
    if table.format == "parquet":
        yield from _parquet_blocks(table, columns, block_rows, vocabularies)
        return
    text = columns.categorical or columns.class_target
    if threads is not None and columns.id_column is None and not text:
        from ptflow.csv_blocks import SequentialReadNeeded, parallel_blocks

        rows, hashing = 0, hashing or _Hashing()
        try:
            for parsed, done in parallel_blocks(
                table.path, table.columns, columns.numeric, threads, hashing.digest,
                MISSING_MARKERS,
            ):  # fmt: skip
                yield _Values(parsed, None, rows + 1, done)
                rows += len(parsed[0]) if parsed else 0
            hashing.complete = True
            return
        except SequentialReadNeeded:
            # Quotes, or a value that is not a number: read on in one sequential pass,
            # whose errors name the line.
            yield from _csv_blocks(table, columns, block_rows, vocabularies, skip=rows)
            return
    yield from _csv_blocks(table, columns, block_rows, vocabularies)


def _csv_blocks(
    table: TableFile,
    columns: TableColumns,
    block_rows: int,
    vocabularies: Mapping[str, Vocabulary],
    skip: int = 0,
) -> Iterator[_Values]:
    """Read a CSV file in one sequential pass, in blocks; the blocks' first `skip` rows left out."""
    # Ids as written: "007" stays "007", and "NA" (Namibia, say) is no missing value.
    # Categories as written too ("007" is not 7), but with the missing-value markers.
    text = {name: str for name in columns.categorical}
    if columns.class_target:
        text.update({name: str for name in columns.target})
    if columns.id_column:
        text[columns.id_column] = str
    markers = {name: list(MISSING_MARKERS) for name in columns.numeric}
    first_row, names = 1, columns.numeric
    with _read_csv(
        table, usecols=columns.read, dtype=text, chunksize=block_rows, na_values=markers
    ) as reader:
        for frame in reader:
            rows = len(_check_fields(table, frame))
            if first_row + rows - 1 > skip:
                if first_row <= skip:
                    frame = frame.iloc[skip - first_row + 1 :]
                start = max(first_row, skip + 1)
                values = [
                    vocabularies[name].codes(frame[name]) if name in vocabularies
                    else _float32(table, columns, name, frame[name], start)
                    for name in names
                ]  # fmt: skip
                yield _Values(values, _ids(frame, columns.id_column), start, None)
            first_row += rows


def _ids(frame: pd.DataFrame, id_column: str | None) -> list[str] | None:
    return None if id_column is None else [str(value) for value in frame[id_column].tolist()]


def _float32(
    table: TableFile, columns: TableColumns, name: str, column: pd.Series, first_row: int
) -> NDArray[np.float32]:
    """A column of a CSV block as float32: numbers, true/false as 1/0, missing as NaN."""
    import pandas as pd

    kind = column.dtype
    if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):  # text
        if _holds_true_false(column):
            column = column.astype("float32")  # true/false with blanks between them
        else:
            numbers, bad = _as_numbers(column)
            if bad.any():
                at = int(np.argmax(bad.to_numpy()))
                raise _non_numeric(table, columns, name, column.iloc[at], first_row + at)
            column = numbers
    with np.errstate(over="ignore"):  # beyond float32's range: infinity, caught later
        return np.ascontiguousarray(column.to_numpy(dtype=np.float32, na_value=np.nan))


def _as_numbers(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A text column as numbers (NaN where not one), and which cells are neither a number
    nor missing."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    return numbers, numbers.isna() & column.notna()


def _non_numeric(
    table: TableFile, columns: TableColumns, name: str, value: object, row: int
) -> WorkflowError:
    if columns.training:
        fix = f"fix the value, or pass --categorical {_arg(name)} to read the column as categories"
    elif name in columns.boolean:
        fix = "fix the value: the model was trained on true/false values in this column"
    else:
        fix = "fix the value: the model was trained on numbers in this column"
    return WorkflowError(
        f"column {name!r} of {table.name} has a non-numeric value {value!r} at "
        f"{_where(table, row)}; {fix}."
    )


def _where(table: TableFile, row: int) -> str:
    """Where a data row is: its number, and in a CSV file its line (the header is line 1)."""
    return f"row {row} (line {row + 1})" if table.format == "csv" else f"row {row}"


def _arg(name: str) -> str:
    """A column name as a shell argument: quoted when it holds a space or the like."""
    import shlex

    return shlex.quote(name)


def _parquet_blocks(
    table: TableFile,
    columns: TableColumns,
    block_rows: int,
    vocabularies: Mapping[str, Vocabulary],
) -> Iterator[_Values]:
    file = open_parquet(table, columns)
    total = max(file.metadata.num_rows, 1)
    first_row = 1
    for batch in file.iter_batches(batch_size=block_rows, columns=columns.read):
        values = [
            vocabularies[name].codes(batch.column(name).to_pandas()) if name in vocabularies
            else _arrow_float32(batch.column(name))
            for name in columns.numeric
        ]  # fmt: skip
        ids = None
        if columns.id_column is not None:
            ids = [str(value) for value in batch.column(columns.id_column).to_pylist()]
        yield _Values(values, ids, first_row, (first_row - 1 + batch.num_rows) / total)
        first_row += batch.num_rows


def open_parquet(table: TableFile, columns: TableColumns) -> pq.ParquetFile:
    """Open a Parquet file for reading, refusing a numeric column whose type is not a number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Streamed a megabyte at a time rather than whole column chunks: as fast, less memory.
        file = pq.ParquetFile(table.path, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as error:
        raise WorkflowError(f"cannot read {table.name} as Parquet ({first_line(error)}).") from None
    _check_parquet_types(table, columns, file)
    return file


def _check_parquet_types(table: TableFile, columns: TableColumns, file: pq.ParquetFile) -> None:
    """Refuse a numeric column whose Parquet type is not a number, naming a bad value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in columns.numeric:
        kind = file.schema_arrow.field(name).type
        if name in columns.categorical or (columns.class_target and name in columns.target):
            continue
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            continue
        column = pq.read_table(table.path, columns=[name]).column(name).to_pandas()
        cells = _text_cells(column) if _is_text(kind) else column
        if (bad := _as_numbers(cells)[1]).any():
            position = int(column.index.get_loc(bad[bad].index[0]))
            raise _non_numeric(table, columns, name, column.iloc[position], position + 1)
        if _is_text(kind):  # numbers written as text: read as numbers, as from a CSV file
            continue
        raise WorkflowError(
            f"column {name!r} of {table.name} has type {kind}, not numbers; "
            + ("leave it out of --features." if columns.training else "give it as numbers.")
        )


def _arrow_float32(
    column: pa.Array | pa.ChunkedArray, out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """An Arrow column of numbers or booleans as float32, nulls as NaN, into `out` if given."""
    import pyarrow as pa

    if _is_text(column.type):  # numbers or true/false written as text, checked when opened
        cells = _text_cells(column.to_pandas())
        numbers = _cells_as_float32(cells, len(column))
        if out is None:
            return numbers
        out[:] = numbers
        return out
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.float32())  # true/false as 1/0, as in a CSV file
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if out is None:
        out = np.empty(len(column), dtype=np.float32)
    start = 0
    with np.errstate(over="ignore"):  # beyond float32's range: infinity, caught later
        for chunk in chunks:
            values = chunk.to_numpy(zero_copy_only=False)
            out[start : start + len(values)] = values
            start += len(values)
    return out


def _cells_as_float32(cells: pd.Series, rows: int) -> NDArray[np.float32]:
    """Present cells (numbers, or booleans) of a column of `rows` as float32, NaN elsewhere."""
    import pandas as pd

    out = np.full(rows, np.nan, dtype=np.float32)
    with np.errstate(over="ignore"):  # beyond float32's range: infinity, caught later
        out[cells.index.to_numpy()] = pd.to_numeric(cells).to_numpy(dtype=np.float32)
    return out


def read_row_group(
    file: pq.ParquetFile,
    group: int,
    columns: TableColumns,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> NDArray[np.float32]:
    """One row group's columns as a (rows, columns) float32 array, column-major: a
    categorical column as its `vocabularies` numbers."""
    arrow = file.read_row_group(group, columns=list(columns.numeric))
    # Column-major, the file's layout: each column is copied in one contiguous stretch.
    by_column = np.empty((len(columns.numeric), arrow.num_rows), dtype=np.float32)
    for i, name in enumerate(columns.numeric):
        if vocabularies is not None and name in vocabularies:
            by_column[i] = vocabularies[name].codes(arrow.column(name).to_pandas())
        else:
            _arrow_float32(arrow.column(name), out=by_column[i])
    return by_column.T


class KeptRows(NamedTuple):
    """Which rows of a block to keep (None: all), and why the others were left out."""

    keep: NDArray[np.bool_] | None
    missing_target: int  # rows whose target is missing: never trained or scored on
    missing_feature: int  # rows left out for a missing feature value (--missing drop)


def keep_rows(
    table: TableFile,
    columns: TableColumns,
    parts: Sequence[NDArray[np.float32]],
    first_row: int,
    missing: MissingName,
    *,
    cannot_impute: str = "",
) -> KeptRows:
    """Which rows of `parts` (arrays whose columns, side by side, are `columns.numeric`) to keep.

    A row whose target is missing is left out, whatever `missing` says. A missing feature
    value is kept for imputation (`impute`), leaves its row out (`drop`) or is an error
    naming its column and row (`error`). An infinite or too large value is an error,
    except with `drop`, which leaves its row out.
    """
    # One pass over the whole arrays first: the row-by-row check is seven times slower.
    if all(np.isfinite(part).all() for part in parts):
        return KeptRows(None, 0, 0)
    width = len(columns.features)
    finite = np.concatenate([np.isfinite(part) for part in parts], axis=1)
    nan = np.concatenate([np.isnan(part) for part in parts], axis=1)
    target_missing = nan[:, width:].any(axis=1)
    bad = ~finite if missing != "impute" else ~finite & ~nan
    bad[:, width:] &= ~nan[:, width:]  # a missing target drops its row: not an error
    if missing == "drop":
        keep = ~bad.any(axis=1) & ~target_missing
        dropped_feature = int((~keep & ~target_missing).sum())
        return KeptRows(np.asarray(keep), int(target_missing.sum()), dropped_feature)
    if bad.any():
        row, column = np.unravel_index(int(np.argmax(bad)), bad.shape)
        value = np.concatenate([part[row] for part in parts])[column]
        if np.isnan(value):
            problem = "a missing value"
            fix = (
                f"pass --missing drop to skip such rows ({cannot_impute}), or fill it in"
                if cannot_impute
                else "pass --missing impute or --missing drop, or fill it in"
            )
        else:
            problem = f"an infinite or too large ({_FLOAT32_RANGE}) value"
            fix = "fix the value" + (
                ", or pass --missing drop to skip such rows" if columns.target else ""
            )
        raise WorkflowError(
            f"{table.name} has {problem} in column {columns.numeric[column]!r} at "
            f"{_where(table, first_row + int(row))}; {fix}."
        )
    if not target_missing.any():
        return KeptRows(None, 0, 0)
    return KeptRows(np.asarray(~target_missing), int(target_missing.sum()), 0)


@dataclass(frozen=True)
class TableBlock:
    """Consecutive rows of a table's columns, checked, as `iter_table` yields them."""

    X: torch.Tensor  # (rows, features), float32; encoded when an encoding was given
    ids: list[str] | None  # the id column's values, when one was asked for
    first_row: int  # the row number (from 1) in the file of the block's first row
    y: torch.Tensor | None = None  # (rows, targets), float32, when targets were asked for
    dropped_rows: int = 0  # rows of the block left out for missing values
    counts: EncodeCounts | None = None  # what the encoding did: imputed, unseen
    missing_target: int = 0  # of the dropped rows, those whose target is missing
    unseen_class: int = 0  # of the dropped rows, those of a class the model was not trained on


def iter_table(
    data: TableData, features: str | Sequence[str], **options: Any
) -> Iterator[TableBlock]:
    """Yield a trained model's feature (and target) columns of a file, DataFrame or Arrow
    table (`table_path`) a block of rows at a time (`options`: `_iter_table_file`'s)."""
    if "target" in options:
        options["target"] = column_names(options["target"], "target")
    with table_path(data) as path:
        yield from _iter_table_file(path, column_names(features, "features"), **options)


def _iter_table_file(
    path: str | os.PathLike[str],
    features: Sequence[str],
    *,
    target: Sequence[str] = (),
    format: str = "auto",
    id_column: str | None = None,
    block_rows: int = READ_BLOCK_ROWS,
    drop_missing: bool = False,
    missing: MissingName | None = None,
    encoding: Encoding | None = None,
    classes: Sequence[str] = (),
) -> Iterator[TableBlock]:
    """Yield a trained model's feature (and target) columns `block_rows` rows at a time.

    Memory is one block, whatever the file's size: for predicting on and evaluating tables
    larger than memory. Checked as `read_blocks` and `keep_rows` check. With the model's
    `encoding`, the blocks' X are its inputs: missing values imputed (`missing` "impute",
    the default then), categories coded. Rows whose target is missing are left out. With
    `classes` (a classifier's), the target is read as classes: y holds their numbers, and a
    row of another class is left out and counted (`unseen_class`), not scored.
    """
    if missing is None:
        missing = "drop" if drop_missing else "impute" if encoding is not None else "error"
    cannot_impute = ""
    if encoding is None:
        cannot_impute = "a model saved without an encoding of its columns cannot impute"
        missing = "error" if missing == "impute" else missing
    table = open_table(path, format)
    categorical = [c.name for c in encoding.categorical] if encoding is not None else []
    numeric = [name for name in features if name not in (*categorical, id_column)]
    by_class = bool(classes) and bool(target)
    columns = choose_columns(
        table, target, features, id_column, training=False, categorical=categorical,
        numeric=numeric, classes=by_class,
    )  # fmt: skip
    vocabularies = _table_vocabularies(columns)
    width, kept, dropped = len(columns.features), 0, 0
    unseen_names: set[str] = set()  # a few of the classes the model does not know
    for block in read_blocks(table, columns, block_rows=block_rows, vocabularies=vocabularies):
        rows = len(block.columns[0])
        X, y = _matrix(block.columns[:width], rows), _matrix(block.columns[width:], rows)
        rows_kept = keep_rows(
            table, columns, [X, y], block.first_row, missing, cannot_impute=cannot_impute
        )
        keep, unseen = rows_kept.keep, 0
        if by_class:  # class numbers; a class the model does not know: left out, counted
            written = ~np.isnan(y[:, 0])
            y = known_classes(y, vocabularies[columns.target[0]], classes)
            unknown = written & np.isnan(y[:, 0])
            unseen = int(unknown.sum())
            if unseen and len(unseen_names) < 5:
                values = vocabularies[columns.target[0]].values
                codes = np.unique(block.columns[width][unknown]).astype(np.int64)
                unseen_names.update(values[i] for i in codes[:5] if i < len(values))
            keep = ~unknown if keep is None else keep & ~unknown
        ids, block_dropped = block.ids, 0
        if keep is not None:
            X, y, block_dropped = X[keep], y[keep], int((~keep).sum())
            ids = [ids[row] for row in np.flatnonzero(keep)] if ids is not None else None
        counts = None
        if encoding is not None:
            X, counts = encoding.encode(X, vocabularies, in_place=True)  # the block's own copy
        y_tensor = torch.from_numpy(y) if columns.target else None
        yield TableBlock(
            torch.from_numpy(X), ids, block.first_row, y_tensor, block_dropped, counts,
            rows_kept.missing_target, unseen,
        )  # fmt: skip
        kept, dropped = kept + len(X), dropped + block_dropped
    if kept == 0 and unseen_names:
        raise WorkflowError(
            f"no row of {table.name} is of a class the model was trained on ({', '.join(classes)}"
            f"); its target holds {', '.join(sorted(unseen_names))}: check the target column "
            f"(classes match as written: 1.0 is not 1)."
        )
    if kept == 0:
        raise _no_rows(table) if dropped == 0 else _all_missing(table)


def known_classes(
    y: NDArray[np.float32], vocabulary: Vocabulary, classes: Sequence[str]
) -> NDArray[np.float32]:
    """A class target's vocabulary numbers as the model's class numbers; NaN where missing
    or a class it does not know.

    Two classes that are a true and a false word (`no` and `yes`, `False` and `True`) take
    every true/false spelling: a CSV's yes/no target and its Parquet copy (booleans, since
    `ptflow convert` writes them so) score each other's models."""
    number_of = {name: float(i) for i, name in enumerate(classes)}
    truth = [name in TRUE_WORDS for name in classes]
    if (
        len(classes) == 2
        and all(n in TRUE_WORDS or n in FALSE_WORDS for n in classes)
        and (truth[0] != truth[1])
    ):
        number_of |= {word: float(truth.index(True)) for word in TRUE_WORDS}
        number_of |= {word: float(truth.index(False)) for word in FALSE_WORDS}
    lookup = vocabulary.lookup(number_of, np.nan)
    out = np.full_like(y, np.nan)
    present = ~np.isnan(y)
    out[present] = lookup[y[present].astype(np.int64)]
    return out


def row_count(count: int) -> str:
    """ "1 row", "2 rows"."""
    return f"{count:,} row" + ("" if count == 1 else "s")


def rows_left_out(dropped: int, missing_target: int, unseen_class: int = 0) -> list[str]:
    """What was left out of a table's `dropped` rows, a phrase per reason, for the user."""
    phrases = []
    if missing_target:
        phrases.append(f"{row_count(missing_target)} without a target value")
    if unseen_class:
        phrases.append(f"{row_count(unseen_class)} of a class the model was not trained on")
    if (other := dropped - missing_target - unseen_class) > 0:
        phrases.append(f"{row_count(other)} with a missing or infinite feature value")
    return phrases


def _matrix(columns: list[NDArray[np.float32]], rows: int) -> NDArray[np.float32]:
    """Columns side by side: (rows, columns), C-contiguous, writable."""
    if not columns:
        return np.empty((rows, 0), dtype=np.float32)
    return np.column_stack(columns) if len(columns) > 1 else columns[0][:, None].copy()


def check_has_rows(table: TableFile, rows: int) -> None:
    """Refuse a table without rows: a header alone."""
    if rows == 0:
        raise _no_rows(table)


def _no_rows(table: TableFile) -> WorkflowError:
    return WorkflowError(f"{table.name} has a header but no rows; give a file with data.")


def _all_missing(table: TableFile) -> WorkflowError:
    return WorkflowError(f"every row of {table.name} has a missing value; clean the data.")


@dataclass(frozen=True)
class Table:
    """The used columns of a data file as float32 tensors, with their names and origin.

    X holds the features as read: NaN where a value is missing (with `missing="impute"`),
    and a categorical column as its `vocabularies` numbers; `ptflow.encoding` turns them
    into a model's inputs.
    """

    X: torch.Tensor  # (rows, features)
    y: torch.Tensor  # (rows, targets); no columns when no target was asked for
    features: tuple[str, ...]
    target: tuple[str, ...]
    fingerprint: dict[str, Any]  # file name, size, SHA-256, rows, columns
    dropped_rows: int = 0  # rows left out: a missing target, or drop_missing
    ids: list[str] | None = None  # the id column's values, when one was asked for
    roles: tuple[ColumnRole, ...] = ()  # every column of the file, and what was done with it
    kinds: tuple[FeatureKind, ...] = ()  # each feature's kind; () for the tutorial's line
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)  # categorical features'
    file_rows: NDArray[np.int64] | None = None  # each row's data row in the file (0-based)
    missing_target: int = 0  # of the dropped rows, those whose target is missing
    classes: tuple[str, ...] = ()  # a class target's values in order: y holds 0, 1, ...


def load_table(
    data: TableData,
    target: str | Sequence[str] = (),
    features: str | Sequence[str] | None = None,
    **options: Any,
) -> Table:
    """Read target and feature columns of a CSV or Parquet file, or of a DataFrame or
    Arrow table (`table_path`), checking every value (`options`: `_load_table_file`'s)."""
    chosen = column_names(features, "features") if features is not None else None
    with table_path(data) as path:
        return _load_table_file(path, column_names(target, "target"), chosen, **options)


def _load_table_file(
    path: str | os.PathLike[str],
    target: Sequence[str] = (),
    features: Sequence[str] | None = None,
    *,
    format: str = "auto",
    drop_missing: bool = False,
    missing: MissingName | None = None,
    id_column: str | None = None,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    ignore: Sequence[str] = (),
    classes: bool = False,
) -> Table:
    """Read target and feature columns of a CSV or Parquet file, checking every value.

    With `classes`, the one target column holds classes: read as written, ordered by
    `class_order`, and y holds each row's class number.

    Features default to every other column the rules keep (`choose_columns`). A missing
    feature value is an error (`missing="error"`, the default), leaves its row out
    (`"drop"`, or `drop_missing`) or stays NaN for imputation (`"impute"`). A row whose
    target is missing is left out; a constant target is an error. A CSV file is parsed on
    every core (`torch.get_num_threads()`), and hashed from the bytes parsed; a Parquet
    file is hashed in a background thread meanwhile.
    """
    missing = missing or ("drop" if drop_missing else "error")
    table = open_table(path, format)
    columns = choose_columns(
        table, target, features, id_column, categorical=categorical, numeric=numeric,
        ignore=ignore, classes=classes,
    )  # fmt: skip
    vocabularies = _table_vocabularies(columns)
    hashing = _Hashing()
    with ThreadPoolExecutor(max_workers=1) as background:  # hashing releases the GIL
        parquet_hash = None
        if table.format == "parquet":
            parquet_hash = background.submit(file_fingerprint, table.path)
        blocks = read_blocks(
            table, columns, threads=torch.get_num_threads(), hashing=hashing,
            vocabularies=vocabularies,
        )  # fmt: skip
        X, y, ids = _gather(table, columns, blocks)
        if parquet_hash is not None:
            fingerprint = parquet_hash.result()
        else:  # from the bytes the parallel read parsed, or by reading the file again
            fingerprint = file_fingerprint(table.path, hashing.hexdigest())
    kept = keep_rows(table, columns, [X, y], 1, missing)
    counts = {}
    if kept.keep is not None or missing == "impute":
        per_column = [np.count_nonzero(np.isnan(part), axis=0) for part in (X, y)]
        counts = dict(zip(columns.numeric, map(int, np.concatenate(per_column)), strict=True))
    file_rows = None
    if (keep := kept.keep) is not None:
        X, y = X[keep], y[keep]
        ids = [ids[row] for row in np.flatnonzero(keep)] if ids is not None else None
        file_rows = np.flatnonzero(keep)
        if len(X) == 0:
            raise _all_missing(table)
    X, columns = _drop_identifiers(table, columns, X, vocabularies)
    class_names, y = _checked_target(table, columns, vocabularies, y)
    levels = {name: len(vocabularies[name].values) for name in columns.categorical}
    levels.update({name: len(class_names) for name in columns.target if classes})
    return Table(
        torch.from_numpy(X),
        torch.from_numpy(y),
        columns.features,
        columns.target,
        {**fingerprint, "rows": len(X), "columns": len(table.columns)},
        0 if keep is None else int((~keep).sum()),
        ids,
        column_roles(table, columns, counts, levels),
        tuple(columns.kind(name) for name in columns.features),
        {name: vocabularies[name] for name in columns.categorical},
        file_rows,
        kept.missing_target,
        class_names,
    )


# A numeric target of at most this many whole-number values may be classes: a hint says so.
FEW_CLASSES = 10


def whole_number_values(table: TableFile, name: str) -> list[str] | None:
    """A numeric column's values, as text, when its first rows hold no more than
    FEW_CLASSES whole numbers, each at least twice; else None."""
    if table.kinds.get(name) != "numbers":
        return None
    column = table.sample[name].dropna()
    counts = column.value_counts()
    whole = bool(len(column)) and bool((column == column.round()).all())
    if not whole or len(counts) > FEW_CLASSES or counts.min() < 2:
        return None
    return [text_of(value) for value in sorted(counts.index)]


def class_order(values: Sequence[str]) -> tuple[str, ...]:
    """Classes in their stated order: by value where every class is a number ("2" before
    "10"), else alphabetically."""
    try:
        return tuple(sorted(values, key=float))
    except ValueError:
        return tuple(sorted(values))


def _table_vocabularies(columns: TableColumns) -> dict[str, Vocabulary]:
    """A vocabulary for each categorical feature, and for a target of classes."""
    names = [*columns.categorical, *(columns.target if columns.class_target else ())]
    return {name: Vocabulary(name) for name in names}


def _checked_target(
    table: TableFile,
    columns: TableColumns,
    vocabularies: Mapping[str, Vocabulary],
    y: NDArray[np.float32],
) -> tuple[tuple[str, ...], NDArray[np.float32]]:
    """The classes (none for numbers) and the target column(s), refused if constant."""
    if columns.class_target:
        return _class_numbers(table, columns.target[0], vocabularies, y)
    if len(y) > 1:
        check_varying_target(columns.target, np.nanmin(y, axis=0), np.nanmax(y, axis=0))
    return (), y


def _class_numbers(
    table: TableFile, name: str, vocabularies: Mapping[str, Vocabulary], y: NDArray[np.float32]
) -> tuple[tuple[str, ...], NDArray[np.float32]]:
    """A class target's classes in order, and its rows' class numbers (0, 1, ...)."""
    values = vocabularies[name].values
    present = np.unique(y[:, 0]).astype(np.int64)
    classes = class_order([values[i] for i in present])
    check_classes(table.name, name, classes, int((~np.isnan(y[:, 0])).sum()))
    return classes, known_classes(y, vocabularies[name], classes)


def check_classes(file: str, name: str, classes: Sequence[str], rows: int) -> None:
    """Refuse a class target of one class, or of more classes than half its rows: most
    classes would have a row or none to learn from (a numeric column asked to be classes)."""
    if len(classes) < 2:
        raise WorkflowError(
            f"target column {name!r} of {file} has one class ({classes[0]!r}) in every "
            f"row; classification needs two or more, so choose another target."
        )
    if len(classes) > 2 and len(classes) > rows / 2:
        raise WorkflowError(
            f"target column {name!r} of {file} has {len(classes):,} distinct values in "
            f"{row_count(rows)}, too many to be classes (most would have one row to learn "
            f"from); predict it as numbers (--task regression), or choose another target."
        )


def _drop_identifiers(
    table: TableFile,
    columns: TableColumns,
    X: NDArray[np.float32],
    vocabularies: dict[str, Vocabulary],
) -> tuple[NDArray[np.float32], TableColumns]:
    """Leave out text columns the rules chose whose values are nearly all distinct (names,
    codes): an identifier, not a category. A column named in an option is kept."""
    dropped = {}
    for name in set(columns.categorical) & set(columns.inferred):
        values = X[:, columns.features.index(name)]
        present = values[~np.isnan(values)]
        if why := identifier_reason(name, len(np.unique(present)), len(present)):
            dropped[name] = why
    if not dropped:
        return X, columns
    kept = leave_out(table, columns, dropped)
    X = np.ascontiguousarray(X[:, [columns.features.index(name) for name in kept.features]])
    return X, kept


def identifier_reason(name: str, distinct: int, present: int) -> str | None:
    """Why a text column the rules chose is left out, or None: distinct values in at least
    IDENTIFIER_SHARE of its cells (and more than two) make it an identifier."""
    if distinct > 2 and distinct >= IDENTIFIER_SHARE * present:
        return (
            f"looks like an identifier ({distinct:,} distinct values in {present:,} rows); "
            f"--categorical {_arg(name)} uses it"
        )
    return None


def leave_out(table: TableFile, columns: TableColumns, dropped: Mapping[str, str]) -> TableColumns:
    """The columns without the features `dropped` (name: why), which join the ignored."""
    import dataclasses

    features = tuple(name for name in columns.features if name not in dropped)
    if not features:
        raise _nothing_to_learn(table, [*columns.ignored, *dropped.items()])
    return dataclasses.replace(
        columns,
        features=features,
        categorical=tuple(n for n in columns.categorical if n not in dropped),
        boolean=tuple(n for n in columns.boolean if n not in dropped),
        ignored=(*columns.ignored, *dropped.items()),
    )


def _gather(
    table: TableFile, columns: TableColumns, blocks: Iterator[_Values]
) -> tuple[NDArray[np.float32], NDArray[np.float32], list[str] | None]:
    """Copy blocks, in order, into (rows, features) and (rows, targets) float32 arrays."""
    width = len(columns.features)
    X = np.empty((0, width), dtype=np.float32)
    y = np.empty((0, len(columns.target)), dtype=np.float32)
    ids: list[str] | None = [] if columns.id_column else None
    rows = 0
    for block in blocks:
        end = rows + (len(block.columns[0]) if block.columns else 0)
        if end > len(X):
            # Room for the rest of the file at the rate so far, and 5% more: the arrays are
            # sized once, rarely twice, and never copied at the end. Doubled when the share
            # read is unknown.
            room = max(end, int(1.05 * end / block.done) + 1 if block.done else 2 * end)
            X, y = _grown(X, rows, room), _grown(y, rows, room)
        for index, column in enumerate(block.columns):  # column by column: pandas' layout
            if index < width:
                X[rows:end, index] = column
            else:
                y[rows:end, index - width] = column
        rows = end
        if ids is not None and block.ids is not None:
            ids.extend(block.ids)
    check_has_rows(table, rows)
    return X[:rows], y[:rows], ids


def _grown(values: NDArray[np.float32], rows: int, room: int) -> NDArray[np.float32]:
    grown = np.empty((room, values.shape[1]), dtype=np.float32)
    grown[:rows] = values[:rows]
    return grown


@dataclass
class _Hashing:
    """A SHA-256 of a file fed as it is read; `complete` once every byte went in."""

    digest: Any = field(default_factory=hashlib.sha256)
    complete: bool = False

    def hexdigest(self) -> str | None:
        return self.digest.hexdigest() if self.complete else None


def check_varying_target(
    target: Sequence[str], low: NDArray[np.floating[Any]], high: NDArray[np.floating[Any]]
) -> None:
    """Refuse a target column whose every value is the same (`low` and `high`: per column)."""
    if constant := [name for name, lo, hi in zip(target, low, high, strict=True) if lo == hi]:
        raise WorkflowError(
            f"target column {', '.join(map(repr, constant))} has the same value in every row; "
            f"a model cannot learn from it, so choose another target."
        )


def file_fingerprint(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Return the file's name, size and SHA-256, to tell later whether data changed.

    `sha256` is the digest when the caller hashed the bytes as it read them.
    """
    if sha256 is None:
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256}


def _read_csv(table: TableFile, **options: Any) -> Any:
    """pandas' reader on a CSV file, with the header as `open_table` read it."""
    import pandas as pd

    options = {
        "na_values": list(MISSING_MARKERS),
        # A column read as text (categories, ids) keeps the words.
        "true_values": list(TRUE_WORDS),
        "false_values": list(FALSE_WORDS),
        **options,
    }
    try:
        return pd.read_csv(
            table.path,
            engine="c",
            encoding="utf-8-sig",
            skipinitialspace=True,
            header=0,
            names=list(table.columns),  # stripped of spaces
            keep_default_na=False,
            **options,
        )
    # ValueError: a row with more fields than the header names (pandas' words for it)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise _unparsable(table, error) from None


def _check_fields(table: TableFile, frame: pd.DataFrame) -> pd.DataFrame:
    """Refuse a block in which pandas took a row's extra fields for an index."""
    import pandas as pd

    if not isinstance(frame.index, pd.RangeIndex):
        raise _unparsable(table, ValueError("a row has more fields than the header names"))
    return frame


def _unparsable(table: TableFile, error: BaseException) -> WorkflowError:
    return WorkflowError(
        f"cannot parse {table.name} as CSV ({first_line(error)}); "
        f"fix the file so that every row has one value per column."
    )


def convert_table(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
    overwrite: bool = False,
    categorical: Sequence[str] = (),
) -> int:
    """Convert a CSV file to Parquet block by block, in row groups of `row_group_rows` rows.

    Memory stays at a few blocks whatever the file's size, so a CSV larger than memory
    becomes a Parquet file that `--stream` trains on. Columns whose first block holds whole
    numbers are written as float64, so a later decimal value is no error; text stays text
    and true/false values booleans. The missing-value markers become nulls, in text columns
    too. A column of numbers but for a few cells is an error naming the first, as in
    training, unless `categorical` names it (kept as text). The file appears complete or
    not at all. Returns the rows written.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from ptflow.files import check_not_an_input, check_output_path, quoted
    from ptflow.run_folder import run_folder_holding

    source, destination = Path(source), Path(destination)
    table = open_table(source)
    if table_format(destination) != "parquet":
        raise WorkflowError(f"{destination.name} must end in .parquet; choose another name.")
    check_output_path(destination, "the destination")
    check_not_an_input(destination, [source], "the destination")
    if (inside := run_folder_holding(destination)) is not None:
        raise WorkflowError(
            f"the destination {quoted(destination)} is inside the run folder {quoted(inside)}, "
            f"which holds only what its run wrote; write the Parquet file elsewhere."
        )
    if destination.exists() and not overwrite:
        raise WorkflowError(
            f"{destination} already exists; choose another name or pass --overwrite."
        )
    if row_group_rows < 1:
        raise WorkflowError(f"row groups need at least 1 row, got {row_group_rows}.")
    if unknown := [name for name in categorical if name not in table.columns]:
        raise WorkflowError(
            f"{table.name} has no column {', '.join(map(repr, unknown))}; its columns are: "
            f"{', '.join(table.columns)}."
        )
    text = [n for n, kind in table.kinds.items() if kind == "text" and n not in categorical]
    _refuse_typos(table, text, keep="to keep the column as text")
    read = pa_csv.ReadOptions(
        column_names=list(table.columns), skip_rows=1, block_size=CSV_BLOCK_BYTES
    )
    # strings_can_be_null: "NA", "-", "?" and blank cells of a text column are missing too.
    words: dict[str, Any] = {
        "true_values": list(TRUE_WORDS),
        "false_values": list(FALSE_WORDS),
        "null_values": list(MISSING_MARKERS),
        "strings_can_be_null": True,
    }
    nulls = pa_csv.ConvertOptions(**words)
    try:
        with pa_csv.open_csv(source, read_options=read, convert_options=nulls) as first:
            schema = first.schema
        types = {
            field.name: pa.float64() if pa.types.is_integer(field.type) else field.type
            for field in schema
        }
        types |= {name: pa.string() for name in categorical}  # as written: "007" stays
        convert = pa_csv.ConvertOptions(column_types=types, **words)
        with pa_csv.open_csv(source, read_options=read, convert_options=convert) as reader:
            return _write_row_groups(reader, destination, row_group_rows)
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise WorkflowError(
            f"cannot convert {source.name} ({first_line(error)}); fix the file so that every "
            f"row has one value per column and every column one type."
        ) from None


def _write_row_groups(reader: Any, destination: Path, row_group_rows: int) -> int:
    """Write the CSV reader's batches to `destination` in whole row groups; their rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptflow.files import atomic_path

    rows = 0
    with atomic_path(destination) as tmp, pq.ParquetWriter(tmp, reader.schema) as writer:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in reader:
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= row_group_rows:  # write whole row groups as they fill
                whole = pa.Table.from_batches(pending)
                writer.write_table(whole.slice(0, row_group_rows))
                rest = whole.slice(row_group_rows)
                pending, pending_rows = rest.to_batches(), rest.num_rows
                rows += row_group_rows
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, reader.schema))
            rows += pending_rows
    return rows
