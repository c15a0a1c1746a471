"""Step 4, train: the tutorial's training and testing loop, readable top to bottom."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ptflow.config import LOSSES, OPTIMIZERS, Config
from ptflow.data import Splits
from ptflow.errors import WorkflowError
from ptflow.evaluation import evaluate_loss
from ptflow.models import device_of

__all__ = ["History", "make_loss_fn", "make_optimizer", "train"]

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """Per-epoch record of a run; `eval_loss` was measured on `eval_split` ("val" or "test")."""

    eval_split: str = "test"
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    def append(self, epoch: int, train_loss: float, eval_loss: float, lr: float) -> None:
        """Record one finished epoch."""
        self.epoch.append(epoch)
        self.train_loss.append(train_loss)
        self.eval_loss.append(eval_loss)
        self.lr.append(lr)

    def __len__(self) -> int:
        return len(self.epoch)


def make_loss_fn(name: str = "l1") -> LossFn:
    """Return the loss function by name: "l1" (mean absolute error) or "mse"."""
    if name == "l1":
        return nn.L1Loss()
    if name == "mse":
        return nn.MSELoss()
    raise WorkflowError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float = 0.01
) -> torch.optim.Optimizer:
    """Return the optimizer by name: "sgd" (stochastic gradient descent) or "adam"."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    raise WorkflowError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def train(
    model: nn.Module,
    splits: Splits,
    cfg: Config | None = None,
    *,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
) -> History:
    """Train `model` on `splits.train` for `cfg.epochs` epochs and return the loss history.

    Each epoch runs the five training steps on every batch in `model.train()` mode, then
    measures the loss on the validation split (or, without one, the test split) in
    `model.eval()` mode under `torch.inference_mode()`. `loss_fn` and `optimizer` default
    to the ones `cfg` names. Logs through the "ptflow.training" logger every `cfg.log_every`
    epochs; `progress=True` shows a progress bar on a terminal.
    """
    cfg = cfg if cfg is not None else Config()
    loss_fn = loss_fn if loss_fn is not None else make_loss_fn(cfg.loss)
    if optimizer is None:
        optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    device = device_of(model)
    # Move the data to the model's device once, not once per batch.
    X_train, y_train = splits.train.X.to(device), splits.train.y.to(device)
    eval_split, (X_eval, y_eval) = ("val", splits.val) if splits.val else ("test", splits.test)
    X_eval, y_eval = X_eval.to(device), y_eval.to(device)
    batch_size = cfg.batch_size or len(X_train)
    batch_order = torch.Generator().manual_seed(cfg.seed)  # same seed, same mini-batches
    history = History(eval_split=eval_split)

    # disable=None: a bar on a terminal only, never in logs or pipes.
    bar = tqdm(
        range(1, cfg.epochs + 1), "training", unit="epoch", disable=None if progress else True
    )
    for epoch in bar:
        model.train()  # training mode: dropout and friends on
        loss_sum = torch.zeros((), device=device)
        for X, y in _batches(X_train, y_train, batch_size, batch_order):
            y_pred = model(X)  # 1. forward pass
            loss = loss_fn(y_pred, y)  # 2. calculate the loss
            optimizer.zero_grad()  # 3. zero the gradients of the last step
            loss.backward()  # 4. backpropagate: d(loss)/d(parameter) for every parameter
            optimizer.step()  # 5. update the parameters with those gradients
            # Summed as a tensor, so the loop never waits for the device to report a number.
            loss_sum += loss.detach() * len(X)
        train_loss = loss_sum.item() / len(X_train)  # mean per sample, not per batch

        # Testing: model.eval() and inference_mode() inside evaluate_loss.
        eval_loss = evaluate_loss(model, X_eval, y_eval, loss_fn)
        history.append(epoch, train_loss, eval_loss, optimizer.param_groups[0]["lr"])
        if epoch % cfg.log_every == 0 or epoch in (1, cfg.epochs):
            bar.set_postfix(train_loss=f"{train_loss:.4g}", eval_loss=f"{eval_loss:.4g}")
            logger.info(
                "epoch %*d/%d | train loss %.6f | %s loss %.6f",
                len(str(cfg.epochs)),
                epoch,
                cfg.epochs,
                train_loss,
                eval_split,
                eval_loss,
            )
    bar.close()
    return history


def _batches(
    X: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) batches: the whole split at once, or shuffled slices of batch_size rows."""
    if batch_size >= len(X):
        yield X, y  # full batch, in order, as in the tutorial
        return
    # Index-gathering with one permutation per epoch: no per-sample Dataset/collate overhead.
    order = torch.randperm(len(X), generator=generator).to(X.device)
    for start in range(0, len(X), batch_size):
        rows = order[start : start + batch_size]
        yield X[rows], y[rows]
