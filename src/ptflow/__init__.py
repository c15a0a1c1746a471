"""ptflow: the PyTorch workflow as a small, fast, trustworthy library and command-line tool.

    data -> visualize -> model -> train -> evaluate -> save/load -> predict

Public names are imported on first use (PEP 562), so that `ptflow --help` starts
without importing torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Config": "ptflow.config",
    "WorkflowError": "ptflow.errors",
    "TrainingDiverged": "ptflow.errors",
    "TrainingInterrupted": "ptflow.errors",
    "Split": "ptflow.data",
    "Splits": "ptflow.data",
    "make_linear_data": "ptflow.data",
    "split": "ptflow.data",
    "Table": "ptflow.tables",
    "load_table": "ptflow.tables",
    "iter_table": "ptflow.tables",
    "TableBlock": "ptflow.tables",
    "convert_table": "ptflow.tables",
    "StreamedTable": "ptflow.streaming",
    "scan_table": "ptflow.streaming",
    "LinearModel": "ptflow.models",
    "LinearRegressionModel": "ptflow.models",
    "build_model": "ptflow.models",
    "History": "ptflow.training",
    "make_loss_fn": "ptflow.training",
    "make_optimizer": "ptflow.training",
    "train": "ptflow.training",
    "TrainingState": "ptflow.training",
    "Metrics": "ptflow.evaluation",
    "MetricSums": "ptflow.evaluation",
    "compute_metrics": "ptflow.evaluation",
    "evaluate": "ptflow.evaluation",
    "evaluate_table": "ptflow.evaluation",
    "TableMetrics": "ptflow.evaluation",
    "predict": "ptflow.evaluation",
    "predict_proba": "ptflow.evaluation",
    "plot_loss_curves": "ptflow.plots",
    "plot_predictions": "ptflow.plots",
    "load_weights": "ptflow.checkpoint",
    "save_weights": "ptflow.checkpoint",
    "Checkpoint": "ptflow.checkpoint",
    "save_checkpoint": "ptflow.checkpoint",
    "load_checkpoint": "ptflow.checkpoint",
    "latest_checkpoint": "ptflow.checkpoint",
    "LoadedRun": "ptflow.workflow",
    "RunResult": "ptflow.workflow",
    "load_run": "ptflow.workflow",
    "run_workflow": "ptflow.workflow",
    "resume_workflow": "ptflow.workflow",
    "Run": "ptflow.fitting",
    "Regressor": "ptflow.estimators",
    "Classifier": "ptflow.estimators",
    "fit": "ptflow.fitting",
    "load": "ptflow.fitting",
}

__all__ = [
    "Checkpoint",
    "Classifier",
    "Config",
    "History",
    "LinearModel",
    "LinearRegressionModel",
    "LoadedRun",
    "MetricSums",
    "Metrics",
    "Regressor",
    "Run",
    "RunResult",
    "Split",
    "Splits",
    "StreamedTable",
    "Table",
    "TableBlock",
    "TableMetrics",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingState",
    "WorkflowError",
    "__version__",
    "build_model",
    "compute_metrics",
    "convert_table",
    "evaluate",
    "evaluate_table",
    "fit",
    "iter_table",
    "latest_checkpoint",
    "load",
    "load_checkpoint",
    "load_run",
    "load_table",
    "load_weights",
    "make_linear_data",
    "make_loss_fn",
    "make_optimizer",
    "plot_loss_curves",
    "plot_predictions",
    "predict",
    "predict_proba",
    "resume_workflow",
    "run_workflow",
    "save_checkpoint",
    "save_weights",
    "scan_table",
    "split",
    "train",
]

if TYPE_CHECKING:
    from ptflow.checkpoint import (
        Checkpoint,
        latest_checkpoint,
        load_checkpoint,
        load_weights,
        save_checkpoint,
        save_weights,
    )
    from ptflow.config import Config
    from ptflow.data import Split, Splits, make_linear_data, split
    from ptflow.errors import TrainingDiverged, TrainingInterrupted, WorkflowError
    from ptflow.estimators import Classifier, Regressor
    from ptflow.evaluation import (
        Metrics,
        MetricSums,
        TableMetrics,
        compute_metrics,
        evaluate,
        evaluate_table,
        predict,
        predict_proba,
    )
    from ptflow.fitting import Run, fit, load
    from ptflow.models import LinearModel, LinearRegressionModel, build_model
    from ptflow.plots import plot_loss_curves, plot_predictions
    from ptflow.streaming import StreamedTable, scan_table
    from ptflow.tables import Table, TableBlock, convert_table, iter_table, load_table
    from ptflow.training import History, TrainingState, make_loss_fn, make_optimizer, train
    from ptflow.workflow import LoadedRun, RunResult, load_run, resume_workflow, run_workflow


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ptflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
