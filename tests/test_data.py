from __future__ import annotations

import pytest
import torch

from ptflow import WorkflowError, make_linear_data, split


def test_make_linear_data_is_the_tutorial_line() -> None:
    X, y = make_linear_data()
    assert X.shape == (50, 1) and y.shape == (50, 1)
    assert X.dtype == torch.float32
    assert torch.equal(X[:, 0], torch.arange(0.0, 1.0, 0.02))
    assert torch.allclose(y, 0.7 * X + 0.3)


def test_make_linear_data_custom_line() -> None:
    X, y = make_linear_data(weight=-2.0, bias=1.0, start=-1.0, end=1.0, step=0.5)
    assert X[:, 0].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert y[:, 0].tolist() == [3.0, 2.0, 1.0, 0.0]


def test_empty_range_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="empty"):
        make_linear_data(start=1.0, end=0.0)


def test_split_is_sequential_80_20_by_default() -> None:
    X, y = make_linear_data()
    splits = split(X, y)
    assert torch.equal(splits.train.X, X[:40]) and torch.equal(splits.train.y, y[:40])
    assert torch.equal(splits.test.X, X[40:]) and torch.equal(splits.test.y, y[40:])
    assert splits.val is None and len(splits.val_indices) == 0


def test_split_with_validation_and_shuffle_is_a_seeded_partition() -> None:
    X, y = make_linear_data()
    first = split(X, y, 0.7, 0.15, shuffle=True, seed=3)
    again = split(X, y, 0.7, 0.15, shuffle=True, seed=3)
    other = split(X, y, 0.7, 0.15, shuffle=True, seed=4)
    assert first.val is not None
    assert (len(first.train.X), len(first.val.X), len(first.test.X)) == (35, 7, 8)
    every = torch.cat([first.train_indices, first.val_indices, first.test_indices])
    assert sorted(every.tolist()) == list(range(50))  # disjoint and complete: no leaks
    assert torch.equal(first.test_indices, again.test_indices)
    assert not torch.equal(first.test_indices, other.test_indices)
    assert torch.equal(first.test.X, X[first.test_indices])


@pytest.mark.parametrize(
    ("n", "train_fraction", "val_fraction"),
    [(3, 0.2, 0.0), (1, 0.5, 0.0), (10, 0.9, 0.05), (10, 1.2, 0.0), (10, 0.5, -0.2)],
)
def test_too_few_rows_or_bad_fractions_are_errors(
    n: int, train_fraction: float, val_fraction: float
) -> None:
    X, y = torch.zeros(n, 1), torch.zeros(n, 1)
    with pytest.raises(WorkflowError):
        split(X, y, train_fraction, val_fraction)


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(WorkflowError, match="one target row per X row"):
        split(torch.zeros(5, 1), torch.zeros(4, 1))


def test_make_circles_data_is_two_seeded_rings() -> None:
    from ptflow.data import make_circles_data

    X, y = make_circles_data(1000, noise=0.03, seed=42)
    assert X.shape == (1000, 2) and y.shape == (1000, 1) and X.dtype == torch.float32
    assert y.sum() == 500  # half of each
    radius = X.double().norm(dim=1)
    outer, inner = radius[y[:, 0] == 0], radius[y[:, 0] == 1]
    assert outer.mean() == pytest.approx(1.0, abs=0.01)
    assert inner.mean() == pytest.approx(0.8, abs=0.01)
    assert 0.02 < float(outer.std()) < 0.04  # the noise, about 0.03 across the ring
    assert 0.3 < y[:200].mean() < 0.7  # in random order: the first rows hold both
    again = make_circles_data(1000, noise=0.03, seed=42)
    assert torch.equal(X, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(X, make_circles_data(1000, noise=0.03, seed=1)[0])
