"""Where `train` gets its batches and its per-epoch evaluation loss: the one interface
(`TrainingData`) that tables in memory (`InMemory`), streamed tables and several processes
(`distributed.Sharded`) implement. It imports no training, streaming or distributed code,
so none of them import each other in a cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import nn

from ptflow.data import Splits
from ptflow.evaluation import LossFn, mean_loss

__all__ = ["InMemory", "LossFn", "TrainingData"]


class TrainingData(Protocol):
    """Where `train` gets its batches and its per-epoch evaluation loss from."""

    @property
    def train_rows(self) -> int: ...

    @property
    def eval_split(self) -> str: ...  # "val" or "test": the part evaluated every epoch

    def batches(
        self, batch_size: int, generator: torch.Generator, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def eval_loss(self, model: nn.Module, loss_fn: LossFn) -> float: ...

    def eval_sums(
        self, model: nn.Module, loss_fn: LossFn, share: Callable[[int], slice] | None = None
    ) -> tuple[float, int]: ...  # the loss summed over (a share of) the rows, and their number

    def sum(self, value: float) -> float: ...  # summed over every process

    def finite(self, loss: float) -> bool: ...  # the batch's loss is finite (on every process)


class InMemory:
    """Splits held in memory, moved to the model's device once, not once per batch."""

    def __init__(self, splits: Splits, device: torch.device) -> None:
        self.X_train, self.y_train = splits.train.X.to(device), splits.train.y.to(device)
        self.eval_split, part = (
            ("val", splits.val) if splits.val is not None else ("test", splits.test)
        )
        self.X_eval, self.y_eval = part.X.to(device), part.y.to(device)
        self.train_rows = len(self.X_train)
        self._whole = ((self.X_train, self.y_train),)  # the one batch of a full-batch epoch

    def batches(
        self, batch_size: int, generator: torch.Generator, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (X, y) batches: the whole split at once, or shuffled slices of batch_size rows.

        `skip` leaves out the epoch's first batches, already trained before a resume.
        """
        if batch_size >= self.train_rows:  # full batch, in order, as in the tutorial
            return iter(self._whole)  # no generator to make and run every epoch
        return self._shuffled(batch_size, generator, skip)

    def _shuffled(
        self, batch_size: int, generator: torch.Generator, skip: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        X, y = self.X_train, self.y_train
        # Index-gathering with one permutation per epoch: no per-sample Dataset/collate cost.
        order = torch.randperm(len(X), generator=generator).to(X.device)
        for start in range(skip * batch_size, len(X), batch_size):
            rows = order[start : start + batch_size]
            yield X[rows], y[rows]

    def eval_loss(self, model: nn.Module, loss_fn: LossFn) -> float:
        """Return the mean loss on the validation split (or, without one, the test split)."""
        return mean_loss(model, self.X_eval, self.y_eval, loss_fn)

    def eval_sums(
        self, model: nn.Module, loss_fn: LossFn, share: Callable[[int], slice] | None = None
    ) -> tuple[float, int]:
        """Return the loss summed over `share(rows)` of the evaluation rows, and their number."""
        rows = share(len(self.X_eval)) if share is not None else slice(None)
        X, y = self.X_eval[rows], self.y_eval[rows]
        return (mean_loss(model, X, y, loss_fn) * len(X) if len(X) else 0.0), len(X)

    def sum(self, value: float) -> float:
        """One process: the value itself."""
        return value

    # One process: whether the loss is a finite number (math.isfinite itself, called once
    # a batch, with no method in between).
    finite = staticmethod(math.isfinite)
