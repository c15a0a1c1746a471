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
from ptflow.errors import WorkflowError
from ptflow.evaluation import (
    LossFn,
    Metrics,
    evaluate_blocks,
    mean_loss,
    predict,
)
from ptflow.stats import LeastSquares, Moments, NormalEquations, Scaling, scaling_from
from ptflow.tables import (
    ColumnRole,
    TableColumns,
    TableFile,
    check_has_rows,
    check_varying_target,
    choose_columns,
    column_roles,
    file_fingerprint,
    keep_rows,
    open_parquet,
    open_table,
    read_row_group,
)
from ptflow.tasks import REGRESSION, Task

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from ptflow.config import MissingName

__all__ = ["PARTS", "RowSplit", "StreamedTable", "evaluate_streamed", "scan_table"]

PARTS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
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
    """The usable rows of one row group, raw, and the part each row belongs to."""

    X: NDArray[np.float32]  # (rows, features)
    y: NDArray[np.float32]  # (rows, targets)
    parts: NDArray[np.int8]
    dropped: int  # rows with a missing or infinite value, left out


@dataclass(frozen=True)
class StreamedTable:
    """A Parquet table, checked and counted by `scan_table`, read again on every pass.

    Holds what one pass learned, never the rows: each row group's part sizes, the scaling
    and the least-squares baseline fitted on the training rows, and the file's fingerprint.
    """

    source: TableFile
    columns: TableColumns
    split: RowSplit
    group_rows: tuple[int, ...]  # rows of each row group in the file
    part_rows: NDArray[np.int64]  # (row groups, 3): usable train, val and test rows
    fingerprint: dict[str, Any]
    dropped_rows: int  # rows with missing values left out (drop_missing)
    scaling: Scaling | None  # standardise columns with this, fitted on training rows
    baseline: LeastSquares  # the least-squares line of the training rows
    roles: tuple[ColumnRole, ...] = ()  # every column of the file, and what was done with it

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
        self,
        order: Sequence[int] | None = None,
        check: bool = True,
        drop_missing: bool = True,
    ) -> Iterator[tuple[int, _Group]]:
        """Yield (group number, its rows) for row groups in `order` (default: file order).

        Each group is read while the one before is used. With `check`, a group whose part
        sizes differ from the scan's means the file changed under the run: an error. Rows
        with a missing value are left out, or (not `drop_missing`) an error.
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
            return _read_group(file, group, int(starts[group]), self, drop_missing)

        for group, rows in zip(order, _read_ahead(order, read), strict=True):
            if check and not np.array_equal(
                np.bincount(rows.parts, minlength=3), self.part_rows[group]
            ):
                raise changed
            yield group, rows

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
) -> StreamedTable:
    """Read a Parquet table once, a row group at a time, checking every value.

    Counts each part's rows, fits the standardisation (`scale`; of the features alone
    unless `scale_targets`, the task's choice) and the least-squares
    baseline on the training rows, and hashes the file, all in the same pass. The same
    errors as `load_table`: missing columns, text, missing or infinite values (unless
    `drop_missing`), a constant target, too few rows for a part.
    """
    overrides = {"categorical": categorical, "numeric": numeric, "ignore": ignore}
    source, columns, file = _open_parquet(Path(path), format, target, features, overrides)
    metadata = file.metadata
    group_rows = tuple(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
    split = RowSplit(metadata.num_rows, train_fraction, val_fraction, shuffle, seed)
    table = StreamedTable(  # filled in by the scan below
        source,
        columns,
        split,
        group_rows,
        part_rows=np.zeros((len(group_rows), 3), dtype=np.int64),
        fingerprint={},
        dropped_rows=0,
        scaling=None,
        baseline=LeastSquares(torch.zeros(0), torch.zeros(0)),
    )
    with ThreadPoolExecutor(max_workers=1) as background:  # hashing releases the GIL
        fingerprint = background.submit(file_fingerprint, source.path)
        scan = _scan_groups(table, drop_missing)
        fingerprint_values = fingerprint.result()
    train, val, test = (int(size) for size in table.part_rows.sum(axis=0))
    rows = f"{source.name} has {train + val + test} usable rows, which are"
    check_part_sizes(rows, (train, val, test), train_fraction, val_fraction)
    check_varying_target(columns.target, scan.y_low, scan.y_high)
    return dataclasses.replace(  # the scan's placeholders, now filled in
        table,
        fingerprint={
            **fingerprint_values,
            "rows": table.rows,
            "columns": len(source.columns),
            "row_groups": len(group_rows),
        },
        dropped_rows=scan.dropped,
        scaling=_scaling(scan, scale, scale_targets),
        baseline=scan.normal.solve(),
        roles=column_roles(source, columns),
    )


def _scaling(scan: _Scan, scale: bool, scale_targets: bool) -> Scaling | None:
    if not scale:
        return None
    scaling = scaling_from(scan.x_moments, scan.y_moments)
    return scaling if scale_targets else scaling.features_only()


def _open_parquet(
    path: Path,
    format: str,
    target: Sequence[str],
    features: Sequence[str] | None,
    overrides: dict[str, Sequence[str]],
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
    )
    if named := [name for name in columns.categorical if name not in columns.inferred]:
        raise WorkflowError(
            f"--stream reads numbers and true/false columns so far, and "
            f"{', '.join(map(repr, named))} holds text; train without --stream, or leave "
            f"it out of --features."
        )
    if columns.categorical:  # text the rules chose: left out, and said so
        text = [name for name in columns.features if name in columns.categorical]
        columns = dataclasses.replace(
            columns,
            features=tuple(name for name in columns.features if name not in text),
            categorical=(),
            ignored=(
                *columns.ignored,
                *((name, "holds text, which --stream does not read yet") for name in text),
            ),
        )
        if not columns.features:
            raise WorkflowError(
                f"{path.name} has no numeric column besides the target, and --stream does "
                f"not read text yet; train without --stream."
            )
    file = open_parquet(source, columns)
    check_has_rows(source, file.metadata.num_rows)
    return source, columns, file


@dataclass
class _Scan:
    """What one pass over the row groups learns: the training rows' statistics."""

    x_moments: Moments
    y_moments: Moments
    normal: NormalEquations
    y_low: NDArray[np.float64]  # each target's smallest value, over every part
    y_high: NDArray[np.float64]
    dropped: int = 0


