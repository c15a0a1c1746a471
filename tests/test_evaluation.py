from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

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
    from ptflow.stats import fit_least_squares

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


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_evaluate_table_block_by_block_equals_the_table_in_memory(
    tmp_path: Path, kind: str
) -> None:
    import pandas as pd

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(
        y1=X @ [1.0, -2.0, 0.5] + rng.normal(size=1000), y2=X[:, 0] ** 2
    )
    path = tmp_path / f"t.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    model = ptflow.build_model("mlp", 3, 2, seed=0, hidden=(8,))
    whole = ptflow.load_table(path, ["y1", "y2"])
    y_pred = ptflow.predict(model, whole.X)

    measured = ptflow.evaluate_table(model, path, ["a", "b", "c"], ["y1", "y2"], block_rows=77)
    assert (measured.rows, measured.dropped_rows) == (1000, 0)
    expected = ptflow.evaluation.metrics_by_target(y_pred, whole.y, ["y1", "y2"])
    for name in ("y1", "y2"):
        for got, want in zip(
            asdict(measured.by_target[name]).values(), asdict(expected[name]).values(), strict=True
        ):
            assert got == pytest.approx(want, rel=1e-9)
    overall = compute_metrics(y_pred, whole.y)
    assert measured.overall.mse == pytest.approx(overall.mse, rel=1e-9)
    assert measured.overall.r2 == pytest.approx(overall.r2, rel=1e-9)


def test_evaluate_table_drops_rows_with_gaps_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,y\n1,2\n2,\n3,7\n,1\n5,11\n")
    model = ptflow.build_model("linear", 1, 1, seed=0)
    # a model without an encoding cannot impute: the gap in a is an error; a row without a
    # target is left out, whatever the setting
    with pytest.raises(
        WorkflowError, match=r"column 'a' at row 4 \(line 5\); pass --missing drop .*cannot"
    ):
        ptflow.evaluate_table(model, path, ["a"], ["y"], block_rows=2)
    measured = ptflow.evaluate_table(model, path, ["a"], ["y"], block_rows=2, drop_missing=True)
    assert (measured.rows, measured.dropped_rows, measured.missing_target) == (3, 2, 1)
    clean = torch.tensor([[1.0], [3.0], [5.0]])
    expected = compute_metrics(ptflow.predict(model, clean), torch.tensor([[2.0], [7.0], [11.0]]))
    assert measured.overall.mae == pytest.approx(expected.mae, rel=1e-9)
    path.write_text("a,y\n1,\n,2\n")
    with pytest.raises(WorkflowError, match=r"every row of gaps\.csv has a missing value"):
        ptflow.evaluate_table(model, path, ["a"], ["y"], drop_missing=True)


def test_evaluate_table_says_r2_is_undefined_for_a_constant_target(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    path.write_text("a,y\n1,3\n2,3\n3,3\n")
    measured = ptflow.evaluate_table(ptflow.build_model("linear", 1, 1, seed=0), path, ["a"], ["y"])
    assert math.isnan(measured.overall.r2) and measured.overall.mae > 0


def test_one_metric_loop_scores_every_predictor_on_every_part_block_by_block() -> None:
    """evaluate_blocks: blocks of any size give the metrics of all rows at once, per target
    too; a merge of two halves (as two processes would) gives the same; keep sees rows."""
    from ptflow.evaluation import MetricSums, compute_metrics, evaluate_blocks

    generator = torch.Generator().manual_seed(3)
    X, y = torch.randn(90, 2, generator=generator), torch.randn(90, 2, generator=generator)
    predictors = {"double": lambda X: 2 * X, "zero": torch.zeros_like}
    blocks = [("train", X[i : i + 7], y[i : i + 7]) for i in range(0, 56, 7)]
    blocks.append(("train", X[56:60], y[56:60]))
    blocks += [("test", X[60:], y[60:]), ("val", X[:0], y[:0])]
    kept: list[tuple[str, str, int]] = []
    sums = evaluate_blocks(
        blocks, ["train", "val", "test"], predictors,
        keep=lambda name, part, y_pred, _: kept.append((name, part, len(y_pred))),
    )  # fmt: skip
    whole = compute_metrics(2 * X[:60], y[:60])
    double, zero, empty = sums["double"]["train"], sums["zero"]["test"], sums["zero"]["val"]
    assert isinstance(double, MetricSums) and isinstance(zero, MetricSums)  # regression's
    got = double.metrics()
    assert got.mae == pytest.approx(whole.mae) and got.r2 == pytest.approx(whole.r2)
    column = compute_metrics(torch.zeros(30, 1), y[60:, 1:])
    one = zero.target_metrics(1)
    assert (one.mae, one.mse, one.r2) == pytest.approx((column.mae, column.mse, column.r2))
    assert isinstance(empty, MetricSums) and empty.values == 0  # a part without rows: empty
    assert ("zero", "test", 30) in kept and len(kept) == 2 * 10  # empty blocks are skipped

    halves = [MetricSums(), MetricSums()]
    halves[0].add(2 * X[:40], y[:40])
    halves[1].add(2 * X[40:60], y[40:60])
    merged = MetricSums.unpack(halves[0].pack())
    merged.merge(MetricSums.unpack(halves[1].pack()))  # what World.merge_metric_sums does
    assert merged.metrics().mae == pytest.approx(whole.mae)
    assert merged.target_metrics(0).mae == pytest.approx(got_first_target(X, y))


def got_first_target(X: torch.Tensor, y: torch.Tensor) -> float:
    return float((2 * X[:60, 0] - y[:60, 0]).abs().mean())


def test_predicting_something_other_than_a_tensor_says_what_it_needs() -> None:
    from ptflow.evaluation import predict, predict_proba

    model = torch.nn.Linear(2, 1)
    for function in (predict, predict_proba):
        with pytest.raises(WorkflowError, match=r"X must be a torch\.Tensor .* got ndarray"):
            function(model, np.zeros((3, 2), dtype=np.float32))  # type: ignore[arg-type]
