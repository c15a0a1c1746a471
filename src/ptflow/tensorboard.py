"""`--tensorboard`: every epoch's losses and learning rate as TensorBoard scalars.

An optional extra (`pip install 'ptflow[tensorboard]'`): TensorBoard is heavy, and ptflow's
own files (history.csv, report.html) already hold the same numbers. The writer listens to
`train`'s `on_epoch` numbers, so the training loop knows nothing about it.
"""

from __future__ import annotations

import os
from typing import Any

from ptflow.errors import WorkflowError

__all__ = ["TensorBoardWriter"]


class TensorBoardWriter:
    """Writes each epoch's numbers (as `train`'s `on_epoch` gives them) as scalars."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise WorkflowError(
                "--tensorboard needs TensorBoard, an optional extra: "
                "pip install 'ptflow[tensorboard]' (or pip install tensorboard)."
            ) from None
        self.log_dir = str(log_dir)
        self.make_writer = SummaryWriter
        self.writer: Any = None  # made at the first epoch, once the run folder exists

    def __call__(self, numbers: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self.make_writer(self.log_dir)
        epoch = numbers["epoch"]
        for key, value in numbers.items():
            if key.endswith("_loss"):  # loss/train, loss/val or loss/test: one chart
                self.writer.add_scalar(f"loss/{key.removesuffix('_loss')}", value, epoch)
        self.writer.add_scalar("lr", numbers["lr"], epoch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
