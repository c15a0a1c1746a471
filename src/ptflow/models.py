"""Step 3, build a model: bare `nn.Module`s with only their forward pass."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, Literal, overload

import torch
from torch import nn

from ptflow.config import MODELS
from ptflow.errors import WorkflowError
from ptflow.stats import Scaling

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

__all__ = [
    "MLP",
    "LinearModel",
    "LinearRegressionModel",
    "Standardized",
    "build_model",
    "check_mlp_fits",
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


class MLP(nn.Module):
    """A multi-layer perceptron: Linear -> activation -> dropout, per hidden layer, then Linear."""

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for size_in, size_out in itertools.pairwise(sizes):
            layers += [nn.Linear(size_in, size_out), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.layers(x)  # (n, in_features) -> (n, out_features)
        return y


class Standardized(nn.Module):
    """A model trained on standardised columns, used on raw ones.

    The training set's means and standard deviations are buffers, so they are saved in the
    same state_dict as the weights and applied automatically at prediction time.
    """

    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        scaling: Scaling | None = None,
        in_features: int = 1,
        out_features: int = 1,
    ) -> None:
        """Wrap `model`; without `scaling`, placeholders of the given sizes await a load."""
        super().__init__()
        self.model = model
        if scaling is None:
            scaling = Scaling(
                torch.zeros(in_features),
                torch.ones(in_features),
                torch.zeros(out_features),
                torch.ones(out_features),
            )
        self.register_buffer("x_mean", scaling.x_mean.clone())
        self.register_buffer("x_std", scaling.x_std.clone())
        self.register_buffer("y_mean", scaling.y_mean.clone())
        self.register_buffer("y_std", scaling.y_std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.model((x - self.x_mean) / self.x_std)
        return y * self.y_std + self.y_mean  # back to the target's own units


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
    **mlp: Any,
) -> LinearRegressionModel: ...
@overload
def build_model(
    name: Literal["linear"],
    in_features: int = 1,
    out_features: int = 1,
    *,
    seed: int | None = 42,
    **mlp: Any,
) -> LinearModel: ...
@overload
def build_model(
    name: Literal["mlp"],
    in_features: int = 1,
    out_features: int = 1,
    *,
    seed: int | None = 42,
    **mlp: Any,
) -> MLP: ...
@overload
def build_model(
    name: str, in_features: int = 1, out_features: int = 1, *, seed: int | None = 42, **mlp: Any
) -> nn.Module: ...
def build_model(
    name: str = "tutorial",
    in_features: int = 1,
    out_features: int = 1,
    *,
    seed: int | None = 42,
    **mlp: Any,
) -> nn.Module:
    """Build a model by name, seeding torch immediately before so its start is reproducible.

    `mlp` takes the MLP's `hidden`, `activation` and `dropout`; other models ignore them.
    """
    if name not in MODELS:
        raise WorkflowError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    if in_features < 1 or out_features < 1:
        raise WorkflowError(
            f"a model needs at least one feature and one target, "
            f"got in_features={in_features}, out_features={out_features}."
        )
    if name == "mlp":
        check_mlp_fits(in_features, out_features, tuple(mlp.get("hidden", (64, 64))))
    if seed is not None:
        torch.manual_seed(seed)
    if name == "tutorial":
        if (in_features, out_features) != (1, 1):
            raise WorkflowError(
                f"the tutorial model has one feature and one target, got "
                f"{in_features} and {out_features}; use the 'linear' model instead."
            )
        return LinearRegressionModel()
    if name == "mlp":
        return MLP(in_features, out_features, **mlp)
    return LinearModel(in_features, out_features)


def linear_parameters(model: nn.Module) -> tuple[float, float] | None:
    """Return (weight, bias) of a one-feature, one-target linear model, else None."""
    if isinstance(model, LinearRegressionModel):
        return model.weights.item(), model.bias.item()
    if isinstance(model, Standardized):
        return None  # its weights act on standardised columns, not on the data's units
    if isinstance(model, LinearModel) and model.linear.weight.shape == (1, 1):
        return model.linear.weight.item(), model.linear.bias.item()
    return None


def check_mlp_fits(
    in_features: int, out_features: int, hidden: tuple[int, ...], batch_rows: int = 1
) -> None:
    """Refuse an MLP whose training would not fit in memory, before allocating any of it."""
    sizes = (in_features, *hidden, out_features)
    parameters = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    # 16 bytes a number: float32 weights, gradients and two optimizer moments (Adam); and
    # each layer's outputs before and after the activation, with their gradients, per row
    needed = 16 * (parameters + batch_rows * sum(hidden))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return  # this system does not say; torch will
    if needed > memory:
        raise WorkflowError(
            f"an MLP with hidden layers {list(hidden)} on batches of {batch_rows:,} rows needs "
            f"about {needed / 2**30:,.1f} GiB to train ({parameters:,} parameters), more than "
            f"this machine's {memory / 2**30:,.1f} GiB; choose smaller --hidden sizes."
        )
