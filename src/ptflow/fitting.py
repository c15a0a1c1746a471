"""ptflow in Python: `fit` a table and get back a `Run`, the fitted object.

`fit` trains exactly as `ptflow train` does (the same table defaults, the same run folder),
from a file, a pandas DataFrame, an Arrow table or `(X, y)` arrays. The `Run` it returns,
or that `load` reads back from a folder, predicts on raw rows in any of those forms: the
encoding saved with the model (categories, medians, scaling) is applied to them as to a
file's rows.

Without `out`, the run folder is a temporary one, removed with the `Run` (or when Python
exits); `Run.save(folder)` keeps it.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptflow.config import Config, table_settings
from ptflow.errors import WorkflowError
from ptflow.history import History

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray

    from ptflow.evaluation import TableMetrics
    from ptflow.plots import ShownFigure
    from ptflow.tables import ColumnRole
    from ptflow.workflow import LoadedRun

__all__ = ["Report", "Run", "fit", "load"]

logger = logging.getLogger(__name__)


def fit(
    data: Any,
    target: str | Sequence[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = True,
    **settings: Any,
) -> Run:
    """Train a model on a table, as `ptflow train` does, and return the fitted `Run`.

    `data` is a CSV or Parquet file's path, a pandas DataFrame, an Arrow table, or a pair
    `(X, y)` of arrays (columns named x0, x1, ... and y). `target` names the column(s) to
    predict (not needed for `(X, y)`); `settings` are `Config` fields (`features`, `model`,
    `epochs`, `task`, ...), over the table defaults `ptflow train` starts from. The run
    folder goes to `out`, or else to a temporary folder that lives as long as the `Run`.
    `verbose` prints what the run does with the data (its columns, the rows left out, what
    was imputed, the epochs) on stdout; `progress` shows a progress bar.
    """
    if isinstance(data, tuple):
        data, target = _frame_of_arrays(data, target)
    if target is None:
        raise WorkflowError("fit needs target=: the name of the column to predict.")
    from ptflow.tables import column_names, table_path
    from ptflow.workflow import run_workflow

    target = column_names(target, "target")
    owner = None
    if out is None:
        owner = Path(tempfile.mkdtemp(prefix="ptflow-run-"))
        out = owner / "run"
    try:
        with _told(verbose), table_path(data) as path:
            cfg = table_settings({**settings, "data": str(path), "target": target})
            result = run_workflow(cfg, out, overwrite=overwrite, progress=progress)
    except BaseException:
        if owner is not None:
            shutil.rmtree(owner, ignore_errors=True)
        raise
    return Run(result.run_dir, owner=owner, verbose=verbose)


def load(run_dir: str | os.PathLike[str], *, verbose: bool = True) -> Run:
    """Read a finished run folder (of `fit`, `ptflow train` or `ptflow run`) as a `Run`."""
    return Run(Path(run_dir), verbose=verbose)


def _frame_of_arrays(data: tuple[Any, ...], target: Any) -> tuple[Any, tuple[str, ...]]:
    """`(X, y)` as a DataFrame: features x0, x1, ...; the target y (or y0, y1, ...)."""
    import pandas as pd

    if len(data) != 2:
        raise WorkflowError(f"data as a tuple must be (X, y); got {len(data)} items.")
    X, y = (_as_numpy(part, name) for part, name in zip(data, ("X", "y"), strict=True))
    X = X.reshape(len(X), -1) if X.ndim != 2 else X
    if len(X) != len(y):
        raise WorkflowError(f"X has {len(X)} rows and y {len(y)}; give one target per row.")
    y = y.reshape(len(y), -1) if y.ndim != 1 else y[:, None]
    names = ("y",) if y.shape[1] == 1 else tuple(f"y{i}" for i in range(y.shape[1]))
    if target is not None:
        names = _given_names(target, y.shape[1])
    columns = {f"x{i}": X[:, i] for i in range(X.shape[1])}
    columns.update({name: y[:, i] for i, name in enumerate(names)})
    return pd.DataFrame(columns, copy=False), names


def _given_names(target: Any, count: int) -> tuple[str, ...]:
    from ptflow.tables import column_names

    names = column_names(target, "target")
    if len(names) != count:
        raise WorkflowError(f"target names {len(names)} columns and y has {count}.")
    return names


def _as_numpy(values: Any, name: str) -> NDArray[Any]:
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    elif hasattr(values, "to_numpy"):  # a pandas Series or DataFrame
        values = values.to_numpy()
    array = np.asarray(values)
    if array.ndim == 0 or len(array) == 0:
        raise WorkflowError(f"{name} must be an array with a row per example; got {array!r}.")
    return array


@contextmanager
def _told(verbose: bool) -> Iterator[None]:
    """ptflow's log lines on stdout for the duration, as the command line prints them (in a
    notebook, under the cell), and only there: not also through handlers the program set up
    for its root logger. Not `verbose`: warnings only."""
    from ptflow.console import logging_to_stdout

    ours = logging.getLogger("ptflow")
    propagated = ours.propagate
    ours.propagate = False
    try:
        with logging_to_stdout(quiet=not verbose):
            yield
    finally:
        ours.propagate = propagated


class Run:
    """A trained model and what its run learned and measured, read from its run folder.

    `predict`, `predict_proba`, `evaluate` and `importance` take raw rows as `fit` does (a
    file's path, a DataFrame, an Arrow table) or an array with a column per feature, in
    `features` order.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        owner: Path | None = None,
        verbose: bool = True,
    ) -> None:
        from ptflow.run_folder import read_summary
        from ptflow.workflow import load_run

        self.run_dir = run_dir
        self.verbose = verbose
        self._loaded: LoadedRun = load_run(run_dir)
        self._summary: dict[str, Any] = read_summary(run_dir) or {}
        if owner is not None:  # a temporary folder goes with the Run, or at exit
            weakref.finalize(self, shutil.rmtree, owner, ignore_errors=True)

    # What the run is.
    @property
    def config(self) -> Config:
        return self._loaded.config

    @property
    def model(self) -> torch.nn.Module:
        """The trained model: it takes encoded, unscaled inputs (scaling is inside)."""
        return self._loaded.model

    @property
    def task(self) -> str:
        return self._loaded.task.name

    @property
    def features(self) -> tuple[str, ...]:
        return self._loaded.features

    @property
    def target(self) -> tuple[str, ...]:
        return self._loaded.target

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes a classifier predicts, in the order of `predict_proba`'s columns."""
        encoding = self._loaded.encoding
        return encoding.classes if encoding is not None else ()

    @property
    def metrics(self) -> dict[str, dict[str, float | None]]:
        """The run's metrics by part ("train", "val", "test"), as summary.json holds them."""
        metrics: dict[str, dict[str, float | None]] = self._summary.get("metrics", {})
        return metrics

    @property
    def baseline_metrics(self) -> dict[str, dict[str, float | None]]:
        """The baseline's (least squares; classes: logistic regression) on the same rows."""
        metrics: dict[str, dict[str, float | None]] = self._summary.get("baseline_metrics", {})
        return metrics

    @property
    def columns(self) -> list[ColumnRole]:
        """What the run did with each column of its table: its role and why."""
        from ptflow.tables import ColumnRole

        return [ColumnRole(**role) for role in self._summary.get("columns", [])]

    @functools.cached_property
    def history(self) -> History:
        """The epochs' losses and learning rates, as history.csv holds them (read once: a
        finished run's folder does not change)."""
        from ptflow.run_folder import read_history

        columns = read_history(self.run_dir)
        split = "val" if "val_loss" in columns else "test"
        return History(
            eval_split=split,
            epoch=[int(epoch) for epoch in columns.get("epoch", [])],
            train_loss=columns.get("train_loss", []),
            eval_loss=columns.get(f"{split}_loss", []),
            lr=columns.get("lr", []),
            best_epoch=self._summary.get("best_epoch"),
            stopped_early=bool(self._summary.get("stopped_early", False)),
        )

    # What it does with new rows.
    def predict(self, data: Any, *, missing: str = "impute") -> NDArray[Any]:
        """Predictions for every row of `data`: numbers (one column per target beyond
        the first), or for a classifier each row's class. `missing` "impute" (as in
        training), "drop" (rows with a missing value are left out, and counted) or
        "error"."""
        import numpy as np

        from ptflow.evaluation import predicted_classes, probabilities

        outputs = self._outputs(data, missing)
        if self.classes:  # two classes have one logit, more one each
            chosen = predicted_classes(probabilities(outputs.float())).numpy()
            classes: NDArray[Any] = np.asarray(self.classes, dtype=object)[chosen]
            return classes
        values: NDArray[Any] = outputs.numpy()
        return values[:, 0] if values.shape[1] == 1 else values

    def predict_proba(self, data: Any, *, missing: str = "impute") -> NDArray[np.float32]:
        """Each class's probability for every row of `data`, a column per class in
        `classes` order."""
        from ptflow.evaluation import probabilities

        if not self.classes:
            raise WorkflowError(
                "predict_proba is for classifiers, and this model predicts numbers; use predict."
            )
        shares: NDArray[np.float32] = probabilities(self._outputs(data, missing).float()).numpy()
        return shares

    def evaluate(self, data: Any, *, missing: str = "impute") -> TableMetrics:
        """The model's metrics on every row of `data` that has a target value."""
        from ptflow.evaluation import evaluate_table

        with _told(self.verbose):
            measured = evaluate_table(
                self.model, self._table(data), self.features, self.target,
                encoding=self._loaded.encoding, task=self._loaded.task,
                missing=missing,  # type: ignore[arg-type]
            )  # fmt: skip
            _say_counts(
                measured.counts, measured.dropped_rows, measured.missing_target,
                measured.unseen_class,
            )  # fmt: skip
        return measured

    def importance(self, data: Any = None) -> dict[str, float]:
        """Each input column's permutation importance, largest first: on the run's test
        rows as it measured them, or on the first 100,000 rows of `data`."""
        from ptflow.evaluation import evaluate_table

        if data is None:
            measured: dict[str, float] = self._summary.get("importance", {}).get("columns", {})
            return measured
        with _told(self.verbose):
            result = evaluate_table(
                self.model, self._table(data), self.features, self.target,
                encoding=self._loaded.encoding, task=self._loaded.task, importance=True,
            )  # fmt: skip
        return result.importance or {}

    def _table(self, data: Any) -> Any:
        """`data` as a table: a path, frame or Arrow table as it is; an array as a frame
        of the model's feature columns."""
        import pandas as pd

        if isinstance(data, str | os.PathLike | pd.DataFrame) or not hasattr(data, "__len__"):
            return data
        if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__dataframe__"):
            return data
        array = _as_numpy(data, "X")
        array = array.reshape(len(array), -1) if array.ndim != 2 else array
        if array.shape[1] != len(self.features):
            raise WorkflowError(
                f"X has {array.shape[1]} columns and this model takes {len(self.features)} "
                f"({', '.join(self.features)}); give them in that order, or a DataFrame."
            )
        return pd.DataFrame(dict(zip(self.features, array.T, strict=True)), copy=False)

    def _outputs(
        self, data: Any, missing: str, *, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """The model's outputs for every row of `data`; with `dtype`, those of a copy of the
        model in that dtype (the scikit-learn estimators compute in float64, see theirs)."""
        outputs, _ = self._predicted(data, missing=missing, dtype=dtype)
        return outputs

    def _predicted(
        self, data: Any, *, missing: str = "impute", targets: bool = False,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """The model's outputs for every row of `data` (with `targets`, those of the rows
        with a target, and the targets), saying what the encoding did to the rows."""
        import copy

        import torch

        from ptflow.encoding import EncodeCounts
        from ptflow.evaluation import predict
        from ptflow.tables import iter_table

        model = self.model if dtype is None else copy.deepcopy(self.model).to(dtype)
        counts, left_out, outputs, true = EncodeCounts(), [0, 0, 0], [], []
        options: dict[str, Any] = {}
        if targets:
            options = {"target": self.target, "classes": self.classes}
        with _told(self.verbose):
            for block in iter_table(
                self._table(data), self.features, encoding=self._loaded.encoding,
                missing=missing, **options,
            ):  # fmt: skip
                left_out[0] += block.dropped_rows
                left_out[1] += block.missing_target
                left_out[2] += block.unseen_class
                if block.counts is not None:
                    counts.add(block.counts)
                X = block.X if dtype is None else block.X.to(dtype)
                outputs.append(predict(model, X).cpu())
                if block.y is not None:
                    true.append(block.y.cpu())
            _say_counts(counts, *left_out)
        width = self._loaded.task.out_features(len(self.target), len(self.classes))
        predicted = torch.cat(outputs) if outputs else torch.empty(0, width)
        return predicted, (torch.cat(true) if true else None)

    # Pictures.
    def plot_loss_curves(self) -> ShownFigure:
        """The training and validation (or test) loss of every epoch."""
        from ptflow.plots import plot_loss_curves

        return plot_loss_curves(self.history)

    def plot_predicted_vs_actual(self, data: Any) -> ShownFigure:
        """The model's predictions on `data`'s rows against their targets (regression)."""
        from ptflow.plots import plot_predicted_vs_actual

        y_true, y_pred = self._scored(data, "plot_predicted_vs_actual")
        return plot_predicted_vs_actual(y_true, y_pred, self.target)

    def plot_residuals(self, data: Any) -> ShownFigure:
        """Predicted minus actual against the predictions on `data`'s rows (regression)."""
        from ptflow.plots import plot_residuals

        return plot_residuals(*self._scored(data, "plot_residuals"), self.target)

    def plot_confusion_matrix(self, data: Any) -> ShownFigure:
        """How often each true class of `data`'s rows was predicted as each class."""
        from ptflow.evaluation import ClassMetricSums
        from ptflow.plots import plot_confusion_matrix

        if not self.classes:
            raise WorkflowError(
                "plot_confusion_matrix is for classifiers; this model predicts numbers "
                "(plot_predicted_vs_actual shows how it does)."
            )
        sums = ClassMetricSums()  # the report's own counts, from the same outputs
        sums.add(*reversed(self._scored(data, "plot_confusion_matrix")))
        assert sums.confusion is not None  # rows were added
        return plot_confusion_matrix(sums.confusion, self.classes)

    def plot_importance(self) -> ShownFigure:
        """The run's permutation importance of each input column on its test rows."""
        from ptflow.plots import plot_importance

        importance = self.importance()
        if not importance:
            raise WorkflowError(
                "this run measured no importance (a tutorial or streamed run); "
                "run.importance(data) measures it on a table."
            )
        metric = self._summary.get("importance", {}).get("metric", "")
        return plot_importance(importance, metric)

    def _scored(self, data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, model outputs) of every row of `data` with a target, in memory."""
        if what != "plot_confusion_matrix" and self.classes:
            raise WorkflowError(f"{what} is for regression; plot_confusion_matrix shows classes.")
        outputs, true = self._predicted(data, targets=True)
        if true is None or not len(true):
            raise WorkflowError(f"{what} found no row with a target value in the data.")
        return true, outputs

    # Keeping it.
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Copy the run folder to `folder`, which must not exist yet; return its path.
        `ptflow.load(folder)` (and `ptflow predict folder`) read it back."""
        from ptflow.files import current_umask
        from ptflow.run_folder import LOCK_FILE

        destination = Path(folder)
        if not os.fspath(folder).strip():
            raise WorkflowError("save needs a folder name; an empty path is not one.")
        if destination.exists() or destination.is_symlink():
            raise WorkflowError(f"{destination} already exists; save the run to a new folder name.")
        if destination.resolve().is_relative_to(self.run_dir.resolve()):
            raise WorkflowError(
                f"{destination} is inside the run folder {self.run_dir}; save it elsewhere."
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        # A fresh folder of its own beside the destination, then one rename: whole or not at
        # all, and no folder that was already there is ever touched.
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
        try:
            shutil.copytree(
                self.run_dir, staging, ignore=shutil.ignore_patterns(LOCK_FILE), dirs_exist_ok=True
            )
            staging.chmod(0o777 & ~current_umask())  # mkdtemp's is private: a folder's mode
            staging.rename(destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return destination

    def report(self) -> Report:
        """The run's report.html, shown inline in a notebook."""
        from ptflow.run_folder import REPORT

        return Report(self.run_dir / REPORT)

    # How it shows.
    def _headline(self) -> str:
        history = self.history
        stop = f", best {history.best_epoch}" if history.best_epoch else ""
        stop += ", stopped early" if history.stopped_early else ""
        return (
            f"{self.task} of {', '.join(self.target)} on {len(self.features)} column(s), "
            f"{self.config.model}, {len(history)} epochs{stop}"
        )

    def _test_metrics(self) -> str:
        test = self.metrics.get("test", {})
        return ", ".join(f"{name} {_number(value)}" for name, value in test.items())

    def __repr__(self) -> str:
        return (
            f"Run({self._headline()}\n    test: {self._test_metrics()}\n    folder: {self.run_dir})"
        )

    def _repr_html_(self) -> str:
        from ptflow.evaluation import metrics_html

        return (
            f"<div><p><b>ptflow Run</b>: {html.escape(self._headline())}<br>"
            f"<code>{html.escape(str(self.run_dir))}</code></p>{metrics_html(self.metrics)}"
            f"{self.plot_loss_curves().to_html(width=480)}</div>"
        )


class Report:
    """A run's report.html: in a notebook, the page itself inside a frame."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Report({self.path})"

    def _repr_html_(self) -> str:
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return f'<iframe srcdoc="{page}" style="width:100%;height:720px;border:0"></iframe>'


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _say_counts(counts: Any, dropped: int, missing_target: int = 0, unseen_class: int = 0) -> None:
    """What the encoding did to the rows (imputed, unseen) and the rows left out."""
    from ptflow.tables import rows_left_out

    if counts is not None:
        for line in counts.describe():
            logger.info("%s", line)
    for left_out in rows_left_out(dropped, missing_target, unseen_class):
        logger.info("left out %s", left_out)
