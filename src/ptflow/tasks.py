"""What differs between tasks, as data: its metrics, its baseline, its outputs and its plots.

Everything that prints, stores or compares metrics (the CLI, the report, `ptflow runs`,
`--explain`) iterates over what the run's task declares here, and never names MAE or R²
itself. A run's task is regression or classification (`Config.task`, decided from the
target's values when "auto").
This module imports nothing heavy, so `ptflow runs` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ptflow.errors import WorkflowError

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "TASKS",
    "Metric",
    "Task",
    "format_metric",
    "task_named",
    "task_of",
]


@dataclass(frozen=True)
class Metric:
    """One number a task reports: its key in summary.json, its label, how it prints."""

    name: str  # the key in summary.json, --json output and `runs --sort test_<name>`
    label: str  # the column header
    format: str  # for format(); `width` more characters in a table
    width: int = 10
    lower_is_better: bool = True


@dataclass(frozen=True)
class Task:
    """A kind of problem: what its targets are, how it is scored, what it is compared with."""

    name: str
    metrics: tuple[Metric, ...]  # in the order shown
    brief: tuple[str, ...]  # the metrics shown where space is short: `ptflow runs`
    baseline: str  # the simple model every run is compared with, in words
    default_loss: str
    scales_targets: bool  # targets are standardised for training, predictions unscaled
    table_plots: tuple[str, ...]  # the plots of a table run, as file names
    classes: bool = False  # the target holds classes: the model gives logits

    def out_features(self, targets: int, classes: int = 0) -> int:
        """The model's outputs: one per target column, or for `classes` classes one logit
        each (one in all for two classes, as `BCEWithLogitsLoss` takes)."""
        if self.classes:
            return 1 if classes == 2 else classes
        return targets

    def behind_baseline(
        self,
        metrics: Mapping[str, Any],
        baseline: Mapping[str, Any],
        by: str | None = None,
        stopped_early: bool = False,
    ) -> str | None:
        """One sentence when the model does worse than the baseline on the test rows, else None.

        Judged by the metric `by` names, else the task's first; `metrics` and `baseline` map
        metric names to numbers, as summary.json holds them. Its advice: more epochs, or
        where early stopping ended the run, more patience (more epochs would change nothing).
        """
        first = self.metric(by) if by is not None else self.metrics[0]
        ours, theirs = metrics.get(first.name), baseline.get(first.name)
        if not (_is_number(ours) and _is_number(theirs)):
            return None
        worse = ours > theirs if first.lower_is_better else ours < theirs
        if not worse:
            return None
        return (
            f"The model does worse than {self.baseline} on the test rows ({first.label} "
            f"{format_metric(first, ours)} against {format_metric(first, theirs)}): "
            + (
                "early stopping ended it; train on with more --patience (0: every epoch), "
                if stopped_early
                else "train longer (--epochs), "
            )
            + "or try another model or learning rate."
        )

    def judged_by(self, summary: Mapping[str, Any]) -> str | None:
        """The metric a run is compared with its baseline by, if not the first: balanced
        accuracy for a classifier weighted to balance its classes, whose plain accuracy the
        weights lower by design (the unweighted baseline favours the large classes)."""
        return "balanced_accuracy" if summary.get("class_weight") == "balanced" else None

    def metric(self, name: str) -> Metric:
        """The metric called `name`."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise WorkflowError(f"the {self.name} task has no metric {name!r}.")


REGRESSION = Task(
    name="regression",
    metrics=(
        Metric("mae", "MAE", ".4g"),
        Metric("mse", "MSE", ".4g"),
        Metric("rmse", "RMSE", ".4g"),
        Metric("r2", "R²", ".4f", width=8, lower_is_better=False),
    ),
    brief=("mae", "r2"),
    baseline="least squares",
    default_loss="mse",  # for a table; the tutorial's own line keeps the chapter's L1
    scales_targets=True,
    table_plots=(
        "data.png",
        "predicted_vs_actual_before.png",
        "predicted_vs_actual.png",
        "residuals.png",
    ),
)

# Classes, scored on their predicted class and its probabilities.
CLASSIFICATION = Task(
    name="classification",
    metrics=(
        Metric("accuracy", "accuracy", ".4f", lower_is_better=False),
        Metric("balanced_accuracy", "balanced acc.", ".4f", width=13, lower_is_better=False),
        Metric("log_loss", "log loss", ".4g"),
        Metric("f1_macro", "macro F1", ".4f", lower_is_better=False),
        Metric("roc_auc", "ROC AUC", ".4f", width=8, lower_is_better=False),
    ),
    brief=("accuracy", "log_loss"),
    baseline="logistic regression",
    default_loss="cross_entropy",
    scales_targets=False,  # class numbers are labels, not quantities
    table_plots=(
        "data.png",
        "decision_regions.png",  # one or two numeric features
        "confusion_matrix.png",
        "roc_curve.png",
        "calibration.png",
    ),
    classes=True,
)

TASKS: dict[str, Task] = {task.name: task for task in (REGRESSION, CLASSIFICATION)}


def task_named(name: str) -> Task:
    """The task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise WorkflowError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}.") from None


def task_of(summary: Mapping[str, Any] | None) -> Task:
    """The task a run's summary.json records (runs from before tasks were regression)."""
    name = (summary or {}).get("task", REGRESSION.name)
    return task_named(name) if isinstance(name, str) else REGRESSION


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def format_metric(metric: Metric, value: Any, width: int | None = None) -> str:
    """A metric's value as text: `metric.format`, or "undefined" (R² of a constant target)."""
    if not _is_number(value):
        text = "undefined"
        return f"{text:>{width}}" if width else text
    return format(value, f"{width or ''}{metric.format}")
