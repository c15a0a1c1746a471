from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import ptflow

PUBLIC = {
    "__version__",
    "Config",
    "WorkflowError",
    "Split",
    "Splits",
    "make_linear_data",
    "split",
    "Table",
    "load_table",
    "iter_table",
    "TableBlock",
    "LinearModel",
    "LinearRegressionModel",
    "build_model",
    "History",
    "make_loss_fn",
    "make_optimizer",
    "train",
    "Metrics",
    "compute_metrics",
    "evaluate",
    "predict",
    "predict_proba",
    "plot_loss_curves",
    "plot_predictions",
    "load_weights",
    "save_weights",
    "LoadedRun",
    "RunResult",
    "load_run",
    "run_workflow",
    "resume_workflow",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingState",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "convert_table",
    "scan_table",
    "StreamedTable",
    "MetricSums",
    "evaluate_table",
    "TableMetrics",
    "fit",
    "load",
    "Run",
    "Regressor",
    "Classifier",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(ptflow.__all__) == PUBLIC
    assert len(ptflow.__all__) == len(PUBLIC)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in ptflow.__all__:
        value = getattr(ptflow, name)
        if name != "__version__":
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_functions_are_not_shadowed_by_modules() -> None:
    for module in [
        "data",
        "models",
        "training",
        "evaluation",
        "plots",
        "checkpoint",
        "workflow",
        "streaming",
    ]:
        importlib.import_module(f"ptflow.{module}")
    for name in ["train", "evaluate", "predict", "split"]:
        assert inspect.isfunction(getattr(ptflow, name)), name


def test_importing_ptflow_does_not_import_torch() -> None:
    code = (
        "import sys, ptflow, ptflow.cli; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.split() == ["False", "False"]
