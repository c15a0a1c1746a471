"""The record of a run's epochs: what `train` returns, plots draw and history.csv holds.

Kept out of `training.py` so that plotting and reporting need none of the training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch record of a run; `eval_loss` was measured on `eval_split` ("val" or "test")."""

    eval_split: str = "test"
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch with the lowest eval loss
    stopped_early: bool = False  # early stopping ended the run before cfg.epochs

    def append(self, epoch: int, train_loss: float, eval_loss: float, lr: float) -> None:
        """Record one finished epoch."""
        self.epoch.append(epoch)
        self.train_loss.append(train_loss)
        self.eval_loss.append(eval_loss)
        self.lr.append(lr)

    def __len__(self) -> int:
        return len(self.epoch)
