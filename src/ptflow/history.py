"""The record of a run's epochs: what `train` returns, plots draw and history.csv holds.

Kept out of `training.py` so that plotting and reporting need none of the training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History"]


@dataclass(repr=False)
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

    def to_pandas(self) -> Any:
        """The epochs as a pandas DataFrame: epoch, train_loss, <eval_split>_loss, lr."""
        import pandas as pd

        return pd.DataFrame(
            {
                "epoch": self.epoch,
                "train_loss": self.train_loss,
                f"{self.eval_split}_loss": self.eval_loss,
                "lr": self.lr,
            }
        )

    def _ends(self) -> list[tuple[str, int, float, float]]:
        """(label, epoch, train loss, eval loss) of the first, best and last epochs."""
        picked = [("first", 0), ("last", len(self) - 1)]
        if self.best_epoch is not None and self.best_epoch in self.epoch:
            picked.insert(1, ("best", self.epoch.index(self.best_epoch)))
        return [
            (label, self.epoch[i], self.train_loss[i], self.eval_loss[i]) for label, i in picked
        ]

    def __repr__(self) -> str:  # a few numbers, not every epoch's
        if not self.epoch:
            return "History(no epochs)"
        ends = "; ".join(
            f"{label} {epoch}: train {train:.4g}, {self.eval_split} {evaluated:.4g}"
            for label, epoch, train, evaluated in self._ends()
        )
        stopped = ", stopped early" if self.stopped_early else ""
        return f"History({len(self)} epochs{stopped}; loss at {ends})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{label}</td><td>{epoch}</td><td>{train:.6g}</td><td>{evaluated:.6g}</td></tr>"
            for label, epoch, train, evaluated in (self._ends() if self.epoch else [])
        )
        stopped = " (stopped early)" if self.stopped_early else ""
        return (
            f"<p>History: {len(self)} epochs{stopped}</p><table><tr><th></th><th>epoch</th>"
            f"<th>train loss</th><th>{self.eval_split} loss</th></tr>{rows}</table>"
        )
