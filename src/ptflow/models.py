"""Step 3, build a model: bare `nn.Module`s with only their forward pass."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, overload

import torch
from torch import nn

from ptflow.config import MODELS
from ptflow.encoding import MISSING, UNSEEN, Encoding
from ptflow.errors import WorkflowError
from ptflow.stats import Scaling

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

__all__ = [
    "BASELINE_MOST_CATEGORIES",
    "MLP",
    "CategoricalInputs",
    "LinearModel",
    "LinearRegressionModel",
    "Standardized",
    "baseline_design",
    "build_model",
    "build_table_model",
    "check_mlp_fits",
    "embedding_width",
    "linear_coefficients",
    "linear_parameters",
    "one_hot_design",
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


def embedding_width(categories: int) -> int:
    """An embedding's width for a column of `categories` codes: fastai's rule of thumb,
    min(600, round(1.6 * n ** 0.56))."""
    width: float = 1.6 * float(categories) ** 0.56
    return min(600, round(width))


class CategoricalInputs(nn.Module):
    """A network over dense columns followed by categorical codes (`ptflow.encoding`).

    With `widths` (an MLP): each code's embedding, concatenated after the dense columns,
    goes into `network`. Without (a linear model): the linear layer over one-hot vectors,
    computed without making them: each category's weight is an embedding of width
    `out_features`, added to `network`'s output on the dense columns. A code for a
    category unseen in training has a zero embedding (`padding_idx`), which never trains.
    """

    def __init__(
        self,
        network: nn.Module | None,
        dense: int,
        sizes: Sequence[int],
        widths: Sequence[int] | None = None,
        out_features: int = 1,
    ) -> None:
        super().__init__()
        self.dense = dense
        self.additive = widths is None
        self.network = network
        if network is None:  # a linear model of categories alone: a bias and their weights
            self.bias = nn.Parameter(torch.zeros(out_features))
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, out_features if widths is None else width, padding_idx=UNSEEN)
            for size, width in zip(sizes, widths or sizes, strict=True)
        )
        if self.additive:  # one-hot weights start at 0, as if the categories were not there
            for embedding in self.embeddings:
                assert isinstance(embedding, nn.Embedding)
                nn.init.zeros_(embedding.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense, codes = x[:, : self.dense], x[:, self.dense :].long()  # (n, d), (n, categorical)
        embedded = [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        if not self.additive:
            assert self.network is not None
            y: torch.Tensor = self.network(torch.cat([dense, *embedded], dim=1))
            return y
        y = self.network(dense) if self.network is not None else self.bias.expand(len(x), -1)
        for weights in embedded:
            y = y + weights
        return y


def build_table_model(
    name: str,
    dense: int,
    sizes: Sequence[int],
    out_features: int = 1,
    *,
    seed: int | None = 42,
    embedding_size: int | None = None,
    **mlp: Any,
) -> nn.Module:
    """Build a model for `dense` numeric inputs and categorical columns of `sizes` codes.

    Without categorical columns, `build_model`'s model; with them, `CategoricalInputs`.
    """
    if not sizes:
        return build_model(name, dense, out_features, seed=seed, **mlp)
    if name == "tutorial":
        raise WorkflowError(
            "the tutorial model has one numeric feature, and this table has categorical "
            "columns; use --model linear or --model mlp."
        )
    if name == "mlp":
        widths = [embedding_size or embedding_width(size) for size in sizes]
        network = build_model("mlp", dense + sum(widths), out_features, seed=seed, **mlp)
        return CategoricalInputs(network, dense, sizes, widths)
    if seed is not None:
        torch.manual_seed(seed)
    linear = build_model(name, dense, out_features, seed=seed) if dense else None
    return CategoricalInputs(linear, dense, sizes, None, out_features)


# The least-squares baseline one-hot encodes categorical columns of at most this many
# categories (beside the codes for unseen and missing).
BASELINE_MOST_CATEGORIES = 1000


def one_hot_design(
    x: torch.Tensor, dense: int, sizes: Sequence[int], most: int = BASELINE_MOST_CATEGORIES
) -> torch.Tensor:
    """Dense columns, then each categorical code as a one-hot vector (unseen: all 0), for
    the least-squares baseline. Columns of more than `most` categories are left out: their
    normal equations would not fit in memory."""
    codes = x[:, dense:].long()
    hot = [
        nn.functional.one_hot(codes[:, i], size)[:, 1:].to(x.dtype)
        for i, size in enumerate(sizes)
        if size - (MISSING + 1) <= most
    ]
    return torch.cat([x[:, :dense], *hot], dim=1)


def baseline_design(
    encoding: Encoding | None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple[str, ...]]:
    """The least-squares baseline's columns from a model's inputs (one-hot categories), and
    the categorical columns it leaves out for having more than BASELINE_MOST_CATEGORIES."""
    if encoding is None or not encoding.categorical:
        return (lambda x: x), ()
    left_out = tuple(
        c.name for c in encoding.categorical if len(c.levels) > BASELINE_MOST_CATEGORIES
    )
    sizes = [c.size for c in encoding.categorical]
    return partial(one_hot_design, dense=encoding.dense_width, sizes=sizes), left_out


def linear_coefficients(model: nn.Module, encoding: Encoding) -> dict[str, Any] | None:
    """A linear model's weights in the data's own units, or None for another model.

    `inputs`: the change in each target for one unit more of each numeric input (a
    was-missing input: for a missing value); `categories`: each category's shift against
    an unseen one; `intercept`: the prediction when every input is 0 and every category
    unseen. One number per target, or a list of them when there are several.
    """
    scaling = model if isinstance(model, Standardized) else None
    inner = scaling.model if scaling is not None else model
    if isinstance(inner, CategoricalInputs) and inner.additive:
        network, embeddings, bias = (
            inner.network,
            list(inner.embeddings),
            getattr(inner, "bias", None),
        )
    elif isinstance(inner, LinearModel):
        network, embeddings, bias = inner, [], None
    else:
        return None
    dense = encoding.dense_width
    with torch.no_grad():
        if isinstance(network, LinearModel):
            weight, bias = network.linear.weight.double(), network.linear.bias.double()
        else:  # categories alone
            assert isinstance(bias, torch.Tensor)
            weight, bias = torch.zeros(len(bias), 0, dtype=torch.float64), bias.double()
        ones = torch.ones(dense, dtype=torch.float64)
        x_mean = scaling.x_mean[:dense].double() if scaling is not None else 0 * ones
        x_std = scaling.x_std[:dense].double() if scaling is not None else ones
        y_std = scaling.y_std.double() if scaling is not None else torch.ones(len(bias))
        y_mean = scaling.y_mean.double() if scaling is not None else torch.zeros(len(bias))
        per_unit = weight * y_std[:, None] / x_std[None, :]  # (targets, dense)
        intercept = y_mean + y_std * (bias - (weight * x_mean / x_std).sum(dim=1))
        categories = {}
        for column, embedding in zip(encoding.categorical, embeddings, strict=True):
            assert isinstance(embedding, nn.Embedding)
            table = embedding.weight.double() * y_std  # (codes, targets)
            levels = {level: table[MISSING + 1 + i] for i, level in enumerate(column.levels)}
            if column.missing:
                levels["(missing)"] = table[MISSING]
            categories[column.name] = {name: _numbers(value) for name, value in levels.items()}
    names = encoding.input_names[:dense]
    return {
        "intercept": _numbers(intercept),
        "inputs": {name: _numbers(per_unit[:, i]) for i, name in enumerate(names)},
        "categories": categories,
    }


def _numbers(values: torch.Tensor) -> float | list[float]:
    listed = [float(value) for value in values.tolist()]
    return listed[0] if len(listed) == 1 else listed
