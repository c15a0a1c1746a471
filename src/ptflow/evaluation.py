"""Step 5, inference and evaluation: predictions, and how far they are from the truth."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import nn

from ptflow.config import MissingName
from ptflow.devices import device_of
from ptflow.encoding import EncodeCounts, Encoding
from ptflow.errors import WorkflowError
from ptflow.files import to_json_safe
from ptflow.stats import Moments, class_cross_entropy
from ptflow.tables import READ_BLOCK_ROWS, TableData, iter_table
from ptflow.tasks import CLASSIFICATION, REGRESSION, Task

__all__ = [
    "AUC_BINS",
    "RUNNING_SUMS",
    "AnyMetrics",
    "ClassMetricSums",
    "ClassMetrics",
    "LossFn",
    "MetricSums",
    "Metrics",
    "Predictor",
    "RunningSums",
    "Scores",
    "TableMetrics",
    "compute_metrics",
    "evaluate",
    "evaluate_blocks",
    "evaluate_table",
    "feature_inputs",
    "majority_class",
    "mean_loss",
    "metrics_by_target",
    "permutation_importance",
    "predict",
    "predict_proba",
    "predicted_classes",
    "probabilities",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (y_pred, y) -> mean loss


# Rows a model sees at once when predicting or measuring a loss: memory follows this, not X.
PREDICT_ROWS = 65_536


def predict(model: nn.Module, X: torch.Tensor, *, batch_size: int = PREDICT_ROWS) -> torch.Tensor:
    """Return model(X) computed in eval mode under `torch.inference_mode()`, in batches.

    The model's train/eval mode is restored afterwards. Large inputs are predicted in
    batches into one preallocated tensor, which keeps peak memory at the output's size.
    """
    if not isinstance(X, torch.Tensor):
        raise WorkflowError(
            f"X must be a torch.Tensor of (rows, features), got {type(X).__name__}; convert "
            f"it with torch.as_tensor(X, dtype=torch.float32), or predict a table's file "
            f"with ptflow.load_run(folder).predict(path)."
        )
    device = device_of(model)
    was_training = model.training
    model.eval()  # turn off training-only behaviour such as dropout
    try:
        with torch.inference_mode():  # no autograd bookkeeping: faster and leaner
            first: torch.Tensor = model(X[:batch_size].to(device))
            if len(X) <= batch_size:
                return first
            y_pred = first.new_empty((len(X), *first.shape[1:]))
            y_pred[:batch_size] = first
            for start in range(batch_size, len(X), batch_size):
                stop = start + batch_size
                y_pred[start:stop] = model(X[start:stop].to(device))
            return y_pred
    finally:
        model.train(was_training)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (rows, classes) from a classifier's logits: the sigmoid of one
    logit for two classes (the second class's), the softmax of one logit per class else."""
    if logits.shape[1] == 1:
        second = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - second, second], dim=1)
    return torch.softmax(logits, dim=1)