def _scan_groups(table: StreamedTable, drop_missing: bool) -> _Scan:
    """One pass: count each group's parts (into `table.part_rows`) and sum the statistics."""
    features, target = table.features, table.target
    scan = _Scan(
        Moments(),
        Moments(),
        NormalEquations(len(features), len(target)),
        np.full(len(target), np.inf),
        np.full(len(target), -np.inf),
    )
    for group, rows in table.groups(check=False, drop_missing=drop_missing):
        scan.dropped += rows.dropped
        table.part_rows[group] = np.bincount(rows.parts, minlength=3)
        X, y = table.select(rows, TRAIN, scaled=False)
        scan.x_moments.add(X)
        scan.y_moments.add(y)
        scan.normal.add(X, y)
        if len(rows.y):
            scan.y_low = np.minimum(scan.y_low, rows.y.min(axis=0))
            scan.y_high = np.maximum(scan.y_high, rows.y.max(axis=0))
    return scan


def evaluate_streamed(
    model: nn.Module, table: StreamedTable, world: World | None = None, task: Task = REGRESSION
) -> tuple[dict[str, Metrics], dict[str, Metrics], Split]:
    """Measure a trained model (raw columns in) and the baseline on every part, in one pass.

    Returns the model's metrics and the baseline's by part, and the first PLOT_ROWS test
    rows' targets and predictions, for the predicted-vs-actual plot. Under torchrun each
    process reads its share of the row groups and the running sums are merged.
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

    predictors = {"model": lambda X: predict(model, X).cpu(), "baseline": table.baseline.predict}
    merge = world.merge_metric_sums if world is not None else None
    sums = evaluate_blocks(blocks(), names, predictors, merge, keep, task)
    empty = torch.empty(0, len(table.target))
    return (
        {name: part_sums.metrics() for name, part_sums in sums["model"].items()},
        {name: part_sums.metrics() for name, part_sums in sums["baseline"].items()},
        Split(
            torch.cat([empty, *(y for y, _ in shown)]), torch.cat([empty, *(p for _, p in shown)])
        ),
    )


def _read_group(
    file: pq.ParquetFile, group: int, first_row: int, table: StreamedTable, drop_missing: bool
) -> _Group:
    values = read_row_group(file, group, table.columns)
    parts = table.split.parts(first_row, len(values))
    mode: MissingName = "drop" if drop_missing else "error"
    finite = keep_rows(
        table.source,
        table.columns,
        [values],
        first_row + 1,
        mode,
        cannot_impute="--stream does not impute yet",
    ).keep
    dropped = 0
    if finite is not None:
        values, parts, dropped = values[finite], parts[finite], int((~finite).sum())
    width = len(table.features)
    return _Group(values[:, :width], values[:, width:], parts, dropped)


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
