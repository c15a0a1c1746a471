"""Running statistics of columns: moments, standardisation, and the least-squares baseline.

Each is a sum that grows block by block, so a table in memory and a table streamed a row
group at a time (or shared among processes) get the same numbers from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "LeastSquares",
    "Moments",
    "NormalEquations",
    "Scaling",
    "fit_least_squares",
    "fit_scaling",
    "scaling_from",
]


@dataclass(frozen=True)
class Scaling:
    """Column means and standard deviations of the training rows, for standardising."""

    x_mean: torch.Tensor  # (features,)
    x_std: torch.Tensor
    y_mean: torch.Tensor  # (targets,)
    y_std: torch.Tensor

    def only(self, scaled: tuple[bool, ...]) -> Scaling:
        """The same scaling of the feature columns marked; the others left as they are."""
        keep = torch.tensor(scaled, dtype=torch.bool)
        return Scaling(
            torch.where(keep, self.x_mean, torch.zeros_like(self.x_mean)),
            torch.where(keep, self.x_std, torch.ones_like(self.x_std)),
            self.y_mean,
            self.y_std,
        )

    def features_only(self) -> Scaling:
        """The same scaling of the features, the targets left as they are (mean 0, std 1)."""
        return Scaling(
            self.x_mean, self.x_std, torch.zeros_like(self.y_mean), torch.ones_like(self.y_std)
        )


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations of columns, in float64.

    Blocks of rows are merged with Chan et al.'s pairwise formula, which stays exact where
    summing squares would cancel: the statistics of a table too large to hold at once.
    """

    count: int = 0
    mean: torch.Tensor | None = None  # (columns,)
    m2: torch.Tensor | None = None  # sum of squared deviations from the mean, (columns,)

    def add(self, values: torch.Tensor) -> None:
        """Merge in a block of rows, shape (rows, columns)."""
        if len(values) == 0:
            return
        block = values.detach().to("cpu", torch.float64)
        block_mean = block.mean(dim=0)
        self.merge(Moments(len(block), block_mean, (block - block_mean).square().sum(dim=0)))

    def merge(self, other: Moments) -> None:
        """Merge in the moments of other rows (another block's, or another process's)."""
        if other.mean is None or other.m2 is None:
            return
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta.square() * (self.count * other.count / total)
        self.count = total

    def std(self) -> torch.Tensor:
        """The population standard deviation; 1 for a constant column (never divide by 0)."""
        assert self.m2 is not None, "no rows were added"
        std = (self.m2 / self.count).sqrt() if self.count > 1 else torch.ones_like(self.m2)
        return torch.where(std > 0, std, torch.ones_like(std))


def fit_scaling(X: torch.Tensor, y: torch.Tensor) -> Scaling:
    """Return the means and standard deviations of X's and y's columns.

    A constant column keeps a standard deviation of 1, so scaling never divides by zero.
    """
    x_moments, y_moments = Moments(), Moments()
    x_moments.add(X)
    y_moments.add(y)
    return scaling_from(x_moments, y_moments, X.dtype)


def scaling_from(x: Moments, y: Moments, dtype: torch.dtype = torch.float32) -> Scaling:
    """Return the Scaling of columns whose moments are `x` (features) and `y` (targets)."""
    assert x.mean is not None and y.mean is not None, "no rows were added"
    return Scaling(x.mean.to(dtype), x.std().to(dtype), y.mean.to(dtype), y.std().to(dtype))


@dataclass(frozen=True)
class LeastSquares:
    """The closed-form linear fit y = X @ coef + intercept with the least squared error."""

    coef: torch.Tensor  # (features, targets), float64
    intercept: torch.Tensor  # (targets,), float64

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Return the fit's predictions for X, in X's dtype."""
        y_pred = X.to(self.coef.dtype) @ self.coef + self.intercept
        return y_pred.to(X.dtype)


class NormalEquations:
    """Running [X 1]ᵀ[X 1] and [X 1]ᵀy in float64: the least-squares fit, block by block.

    X is shifted by its first block's means before the sums: a column far from zero (a
    year, say) would otherwise be nearly the intercept column, and its digits lost.
    """

    def __init__(self, features: int, targets: int) -> None:
        self.gram = torch.zeros(features + 1, features + 1, dtype=torch.float64)
        self.moment = torch.zeros(features + 1, targets, dtype=torch.float64)
        self.shift: torch.Tensor | None = None  # (features,)

    def add(self, X: torch.Tensor, y: torch.Tensor) -> None:
        """Add a block of rows: features X (rows, features), targets y (rows, targets)."""
        if len(X) == 0:
            return
        X = X.double()
        if self.shift is None:
            self.shift = X.mean(dim=0)
        ones = torch.ones(len(X), 1, dtype=torch.float64)
        design = torch.cat([X - self.shift, ones], dim=1)
        self.gram += design.T @ design
        self.moment += design.T @ y.double()

    def solve(self) -> LeastSquares:
        """The fit of every block added so far."""
        # Each column scaled to unit length first, so that columns in large units (money)
        # and small ones (a rate) count alike in the solver's rank decision. lstsq rather
        # than solve: a constant or repeated column leaves the system singular; gelsd (an
        # SVD) decides the rank the same way every time.
        length = self.gram.diagonal().sqrt()
        length = torch.where(length > 0, length, torch.ones_like(length))
        scaled = self.gram / length[:, None] / length[None, :]
        solution = torch.linalg.lstsq(scaled, self.moment / length[:, None], driver="gelsd")
        coef = solution.solution / length[:, None]
        shift = self.shift if self.shift is not None else torch.zeros(len(coef) - 1)
        intercept = coef[-1] - shift.double() @ coef[:-1]
        return LeastSquares(coef=coef[:-1], intercept=intercept)


def fit_least_squares(X: torch.Tensor, y: torch.Tensor) -> LeastSquares:
    """Solve the least-squares linear fit of y on X (with an intercept) in float64.

    The baseline every run is compared against: a model that cannot beat it has learned
    nothing a straight line could not, and a linear model should match it once converged.
    The same normal equations as a streamed table's, so both paths give one baseline.
    """
    equations = NormalEquations(X.shape[1], y.shape[1])
    equations.add(X, y)
    return equations.solve()