def predicted_classes(shares: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """The class number of each row of probabilities (rows, classes): the most probable
    class, or with a `threshold` (two classes only) the second class wherever its
    probability is at least `threshold`, the first elsewhere."""
    if threshold is None:
        return shares.argmax(dim=1)
    if shares.shape[1] != 2:
        raise WorkflowError(
            f"a threshold decides between two classes, and this model has {shares.shape[1]}; "
            f"predict without --threshold (each row gets its most probable class)."
        )
    if not 0 < threshold < 1:
        raise WorkflowError(f"threshold must be between 0 and 1, got {threshold:g}; give e.g. 0.3.")
    return (shares[:, 1] >= threshold).long()


def predict_proba(
    model: nn.Module, X: torch.Tensor, *, batch_size: int = PREDICT_ROWS
) -> torch.Tensor:
    """Return a classifier's class probabilities for X (rows, classes), each row summing
    to 1; `predict` gives its logits."""
    return probabilities(predict(model, X, batch_size=batch_size).float())


def metrics_html(metrics: Mapping[str, Mapping[str, float | None]]) -> str:
    """Metrics by part ("train", "test", ...; "" for one set) as a small HTML table."""
    import html

    names = next(iter(metrics.values()), {})
    header = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    rows = "".join(
        f"<tr><th>{html.escape(part)}</th>"
        + "".join("<td>n/a</td>" if v is None else f"<td>{v:.4g}</td>" for v in values.values())
        + "</tr>"
        for part, values in metrics.items()
    )
    return f"<table><tr><th></th>{header}</tr>{rows}</table>"


@dataclass(frozen=True)
class Metrics:
    """Regression metrics over all targets; R² is averaged over targets (NaN if undefined)."""

    mae: float
    mse: float
    rmse: float
    r2: float

    def to_dict(self) -> dict[str, float | None]:
        """Return the metrics for JSON, with an undefined value as None."""
        values: dict[str, float | None] = to_json_safe(asdict(self))
        return values

    def _repr_html_(self) -> str:
        return metrics_html({"": self.to_dict()})


def compute_metrics(y_pred: torch.Tensor, y_true: torch.Tensor) -> Metrics:
    """Compute MAE, MSE, RMSE and R² of predictions against targets, in float64."""
    sums = MetricSums()
    sums.add(y_pred, y_true)
    return sums.metrics()


@dataclass
class MetricSums:
    """Running sums behind Metrics, added to block by block: metrics of any number of rows.

    Kept on the CPU in float64: exact sums, and MPS has no float64.
    """

    values: int = 0  # target values seen: rows times targets
    abs_error: float = 0.0
    squared_error: torch.Tensor | None = None  # per target, for R²
    truth: Moments = field(default_factory=Moments)  # per target: R²'s total sum of squares
    abs_by_target: torch.Tensor | None = None  # per target, for each target's own MAE

    def add(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        """Add a block of predictions and the targets they should have matched."""
        if y_pred.shape != y_true.shape:
            raise WorkflowError(
                f"predictions have shape {tuple(y_pred.shape)} but targets "
                f"{tuple(y_true.shape)}; give one prediction per target value."
            )
        if y_true.numel() == 0:
            return
        y_pred = y_pred.detach().to("cpu", torch.float64).reshape(len(y_true), -1)
        y_true = y_true.detach().to("cpu", torch.float64).reshape_as(y_pred)  # (rows, targets)
        error = y_pred - y_true
        squared = error.square().sum(dim=0)
        self.squared_error = squared if self.squared_error is None else self.squared_error + squared
        absolute = error.abs()
        self.abs_error += absolute.sum().item()
        by_target = absolute.sum(dim=0)
        self.abs_by_target = (
            by_target if self.abs_by_target is None else self.abs_by_target + by_target
        )
        self.values += error.numel()
        self.truth.add(y_true)

    def merge(self, other: MetricSums) -> None:
        """Add the sums of other rows (another block's, or another process's)."""
        if other.squared_error is None or other.truth.mean is None or other.truth.m2 is None:
            return
        self.values += other.values
        self.abs_error += other.abs_error
        self.squared_error = (
            other.squared_error
            if self.squared_error is None
            else self.squared_error + other.squared_error
        )
        self.abs_by_target = (
            other.abs_by_target
            if self.abs_by_target is None or other.abs_by_target is None
            else self.abs_by_target + other.abs_by_target
        )
        self.truth.merge(other.truth)

    def pack(self) -> torch.Tensor:
        """The sums as one float64 tensor, to send between processes (see `unpack`)."""
        if self.squared_error is None or self.truth.mean is None or self.truth.m2 is None:
            return torch.zeros(3, dtype=torch.float64)
        head = torch.tensor([self.values, self.abs_error, self.truth.count], dtype=torch.float64)
        assert self.abs_by_target is not None  # added with squared_error
        columns = [self.squared_error, self.truth.mean, self.truth.m2, self.abs_by_target]
        return torch.cat([head, *columns])

    @staticmethod
    def unpack(packed: torch.Tensor) -> MetricSums:
        """The sums `pack` packed."""
        values, abs_error, count = (packed[i].item() for i in range(3))
        sums = MetricSums(int(values), abs_error)
        if len(packed) > 3:
            squared_error, mean, m2, abs_by_target = packed[3:].reshape(4, -1)
            sums.squared_error = squared_error.clone()
            sums.truth = Moments(int(count), mean.clone(), m2.clone())
            sums.abs_by_target = abs_by_target.clone()
        return sums

    def target_metrics(self, target: int) -> Metrics:
        """Return the metrics of one target column (by position) over every block so far."""
        if self.truth.m2 is None or self.squared_error is None or self.abs_by_target is None:
            raise WorkflowError("there are no rows to evaluate; give at least one row.")
        rows = self.truth.count
        squared, ss_tot = self.squared_error[target].item(), self.truth.m2[target].item()
        mse = squared / rows
        return Metrics(
            mae=self.abs_by_target[target].item() / rows,
            mse=mse,
            rmse=math.sqrt(mse),
            r2=1 - squared / ss_tot if ss_tot > 0 else math.nan,
        )

    def metrics(self) -> Metrics:
        """Return the metrics of every block added so far."""
        if self.values == 0 or self.squared_error is None or self.truth.m2 is None:
            raise WorkflowError("there are no rows to evaluate; give at least one row.")
        mse = self.squared_error.sum().item() / self.values
        ss_tot = self.truth.m2
        # R² is undefined for a constant target (ss_tot == 0); NaN says so honestly.
        r2 = (
            (1 - self.squared_error / ss_tot).mean().item()
            if bool((ss_tot > 0).all())
            else math.nan
        )
        return Metrics(mae=self.abs_error / self.values, mse=mse, rmse=math.sqrt(mse), r2=r2)


@dataclass(frozen=True)
class ClassMetrics:
    """Classification metrics over rows: of the predicted classes and of the probabilities.

    Balanced accuracy is the mean recall of the classes that have rows; macro F1 the mean
    F1 of the classes that have rows or predictions (scikit-learn's choices); ROC AUC is
    one class against the rest, averaged over classes (one AUC for two classes), NaN where
    a class has no rows or every row is of it.
    """

    accuracy: float
    balanced_accuracy: float
    log_loss: float  # mean cross-entropy of the true class, in nats
    f1_macro: float
    roc_auc: float

    def to_dict(self) -> dict[str, float | None]:
        """Return the metrics for JSON, with an undefined value as None."""
        values: dict[str, float | None] = to_json_safe(asdict(self))
        return values

    def _repr_html_(self) -> str:
        return metrics_html({"": self.to_dict()})


# Scores (probabilities in [0, 1]) fall into this many equal bins for ROC AUC over blocks:
# pairs of rows in the same bin count as ties, so the AUC is exact to about 1 / AUC_BINS
# (measured against scikit-learn: within 1e-5 on random scores, see the tests).
AUC_BINS = 1 << 16


@dataclass
class ClassMetricSums:
    """Running sums behind ClassMetrics, block by block: a confusion matrix, the summed
    log loss, and for each class a histogram of its probability over its own rows and
    over the others' (for ROC AUC). Mergeable across processes, like `MetricSums`.

    `add` takes logits: one column for two classes (the second class's logit, as
    `BCEWithLogitsLoss` trains it), one per class otherwise; and class numbers 0..k-1.
    """

    confusion: torch.Tensor | None = None  # (classes, classes) counts: true class x predicted
    log_loss: float = 0.0  # summed over rows
    positive: torch.Tensor | None = None  # (classes, AUC_BINS): class k's rows by p_k
    negative: torch.Tensor | None = None  # (classes, AUC_BINS): the other rows by p_k

    def add(self, logits: torch.Tensor, y_true: torch.Tensor) -> None:
        """Add a block of logits (rows, 1 or classes) and true class numbers (rows[, 1])."""
        rows = len(y_true)
        if rows == 0:
            return
        logits = logits.detach().to("cpu", torch.float64).reshape(rows, -1)
        classes = max(logits.shape[1], 2)
        y = y_true.detach().to("cpu").reshape(rows).long()
        if int(y.min()) < 0 or int(y.max()) >= classes:
            raise WorkflowError(
                f"class numbers must be 0 to {classes - 1} for {logits.shape[1]} model "
                f"output(s), got {int(y.min())} to {int(y.max())}; give the classes as trained."
            )
        loss = class_cross_entropy(logits, y, reduction="sum")
        shares = probabilities(logits)
        self._grow(classes)
        assert self.confusion is not None and self.positive is not None
        assert self.negative is not None
        predicted = shares.argmax(dim=1)
        self.confusion += torch.bincount(
            y * classes + predicted, minlength=classes * classes
        ).reshape(classes, classes)
        self.log_loss += loss.item()
        bins = (shares * AUC_BINS).long().clamp_(0, AUC_BINS - 1)  # (rows, classes)
        own = nn.functional.one_hot(y, classes).bool()
        offsets = torch.arange(classes) * AUC_BINS
        flat = (bins + offsets).flatten()
        counts = classes * AUC_BINS
        self.positive += torch.bincount(flat[own.flatten()], minlength=counts).reshape(
            classes, AUC_BINS
        )
        self.negative += torch.bincount(flat[~own.flatten()], minlength=counts).reshape(
            classes, AUC_BINS
        )

    def _grow(self, classes: int) -> None:
        if self.confusion is None:
            self.confusion = torch.zeros(classes, classes, dtype=torch.float64)
            self.positive = torch.zeros(classes, AUC_BINS, dtype=torch.float64)
            self.negative = torch.zeros(classes, AUC_BINS, dtype=torch.float64)
        elif len(self.confusion) != classes:
            raise WorkflowError(
                f"blocks with {len(self.confusion)} and {classes} classes cannot be scored "
                f"together; give every block the model's outputs."
            )

    def merge(self, other: ClassMetricSums) -> None:
        """Add the sums of other rows (another block's, or another process's)."""
        if other.confusion is None or other.positive is None or other.negative is None:
            return
        self._grow(len(other.confusion))
        assert self.confusion is not None and self.positive is not None
        assert self.negative is not None
        self.confusion += other.confusion
        self.positive += other.positive
        self.negative += other.negative
        self.log_loss += other.log_loss

    def pack(self) -> torch.Tensor:
        """The sums as one float64 tensor, to send between processes (see `unpack`)."""
        if self.confusion is None or self.positive is None or self.negative is None:
            return torch.zeros(2, dtype=torch.float64)
        head = torch.tensor([len(self.confusion), self.log_loss], dtype=torch.float64)
        return torch.cat([head, self.confusion.flatten(), self.positive.flatten(),
                          self.negative.flatten()])  # fmt: skip

    @staticmethod
    def unpack(packed: torch.Tensor) -> ClassMetricSums:
        """The sums `pack` packed."""
        classes, log_loss = int(packed[0].item()), packed[1].item()
        sums = ClassMetricSums(log_loss=log_loss)
        if classes:
            confusion, rest = packed[2 : 2 + classes**2], packed[2 + classes**2 :]
            sums.confusion = confusion.reshape(classes, classes).clone()
            positive, negative = rest.reshape(2, classes, AUC_BINS)
            sums.positive, sums.negative = positive.clone(), negative.clone()
        return sums

    def metrics(self) -> ClassMetrics:
        """Return the metrics of every block added so far."""
        if self.confusion is None or self.positive is None or self.negative is None:
            raise WorkflowError("there are no rows to evaluate; give at least one row.")
        confusion = self.confusion
        rows = confusion.sum().item()
        hits = confusion.diagonal()
        support, predicted = confusion.sum(dim=1), confusion.sum(dim=0)
        present = support > 0
        recall = hits[present] / support[present]
        seen = present | (predicted > 0)
        f1 = 2 * hits[seen] / (support[seen] + predicted[seen])
        aucs = [self.auc(k) for k in range(len(confusion))]
        return ClassMetrics(
            accuracy=hits.sum().item() / rows,
            balanced_accuracy=recall.mean().item(),
            log_loss=self.log_loss / rows,
            f1_macro=f1.mean().item(),
            roc_auc=aucs[1] if len(aucs) == 2 else sum(aucs) / len(aucs),
        )

    def per_class(self) -> list[dict[str, float | int]]:
        """Precision, recall and support of each class, in class order (NaN: undefined)."""
        assert self.confusion is not None, "no rows were added"
        hits = self.confusion.diagonal()
        support, predicted = self.confusion.sum(dim=1), self.confusion.sum(dim=0)
        return [
            {
                "precision": hits[k].item() / predicted[k].item() if predicted[k] else math.nan,
                "recall": hits[k].item() / support[k].item() if support[k] else math.nan,
                "support": int(support[k].item()),
            }
            for k in range(len(self.confusion))
        ]

    def auc(self, k: int) -> float:
        """Class `k`'s ROC AUC against the rest (NaN without rows of both)."""
        assert self.positive is not None and self.negative is not None, "no rows were added"
        return _auc(self.positive[k], self.negative[k])

    def roc_curve(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class `k` against the rest: the false and true positive rates of every threshold
        on its probability (one per histogram bin, from 1 down to 0), from (0, 0) to (1, 1)."""
        assert self.positive is not None and self.negative is not None, "no rows were added"
        rates = []
        for counts in (self.negative[k], self.positive[k]):
            above = torch.cumsum(counts.flip(0), dim=0)  # rows at or above each bin, top first
            total = above[-1].item()
            rates.append(torch.cat([torch.zeros(1, dtype=above.dtype), above / (total or 1)]))
        false, true = rates
        moves = torch.ones(len(false), dtype=torch.bool)  # the corners only: bins that count
        moves[1:] = (false.diff() != 0) | (true.diff() != 0)
        return false[moves], true[moves]

    def reliability(self, bins: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """How well the probabilities are calibrated, in `bins` equal bins of probability:
        each bin's mean probability, the share of its rows that were of the class, and its
        count. For two classes, of the second class's probability; for more, of every
        class's probability of every row, pooled (one-vs-rest). Empty bins give NaN."""
        assert self.positive is not None and self.negative is not None, "no rows were added"
        pick = slice(1, 2) if len(self.positive) == 2 else slice(None)
        hits, misses = (counts[pick].sum(dim=0) for counts in (self.positive, self.negative))
        centres = (torch.arange(AUC_BINS, dtype=torch.float64) + 0.5) / AUC_BINS
        group = torch.div(torch.arange(AUC_BINS) * bins, AUC_BINS, rounding_mode="floor")

        def by_bin(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(bins, dtype=torch.float64).index_add_(0, group, values)

        count, of_class = by_bin(hits + misses), by_bin(hits)
        mass = by_bin((hits + misses) * centres)
        empty = count == 0
        return (
            (mass / count).masked_fill(empty, math.nan),
            (of_class / count).masked_fill(empty, math.nan),
            count,
        )


def majority_class(class_rows: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The classification baseline: every row gets the training rows' class shares (from
    each class's training rows) as its probabilities (as logits, one for two classes), so
    it predicts the majority class."""
    classes = len(class_rows)
    counts = class_rows.double()
    shares = (counts / counts.sum()).clamp(min=1e-12)
    logits = torch.log(shares)
    if classes == 2:
        logits = (logits[1] - logits[0]).reshape(1)

    def predict_shares(X: torch.Tensor) -> torch.Tensor:
        return logits.to(X.dtype).expand(len(X), -1)

    return predict_shares


def _auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """ROC AUC from two histograms of scores: the chance that a positive row scores above a
    negative one, a tie (the same bin) counting half."""
    pairs = positive.sum().item() * negative.sum().item()
    if pairs == 0:
        return math.nan
    below = torch.cumsum(negative, dim=0) - negative  # negatives in lower bins
    return ((positive * (below + negative / 2)).sum().item()) / pairs


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> Metrics:
    """Predict X with the model and compare with y."""
    return compute_metrics(predict(model, X), y)


def mean_loss(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    batch_size: int = PREDICT_ROWS,
) -> float:
    """Return the mean of `loss_fn` over (X, y), in batches; the caller sets the mode.

    Mean losses (L1, MSE, Huber) average over every element, so batches weigh by rows.
    """
    if X.shape[0] <= batch_size:
        return float(loss_fn(model(X), y).item())
    total = 0.0
    for start in range(0, len(X), batch_size):
        X_part, y_part = X[start : start + batch_size], y[start : start + batch_size]
        total += loss_fn(model(X_part), y_part).item() * len(X_part)
    return total / len(X)


def metrics_by_target(
    y_pred: torch.Tensor, y_true: torch.Tensor, names: Sequence[str]
) -> dict[str, Metrics]:
    """Return the metrics of each target column, keyed by the column's name."""
    return {
        name: compute_metrics(y_pred[:, i : i + 1], y_true[:, i : i + 1])
        for i, name in enumerate(names)
    }


@dataclass(frozen=True)
class TableMetrics:
    """How a model does on every row of a table: per target column, and over all of them."""

    rows: int  # rows measured
    dropped_rows: int  # rows left out: a missing target, or a missing value (drop)
    by_target: dict[str, Any]  # Metrics for regression, ClassMetrics for classification
    overall: Any
    missing_target: int = 0  # of the dropped rows, those whose target is missing
    counts: EncodeCounts | None = None  # what the encoding did: imputed, unseen
    # each feature column's permutation importance on the first IMPORTANCE_ROWS rows
    importance: dict[str, float] | None = None
    unseen_class: int = 0  # of the dropped rows, those of a class the model does not know


def evaluate_table(
    model: nn.Module,
    path: TableData,
    features: str | Sequence[str],
    target: str | Sequence[str],
    *,
    format: str = "auto",
    drop_missing: bool = False,
    block_rows: int = READ_BLOCK_ROWS,
    missing: MissingName | None = None,
    encoding: Encoding | None = None,
    importance: bool = False,
    task: Task = REGRESSION,
) -> TableMetrics:
    """Measure `model` on every row of a CSV or Parquet file, `block_rows` rows at a time.

    Memory is one block, whatever the file's size: the metrics are running sums. With the
    model's `encoding`, raw columns are encoded as in training (`iter_table`). With
    `importance`, the first IMPORTANCE_ROWS rows are kept as they pass, for each feature
    column's `permutation_importance`: the file is read once.
    """
    counts = {"rows": 0, "dropped": 0, "missing_target": 0, "unseen_class": 0}
    encoded = EncodeCounts()
    first: list[tuple[torch.Tensor, torch.Tensor]] = []
    table = iter_table(
        path, features, target=target, format=format, drop_missing=drop_missing,
        block_rows=block_rows, missing=missing, encoding=encoding,
        classes=encoding.classes if encoding is not None else (),
    )  # fmt: skip

    def blocks() -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for block in table:
            assert block.y is not None  # targets were asked for
            if importance and (wanted := IMPORTANCE_ROWS - counts["rows"]) > 0:
                first.append((block.X[:wanted], block.y[:wanted]))
            counts["rows"] += len(block.X)
            counts["dropped"] += block.dropped_rows
            counts["missing_target"] += block.missing_target
            counts["unseen_class"] += block.unseen_class
            if block.counts is not None:
                encoded.add(block.counts)
            yield "rows", block.X, block.y

    predictors = {"model": partial(predict, model)}
    sums = evaluate_blocks(blocks(), ["rows"], predictors, task=task)["model"]
    rows = sums["rows"]
    by_target: dict[str, AnyMetrics] = (
        {name: rows.target_metrics(i) for i, name in enumerate(target)}
        if isinstance(rows, MetricSums)
        else {name: rows.metrics() for name in target}  # classes: one target column
    )
    importances = None
    if importance:
        X, y = torch.cat([X for X, _ in first]), torch.cat([y for _, y in first])
        columns = feature_inputs(features, encoding)
        importances = permutation_importance(model, X, y, columns, task)
    return TableMetrics(
        counts["rows"], counts["dropped"], by_target, rows.metrics(), counts["missing_target"],
        encoded if encoding is not None else None, importances, counts["unseen_class"],
    )  # fmt: skip


Predictor = Callable[[torch.Tensor], torch.Tensor]


AnyMetrics = Metrics | ClassMetrics  # a task's metrics: Metrics for regression


class RunningSums(Protocol):
    """What every task's running sums do: grow block by block, merge, travel as a tensor."""

    def add(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None: ...
    def merge(self, other: Any) -> None: ...
    def pack(self) -> torch.Tensor: ...
    @staticmethod
    def unpack(packed: torch.Tensor) -> RunningSums: ...
    def metrics(self) -> AnyMetrics: ...


@dataclass(frozen=True)
class Scores:
    """A trained model measured beside its baselines: metrics by predictor ("model",
    "baseline", and for classes the majority class) and part, the model's sums on the test
    rows (a classifier's confusion matrix), and test rows' targets and predictions to plot."""

    metrics: dict[str, dict[str, AnyMetrics]]
    test_sums: RunningSums
    shown: tuple[torch.Tensor, torch.Tensor]  # some test rows' targets, their predictions

    @property
    def others(self) -> dict[str, dict[str, AnyMetrics]]:
        """The baselines besides the task's own, by name."""
        return {name: by_part for name, by_part in self.metrics.items() if name not in _OURS}


# The model and the task's baseline; the other predictors scored are other baselines.
_OURS = ("model", "baseline")


# Each task's running sums, by the task's name (`ptflow.tasks`, which imports no torch).
RUNNING_SUMS: dict[str, type[RunningSums]] = {
    REGRESSION.name: MetricSums,
    CLASSIFICATION.name: ClassMetricSums,
}


def evaluate_blocks(
    blocks: Iterable[tuple[str, torch.Tensor, torch.Tensor]],
    parts: Sequence[str],
    predictors: Mapping[str, Predictor],
    merge: Callable[[RunningSums], RunningSums] | None = None,
    keep: Callable[[str, str, torch.Tensor, torch.Tensor], None] | None = None,
    task: Task = REGRESSION,
) -> dict[str, dict[str, RunningSums]]:
    """Score every predictor on blocks of (part, X, y) rows: the one metric loop of ptflow.

    Returns the task's running sums by predictor and part (`parts` names them all, so that
    every process has the same ones, rows or none). Under torchrun each process scores its
    own blocks and `merge` (`World.merge_metric_sums`) merges the sums, as if one process
    had seen every row. `keep` sees every (predictor, part, y_pred, y): to keep some rows
    for a plot.
    """
    new_sums = RUNNING_SUMS[task.name]
    sums = {name: {part: new_sums() for part in parts} for name in predictors}
    for part, X, y in blocks:
        if not len(X):
            continue
        for name, predictor in predictors.items():
            y_pred = predictor(X)
            sums[name][part].add(y_pred, y)
            if keep is not None:
                keep(name, part, y_pred, y)
    if merge is not None:  # the same order on every process: predictors, then parts
        sums = {
            name: {part: merge(part_sums) for part, part_sums in by_part.items()}
            for name, by_part in sums.items()
        }
    return sums


# Rows permutation importance shuffles at most: its cost is columns times repeats predictions.
IMPORTANCE_ROWS = 100_000


def permutation_importance(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    columns: Mapping[str, Sequence[int]],
    task: Task = REGRESSION,
    *,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """How much the task's first metric worsens when one input column is shuffled among
    the rows, averaged over `repeats` seeded shuffles: in the metric's own units (for MAE,
    the target's). 0 means the model does not use the column; below 0, noise.

    `columns` maps each input column of the data to the model inputs it became (a
    number and its was-missing input move together); at most IMPORTANCE_ROWS rows are used.
    """
    X, y = X[:IMPORTANCE_ROWS], y[:IMPORTANCE_ROWS]
    first = task.metrics[0]
    sign = 1.0 if first.lower_is_better else -1.0

    def score(inputs: torch.Tensor) -> float:
        sums = RUNNING_SUMS[task.name]()
        sums.add(predict(model, inputs).cpu(), y)
        value = sums.metrics().to_dict()[first.name]
        return float(value) if value is not None else float("nan")

    base = score(X)
    generator = torch.Generator().manual_seed(seed)
    importance = {}
    for name, inputs in columns.items():
        worse = 0.0
        for _ in range(repeats):
            order = torch.randperm(len(X), generator=generator)
            shuffled = X.clone()
            shuffled[:, list(inputs)] = X[order][:, list(inputs)]
            worse += sign * (score(shuffled) - base)
        importance[name] = worse / repeats
    return dict(sorted(importance.items(), key=lambda item: -item[1]))


def feature_inputs(features: Sequence[str], encoding: Encoding | None) -> dict[str, list[int]]:
    """Which model inputs each feature column became: its encoding's, or one input each."""
    if encoding is not None:
        return encoding.input_columns()
    return {name: [i] for i, name in enumerate(features)}
