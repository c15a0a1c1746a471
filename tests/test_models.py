from __future__ import annotations

import pytest
import torch
from torch import nn

from ptflow import LinearModel, LinearRegressionModel, WorkflowError, build_model


def test_seed_42_gives_the_tutorials_starting_parameters() -> None:
    # The tutorial prints weights tensor([0.3367]) and bias tensor([0.1288]) after manual_seed(42).
    model = build_model("tutorial", seed=42)
    assert isinstance(model, LinearRegressionModel)
    assert [name for name, _ in model.named_parameters()] == ["weights", "bias"]
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    assert round(model.weights.item(), 4) == 0.3367
    assert round(model.bias.item(), 4) == 0.1288


def test_seed_is_set_immediately_before_building() -> None:
    torch.manual_seed(0)
    torch.randn(100)  # whatever ran before must not matter
    first = build_model("linear", 3, 2, seed=7)
    second = build_model("linear", 3, 2, seed=7)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_tutorial_forward_is_weights_times_x_plus_bias() -> None:
    model = LinearRegressionModel()
    x = torch.tensor([[0.0], [1.0], [2.0]])
    with torch.no_grad():
        model.weights.fill_(2.0)
        model.bias.fill_(-1.0)
    assert model(x)[:, 0].tolist() == [-1.0, 1.0, 3.0]


def test_linear_model_any_number_of_features_and_targets() -> None:
    model = build_model("linear", in_features=4, out_features=2)
    assert isinstance(model, LinearModel)
    assert model(torch.zeros(5, 4)).shape == (5, 2)
    assert model.linear.weight.shape == (2, 4)


def test_unknown_model_and_bad_shapes_are_errors() -> None:
    with pytest.raises(WorkflowError, match="unknown model 'cnn'"):
        build_model("cnn")
    with pytest.raises(WorkflowError, match="use the 'linear' model"):
        build_model("tutorial", in_features=3)
    with pytest.raises(WorkflowError, match="at least one feature"):
        build_model("linear", in_features=0)


def test_mlp_layers_activation_and_dropout() -> None:
    model = build_model("mlp", 3, 2, hidden=(8, 4), activation="tanh", dropout=0.1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    assert model(torch.zeros(5, 3)).shape == (5, 2)
    no_dropout = build_model("mlp", 3, 1, hidden=(8,))
    assert [type(layer).__name__ for layer in no_dropout.layers] == ["Linear", "ReLU", "Linear"]


def test_standardized_takes_and_returns_raw_units() -> None:
    from ptflow.models import Standardized
    from ptflow.stats import Scaling

    inner = build_model("linear", 1, 1)
    scaling = Scaling(
        torch.tensor([10.0]), torch.tensor([2.0]), torch.tensor([100.0]), torch.tensor([5.0])
    )
    model = Standardized(inner, scaling)
    x = torch.tensor([[14.0]])
    with torch.no_grad():
        expected = inner(torch.tensor([[2.0]])) * 5.0 + 100.0
        assert torch.allclose(model(x), expected)
    assert {"x_mean", "x_std", "y_mean", "y_std", "model.linear.weight"} <= set(model.state_dict())
