from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import ptflow
from ptflow import WorkflowError, compute_metrics


def test_metrics_match_their_definitions() -> None:
    generator = torch.Generator().manual_seed(1)
    y_true = torch.randn(100, 2, generator=generator)
    y_pred = y_true + 0.3 * torch.randn(100, 2, generator=generator)
    metrics = compute_metrics(y_pred, y_true)

    true, pred = y_true.double().numpy(), y_pred.double().numpy()
    error = pred - true
    r2_per_target = 1 - (error**2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    assert metrics.mae == pytest.approx(np.abs(error).mean())
    assert metrics.mse == pytest.approx((error**2).mean())
    assert metrics.rmse == pytest.approx(math.sqrt((error**2).mean()))
    assert metrics.r2 == pytest.approx(r2_per_target.mean())


def test_perfect_and_constant_predictions() -> None:
    y = torch.tensor([[1.0], [2.0], [4.0]])
    assert compute_metrics(y, y) == ptflow.Metrics(mae=0.0, mse=0.0, rmse=0.0, r2=1.0)
    mean_prediction = torch.full_like(y, y.mean().item())
    assert compute_metrics(mean_prediction, y).r2 == pytest.approx(0.0, abs=1e-12)


def test_r2_of_a_constant_target_is_undefined() -> None:
    y = torch.ones(4, 1)
    metrics = compute_metrics(y + 1, y)
    assert math.isnan(metrics.r2)
    assert metrics.to_dict() == {"mae": 1.0, "mse": 1.0, "rmse": 1.0, "r2": None}


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(WorkflowError, match="shape"):
        compute_metrics(torch.zeros(3, 1), torch.zeros(4, 1))
    with pytest.raises(WorkflowError, match="no rows"):
        compute_metrics(torch.zeros(0, 1), torch.zeros(0, 1))


def test_predict_runs_in_eval_mode_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    X = torch.randn(64, 2)
    model.train()
    first, second = ptflow.predict(model, X), ptflow.predict(model, X)
    assert torch.equal(first, second)  # dropout was off: eval mode
    assert model.training  # and the mode is back
    assert not first.requires_grad
    model.eval()
    with torch.no_grad():
        assert torch.equal(first, model(X))


def test_batched_prediction_equals_one_pass() -> None:
    model = ptflow.build_model("linear", 3, 2, seed=0)
    X = torch.randn(1001, 3)
    assert torch.allclose(ptflow.predict(model, X, batch_size=100), ptflow.predict(model, X))
    assert ptflow.predict(model, X, batch_size=100).shape == (1001, 2)


def test_evaluate_uses_the_models_predictions(tutorial_splits: ptflow.Splits) -> None:
    model = ptflow.build_model("tutorial", seed=42)
    X, y = tutorial_splits.test
    assert ptflow.evaluate(model, X, y) == compute_metrics(ptflow.predict(model, X), y)


def test_least_squares_matches_numpy(linear_problem: tuple[torch.Tensor, torch.Tensor]) -> None:
    from ptflow.evaluation import fit_least_squares

    X, y = linear_problem
    fit = fit_least_squares(X, y)
    design = np.hstack([X.double().numpy(), np.ones((len(X), 1))])
    solution = np.linalg.lstsq(design, y.double().numpy(), rcond=None)[0]
    assert np.allclose(fit.coef.numpy(), solution[:-1]) and np.allclose(
        fit.intercept.numpy(), solution[-1]
    )
    assert fit.predict(X).dtype == torch.float32


def test_metrics_by_target_names_each_column() -> None:
    from ptflow.evaluation import metrics_by_target

    y = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    per_target = metrics_by_target(y + torch.tensor([0.0, 1.0]), y, ["a", "b"])
    assert per_target["a"].mae == 0.0 and per_target["b"].mae == 1.0
