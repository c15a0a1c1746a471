"""One frozen record of every setting that decides a run's result.

Defaults reproduce the PyTorch workflow tutorial: y = 0.7·X + 0.3 on 50 points,
the first 80% for training, seed 42, L1 loss, SGD with lr 0.01, 200 epochs.

This module imports nothing heavy, so the CLI can show defaults without torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from ptflow.errors import WorkflowError

__all__ = ["LOSSES", "MODELS", "OPTIMIZERS", "Config"]

ModelName = Literal["tutorial", "linear"]
LossName = Literal["l1", "mse"]
OptimizerName = Literal["sgd", "adam"]

MODELS: tuple[str, ...] = get_args(ModelName)
LOSSES: tuple[str, ...] = get_args(LossName)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a run; invalid values raise `WorkflowError` on construction."""

    # data: y = weight * X + bias, X = arange(start, end, step)
    weight: float = 0.7
    bias: float = 0.3
    start: float = 0.0
    end: float = 1.0
    step: float = 0.02
    # split: sequential by default, as in the tutorial; the rest after train/val is test
    train_fraction: float = 0.8
    val_fraction: float = 0.0
    shuffle: bool = False
    # model
    model: ModelName = "tutorial"
    # training
    seed: int = 42
    epochs: int = 200
    lr: float = 0.01
    loss: LossName = "l1"
    optimizer: OptimizerName = "sgd"
    batch_size: int | None = None  # None: the whole training split in one batch
    log_every: int = 10

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("weight", "bias", "start", "end", "step", "lr"):
            if not math.isfinite(getattr(self, name)):
                raise WorkflowError(f"{name} must be a finite number, got {getattr(self, name)}.")
        if self.step <= 0:
            raise WorkflowError(f"step must be positive, got {self.step}.")
        if self.end <= self.start:
            raise WorkflowError(
                f"end ({self.end}) must be greater than start ({self.start}); swap them."
            )
        if not 0 < self.train_fraction < 1:
            raise WorkflowError(
                f"train_fraction must be between 0 and 1, got {self.train_fraction}."
            )
        if not 0 <= self.val_fraction < 1:
            raise WorkflowError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.train_fraction + self.val_fraction >= 1:
            raise WorkflowError(
                f"train_fraction + val_fraction must leave rows for testing, got "
                f"{self.train_fraction} + {self.val_fraction}; lower one of them."
            )
        if not 0 <= self.seed < 2**63:
            raise WorkflowError(f"seed must be between 0 and 2**63 - 1, got {self.seed}.")
        if self.epochs < 1:
            raise WorkflowError(f"epochs must be at least 1, got {self.epochs}.")
        if self.lr <= 0:
            raise WorkflowError(f"lr must be positive, got {self.lr}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise WorkflowError(
                f"batch_size must be at least 1, got {self.batch_size}; omit it for full batch."
            )
        if self.log_every < 1:
            raise WorkflowError(f"log_every must be at least 1, got {self.log_every}.")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict, ready for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build a Config from a mapping; unknown keys and wrong types name the key."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise WorkflowError(
                f"unknown setting {', '.join(map(repr, unknown))}; "
                f"known settings are: {', '.join(sorted(known))}."
            )
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with some settings changed, validated again."""
        return Config.from_dict({**self.to_dict(), **changes})


def _check_types(cfg: Config) -> None:
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if not _matches(value, hints[field.name]):
            raise WorkflowError(
                f"setting {field.name!r} must be {_describe(hints[field.name])}, got {value!r}."
            )


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an int is a fine float, a bool is not
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if hint is type(None):
        return "None"
    return {bool: "true or false", int: "an integer", float: "a number"}.get(hint, str(hint))
