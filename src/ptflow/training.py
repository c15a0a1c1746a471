"""Step 4, train: the tutorial's training and testing loop, readable top to bottom."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from ptflow.batches import InMemory, LossFn, TrainingData
from ptflow.checkpoint import check_compatible
from ptflow.config import AUTO_BATCH_ROWS, LOSSES, OPTIMIZERS, SCHEDULES, Config
from ptflow.data import Splits
from ptflow.devices import check_bf16, device_of
from ptflow.distributed import Sharded, World
from ptflow.errors import TrainingDiverged, TrainingInterrupted, WorkflowError
from ptflow.history import History
from ptflow.stats import class_cross_entropy
from ptflow.streaming import StreamedTable

__all__ = [
    "AUTO_BATCH_ROWS",
    "EpochEnd",
    "EpochEndFn",
    "History",
    "InMemory",
    "LossFn",
    "Schedule",
    "Step",
    "StepOptions",
    "TrainingData",
    "TrainingState",
    "balanced_class_weights",
    "batch_size_for",
    "make_class_loss_fn",
    "make_loss_fn",
    "make_optimizer",
    "make_schedule",
    "optimizer_for",
    "random_states",
    "set_random_states",
    "train",
    "train_step",
    "weight_decay_for",
]

logger = logging.getLogger(__name__)


def make_loss_fn(name: str = "l1", huber_delta: float = 1.0) -> LossFn:
    """Return the loss function by name: "l1" (mean absolute error), "mse" or "huber"."""
    if name == "l1":
        return nn.L1Loss()
    if name == "mse":
        return nn.MSELoss()
    if name == "huber":  # squared near zero, absolute beyond huber_delta: robust to outliers
        return nn.HuberLoss(delta=huber_delta)
    raise WorkflowError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")


def make_class_loss_fn(
    classes: int, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> LossFn:
    """The loss of logits against class numbers (rows, 1), for `classes` classes.

    Two classes: one logit, `BCEWithLogitsLoss`; more: one logit each, `CrossEntropyLoss`
    (with `label_smoothing`). Both take logits, the numerically stable form. `weight`, one
    per class, makes the loss a weighted mean over rows, as PyTorch's weighted losses are.
    """

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return class_cross_entropy(
            logits, y, weight=weight, label_smoothing=label_smoothing if classes > 2 else 0.0
        )

    return loss


def balanced_class_weights(class_rows: torch.Tensor) -> torch.Tensor:
    """rows / (classes * rows of the class), per class, from each class's training rows:
    every class weighs the same in all."""
    counts = class_rows.double()
    return (counts.sum() / (len(counts) * counts.clamp(min=1))).float()


def make_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float = 0.01,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Return the optimizer by name: "sgd" (stochastic gradient descent), "adam" or "adamw"."""
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":  # Adam with weight decay applied to the weights, not the gradient
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise WorkflowError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def optimizer_for(
    cfg: Config, model: nn.Module, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """Return the optimizer `cfg` names, with its settings, over the model's parameters.

    Weight decay (`weight_decay`, else `cfg.weight_decay`; none: 0) applies to the weights
    only, never to a bias: a penalty on the intercept would pull every prediction toward
    zero, which is why scikit-learn's and the textbooks' L2 penalties leave it out.
    """
    decay = weight_decay if weight_decay is not None else cfg.weight_decay or 0.0
    parameters: Any = model.parameters()
    if decay:
        named = list(model.named_parameters())
        biases = [value for name, value in named if name.rsplit(".", 1)[-1] == "bias"]
        weights = [value for name, value in named if name.rsplit(".", 1)[-1] != "bias"]
        parameters = [{"params": weights}, {"params": biases, "weight_decay": 0.0}]
    return make_optimizer(
        cfg.optimizer,
        parameters,
        cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=decay,
    )


def weight_decay_for(cfg: Config, classes: bool, train_rows: int) -> float:
    """The run's weight decay: `cfg.weight_decay`, or where it is none, for a linear
    classifier 1 / its training rows, and 0 otherwise.

    On the mean cross-entropy, a decay of 1 / n adds the gradient of |w|² / 2n: the L2
    penalty of scikit-learn's `LogisticRegression` at its default C = 1, so a separable
    table (wine) gets finite, calibrated weights instead of ever larger ones.
    """
    if cfg.weight_decay is not None:
        return cfg.weight_decay
    return 1.0 / max(train_rows, 1) if classes and cfg.model == "linear" else 0.0


@dataclass(frozen=True)
class Schedule:
    """A learning-rate scheduler and when it steps: after each batch, or each epoch."""

    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    per_batch: bool = False

    def after_batch(self) -> None:
        """Step a per-batch schedule (one-cycle)."""
        if self.per_batch and isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            self.scheduler.step()

    def after_epoch(self, eval_loss: float) -> None:
        """Step a per-epoch schedule; reduce-on-plateau watches the evaluation loss."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(eval_loss)
        elif not self.per_batch:
            self.scheduler.step()


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int
) -> Schedule | None:
    """Return the learning-rate schedule `cfg.schedule` names, or None for a constant rate."""
    lr_scheduler = torch.optim.lr_scheduler
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "step":  # multiply by gamma every step_size epochs
        return Schedule(lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma))
    if cfg.schedule == "cosine":  # from lr down to 0 along half a cosine over all epochs
        return Schedule(lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs))
    if cfg.schedule == "onecycle":  # warm up to lr, then anneal, over every batch of the run
        total_steps = cfg.epochs * steps_per_epoch
        return Schedule(
            lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps),
            per_batch=True,
        )
    if cfg.schedule == "plateau":  # multiply by gamma when the validation loss stalls
        return Schedule(
            lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=cfg.gamma, patience=cfg.plateau_patience
            )
        )
    raise WorkflowError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}.")


def batch_size_for(cfg: Config, train_rows: int) -> int:
    """Return the batch size: cfg.batch_size, else full batch up to AUTO_BATCH_ROWS rows."""
    if cfg.batch_size is not None:
        return min(cfg.batch_size, train_rows)
    return min(train_rows, AUTO_BATCH_ROWS)


@dataclass
class TrainingState:
    """Where training stands, and everything a checkpoint needs to continue bit for bit.

    `state_dict()` gathers the weights, the optimizer's and schedule's state, the loss
    history, early stopping's record, the mini-batch order and every random number
    generator; `load_state_dict()` puts them back into freshly built objects.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    history: History
    batch_order: torch.Generator  # draws each epoch's order of mini-batches
    batches_done: int = 0  # batches of the current epoch already trained
    loss_sum: float = 0.0  # their losses, each times its number of rows
    best_loss: float = math.inf
    best_weights: dict[str, torch.Tensor] | None = None  # kept for early stopping
    epochs_without_improvement: int = 0
    # batch_order's state when the current epoch began: resuming mid-epoch redraws its order
    epoch_start_order: torch.Tensor | None = None

    @property
    def epochs_done(self) -> int:
        """The number of finished epochs."""
        return len(self.history)

    def state_dict(self) -> dict[str, Any]:
        """Return the state as nested dicts and lists of numbers, strings and tensors."""
        mid_epoch = self.batches_done > 0 and self.epoch_start_order is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,
            "schedule": self.schedule.scheduler.state_dict() if self.schedule else None,
            "history": dataclasses.asdict(self.history),
            "batches_done": self.batches_done,
            # under torchrun each process's own part of the epoch's sum, to go on adding to
            "loss_sum": _each_process(self.loss_sum),
            "batch_order": self.epoch_start_order if mid_epoch else self.batch_order.get_state(),
            "best_loss": self.best_loss,
            "best_weights": self.best_weights,
            "epochs_without_improvement": self.epochs_without_improvement,
            "random": _all_random_states(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict()`: objects must be built as the saved ones were."""
        check_compatible(self.model, state["model"], "the checkpoint's model")
        self.model.load_state_dict(state["model"])
        if state["optimizer_class"] != type(self.optimizer).__name__:
            raise WorkflowError(
                f"the checkpoint's optimizer is {state['optimizer_class']}, this run's is "
                f"{type(self.optimizer).__name__}; resume with the settings it was saved with."
            )
        if (self.schedule is None) != (state["schedule"] is None):
            raise WorkflowError("the checkpoint was saved with a different learning-rate schedule.")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.schedule is not None:
                self.schedule.scheduler.load_state_dict(state["schedule"])
        except (ValueError, KeyError, TypeError) as error:
            raise WorkflowError(
                f"the checkpoint's optimizer or schedule does not fit this run ({error}); "
                f"resume with the settings it was saved with."
            ) from None
        self.history = History(**state["history"])
        self.batches_done = state["batches_done"]
        saved = state["loss_sum"]  # a list: one per process, under torchrun
        self.loss_sum = _own_part(saved) if isinstance(saved, list) else saved
        self.batch_order.set_state(state["batch_order"])
        self.best_loss = state["best_loss"]
        best = state["best_weights"]
        device = device_of(self.model)
        self.best_weights = {k: v.to(device) for k, v in best.items()} if best else None
        self.epochs_without_improvement = state["epochs_without_improvement"]
        set_random_states(_own_random_states(state["random"]))


@dataclass(frozen=True, slots=True)
class EpochEnd:
    """What `train` tells `on_epoch_end` after every epoch, and when it stops mid-epoch.

    A snapshot of numbers, plus `state_dict()` for whoever saves a checkpoint; the state
    itself stays `train`'s to change.
    """

    epoch: int  # the epoch that ended, or that a stop request cut short
    epochs: int  # the epochs the run asks for
    epochs_done: int
    batches_done: int  # batches of the next epoch already trained: above 0 only mid-epoch
    train_loss: float | None  # None when the epoch was cut short
    eval_loss: float | None
    eval_split: str  # "val" or "test"
    lr: float
    elapsed_s: float
    final: bool  # the run's last call: its last epoch, out of patience, or stopping
    state: TrainingState = field(repr=False)

    def state_dict(self) -> dict[str, Any]:
        """The whole training state, as `TrainingState.state_dict` gives it, to resume from."""
        return self.state.state_dict()

    def numbers(self) -> dict[str, Any]:
        """The epoch's numbers, as logs and TensorBoard show them."""
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "train_loss": self.train_loss,
            f"{self.eval_split}_loss": self.eval_loss,
            "lr": self.lr,
            "elapsed_s": round(self.elapsed_s, 4),
        }


EpochEndFn = Callable[[EpochEnd], None]


class Step(NamedTuple):  # a NamedTuple: made every batch, and cheaper than a frozen dataclass
    """What one training step did: the batch's predictions and loss, and whether it updated."""

    y_pred: torch.Tensor
    loss: float
    updated: bool  # False: the loss was not finite, and the weights were left alone


@dataclass(frozen=True)
class StepOptions:
    """How every step runs, from the settings: its precision and gradient clipping."""

    precision: Callable[[], AbstractContextManager[Any]] = nullcontext
    clip_grad_norm: float | None = None
    # after backward, whether the loss is finite; under torchrun this is where the
    # processes sum their gradients, and the answer is every process's (`Sharded.finite`)
    finite: Callable[[float], bool] = math.isfinite

    @staticmethod
    def of(cfg: Config, device: torch.device) -> StepOptions:
        """The step `cfg` asks for on `device` (bf16: autocast, where it is safe)."""
        if cfg.precision != "bf16":
            return StepOptions(clip_grad_norm=cfg.clip_grad_norm)
        check_bf16(device)
        # The forward pass and loss run in bfloat16; the weights stay float32.
        autocast = partial(torch.autocast, device.type, torch.bfloat16)
        return StepOptions(precision=autocast, clip_grad_norm=cfg.clip_grad_norm)


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    options: StepOptions = StepOptions(),
) -> Step:
    """The tutorial's five steps on one batch; `train` and `--explain` both take them here.

    A loss that is not finite stops before step 5: reading its value waits for the device
    once a batch, free on a CPU and the price of never training on NaN. (Under torchrun the
    exchange of gradients also carries whether any process's loss went non-finite, so every
    process skips the same step.)
    """
    with options.precision():
        y_pred = model(X)  # 1. forward pass
        loss = loss_fn(y_pred, y)  # 2. calculate the loss
    optimizer.zero_grad()  # 3. zero the gradients of the last step
    loss.backward()  # 4. backpropagate: d(loss)/d(parameter) for every parameter
    loss_value = loss.item()
    if not options.finite(loss_value):
        return Step(y_pred, loss_value, updated=False)
    if options.clip_grad_norm is not None:  # cap the gradient's length
        nn.utils.clip_grad_norm_(model.parameters(), options.clip_grad_norm)
    optimizer.step()  # 5. update the parameters with those gradients
    return Step(y_pred, loss_value, updated=True)


@dataclass
class _Loop:
    """What every epoch of one `train` call shares: the data, the model as trained, the step."""

    cfg: Config
    data: TrainingData
    forward: nn.Module  # the model, or its compiled wrapper: same weights
    loss_fn: LossFn
    state: TrainingState
    options: StepOptions
    batch_size: int
    batches_per_epoch: int
    world: World | None
    # The last batch's step, kept until the next one is taken, as the tutorial's loop keeps
    # its `loss`: its graph holds the parameters' gradient accumulators (autograd's
    # AccumulateGrad nodes), which the next forward pass then reuses. Let go with the
    # epoch's last batch, they were built again every epoch (measured: about a quarter of
    # the per-epoch overhead on the tutorial's line). Changes no number.
    last_step: Step | None = None


def _progress_bar(epochs: range, description: str, *, show: bool, **options: Any) -> Any:
    """A tqdm bar over the epochs: on a terminal only (never in logs or pipes), and in a
    Jupyter notebook a widget, or a line of text where ipywidgets is not installed (tqdm's
    own choice there warns "IProgress not found" and shows nothing)."""
    import importlib.util
    import sys

    from tqdm import tqdm

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if not show or type(shell).__name__ != "ZMQInteractiveShell":
        return tqdm(epochs, description, disable=None if show else True, **options)
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget

        return widget(epochs, description, **options)
    return tqdm(epochs, description, file=sys.stdout, **options)


def train(
    model: nn.Module,
    splits: Splits | StreamedTable,
    cfg: Config | None = None,
    *,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
    resume: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch_end: EpochEndFn | None = None,
) -> History:
    """Train `model` on `splits.train` for `cfg.epochs` epochs and return the loss history.

    Each epoch trains every batch (`train_step`) in `model.train()` mode, then measures the
    loss on the validation split (or, without one, the test split) in `model.eval()` mode
    under `torch.inference_mode()`. `cfg.patience` stops early and keeps the best epoch's
    weights. `loss_fn` and `optimizer` default to the ones `cfg` names; `progress=True`
    shows a bar on a terminal. `resume` continues from a `TrainingState.state_dict()`;
    `on_epoch_end` receives an `EpochEnd` after every epoch (to checkpoint, to log); a
    non-finite loss raises `TrainingDiverged` before it reaches the weights; once
    `should_stop()` turns true, training stops at the next batch boundary, tells
    `on_epoch_end` (final), and raises `TrainingInterrupted`.
    """
    started = time.perf_counter()
    with _epoch_lines(progress):
        loop = _start(model, splits, cfg or Config(), loss_fn, optimizer, resume)
        return _epochs(model, loop, progress, should_stop, on_epoch_end, started)


@contextlib.contextmanager
def _epoch_lines(progress: bool) -> Iterator[None]:
    """With `progress` and no logging set up (a notebook, a script), the epoch lines on
    stdout beside the bar, as `ptflow train` prints them; set-up logging decides otherwise."""
    if not progress or logging.getLogger("ptflow").handlers or logging.getLogger().handlers:
        yield
        return
    from ptflow.console import logging_to_stdout

    with logging_to_stdout(quiet=False):
        yield


def _epochs(
    model: nn.Module,
    loop: _Loop,
    progress: bool,
    should_stop: Callable[[], bool] | None,
    on_epoch_end: EpochEndFn | None,
    started: float,
) -> History:
    """`train`'s epochs: train, evaluate, record, stop early, tell `on_epoch_end`."""
    cfg, state, history = loop.cfg, loop.state, loop.state.history
    # Under torchrun the stop request rides on the gradients' exchange: every process stops
    # after the same batch.
    stop_mid_epoch = should_stop
    if isinstance(loop.data, Sharded):  # the processes agree after each batch, as one
        stop_mid_epoch = loop.data.stop_after_batch(should_stop)
    last_epoch = len(history) if history.stopped_early else cfg.epochs
    bar = _progress_bar(
        range(state.epochs_done + 1, last_epoch + 1),
        "training",
        unit="epoch",
        initial=state.epochs_done,
        total=last_epoch,
        show=progress,
    )
    # a hidden bar's iterator only passes the epochs on: one generator step an epoch, saved
    for epoch in bar.iterable if bar.disable else bar:
        train_loss = _train_epoch(loop, epoch, stop_mid_epoch, on_epoch_end, started)
        eval_loss = _eval_epoch(loop)
        _record(loop, epoch, train_loss, eval_loss, started, bar)
        out_of_patience = _update_early_stopping(loop, epoch, eval_loss)
        stop_now = should_stop is not None and should_stop()
        if loop.world is not None:  # every process stops, or none
            stop_now = loop.world.any(stop_now)
        if on_epoch_end is not None:  # checkpoints, TensorBoard: after the epoch is complete
            final = out_of_patience or stop_now or epoch == cfg.epochs
            on_epoch_end(_epoch_end(loop, epoch, started, final))
        if out_of_patience:
            break
        if stop_now and epoch < cfg.epochs:
            raise _interrupted(state, epoch, loop.data)  # on_epoch_end was just told
    bar.close()
    if state.best_weights is not None:
        _restore_best(model, state)
    return history


def _start(
    model: nn.Module,
    splits: Splits | StreamedTable,
    cfg: Config,
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer | None,
    resume: dict[str, Any] | None,
) -> _Loop:
    """Everything the epochs share, built once: the data on the model's device, the step."""
    loss_fn = loss_fn if loss_fn is not None else make_loss_fn(cfg.loss, cfg.huber_delta)
    optimizer = optimizer if optimizer is not None else optimizer_for(cfg, model)
    device = device_of(model)
    options = StepOptions.of(cfg, device)
    data: TrainingData = (
        splits.on(device) if isinstance(splits, StreamedTable) else InMemory(splits, device)
    )
    forward = model
    # Under torchrun: this process trains on its share of every batch, and after each
    # backward pass the processes sum their gradients (`Sharded.finite`).
    if (world := World.current()) is not None:
        data = Sharded(data, world, model)
        torch.manual_seed(cfg.seed + world.rank)  # each process its own dropout masks
    options = dataclasses.replace(options, finite=data.finite)
    # --compile: the same module and weights, its forward pass compiled on first use.
    forward = cast(nn.Module, torch.compile(forward)) if cfg.compile else forward
    batch_size = batch_size_for(cfg, data.train_rows)
    batches_per_epoch = math.ceil(data.train_rows / batch_size)
    state = TrainingState(
        model,
        optimizer,
        make_schedule(optimizer, cfg, batches_per_epoch),
        History(eval_split=data.eval_split),
        batch_order=torch.Generator().manual_seed(cfg.seed),  # same seed, same mini-batches
    )
    if resume is not None:
        state.load_state_dict(resume)
    return _Loop(cfg, data, forward, loss_fn, state, options, batch_size, batches_per_epoch, world)


def _train_epoch(
    loop: _Loop,
    epoch: int,
    stop_mid_epoch: Callable[[], bool] | None,
    on_epoch_end: EpochEndFn | None,
    started: float,
) -> float:
    """Train every batch of one epoch; return the mean training loss per row."""
    state, optimizer, schedule = loop.state, loop.state.optimizer, loop.state.schedule
    forward, loss_fn, options = loop.forward, loop.loss_fn, loop.options
    state.model.train()  # training mode: dropout and friends on
    if loop.batches_per_epoch > 1:  # where this epoch's order starts, to redraw it on resume
        state.epoch_start_order = state.batch_order.get_state()
    for X, y in loop.data.batches(loop.batch_size, state.batch_order, state.batches_done):
        loop.last_step = step = train_step(forward, loss_fn, optimizer, X, y, options)
        if not step.updated:
            raise _diverged(step.loss, epoch, state.batches_done + 1, optimizer)
        if schedule is not None:
            schedule.after_batch()
        state.loss_sum += step.loss * X.shape[0]
        state.batches_done += 1
        if (
            stop_mid_epoch is not None
            and stop_mid_epoch()
            and state.batches_done < loop.batches_per_epoch
        ):
            if on_epoch_end is not None:  # cut short: a checkpoint mid-epoch
                on_epoch_end(_epoch_end(loop, epoch, started, final=True))
            raise _interrupted(state, epoch, loop.data)
    # mean per sample, not per batch (under torchrun: summed over every process)
    train_loss = loop.data.sum(state.loss_sum) / loop.data.train_rows
    state.batches_done, state.loss_sum = 0, 0.0
    return train_loss


def _eval_epoch(loop: _Loop) -> float:
    """The loss on the evaluation rows: eval mode (dropout off), no autograd bookkeeping."""
    loop.state.model.eval()
    with torch.inference_mode():
        return loop.data.eval_loss(loop.forward, loop.loss_fn)


def _record(
    loop: _Loop, epoch: int, train_loss: float, eval_loss: float, started: float, bar: Any
) -> None:
    """Append the epoch to the history, step the schedule, and log every `log_every` epochs."""
    cfg, state, history = loop.cfg, loop.state, loop.state.history
    history.append(epoch, train_loss, eval_loss, state.optimizer.param_groups[0]["lr"])
    if state.schedule is not None:
        state.schedule.after_epoch(eval_loss)
    if not (epoch % cfg.log_every == 0 or epoch in (1, cfg.epochs)):
        return  # the numbers below cost a few microseconds: only when logged
    eval_split, lr = history.eval_split, history.lr[-1]
    numbers = _epoch_end(loop, epoch, started, final=False).numbers()
    if not bar.disable:
        bar.set_postfix(
            {
                "train_loss": f"{train_loss:.4g}",
                f"{eval_split}_loss": f"{eval_loss:.4g}",
                "lr": f"{lr:.3g}",
            }
        )
    logger.info(
        "epoch %*d/%d | train loss %.6f | %s loss %.6f",
        len(str(cfg.epochs)),
        epoch,
        cfg.epochs,
        train_loss,
        eval_split,
        eval_loss,
        extra={"epoch_record": numbers},  # for --log-format json
    )


def _epoch_end(loop: _Loop, epoch: int, started: float, final: bool) -> EpochEnd:
    """The record `on_epoch_end` gets: after a whole epoch, or mid-epoch when cut short."""
    state, history = loop.state, loop.state.history
    whole = state.batches_done == 0 and len(history) == epoch
    return EpochEnd(
        epoch=epoch,
        epochs=loop.cfg.epochs,
        epochs_done=state.epochs_done,
        batches_done=state.batches_done,
        train_loss=history.train_loss[-1] if whole else None,
        eval_loss=history.eval_loss[-1] if whole else None,
        eval_split=history.eval_split,
        lr=history.lr[-1] if whole else state.optimizer.param_groups[0]["lr"],
        elapsed_s=time.perf_counter() - started,
        final=final,
        state=state,
    )


def _update_early_stopping(loop: _Loop, epoch: int, eval_loss: float) -> bool:
    """Remember the best epoch (and its weights, with patience); True once patience runs out."""
    cfg, state, history = loop.cfg, loop.state, loop.state.history
    if eval_loss < state.best_loss - cfg.min_delta:
        state.best_loss, history.best_epoch, state.epochs_without_improvement = eval_loss, epoch, 0
        if cfg.patience:  # 0 or None: no early stopping
            weights = state.model.state_dict().items()
            state.best_weights = {k: v.detach().clone() for k, v in weights}
    else:
        state.epochs_without_improvement += 1
    out_of_patience = bool(cfg.patience) and state.epochs_without_improvement >= (cfg.patience or 0)
    history.stopped_early = out_of_patience and epoch < cfg.epochs
    return out_of_patience


def _restore_best(model: nn.Module, state: TrainingState) -> None:
    assert state.best_weights is not None
    model.load_state_dict(state.best_weights)
    history = state.history
    logger.info(
        "restored the weights of epoch %d, the best %s loss %.6f%s",
        history.best_epoch,
        history.eval_split,
        state.best_loss,
        f" (stopped early at epoch {len(history)})" if history.stopped_early else "",
    )


def _each_process(value: Any) -> Any:
    """`value`, or under torchrun every process's, in rank order (for a checkpoint)."""
    world = World.current()
    return value if world is None else world.gather_objects(value)


def _all_random_states() -> dict[str, Any] | list[dict[str, Any]]:
    # Under torchrun every process draws its own dropout masks: keep each one's generators.
    states: dict[str, Any] | list[dict[str, Any]] = _each_process(random_states())
    return states


def _own_random_states(saved: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(saved, list):
        own: dict[str, Any] = _own_part(saved)
        return own
    _own_part([saved])  # one process's checkpoint: refused under several
    return saved


def _own_part(saved: list[Any]) -> Any:
    """This process's item of a checkpoint's list of one per process."""
    world = World.current()
    if len(saved) != (world.size if world is not None else 1):
        raise WorkflowError(
            f"the checkpoint was written by a run of {len(saved)} process(es); resume it "
            f"with the same number (--nproc {len(saved)})."
        )
    return saved[world.rank if world is not None else 0]


def random_states() -> dict[str, Any]:
    """Return the state of every random number generator a run may draw from."""
    numpy_state = np.random.get_state(legacy=False)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # the generator of the GPU this process trains on, not of every visible one: a run
        # resumed where each process sees fewer GPUs still finds its own
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else [],
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": numpy_state["state"]["pos"],
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        },
        "python": {"version": version, "internal": torch.tensor(internal), "gauss": gauss_next},
    }


def set_random_states(states: dict[str, Any]) -> None:
    """Restore the generators from `random_states()`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        saved = states["cuda"]  # one; in checkpoints of earlier versions, every GPU's
        current = torch.cuda.current_device()
        torch.cuda.set_rng_state(saved[current] if len(saved) > current > 0 else saved[0])
    numpy_state = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    python_state = states["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss"])
    )


def _diverged(
    loss: float, epoch: int, batch: int, optimizer: torch.optim.Optimizer
) -> TrainingDiverged:
    lr = optimizer.param_groups[0]["lr"]
    # Under torchrun every process stops on the combined flag: this one's loss may be fine.
    what = (
        f"the training loss became {loss}"
        if not math.isfinite(loss)
        else ("another process's training loss or gradients became non-finite")
    )
    return TrainingDiverged(
        f"{what} at epoch {epoch}, batch {batch} "
        f"(learning rate {lr:.6g}); training stopped before that update reached the weights; "
        f"lower --lr or add --clip-grad-norm, and check the data for extreme values."
    )


def _interrupted(state: TrainingState, epoch: int, data: TrainingData) -> TrainingInterrupted:
    where = f"epoch {epoch}" + (f", batch {state.batches_done}" if state.batches_done else "")
    why = data.why_stopped() if isinstance(data, Sharded) else ""
    if why:  # another process's launcher is gone: stopped as for its SIGTERM
        return TrainingInterrupted(
            f"{why}, so every process stopped after {where}", exit_code=128 + 15
        )
    return TrainingInterrupted(f"training stopped after {where}")
