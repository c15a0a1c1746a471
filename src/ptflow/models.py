"""Step 3, build a model: bare `nn.Module`s with only their forward pass."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import nn

from ptflow.config import MODELS
from ptflow.errors import WorkflowError

__all__ = [
    "LinearModel",
    "LinearRegressionModel",
    "build_model",
    "device_of",
    "linear_parameters",
]


class LinearRegressionModel(nn.Module):
    """The tutorial's model: one weight and one bias, learned as `nn.Parameter`s."""

    def __init__(self) -> None:
        super().__init__()
        # Created in this order so that torch.manual_seed(42) gives the tutorial's values.
        self.weights = nn.Parameter(torch.randn(1, dtype=torch.float))
        self.bias = nn.Parameter(torch.randn(1, dtype=torch.float))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights * x + self.bias  # the linear regression formula


class LinearModel(nn.Module):
    """A linear layer, y = x @ W.T + b, for any number of features and targets."""

    def __init__(self, in_features: int = 1, out_features: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.linear(x)  # (n, in_features) -> (n, out_features)
        return y


@overload
def build_model(
    name: Literal["tutorial"] = ...,
    in_features: int = 1,
    out_features: int = 1,
    *,
    seed: int | None = 42,
) -> LinearRegressionModel: ...
@overload
def build_model(
    name: Literal["linear"], in_features: int = 1, out_features: int = 1, *, seed: int | None = 42
) -> LinearModel: ...
@overload
def build_model(
    name: str, in_features: int = 1, out_features: int = 1, *, seed: int | None = 42
) -> nn.Module: ...
def build_model(
    name: str = "tutorial", in_features: int = 1, out_features: int = 1, *, seed: int | None = 42
) -> nn.Module:
    """Build a model by name, seeding torch immediately before so its start is reproducible."""
    if name not in MODELS:
        raise WorkflowError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    if in_features < 1 or out_features < 1:
        raise WorkflowError(
            f"a model needs at least one feature and one target, "
            f"got in_features={in_features}, out_features={out_features}."
        )
    if seed is not None:
        torch.manual_seed(seed)
    if name == "tutorial":
        if (in_features, out_features) != (1, 1):
            raise WorkflowError(
                f"the tutorial model has one feature and one target, got "
                f"{in_features} and {out_features}; use the 'linear' model instead."
            )
        return LinearRegressionModel()
    return LinearModel(in_features, out_features)


def linear_parameters(model: nn.Module) -> tuple[float, float] | None:
    """Return (weight, bias) of a one-feature, one-target linear model, else None."""
    if isinstance(model, LinearRegressionModel):
        return model.weights.item(), model.bias.item()
    if isinstance(model, LinearModel) and model.linear.weight.shape == (1, 1):
        return model.linear.weight.item(), model.linear.bias.item()
    return None


def device_of(model: nn.Module) -> torch.device:
    """Return the device the model's parameters live on (CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
