"""Training on tables larger than memory: a Parquet file read one row group at a time.

`ptflow train --stream` keeps no copy of the table. Every pass over the data (the scan that
checks it and fits the scaling and the baseline, each epoch's training and evaluation, and
the final metrics) reads the file again, one row group at a time, with the next group read
in a background thread meanwhile: memory follows the largest row group, not the file.

Which part (train, validation, test) a row belongs to depends only on its row number and
the seed (`RowSplit`), so no list of indices is held, and the split is the same however
the file is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ptflow.data import Split, _count, check_part_sizes
from ptflow.distributed import World
from ptflow.encoding import (
    CategoricalInput,
    EncodeCounts,
    Encoding,
    FeatureInput,
    NumericInput,
    Vocabulary,
)
from ptflow.errors import WorkflowError
from ptflow.evaluation import (
    LossFn,
    Scores,
    evaluate_blocks,
    majority_class,
    mean_loss,
    predict,
)
from ptflow.models import baseline_design
from ptflow.stats import (
    LeastSquares,
    Logistic,
    Medians,
    Moments,
    NormalEquations,
    Scaling,
    fit_logistic,
    scaling_from,
)
from ptflow.tables import (
    ColumnRole,
    TableColumns,
    TableFile,
    check_classes,
    check_has_rows,
    check_varying_target,
    choose_columns,
    class_order,
    column_roles,
    file_fingerprint,
    identifier_reason,
    keep_rows,
    known_classes,
    leave_out,
    open_parquet,
    open_table,
    read_row_group,
)
from ptflow.tasks import REGRESSION, Task

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from ptflow.config import MissingName

__all__ = [
    "MAJORITY",
    "PARTS",
    "RowSplit",
    "StreamedTable",
    "evaluate_streamed",
    "scan_table",
]

PARTS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
# A categorical column keeps at most this many distinct values when streamed (the file's
# first ones): the scan holds them in memory, the model an embedding row for each.
STREAM_MOST_CATEGORIES = 100_000
# A streamed classifier's logistic-regression baseline is fitted on at most this many
# training rows (the first ones read): L-BFGS takes many passes, each over the rows held.
STREAM_LOGISTIC_ROWS = 100_000
# The predicted-vs-actual plot shows at most this many test rows (the first ones).
PLOT_ROWS = 10_000

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_T = TypeVar("_T")


@dataclass(frozen=True)
class RowSplit:
    """Which part each row of a file belongs to, from its row number alone.

    Unshuffled, as in the tutorial: the first `train_fraction` of the rows train, the next
    `val_fraction` validate, the rest test, the same rows an in-memory split takes. Shuffled:
    row i trains if the i-th output of SplitMix64 seeded with `seed`, as a number in [0, 1),
    is below `train_fraction` (validates if below `train_fraction + val_fraction`), so the
    parts' sizes match the fractions up to sampling noise of about sqrt(rows) rows.
    """

    total_rows: int
    train_fraction: float
    val_fraction: float
    shuffle: bool
    seed: int

    def parts(self, first_row: int, rows: int) -> NDArray[np.int8]:
        """Return TRAIN (0), VAL (1) or TEST (2) for rows first_row .. first_row + rows - 1."""
        index = np.arange(first_row, first_row + rows, dtype=np.uint64)
        if self.shuffle:
            position = _splitmix64(index, self.seed)
            train_end = self.train_fraction
            val_end = self.train_fraction + self.val_fraction
        else:
            position = index.astype(np.float64)
            train_end = _count(self.train_fraction, self.total_rows)
            val_end = train_end + _count(self.val_fraction, self.total_rows)
        parts = np.full(rows, TEST, dtype=np.int8)
        parts[position < val_end] = VAL
        parts[position < train_end] = TRAIN
        return parts


def _splitmix64(index: NDArray[np.uint64], seed: int) -> NDArray[np.float64]:
    """Return the index-th outputs of SplitMix64 seeded with `seed`, as floats in [0, 1)."""
    # uint64 arithmetic wraps around, as the generator intends.
    z = np.uint64(seed) + (index + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # the top 53 bits


@dataclass(frozen=True)
class _Group:
    """The usable rows of one row group and the part each row belongs to: the model's
    inputs once the table has its encoding, the raw columns before."""

    X: NDArray[np.float32]  # (rows, inputs)
    y: NDArray[np.float32]  # (rows, targets)
    parts: NDArray[np.int8]
    dropped: int  # rows left out: a missing target, or a missing value with --missing drop
    missing_target: int  # of those, the rows without a target value
    counts: EncodeCounts | None  # what the encoding did to the group's values


@dataclass(frozen=True)
class StreamedTable:
    """A Parquet table, checked and counted by `scan_table`, read again on every pass.

    Holds what the scan learned, never the rows: each row group's part sizes, the encoding
    of the columns, the scaling and the least-squares baseline fitted on the training rows,
    and the file's fingerprint.
    """

    source: TableFile
    columns: TableColumns
    split: RowSplit
    group_rows: tuple[int, ...]  # rows of each row group in the file
    part_rows: NDArray[np.int64]  # (row groups, 3): usable train, val and test rows
    fingerprint: dict[str, Any]
    dropped_rows: int  # rows left out: a missing target, or --missing drop
    scaling: Scaling | None  # standardise the inputs with this, fitted on training rows
    baseline: LeastSquares  # the training rows' least-squares fit (one-hot); unused for classes
    roles: tuple[ColumnRole, ...] = ()  # every column of the file, and what was done with it
    missing: MissingName = "impute"  # what a missing feature value does (`keep_rows`)
    encoding: Encoding | None = None  # the columns as the model's inputs; None while scanning
    vocabularies: dict[str, Vocabulary] = dataclasses.field(default_factory=dict)
    missing_target: int = 0  # of the dropped rows, those without a target value
    counts: EncodeCounts = dataclasses.field(default_factory=EncodeCounts)  # over every row
    capped: dict[str, int] = dataclasses.field(default_factory=dict)  # column: cells not kept
    classes: tuple[str, ...] = ()  # a class target's classes in order: y holds 0, 1, ...
    class_rows: NDArray[np.int64] | None = None  # (3, classes): each part's rows of each
    logistic: Logistic | None = None  # classes: the baseline, on the first training rows

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def features(self) -> tuple[str, ...]:
        return self.columns.features

    @property
    def target(self) -> tuple[str, ...]:
        return self.columns.target

    @property
    def inputs(self) -> int:
        """The model's input columns."""
        return self.encoding.width if self.encoding is not None else len(self.features)

    @property
    def rows(self) -> int:
        """The usable rows of the whole table."""
        return int(self.part_rows.sum())

    def part_size(self, part: int) -> int:
        """The number of rows of one part: TRAIN, VAL or TEST."""
        return int(self.part_rows[:, part].sum())

    @property
    def has_val(self) -> bool:
        return self.split.val_fraction > 0

    def groups(
        self, order: Sequence[int] | None = None, check: bool = True
    ) -> Iterator[tuple[int, _Group]]:
        """Yield (group number, its rows) for row groups in `order` (default: file order).

        Each group is read (and encoded) while the one before is used. With `check`, a
        group whose part sizes differ from the scan's means the file changed under the
        run: an error. A missing value is imputed, leaves its row out, or is an error, as
        `missing` says.
        """

        order = list(range(len(self.group_rows))) if order is None else list(order)
        starts = np.concatenate([[0], np.cumsum(self.group_rows)])
        changed = WorkflowError(
            f"{self.path.name} changed while the run read it; leave the data file alone "
            f"during training, and start again."
        )
        try:
            file = open_parquet(self.source, self.columns)
        except WorkflowError:
            raise changed from None
        metadata = file.metadata
        if tuple(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)) != (
            self.group_rows
        ):
            raise changed

        def read(group: int) -> _Group:
            return _read_group(file, group, int(starts[group]), self)

        for group, rows in zip(order, _read_ahead(order, read), strict=True):
            if check and not np.array_equal(
                np.bincount(rows.parts, minlength=3), self.part_rows[group]
            ):
                raise changed
            yield group, rows

    def predict_baseline(self, X: torch.Tensor) -> torch.Tensor:
        """The baseline's predictions for model inputs X: least squares', or for classes
        the logistic regression's logits."""
        fit = self.logistic if self.logistic is not None else self.baseline
        return fit.predict(baseline_design(self.encoding)[0](X))

    def select(self, rows: _Group, part: int, *, scaled: bool) -> Split:
        """Return one part's rows of a group as tensors, standardised if `scaled`."""
        chosen = rows.parts == part
        X, y = torch.from_numpy(rows.X[chosen]), torch.from_numpy(rows.y[chosen])
        if scaled and self.scaling is not None:
            s = self.scaling
            X, y = (X - s.x_mean) / s.x_std, (y - s.y_mean) / s.y_std
        return Split(X, y)

    def on(self, device: torch.device) -> StreamedTraining:
        """Return the training data interface over this table, batches on `device`."""
        return StreamedTraining(self, device)


