"""Tasks as data: the regression task's metrics, and what prints and lists them."""

from __future__ import annotations

import math

import pytest

import ptflow
from ptflow.errors import WorkflowError
from ptflow.runs import COLUMNS
from ptflow.tasks import REGRESSION, TASKS, format_metric, task_named, task_of


def test_regression_declares_its_metrics_baseline_and_outputs() -> None:
    assert [m.name for m in REGRESSION.metrics] == ["mae", "mse", "rmse", "r2"]
    assert REGRESSION.metric("r2").lower_is_better is False
    assert REGRESSION.out_features(3) == 3 and REGRESSION.scales_targets
    assert REGRESSION.default_loss == "mse" and REGRESSION.baseline == "least squares"
    assert ptflow.Config.for_table("t.csv", "y").loss == REGRESSION.default_loss  # train's
    with pytest.raises(WorkflowError, match="no metric 'accuracy'"):
        REGRESSION.metric("accuracy")


def test_a_summary_names_its_task_and_old_ones_are_regression() -> None:
    assert task_of({"task": "regression"}) is REGRESSION
    assert task_of({}) is REGRESSION and task_of(None) is REGRESSION
    with pytest.raises(WorkflowError, match="unknown task 'ranking'; choose one of regression"):
        task_named("ranking")


def test_metrics_print_as_declared_and_undefined_says_so() -> None:
    r2, mae = REGRESSION.metric("r2"), REGRESSION.metric("mae")
    assert format_metric(mae, 0.012345678) == "0.01235"
    assert format_metric(r2, 0.5, width=8) == "  0.5000"
    assert format_metric(r2, math.nan) == "undefined" and format_metric(r2, None) == "undefined"


def test_runs_lists_the_brief_metrics_of_every_task() -> None:
    for task in TASKS.values():
        assert {f"test_{name}" for name in task.brief} <= set(COLUMNS)


def test_a_model_behind_the_baseline_is_said_in_one_sentence() -> None:
    from ptflow.tasks import REGRESSION

    behind = REGRESSION.behind_baseline({"mae": 0.5}, {"mae": 0.25})
    assert behind == (
        "The model does worse than least squares on the test rows (MAE 0.5 against 0.25): "
        "train longer (--epochs), or try another model or learning rate."
    )
    assert REGRESSION.behind_baseline({"mae": 0.2}, {"mae": 0.25}) is None
    assert REGRESSION.behind_baseline({"mae": None}, {"mae": 0.25}) is None  # undefined
