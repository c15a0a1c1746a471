"""Step 2, visualize: the tutorial's plots, written as PNG files.

Figures are built with matplotlib's object API and the Agg canvas, never pyplot, so
no window ever opens and no global figure state leaks between calls. They are
`ShownFigure`s, which a notebook shows as images with no `%matplotlib` magic (a pyplot-free
figure would show only its repr there).
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray

from ptflow.data import Split
from ptflow.errors import WorkflowError
from ptflow.files import atomic_path
from ptflow.history import History

__all__ = [
    "ShownFigure",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_decision_regions",
    "plot_importance",
    "plot_loss_curves",
    "plot_predicted_vs_actual",
    "plot_predictions",
    "plot_residuals",
    "plot_roc_curves",
    "plot_table_data",
    "save_figure",
]


class ShownFigure(Figure):
    """A matplotlib figure that Jupyter (IPython's display) shows as a PNG image."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()

    def to_html(self, width: int = 640) -> str:
        """An <img> of the figure, inline (base64 PNG), for a larger HTML display."""
        data = base64.b64encode(self._repr_png_()).decode("ascii")
        return f'<img width="{width}" src="data:image/png;base64,{data}">'


def plot_predictions(
    train_data: torch.Tensor,
    train_labels: torch.Tensor,
    test_data: torch.Tensor,
    test_labels: torch.Tensor,
    predictions: torch.Tensor | None = None,
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot training data (blue), test data (green) and predictions on the test data (red)."""
    for name, tensor in (("train_data", train_data), ("test_data", test_data)):
        if tensor.dim() > 1 and tensor.shape[1] != 1:
            raise WorkflowError(
                f"{name} has {tensor.shape[1]} features; this plot shows one feature against "
                f"the target, so select one column."
            )
    figure = ShownFigure(figsize=(10, 7))
    axes = figure.subplots()
    axes.scatter(_numpy(train_data), _numpy(train_labels), c="b", s=4, label="Training data")
    axes.scatter(_numpy(test_data), _numpy(test_labels), c="g", s=4, label="Testing data")
    if predictions is not None:
        axes.scatter(_numpy(test_data), _numpy(predictions), c="r", s=4, label="Predictions")
    axes.set_xlabel("X")
    axes.set_ylabel("y")
    if title:
        axes.set_title(title)
    axes.legend(prop={"size": 14})
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_loss_curves(
    history: History, *, title: str | None = None, path: str | os.PathLike[str] | None = None
) -> ShownFigure:
    """Plot the training loss and the evaluation (test or validation) loss per epoch."""
    figure = ShownFigure(figsize=(10, 7))
    axes = figure.subplots()
    eval_name = "Validation" if history.eval_split == "val" else "Test"
    axes.plot(history.epoch, history.train_loss, label="Train loss")
    axes.plot(history.epoch, history.eval_loss, label=f"{eval_name} loss")
    axes.set_xlabel("Epochs")
    axes.set_ylabel("Loss")
    axes.set_title(title or f"Training and {eval_name.lower()} loss curves")
    axes.legend(prop={"size": 14})
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_table_data(
    train: Split,
    test: Split,
    features: Sequence[str],
    target: Sequence[str],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    max_features: int = 6,
    max_points: int = 5000,
) -> ShownFigure:
    """Plot the (first) target against each of the first features: train blue, test green.

    The tutorial's data plot for a table: one panel per feature, at most `max_features`,
    each with at most `max_points` rows of each part (the first ones), so it stays readable.
    """
    shown = list(features[:max_features])
    columns = min(3, len(shown))
    rows = -(-len(shown) // columns)
    figure = ShownFigure(figsize=(5 * columns, 4 * rows))
    panels = figure.subplots(rows, columns, squeeze=False).flatten()
    for i, name in enumerate(shown):
        axes = panels[i]
        for part, colour, label in ((train, "b", "Training data"), (test, "g", "Testing data")):
            X, y = _numpy(part.X[:max_points]), _numpy(part.y[:max_points])
            axes.scatter(X[:, i], y[:, 0], c=colour, s=2, label=label)
        axes.set_xlabel(_label(name))
        axes.set_ylabel(_label(target[0]))
    for axes in panels[len(shown) :]:
        axes.set_visible(False)
    panels[0].legend()
    more = (
        f" (the first {max_features} of {len(features)} features)"
        if len(features) > max_features
        else ""
    )
    figure.suptitle(title or f"The data{more}")
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_residuals(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    names: Sequence[str] = ("y",),
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot residuals (predicted minus actual) against the predictions, one panel per target.

    A good fit scatters evenly around zero; a curve or a funnel shows what it misses.
    """
    true, pred = _numpy(y_true), _numpy(y_pred)
    figure = ShownFigure(figsize=(7 * len(names), 5))
    for i, (axes, name) in enumerate(
        zip(figure.subplots(1, len(names), squeeze=False)[0], names, strict=True)
    ):
        axes.axhline(0, c="k", lw=1)
        axes.scatter(pred[:, i], pred[:, i] - true[:, i], c="r", s=4)
        axes.set_xlabel(f"predicted {_label(name)}")
        axes.set_ylabel(f"residual: predicted - actual {_label(name)}")
    figure.suptitle(title or "Residuals")
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_importance(
    importance: Mapping[str, float],
    metric: str = "",
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot each column's permutation importance as a bar, largest at the top: how much
    `metric` worsened when the column's values were shuffled among the rows."""
    names = list(importance)[::-1]
    figure = ShownFigure(figsize=(8, 1.5 + 0.4 * len(names)), layout="constrained")
    axes = figure.subplots()
    axes.barh([_label(name) for name in names], [importance[name] for name in names], color="b")
    axes.axvline(0, c="k", lw=1)
    axes.set_xlabel(f"rise in {metric} when the column is shuffled" if metric else "importance")
    axes.set_title(title or "Permutation importance")
    if path is not None:
        save_figure(figure, path)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Write the figure as a PNG file, atomically."""
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # A class or column name in a script the font lacks (CJK, emoji) is drawn as a box;
        # matplotlib's warning for each such glyph would only repeat the name at the user.
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _label(name: str) -> str:
    """A column or class name as plain text on a plot: control characters shown escaped
    (`\\x1f`), and `$` kept literal, where matplotlib would read `$...$` as mathematics and
    fail to draw a name such as `$\\x$`."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return shown.replace("$", r"\$")


def _numpy(tensor: torch.Tensor) -> NDArray[Any]:
    return tensor.detach().cpu().reshape(len(tensor), -1).numpy()


def plot_predicted_vs_actual(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    names: Sequence[str] = ("y",),
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot predictions (red) against true values, one panel per target, with the ideal line."""
    true, pred = _numpy(y_true), _numpy(y_pred)
    figure = ShownFigure(figsize=(7 * len(names), 6))
    for i, (axes, name) in enumerate(
        zip(figure.subplots(1, len(names), squeeze=False)[0], names, strict=True)
    ):
        low, high = min(true[:, i].min(), pred[:, i].min()), max(true[:, i].max(), pred[:, i].max())
        axes.plot([low, high], [low, high], c="k", lw=1, label="Ideal: predicted = actual")
        axes.scatter(true[:, i], pred[:, i], c="r", s=4, label="Predictions")
        axes.set_xlabel(f"actual {_label(name)}")
        axes.set_ylabel(f"predicted {_label(name)}")
        axes.legend()
    figure.suptitle(title or "Predicted vs actual")
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_confusion_matrix(
    confusion: torch.Tensor,
    classes: Sequence[str],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot a confusion matrix (rows: the true class, columns: the predicted one) twice: as
    counts, and with each row divided by its total (each class's recall on the diagonal)."""
    counts = confusion.detach().cpu().double()
    totals = counts.sum(dim=1, keepdim=True)
    shares = counts / totals.clamp(min=1)
    size = max(5.0, 0.6 * len(classes) + 3)
    figure = ShownFigure(figsize=(2 * size, size), layout="constrained")
    for axes, values, caption, fmt in zip(
        figure.subplots(1, 2),
        (counts, shares),
        ("counts", "share of the true class's rows"),
        ("{:.0f}", "{:.2f}"),
        strict=True,
    ):
        axes.imshow(values.numpy(), cmap="Blues", vmin=0)
        ticks = range(len(classes))
        labels = [_label(name) for name in classes]
        axes.set_xticks(ticks, labels=labels, rotation=45, ha="right")
        axes.set_yticks(ticks, labels=labels)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(caption)
        if len(classes) <= 20:  # the numbers, where they still fit
            high = float(values.max()) or 1.0
            for i in ticks:
                for j in ticks:
                    value = float(values[i, j])
                    colour = "white" if value > high / 2 else "black"
                    axes.text(j, i, fmt.format(value), ha="center", va="center", color=colour)
    figure.suptitle(title or "Confusion matrix")
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_roc_curves(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot ROC curves: for each name, its false and true positive rates (as
    `ClassMetricSums.roc_curve` gives them) and its area, against chance's diagonal."""
    figure = ShownFigure(figsize=(7, 7))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], c="gray", lw=1, ls="--", label="chance (AUC 0.5)")
    for name, (false, true, area) in curves.items():
        axes.plot(false.numpy(), true.numpy(), lw=2, label=f"{_label(name)} (AUC {area:.3f})")
    axes.set_xlabel("false positive rate (of the other rows, the share flagged)")
    axes.set_ylabel("true positive rate (of the class's rows, the share flagged)")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.legend(loc="lower right")
    axes.set_title(title or "ROC curve")
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_calibration(
    mean_probability: torch.Tensor,
    observed: torch.Tensor,
    counts: torch.Tensor,
    *,
    label: str = "the model",
    counted: str = "rows",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> ShownFigure:
    """Plot a reliability diagram: per bin of predicted probability, the share of rows that
    were of the class against the mean probability given (as `ClassMetricSums.reliability`
    gives them), with the rows in each bin below. On the diagonal, "70%" means 70%."""
    figure = ShownFigure(figsize=(7, 8))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], c="gray", lw=1, ls="--", label="perfectly calibrated")
    shown = ~torch.isnan(observed)
    top.plot(
        mean_probability[shown].numpy(), observed[shown].numpy(), "o-", c="r", label=_label(label)
    )
    top.set_ylabel("share of the rows that were of the class")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left")
    top.set_title(title or "Calibration (reliability)")
    width = 1 / len(counts)
    bottom.bar((torch.arange(len(counts)) + 0.5).numpy() * width, counts.numpy(), width=width * 0.9)
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel(counted)
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_decision_regions(
    classify: Callable[[torch.Tensor], torch.Tensor],
    parts: Mapping[str, Split],
    classes: Sequence[str],
    features: Sequence[str],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    steps: int = 200,
) -> ShownFigure:
    """Plot which class a model predicts over the plane of its two features (or along its
    one), one panel per part of the data (say "Train" and "Test"), with that part's rows
    coloured by their true class, as the classification course draws decision boundaries.

    `classify` maps inputs (rows, features) to class numbers (rows,); it is called once, on
    a grid of `steps` points per feature over the rows' range and a tenth more.
    """
    if len(features) not in (1, 2):
        raise WorkflowError(
            f"decision regions are drawn over one or two features, not {len(features)}; "
            f"plot the confusion matrix instead."
        )
    every = torch.cat([part.X for part in parts.values()]).double()
    low, high = every.min(dim=0).values, every.max(dim=0).values
    margin = (high - low).clamp(min=1e-6) * 0.1
    axes_points = [torch.linspace(a, b, steps, dtype=torch.float64) for a, b in
                   zip((low - margin).tolist(), (high + margin).tolist(), strict=True)]  # fmt: skip
    if len(features) == 2:
        grid_x, grid_y = torch.meshgrid(*axes_points, indexing="xy")
        grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    else:
        grid = axes_points[0][:, None]
    regions = classify(grid.float()).reshape(-1, steps) if len(features) == 2 else None
    strip = classify(grid.float()).reshape(1, steps) if regions is None else None
    colours = _class_colours(len(classes))
    figure = ShownFigure(figsize=(6.5 * len(parts), 6), layout="constrained")
    panels = figure.subplots(1, len(parts), squeeze=False)[0]
    for axes, (name, part) in zip(panels, parts.items(), strict=True):
        X, y = part.X.double().numpy(), part.y.reshape(-1).long().numpy()
        if regions is not None:
            extent = (axes_points[0][0], axes_points[0][-1], axes_points[1][0], axes_points[1][-1])
            axes.imshow(
                regions.numpy(), origin="lower", extent=[float(v) for v in extent],
                cmap=colours, vmin=-0.5, vmax=len(classes) - 0.5, alpha=0.35, aspect="auto",
            )  # fmt: skip
            points_y = X[:, 1]
            axes.set_ylabel(_label(features[1]))
        else:
            assert strip is not None
            ends = (float(axes_points[0][0]), float(axes_points[0][-1]), -0.5, len(classes) - 0.5)
            axes.imshow(
                strip.numpy(), origin="lower", extent=ends, cmap=colours,
                vmin=-0.5, vmax=len(classes) - 0.5, alpha=0.35, aspect="auto",
            )  # fmt: skip
            jitter = torch.rand(len(y), generator=torch.Generator().manual_seed(0)) * 0.5 - 0.25
            points_y = y + jitter.numpy()
            axes.set_yticks(range(len(classes)), labels=[_label(c) for c in classes])
            axes.set_ylabel("true class (the band: the predicted one)")
        for k, label in enumerate(classes):
            rows = y == k
            axes.scatter(X[rows, 0], points_y[rows], s=8, color=colours(k), edgecolors="k",
                         linewidths=0.3, label=_label(label))  # fmt: skip
        axes.set_xlabel(_label(features[0]))
        axes.set_title(name)
        axes.legend(loc="upper right", title="true class")
    figure.suptitle(title or "Decision regions: the class predicted at each point")
    if path is not None:
        save_figure(figure, path)
    return figure


def _class_colours(classes: int) -> Any:
    """A colour per class: tab10's, or a continuous map beyond ten classes."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if classes <= 10:
        return ListedColormap([colormaps["tab10"](k) for k in range(classes)])
    return colormaps["viridis"].resampled(classes)