@dataclass(frozen=True)
class StreamedTraining:
    """What `ptflow.training.train` needs of a streamed table: batches and evaluation."""

    table: StreamedTable
    device: torch.device

    @property
    def train_rows(self) -> int:
        return self.table.part_size(TRAIN)

    @property
    def eval_split(self) -> str:
        return "val" if self.table.has_val else "test"

    def batches(
        self, batch_size: int, generator: torch.Generator, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield one epoch's mini-batches: row groups in a shuffled order, rows shuffled.

        The epoch is one stream of training rows (each group's, permuted, one group after
        another) cut into batches of `batch_size`: every batch is full but the last. `skip`
        leaves out the stream's first batches, trained before a resume, without reading them.
        """
        table = self.table
        counts = table.part_rows[:, TRAIN].tolist()
        order = [g for g in torch.randperm(len(counts), generator=generator).tolist() if counts[g]]
        start, position = skip * batch_size, 0
        # Groups wholly before `start` are not read, but their permutations are drawn, so the
        # generator is where an uninterrupted epoch would have left it.
        while order and position + counts[order[0]] <= start:
            torch.randperm(counts[order[0]], generator=generator)
            position += counts[order.pop(0)]
        carry_X = carry_y = None
        for _, rows in table.groups(order):
            X, y = table.select(rows, TRAIN, scaled=True)
            shuffled = torch.randperm(len(X), generator=generator)[max(0, start - position) :]
            position += len(X)
            X, y = X[shuffled].to(self.device), y[shuffled].to(self.device)
            if carry_X is not None and carry_y is not None:
                X, y = torch.cat([carry_X, X]), torch.cat([carry_y, y])
            whole = len(X) - len(X) % batch_size
            for first in range(0, whole, batch_size):
                yield X[first : first + batch_size], y[first : first + batch_size]
            carry_X, carry_y = X[whole:], y[whole:]
        if carry_X is not None and carry_y is not None and len(carry_X):
            yield carry_X, carry_y

    def eval_loss(self, model: nn.Module, loss_fn: LossFn) -> float:
        """Return the mean loss on the validation rows (or, without any, the test rows)."""
        total, rows = self.eval_sums(model, loss_fn)
        return total / rows

    def eval_sums(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        share: Callable[[int], slice] | None = None,
    ) -> tuple[float, int]:
        """Return the evaluation loss summed over rows, and their number.

        With `share`, only that share of the row groups holding evaluation rows is read.
        """
        part = VAL if self.table.has_val else TEST
        groups = [g for g in range(len(self.table.group_rows)) if self.table.part_rows[g, part]]
        if share is not None:
            groups = groups[share(len(groups))]
        total, count = 0.0, 0
        for _, rows in self.table.groups(groups):
            X, y = self.table.select(rows, part, scaled=True)
            total += mean_loss(model, X.to(self.device), y.to(self.device), loss_fn) * len(X)
            count += len(X)
        return total, count

    def sum(self, value: float) -> float:
        """One process: the value itself."""
        return value

    def finite(self, loss: float) -> bool:
        """One process: whether the loss is a finite number."""
        return math.isfinite(loss)


def scan_table(
    path: str | Path,
    target: Sequence[str],
    features: Sequence[str] | None = None,
    *,
    format: str = "auto",
    missing: MissingName | None = None,
    drop_missing: bool = False,
    train_fraction: float = 0.7,
    val_fraction: float = 0.15,
    shuffle: bool = True,
    seed: int = 0,
    scale: bool = True,
    scale_targets: bool = True,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    ignore: Sequence[str] = (),
    classes: bool = False,
) -> StreamedTable:
    """Read a Parquet table, a row group at a time, checking every value and fitting what
    the model's inputs need on the training rows: what an in-memory run fits, the same.

    The first pass counts each part's rows, reads every category and counts the numbers
    for their medians (and hashes the file meanwhile); the second pins the medians down
    (`ptflow.stats.Medians`); the third sums the standardisation (`scale`; of the features
    alone unless `scale_targets`, the task's choice) and the least-squares baseline on
    the encoded training rows. The second and third are one pass when no training value
    is missing. A missing feature value is imputed (`missing` "impute", the default),
    leaves its row out (`"drop"`, or `drop_missing`) or is an error (`"error"`); a row
    without a target is left out. The same errors as `load_table` otherwise.

    With `classes`, the one target column holds classes: the first pass finds them (in
    `class_order`), y holds their numbers from then on, and the baseline is a logistic
    regression on the first STREAM_LOGISTIC_ROWS training rows.
    """
    mode: MissingName = missing or ("drop" if drop_missing else "impute")
    overrides = {"categorical": categorical, "numeric": numeric, "ignore": ignore}
    source, columns, file = _open_parquet(Path(path), format, target, features, overrides, classes)
    metadata = file.metadata
    group_rows = tuple(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
    split = RowSplit(metadata.num_rows, train_fraction, val_fraction, shuffle, seed)
    vocabularies = {
        name: Vocabulary(name, most=STREAM_MOST_CATEGORIES) for name in columns.categorical
    }
    if columns.class_target:  # every class is kept: the model has an output for each
        vocabularies[columns.target[0]] = Vocabulary(columns.target[0])
    table = StreamedTable(  # filled in by the passes below
        source,
        columns,
        split,
        group_rows,
        part_rows=np.zeros((len(group_rows), 3), dtype=np.int64),
        fingerprint={},
        dropped_rows=0,
        scaling=None,
        baseline=LeastSquares(torch.zeros(0), torch.zeros(0)),
        missing=mode,
        vocabularies=vocabularies,
    )
    with ThreadPoolExecutor(max_workers=1) as background:  # hashing releases the GIL
        fingerprint = background.submit(file_fingerprint, source.path)
        scan = _scan_columns(table)
        fingerprint_values = fingerprint.result()
    table = _counted(table, scan, fingerprint_values)
    return _fit_inputs(table, scan, scale, scale_targets)


def _counted(table: StreamedTable, scan: _ColumnScan, fingerprint: dict[str, Any]) -> StreamedTable:
    """The table once the first pass is done: its parts' sizes checked, the columns that
    look like identifiers left out, its fingerprint, what was left out, its roles."""
    source, columns, vocabularies = table.source, table.columns, table.vocabularies
    train_fraction, val_fraction = table.split.train_fraction, table.split.val_fraction
    train, val, test = (int(size) for size in table.part_rows.sum(axis=0))
    rows = f"{source.name} has {train + val + test} usable rows, which are"
    check_part_sizes(rows, (train, val, test), train_fraction, val_fraction)
    if columns.class_target:
        table = _found_classes(table, scan)
    else:
        check_varying_target(columns.target, scan.y_low, scan.y_high)
    capped = {name: v.overflow for name, v in vocabularies.items() if v.full}
    columns = _without_identifiers(table, scan, capped)
    kept = [*columns.categorical, *(columns.target if columns.class_target else ())]
    levels = {n: len(v.values) for n, v in vocabularies.items() if n in columns.categorical}
    levels.update({name: len(table.classes) for name in columns.target if table.classes})
    return dataclasses.replace(
        table,
        columns=columns,
        vocabularies={name: vocabularies[name] for name in kept},
        fingerprint={
            **fingerprint,
            "rows": table.rows,
            "columns": len(source.columns),
            "row_groups": len(table.group_rows),
        },
        dropped_rows=scan.dropped,
        missing_target=scan.missing_target,
        roles=column_roles(source, columns, _missing_by_column(columns, scan), levels),
        capped={name: count for name, count in capped.items() if name in columns.categorical},
    )


def _fit_inputs(
    table: StreamedTable, scan: _ColumnScan, scale: bool, scale_targets: bool
) -> StreamedTable:
    """Passes 2 and 3: the encoding (medians, categories) and, on the encoded training
    rows, the scaling and the baseline."""
    columns = table.columns
    numeric_features = [name for name in columns.features if columns.kind(name) != "categorical"]
    missing_in_training = any(scan.missing_train.get(name) for name in numeric_features)
    if missing_in_training:  # the medians first: the sums of the third pass use them
        _scan_medians(table, scan.medians)
        fills = scan.medians.medians()
    else:  # no training value to fill in: the medians' second counts join the third pass
        fills = [0.0] * len(numeric_features)
    table = dataclasses.replace(table, encoding=_encoding(table, scan, fills))
    inputs = _scan_inputs(table, None if missing_in_training else scan.medians)
    if not missing_in_training:
        table = dataclasses.replace(table, encoding=_encoding(table, scan, scan.medians.medians()))
    baseline, logistic = table.baseline, None  # classes: the placeholder least squares
    if table.classes:
        design = baseline_design(table.encoding)[0]
        X, y = (torch.cat(parts) for parts in zip(*inputs.sample, strict=True))
        logistic = fit_logistic(design(X), y, len(table.classes))
    else:
        baseline = inputs.normal.solve()
    return dataclasses.replace(
        table,
        scaling=_scaling(table.encoding, inputs, scale, scale_targets),
        baseline=baseline,
        counts=inputs.counts,
        logistic=logistic,
    )


def _scaling(
    encoding: Encoding | None, inputs: _InputSums, scale: bool, scale_targets: bool
) -> Scaling | None:
    if not scale:
        return None
    scaling = scaling_from(inputs.x_moments, inputs.y_moments)
    if encoding is not None:  # numbers only: not 0/1 indicators, not category codes
        scaling = scaling.only(encoding.scaled)
    return scaling if scale_targets else scaling.features_only()


def _open_parquet(
    path: Path,
    format: str,
    target: Sequence[str],
    features: Sequence[str] | None,
    overrides: dict[str, Sequence[str]],
    classes: bool = False,
) -> tuple[TableFile, TableColumns, pq.ParquetFile]:
    """The Parquet file to stream, its columns and the features, checked before any row."""
    source = open_table(path, format)
    if source.format != "parquet":
        raise WorkflowError(
            f"streaming reads Parquet row groups, and {path.name} is CSV; convert it with "
            f"`ptflow convert {path.name} {path.with_suffix('.parquet').name}`, or train "
            f"without --stream."
        )
    columns = choose_columns(
        source,
        target,
        features,
        categorical=overrides["categorical"],
        numeric=overrides["numeric"],
        ignore=overrides["ignore"],
        classes=classes,
    )
    file = open_parquet(source, columns)
    check_has_rows(source, file.metadata.num_rows)
    return source, columns, file


@dataclass
class _ColumnScan:
    """What the first pass learns of the columns, from the rows kept (all parts)."""

    missing: dict[str, int]  # missing values of each feature and target column
    missing_train: dict[str, int]  # missing values of each feature in the training rows
    seen: dict[str, NDArray[np.bool_]]  # categorical: which vocabulary numbers rows have
    seen_train: dict[str, NDArray[np.bool_]]  # ... which training rows have
    medians: Medians  # of the numeric and true/false features' training values
    y_low: NDArray[np.float64]  # each target's smallest value, over every part
    y_high: NDArray[np.float64]
    dropped: int = 0
    missing_target: int = 0
    # classes: each part's rows of each of the target's vocabulary numbers
    class_codes: NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: np.zeros((3, 0), dtype=np.int64)
    )


def _scan_columns(table: StreamedTable) -> _ColumnScan:
    """Pass 1: count each group's parts (into `table.part_rows`), missing values and
    categories, and the training values' first counts for the medians."""
    columns = table.columns
    features = columns.features
    numeric = [i for i, name in enumerate(features) if columns.kind(name) != "categorical"]
    categorical = {name: features.index(name) for name in columns.categorical}
    scan = _ColumnScan(
        dict.fromkeys(columns.numeric, 0),
        dict.fromkeys(features, 0),
        {name: np.zeros(0, dtype=np.bool_) for name in categorical},
        {name: np.zeros(0, dtype=np.bool_) for name in categorical},
        Medians(len(numeric)),
        np.full(len(columns.target), np.inf),
        np.full(len(columns.target), -np.inf),
    )
    for group, rows in table.groups(check=False):
        scan.dropped += rows.dropped
        scan.missing_target += rows.missing_target
        table.part_rows[group] = np.bincount(rows.parts, minlength=3)
        both = np.concatenate([rows.X, rows.y], axis=1)
        for name, count in zip(columns.numeric, np.isnan(both).sum(axis=0), strict=True):
            scan.missing[name] += int(count)
        train = rows.X[rows.parts == TRAIN]
        for name, count in zip(features, np.isnan(train).sum(axis=0), strict=True):
            scan.missing_train[name] += int(count)
        for name, i in categorical.items():
            scan.seen[name] = _mark(scan.seen[name], rows.X[:, i])
            scan.seen_train[name] = _mark(scan.seen_train[name], train[:, i])
        scan.medians.add_high(train[:, numeric])
        if columns.class_target:
            scan.class_codes = _counted_codes(scan.class_codes, rows.y[:, 0], rows.parts)
        elif len(rows.y):
            scan.y_low = np.minimum(scan.y_low, rows.y.min(axis=0))
            scan.y_high = np.maximum(scan.y_high, rows.y.max(axis=0))
    scan.medians.find_middle()
    return scan


def _counted_codes(
    counts: NDArray[np.int64], codes: NDArray[np.float32], parts: NDArray[np.int8]
) -> NDArray[np.int64]:
    """`counts` (3, vocabulary numbers), grown if need be, plus each part's rows of each
    number in `codes` (a class target's, of kept rows: none missing)."""
    numbers = codes.astype(np.int64)
    width = max(counts.shape[1], int(numbers.max()) + 1 if len(numbers) else 0)
    grown = np.zeros((3, width), dtype=np.int64)
    grown[:, : counts.shape[1]] = counts
    np.add.at(grown, (parts.astype(np.int64), numbers), 1)
    return grown


def _found_classes(table: StreamedTable, scan: _ColumnScan) -> StreamedTable:
    """The table with the classes the first pass found (in `class_order`) and each part's
    rows of each; refused with fewer than two classes, as in memory."""
    name = table.columns.target[0]
    values = table.vocabularies[name].values
    present = np.flatnonzero(scan.class_codes.sum(axis=0))
    classes = class_order([values[i] for i in present])
    check_classes(table.source.name, name, classes, int(scan.class_codes.sum()))
    code_of = {values[i]: i for i in present}
    class_rows = scan.class_codes[:, [code_of[c] for c in classes]]
    return dataclasses.replace(table, classes=classes, class_rows=class_rows)


def _missing_by_column(columns: TableColumns, scan: _ColumnScan) -> dict[str, int]:
    """Missing values by column, for the roles table: the target's from the rows left out
    for it (they never reach the counts of the rows kept)."""
    if len(columns.target) != 1:
        return scan.missing
    return {**scan.missing, columns.target[0]: scan.missing_target}


def _mark(seen: NDArray[np.bool_], numbers: NDArray[np.float32]) -> NDArray[np.bool_]:
    """`seen`, grown if need be, with the vocabulary numbers present in `numbers` set."""
    present = np.unique(numbers[~np.isnan(numbers)]).astype(np.int64)
    if len(present) and present[-1] >= len(seen):
        seen = np.concatenate([seen, np.zeros(present[-1] + 1 - len(seen), dtype=np.bool_)])
    seen[present] = True
    return seen


def _without_identifiers(
    table: StreamedTable, scan: _ColumnScan, capped: dict[str, int]
) -> TableColumns:
    """The columns without the text columns the rules chose that look like identifiers:
    as in memory, or with more distinct values than a stream keeps."""
    columns, dropped = table.columns, {}
    for name in columns.categorical:
        if name not in columns.inferred:
            continue
        if name in capped:
            dropped[name] = (
                f"looks like an identifier (more than {STREAM_MOST_CATEGORIES:,} distinct "
                f"values); --categorical {name} keeps its first {STREAM_MOST_CATEGORIES:,}"
            )
        elif why := identifier_reason(
            name, int(scan.seen[name].sum()), table.rows - scan.missing[name]
        ):
            dropped[name] = why
    return leave_out(table.source, columns, dropped) if dropped else columns


def _scan_medians(table: StreamedTable, medians: Medians) -> None:
    """Pass 2 (when training values are missing): the medians' second counts."""
    columns = table.columns
    numeric = [i for i, name in enumerate(columns.features) if columns.kind(name) != "categorical"]
    for _, rows in table.groups():
        medians.add_low(rows.X[rows.parts == TRAIN][:, numeric])


def _encoding(table: StreamedTable, scan: _ColumnScan, fills: list[float | None]) -> Encoding:
    """The encoding the scan fitted: what `ptflow.encoding.fit_encoding` fits in memory.

    `fills`: the numeric features' medians, in order (None: a column without values)."""
    columns, medians = table.columns, iter(fills)
    inputs: list[FeatureInput] = []
    for name in columns.features:
        count = scan.missing_train[name]
        kind = columns.kind(name)
        if kind == "categorical":
            values = table.vocabularies[name].values
            seen = np.flatnonzero(scan.seen_train[name][: len(values)])
            inputs.append(CategoricalInput(name, tuple(sorted(values[i] for i in seen)), count))
        else:
            median = next(medians)
            fill = median if median is not None else 0.0
            inputs.append(NumericInput(name, kind, fill, count > 0, count))
    return Encoding(tuple(inputs), classes=table.classes)


@dataclass
class _InputSums:
    """What the last pass sums: the encoded training rows' statistics, and what encoding
    did to every row."""

    x_moments: Moments
    y_moments: Moments
    normal: NormalEquations
    counts: EncodeCounts
    sample: list[Split] = dataclasses.field(default_factory=list)  # classes: first rows


def _scan_inputs(table: StreamedTable, medians: Medians | None) -> _InputSums:
    """Pass 3: the moments and normal equations of the encoded training rows (with
    `medians`, whose fills the training rows do not need, their second counts too)."""
    encoding = table.encoding
    assert encoding is not None
    design, _ = baseline_design(encoding)
    width = design(torch.zeros(0, encoding.width)).shape[1]
    sums = _InputSums(
        Moments(), Moments(), NormalEquations(width, len(table.target)), EncodeCounts()
    )
    numbers = len(encoding.numeric)  # the first inputs: the numeric features, in order
    for _, rows in table.groups():
        if rows.counts is not None:
            sums.counts.add(rows.counts)
        X, y = table.select(rows, TRAIN, scaled=False)
        sums.x_moments.add(X)
        sums.y_moments.add(y)
        if not table.classes:  # least squares' sums; classes: logistic regression's rows
            sums.normal.add(design(X), y)
        elif room := STREAM_LOGISTIC_ROWS - sum(len(part.X) for part in sums.sample):
            sums.sample.append(Split(X[:room].clone(), y[:room].clone()))
        if medians is not None:
            medians.add_low(X[:, :numbers].numpy())
    return sums


# The other baseline of a classification: every row gets the training rows' class shares.
MAJORITY = "the majority class"


def evaluate_streamed(
    model: nn.Module, table: StreamedTable, world: World | None = None, task: Task = REGRESSION
) -> Scores:
    """Measure a trained model (raw columns in) and the baselines on every part, in one pass;
    `shown` holds the first PLOT_ROWS test rows.

    Under torchrun each process reads its share of the row groups and the running sums are
    merged.
    """
    names = [
        name for name, part in zip(PARTS, (TRAIN, VAL, TEST), strict=True) if table.part_size(part)
    ]
    groups = list(range(len(table.group_rows)))
    mine = groups[world.share(len(groups))] if world else groups

    def blocks() -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for _, rows in table.groups(mine):
            for name in names:
                X, y = table.select(rows, PARTS.index(name), scaled=False)
                yield name, X, y

    shown: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(predictor: str, part: str, y_pred: torch.Tensor, y: torch.Tensor) -> None:
        wanted = PLOT_ROWS - sum(len(kept) for kept, _ in shown)
        if predictor == "model" and part == "test" and wanted > 0:
            shown.append((y[:wanted], y_pred[:wanted]))

    predictors: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "model": lambda X: predict(model, X).cpu(),
        "baseline": table.predict_baseline,
    }
    if table.class_rows is not None:
        predictors[MAJORITY] = majority_class(torch.from_numpy(table.class_rows[TRAIN]))
    merge = world.merge_metric_sums if world is not None else None
    sums = evaluate_blocks(blocks(), names, predictors, merge, keep, task)
    empty = torch.empty(0, len(table.target))
    return Scores(
        {
            predictor: {name: part_sums.metrics() for name, part_sums in by_part.items()}
            for predictor, by_part in sums.items()
        },
        sums["model"]["test"],
        Split(*(torch.cat(kept) for kept in zip(*shown, strict=True)))
        if shown
        else Split(empty, empty),
    )


def _read_group(file: pq.ParquetFile, group: int, first_row: int, table: StreamedTable) -> _Group:
    values = read_row_group(file, group, table.columns, table.vocabularies)
    width = len(table.features)
    if table.classes:  # vocabulary numbers as class numbers; NaN (left out) for no class
        target = table.vocabularies[table.columns.target[0]]
        values[:, width] = known_classes(values[:, width], target, table.classes)
    parts = table.split.parts(first_row, len(values))
    kept = keep_rows(table.source, table.columns, [values], first_row + 1, table.missing)
    dropped = 0
    if (keep := kept.keep) is not None:
        values, parts, dropped = values[keep], parts[keep], int((~keep).sum())
    X, counts = values[:, :width], None
    if table.encoding is not None:
        X = np.ascontiguousarray(X)  # a copy: the group's columns are read column-major
        X, counts = table.encoding.encode(X, table.vocabularies, in_place=True)
    return _Group(X, values[:, width:], parts, dropped, kept.missing_target, counts)


def _read_ahead(items: Sequence[int], read: Callable[[int], _T]) -> Iterator[_T]:
    """Yield read(item) for each item, reading the next one in a background thread."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:  # Parquet decoding releases the GIL
        pending: Future[_T] = reader.submit(read, items[0])
        for following in [*items[1:], None]:
            current = pending.result()
            if following is not None:
                pending = reader.submit(read, following)
            yield current
