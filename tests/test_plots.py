from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

import ptflow
from ptflow import WorkflowError


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.width > 100 and image.height > 100


def test_plot_predictions_colours_and_file(tutorial_splits: ptflow.Splits, tmp_path: Path) -> None:
    X_train, y_train = tutorial_splits.train
    X_test, y_test = tutorial_splits.test
    figure = ptflow.plot_predictions(
        X_train, y_train, X_test, y_test, predictions=y_test + 0.1, path=tmp_path / "p.png"
    )
    axes = figure.axes[0]
    colours = [tuple(np.asarray(c.get_facecolor())[0]) for c in axes.collections]
    assert colours == [to_rgba("b"), to_rgba("g"), to_rgba("r")]
    assert axes.get_legend_handles_labels()[1] == ["Training data", "Testing data", "Predictions"]
    offsets = np.asarray(axes.collections[2].get_offsets())
    assert offsets[:, 1].tolist() == pytest.approx((y_test + 0.1)[:, 0].tolist())
    _assert_png(tmp_path / "p.png")


def test_plot_without_predictions_has_two_series(tutorial_splits: ptflow.Splits) -> None:
    figure = ptflow.plot_predictions(*tutorial_splits.train, *tutorial_splits.test)
    assert len(figure.axes[0].collections) == 2


def test_plot_loss_curves(tutorial_splits: ptflow.Splits, tmp_path: Path) -> None:
    history = ptflow.train(ptflow.build_model(), tutorial_splits, ptflow.Config(epochs=12))
    figure = ptflow.plot_loss_curves(history, path=tmp_path / "loss.png")
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["Train loss", "Test loss"]
    assert np.asarray(lines[0].get_ydata()).tolist() == history.train_loss
    assert np.asarray(lines[1].get_xdata()).tolist() == list(range(1, 13))
    _assert_png(tmp_path / "loss.png")


def test_plots_never_touch_pyplot(tutorial_splits: ptflow.Splits) -> None:
    # pyplot owns the windows; building figures without it means none can open.
    ptflow.plot_predictions(*tutorial_splits.train, *tutorial_splits.test)
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_several_features_cannot_be_drawn_against_y() -> None:
    X, y = torch.zeros(4, 2), torch.zeros(4, 1)
    with pytest.raises(WorkflowError, match="2 features"):
        ptflow.plot_predictions(X, y, X, y)


def test_names_are_drawn_as_written_text(tmp_path: Path) -> None:
    # Found by the hostile-input tests: a class named "\x1f" warned of a missing glyph, and
    # matplotlib reads "$...$" as mathematics, which fails to draw for "$\x$". Warnings are
    # errors in this suite, so drawing each of these without one is the assertion.
    from ptflow.plots import plot_confusion_matrix, plot_predicted_vs_actual, plot_residuals

    names = ["\x1f", "猫 🐶", "$\\x$", "price ($)"]
    confusion = torch.eye(len(names)) * 3
    plot_confusion_matrix(confusion, names, path=tmp_path / "confusion.png")
    _assert_png(tmp_path / "confusion.png")
    y = torch.arange(8.0).reshape(-1, 1)
    plot_residuals(y, y + 1, names=["$\\y$"], path=tmp_path / "residuals.png")
    plot_predicted_vs_actual(y, y, names=["\x1f"], path=tmp_path / "actual.png")
    for name in ("residuals", "actual"):
        _assert_png(tmp_path / f"{name}.png")
    figure = plot_confusion_matrix(confusion, names)
    labels = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert labels == ["\\x1f", "猫 🐶", "\\$\\x\\$", "price (\\$)"]
