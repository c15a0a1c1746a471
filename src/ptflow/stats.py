"""Running statistics of columns: moments, standardisation, and the least-squares baseline.

Each is a sum that grows block by block, so a table in memory and a table streamed a row
group at a time (or shared among processes) get the same numbers from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "LeastSquares",
    "Logistic",
    "Medians",
    "Moments",
    "NormalEquations",
    "Scaling",
    "fit_least_squares",
    "fit_logistic",
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


@dataclass(frozen=True)
class Logistic:
    """A (multinomial) logistic regression: logits = X @ coef + intercept, in float64."""

    coef: torch.Tensor  # (features, 1 for two classes, else classes)
    intercept: torch.Tensor

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """The fit's logits for X, in X's dtype."""
        return (X.to(self.coef.dtype) @ self.coef + self.intercept).to(X.dtype)


def class_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """The cross-entropy of logits (rows, 1 or classes) against class numbers (rows[, 1]):
    for one column, that of the second of two classes (`BCEWithLogitsLoss`'s form), else
    one logit per class (`CrossEntropyLoss`'s). Both take logits, the numerically stable
    form; `weight`, one per class, weighs each row by its class (a weighted mean, as
    PyTorch's weighted losses are); `label_smoothing` applies to several classes."""
    y = y.reshape(-1)
    if logits.shape[1] != 1:
        weights = weight.to(logits.device, logits.dtype) if weight is not None else None
        return torch.nn.functional.cross_entropy(
            logits, y.long(), weight=weights, label_smoothing=label_smoothing, reduction=reduction
        )
    target = y.to(logits.dtype)
    if weight is None:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0], target, reduction=reduction
        )
    rows = weight.to(logits.device, logits.dtype)[y.long()]
    each = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0], target, reduction="none"
    )
    return (each * rows).sum() / rows.sum() if reduction == "mean" else (each * rows).sum()


def fit_logistic(
    X: torch.Tensor, y: torch.Tensor, classes: int, *, iterations: int = 200
) -> Logistic:
    """The classification baseline: logistic regression of class numbers y on X, with
    scikit-learn's default penalty (C = 1: an L2 penalty of |w|^2 / 2 on the summed loss)
    on standardised columns, solved by L-BFGS in float64 from zero: the same answer every
    time. Two classes: one logit (the second class's); more: one per class."""
    X = X.detach().to("cpu", torch.float64)
    target = y.detach().to("cpu").reshape(-1).long()
    mean, std = X.mean(dim=0), X.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    Z = (X - mean) / std
    outputs = 1 if classes == 2 else classes
    coef = torch.zeros(X.shape[1], outputs, dtype=torch.float64, requires_grad=True)
    intercept = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    penalty = 0.5 / len(Z)  # |w|^2 / 2 on the summed loss = this on the mean loss
    optimizer = torch.optim.LBFGS(
        [coef, intercept], lr=1.0, max_iter=iterations, tolerance_grad=1e-10,
        tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        fit = class_cross_entropy(Z @ coef + intercept, target)
        total = fit + penalty * coef.square().sum()
        total.backward()
        return total

    optimizer.step(loss)
    with torch.no_grad():  # back to the columns' own units
        raw = coef / std[:, None]
        return Logistic(raw.detach(), (intercept - mean @ raw).detach())


class Medians:
    """The exact median of each column, from two passes over blocks of rows: bounded memory.

    A float32's bits, as an unsigned number ordered as the values are (`_order_keys`), are
    counted in the first pass by their top 16 bits; the counts say which bin (one or two)
    holds the middle values. The second pass counts the values of those bins by their low
    16 bits, which pins each middle value down exactly. 65,536 counts per column and pass,
    whatever the rows. Missing values (NaN) are not counted; an even count's median is the
    mean of its two middle values, as `numpy.median` gives.
    """

    _BINS = 1 << 16

    def __init__(self, columns: int) -> None:
        self.high = np.zeros((columns, self._BINS), dtype=np.int64)
        # (column, high bits) -> counts by low bits; filled in once the first pass is done
        self.low: dict[tuple[int, int], NDArray[np.int64]] = {}
        self._middle: list[list[tuple[int, int]]] = []  # per column: (bin, rank in the bin)

    def add_high(self, X: NDArray[np.float32]) -> None:
        """First pass: a block of rows, (rows, columns)."""
        for j in range(X.shape[1]):
            self.high[j] += np.bincount(_order_keys(X[:, j]) >> 16, minlength=self._BINS)

    def find_middle(self) -> None:
        """Between the passes: which bins hold each column's middle values."""
        cumulative = np.cumsum(self.high, axis=1)
        self._middle = []
        for j, running in enumerate(cumulative):
            count = int(running[-1])
            ranks = sorted({(count - 1) // 2, count // 2}) if count else []
            middle = []
            for rank in ranks:
                bin = int(np.searchsorted(running, rank, side="right"))
                middle.append((bin, rank - (int(running[bin - 1]) if bin else 0)))
                self.low.setdefault((j, bin), np.zeros(self._BINS, dtype=np.int64))
            self._middle.append(middle)

    def add_low(self, X: NDArray[np.float32]) -> None:
        """Second pass: the same blocks of rows again."""
        for (j, bin), counts in self.low.items():
            keys = _order_keys(X[:, j])
            counts += np.bincount(keys[(keys >> 16) == bin] & 0xFFFF, minlength=self._BINS)

    def medians(self) -> list[float | None]:
        """Each column's median; None for a column without values."""
        out: list[float | None] = []
        for j, middle in enumerate(self._middle):
            values = []
            for bin, rank in middle:
                low = int(np.searchsorted(np.cumsum(self.low[(j, bin)]), rank, side="right"))
                values.append(_from_order_key((bin << 16) | low))
            out.append(sum(values) / len(values) if values else None)
        return out


def _order_keys(values: NDArray[np.float32]) -> NDArray[np.int64]:
    """The present values' float32 bits as numbers in the values' order: a negative number's
    bits flipped, a positive one's sign bit set."""
    bits = values[~np.isnan(values)].astype(np.float32).view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    return keys.astype(np.int64)


def _from_order_key(key: int) -> float:
    bits = key ^ (1 << 31) if key >> 31 else ~key & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])
