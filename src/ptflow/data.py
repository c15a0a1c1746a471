"""Step 1, data: the tutorial's straight line, and splitting rows into train, validation, test.

Tables (CSV, Parquet) are read in `ptflow.tables`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ptflow.config import check_line_points
from ptflow.errors import WorkflowError
from ptflow.stats import Scaling

__all__ = [
    "Split",
    "Splits",
    "check_part_sizes",
    "make_circles_data",
    "make_linear_data",
    "scale_splits",
    "split",
    "stratified_split",
]


class Split(NamedTuple):
    """Features and targets of one part of the data, X of shape (n, features)."""

    X: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True, repr=False)
class Splits:
    """The train, optional validation, and test parts, with each part's row indices."""

    train: Split
    val: Split | None
    test: Split
    train_indices: torch.Tensor
    val_indices: torch.Tensor
    test_indices: torch.Tensor

    def __repr__(self) -> str:  # sizes, not the tensors
        val = len(self.val.X) if self.val is not None else 0
        X, y = self.train.X, self.train.y
        columns = f"{X.shape[1] if X.dim() > 1 else 1} feature(s) -> "
        columns += f"{y.shape[1] if y.dim() > 1 else 1} target(s)"
        return f"Splits(train {len(X)} rows, val {val}, test {len(self.test.X)}; {columns})"

    def _repr_html_(self) -> str:
        val = len(self.val.X) if self.val is not None else 0
        sizes = (("train", len(self.train.X)), ("val", val), ("test", len(self.test.X)))
        rows = "".join(f"<tr><td>{part}</td><td>{count}</td></tr>" for part, count in sizes)
        return f"<table><tr><th>part</th><th>rows</th></tr>{rows}</table>"


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


def make_circles_data(
    points: int = 1000, *, noise: float = 0.03, factor: float = 0.8, seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return two noisy circles as X (points, 2) and their class y (points, 1): 0 for the
    outer circle of radius 1, 1 for the inner one of radius `factor`; rows in a seeded
    random order, so any cut of them holds both circles.

    The classification course's first data set (scikit-learn's `make_circles`, with its
    1,000 points and noise 0.03), made here with torch: no straight line separates the
    classes, so a linear model stays near chance and a small MLP finds the ring.
    """
    generator = torch.Generator().manual_seed(seed)
    inner = points // 2
    angles = [
        torch.arange(n, dtype=torch.float64) * (2 * math.pi / n) for n in (points - inner, inner)
    ]
    X = torch.cat([
        radius * torch.stack([torch.cos(a), torch.sin(a)], dim=1)
        for radius, a in zip((1.0, factor), angles, strict=True)
    ])  # fmt: skip
    X += noise * torch.randn(X.shape, generator=generator, dtype=torch.float64)
    y = torch.cat([torch.zeros(points - inner), torch.ones(inner)]).unsqueeze(dim=1)
    order = torch.randperm(points, generator=generator)
    return X[order].float(), y[order]


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
    n = _check_split(X, y, train_fraction, val_fraction)
    n_train = _count(train_fraction, n)
    n_val = _count(val_fraction, n)
    n_test = n - n_train - n_val
    check_part_sizes(f"{n} rows are", (n_train, n_val, n_test), train_fraction, val_fraction)
    order = _order(n, shuffle, seed)
    train_indices, val_indices, test_indices = order.split([n_train, n_val, n_test])
    return _splits_of(X, y, train_indices, val_indices, test_indices)


def _check_split(
    X: torch.Tensor, y: torch.Tensor, train_fraction: float, val_fraction: float
) -> int:
    """The rows to split, once X and y agree and the fractions make sense."""
    n = len(X)
    if len(y) != n:
        raise WorkflowError(f"X has {n} rows but y has {len(y)}; give one target row per X row.")
    if not (0 < train_fraction < 1 and 0 <= val_fraction < 1):
        raise WorkflowError(
            f"fractions must satisfy 0 < train < 1 and 0 <= val < 1, "
            f"got train={train_fraction}, val={val_fraction}."
        )
    return n


def _order(n: int, shuffle: bool, seed: int) -> torch.Tensor:
    """The rows in file order, or permuted by a generator seeded with `seed`."""
    if shuffle:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.arange(n)


def _splits_of(
    X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, val: torch.Tensor, test: torch.Tensor
) -> Splits:
    return Splits(
        train=Split(X[train], y[train]),
        val=Split(X[val], y[val]) if len(val) else None,
        test=Split(X[test], y[test]),
        train_indices=train,
        val_indices=val,
        test_indices=test,
    )


def stratified_split(
    X: torch.Tensor,
    y: torch.Tensor,
    train_fraction: float = 0.8,
    val_fraction: float = 0.0,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> Splits:
    """Split rows of classes (y: class numbers, one column) so that each part holds each
    class in the fractions' proportions: small classes land in every part they can.

    Each class's rows, in file order or (`shuffle`) in the order of one permutation seeded
    with `seed`, are cut by the fractions, at least one row training; each part's rows then
    keep that order.
    """
    n = _check_split(X, y, train_fraction, val_fraction)
    order = _order(n, shuffle, seed)
    classes = y[order, 0].long()
    parts: list[list[torch.Tensor]] = [[], [], []]
    for k in torch.unique(classes).tolist():
        rows = torch.nonzero(classes == k).flatten()  # positions in `order`
        n_train = max(1, _count(train_fraction, len(rows)))
        n_val = min(_count(val_fraction, len(rows)), len(rows) - n_train)
        for part, piece in zip(
            parts, rows.split([n_train, n_val, len(rows) - n_train - n_val]), strict=True
        ):
            part.append(piece)
    train, val, test = (order[torch.cat(part).sort().values] for part in parts)
    check_part_sizes(
        f"{n} rows are", (len(train), len(val), len(test)), train_fraction, val_fraction
    )
    return _splits_of(X, y, train, val, test)


def check_part_sizes(
    rows: str, sizes: tuple[int, int, int], train_fraction: float, val_fraction: float
) -> None:
    """Refuse a split that leaves train, test (or validation, when asked for) without a row.

    `rows` names the rows split, as the start of the sentence ("50 rows are").
    """
    n_train, n_val, n_test = sizes
    if n_train < 1 or n_test < 1 or (val_fraction > 0 and n_val < 1):
        raise WorkflowError(
            f"{rows} too few for fractions train={train_fraction}, val={val_fraction}: "
            f"that gives {n_train} train, {n_val} validation and {n_test} test rows; "
            f"use more data or change the fractions so that each part gets a row."
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
