"""ptflow in Python: fit a file, a DataFrame or arrays, and the Run it returns."""

from __future__ import annotations

import gc
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import ptflow
from ptflow.cli import main


def _listings(rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """A raw table as people have them: an id, text categories, blanks, a true/false column."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["oslo", "rome", "lima"], rows)
    area = rng.uniform(30, 150, rows)
    garden = rng.choice([True, False], rows)
    price = 3 * area + np.select([city == "oslo", city == "rome"], [90, 40], 0) + 25 * garden
    frame = pd.DataFrame(
        {
            "listing_id": np.arange(rows),
            "city": city,
            "area": area,
            "garden": garden,
            "price": price + rng.normal(0, 2, rows),
        }
    )
    frame.loc[[row for row in (3, 8, 40) if row < rows], "area"] = np.nan
    frame.loc[5 % rows, "city"] = None
    return frame


FAST: dict[str, Any] = {"epochs": 40, "patience": None, "lr": 0.1}


def test_fit_takes_a_raw_dataframe_and_says_what_it_did_with_each_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ptflow.fit(_listings(), target="price", progress=False, **FAST)
    printed = capsys.readouterr().out
    assert "looks like an identifier" in printed  # listing_id, left out with a reason
    assert "imputed missing values" in printed
    roles = {column.name: column.role for column in run.columns}
    assert roles == {
        "listing_id": "ignored", "city": "feature", "area": "feature", "garden": "feature",
        "price": "target",
    }  # fmt: skip
    assert run.features == ("city", "area", "garden")
    assert run.task == "regression"
    assert run.metrics["test"]["r2"] is not None and run.metrics["test"]["r2"] > 0.9
    assert len(run.history) == 40


def test_new_rows_with_unseen_categories_and_blanks_are_predicted_and_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ptflow.fit(_listings(), target="price", progress=False, verbose=False, **FAST)
    capsys.readouterr()
    new = pd.DataFrame(
        {"city": ["oslo", "paris", None], "area": [50.0, np.nan, 80.0], "garden": [1, 0, 1]}
    )
    run.verbose = True
    predicted = run.predict(new)
    printed = capsys.readouterr().out
    assert predicted.shape == (3,) and np.isfinite(predicted).all()
    assert "not seen in training" in printed and "city 1" in printed
    assert "imputed" in printed and "area 1" in printed
    # the same rows as a file give the same predictions, and so do they as an array
    path = Path(run.run_dir).parent / "new.csv"
    new.to_csv(path, index=False)
    np.testing.assert_array_equal(run.predict(path), predicted)
    np.testing.assert_array_equal(run.predict(new.to_numpy()), predicted)


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_fit_on_a_dataframe_trains_as_ptflow_train_on_its_file(tmp_path: Path) -> None:
    frame = _listings(rows=120)
    csv = tmp_path / "listings.csv"
    frame.to_csv(csv, index=False)
    by_python = ptflow.fit(
        frame, target="price", out=tmp_path / "python", progress=False, verbose=False, **FAST
    )
    assert main(["train", "--data", str(csv), "--target", "price", "--epochs", "40",
                 "--patience", "none", "--lr", "0.1", "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0  # fmt: skip
    by_cli = ptflow.load(tmp_path / "cli")
    assert by_python.run_dir == tmp_path / "python"
    assert (tmp_path / "python" / "model.pt").read_bytes() == (
        tmp_path / "cli" / "model.pt"
    ).read_bytes()
    np.testing.assert_array_equal(by_python.predict(frame), by_cli.predict(csv))


def test_a_run_saved_and_loaded_predicts_the_same(tmp_path: Path) -> None:
    frame = _listings()
    run = ptflow.fit(frame, target="price", progress=False, verbose=False, **FAST)
    saved = run.save(tmp_path / "kept")
    again = ptflow.load(saved, verbose=False)
    np.testing.assert_array_equal(again.predict(frame), run.predict(frame))
    assert again.metrics == run.metrics and again.history.eval_loss == run.history.eval_loss
    assert not (saved / ".ptflow.lock").exists()
    with pytest.raises(ptflow.WorkflowError, match="already exists"):
        run.save(saved)
    with pytest.raises(ptflow.WorkflowError, match="inside the run folder"):
        run.save(run.run_dir / "copy")
    with pytest.raises(ptflow.WorkflowError, match="empty path"):
        run.save("")
    mine = tmp_path / ".again.saving"  # a user's folder of the name an older save used
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    run.save(tmp_path / "again")
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".again.saving", "again", "kept"]
    # the command line reads the saved folder too
    assert main(["evaluate", str(saved), "--data", str(_csv(frame, tmp_path))]) == 0


def _csv(frame: pd.DataFrame, folder: Path) -> Path:
    path = folder / "table.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_rows_evaluate_leaves_out_are_told_by_their_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ptflow.fit(_listings(), target="price", progress=False, verbose=False, **FAST)
    rows = _listings(rows=30, seed=4)
    rows.loc[[2, 3], "price"] = np.nan
    run.verbose = True
    measured = run.evaluate(rows)
    printed = capsys.readouterr().out
    assert measured.rows == 28 and measured.missing_target == 2
    assert "left out 2 rows without a target value" in printed
    assert "missing or infinite feature value" not in printed  # imputed, not left out


def test_the_temporary_run_folder_goes_with_the_run() -> None:
    run = ptflow.fit(_listings(rows=60), target="price", progress=False, verbose=False, epochs=3)
    folder = run.run_dir
    assert (folder / "model.pt").is_file()
    del run
    gc.collect()
    assert not folder.exists()


def test_fit_on_arrays_names_the_columns_and_predicts_arrays() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    run = ptflow.fit((X, y), progress=False, verbose=False, epochs=300, lr=0.1, patience=None)
    assert run.features == ("x0", "x1", "x2") and run.target == ("y",)
    np.testing.assert_allclose(run.predict(X[:5]), y[:5], atol=1e-3)
    np.testing.assert_allclose(run.predict(torch.tensor(X[:5])), y[:5], atol=1e-3)
    with pytest.raises(ptflow.WorkflowError, match="X has 2 columns and this model takes 3"):
        run.predict(X[:, :2])
    with pytest.raises(ptflow.WorkflowError, match="X has 200 rows and y 199"):
        ptflow.fit((X, y[:-1]))


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_classes_are_predicted_with_probabilities_and_a_confusion_matrix() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    frame = pd.DataFrame(
        {"x": x, "noise": rng.normal(size=300), "kind": np.where(x > 0, "up", "down")}
    )
    run = ptflow.fit(frame, target="kind", progress=False, verbose=False)
    assert run.task == "classification" and run.classes == ("down", "up")
    predicted = run.predict(frame)
    assert set(predicted) <= {"down", "up"} and (predicted == frame["kind"]).mean() > 0.9
    shares = run.predict_proba(frame)
    assert shares.shape == (300, 2)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    assert run.plot_confusion_matrix(frame)._repr_png_().startswith(b"\x89PNG")
    assert run.evaluate(frame).overall.accuracy > 0.9
    with pytest.raises(ptflow.WorkflowError, match="for regression"):
        run.plot_residuals(frame)


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_a_regression_run_refuses_what_only_classes_have() -> None:
    run = ptflow.fit(_listings(rows=60), target="price", progress=False, verbose=False, epochs=2)
    with pytest.raises(ptflow.WorkflowError, match="predict_proba is for classifiers"):
        run.predict_proba(_listings(rows=5))
    with pytest.raises(ptflow.WorkflowError, match="plot_confusion_matrix is for classifiers"):
        run.plot_confusion_matrix(_listings(rows=5))


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_plots_of_a_run_are_figures_a_notebook_shows() -> None:
    frame = _listings()
    run = ptflow.fit(frame, target="price", progress=False, verbose=False, **FAST)
    for figure in (
        run.plot_loss_curves(),
        run.plot_predicted_vs_actual(frame),
        run.plot_residuals(frame),
        run.plot_importance(),
    ):
        assert figure._repr_png_().startswith(b"\x89PNG")
    assert set(run.importance()) == {"city", "area", "garden"}
    assert run.importance()["area"] > run.importance()["garden"] > 0
    page = run._repr_html_()
    assert "<img" in page and "r2" in page
    assert 'iframe srcdoc="' in run.report()._repr_html_()
    assert len(repr(run).splitlines()) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            [1, 2, 3],
            "must be a CSV or Parquet file's path, a pandas DataFrame or an Arrow table; got list",
        ),
        (np.zeros((3, 2)), "got ndarray"),
    ],
)
def test_a_table_of_the_wrong_type_is_one_error(data: object, message: str) -> None:
    with pytest.raises(ptflow.WorkflowError, match=message):
        ptflow.load_table(data, target="y")


def test_a_target_is_a_name_or_a_list_of_names(tmp_path: Path) -> None:
    path = _csv(_listings(rows=30), tmp_path)
    table = ptflow.load_table(path, target="price", missing="impute")
    assert table.target == ("price",)  # not the letters p, r, i, c, e
    assert ptflow.load_table(path, target=["price"], missing="impute").target == ("price",)
    with pytest.raises(ptflow.WorkflowError, match="target must be a column name or a list"):
        ptflow.load_table(path, target=3)  # type: ignore[arg-type]
    with pytest.raises(ptflow.WorkflowError, match="fit needs target="):
        ptflow.fit(path)


def test_a_dataframe_column_of_numbers_with_a_typo_names_the_cell() -> None:
    rooms: list[object] = [1, 2, 3, 4] * 10
    rooms[6] = "five"
    frame = pd.DataFrame({"rooms": rooms, "price": np.arange(40.0) ** 1.5})
    with pytest.raises(
        ptflow.WorkflowError, match=r"column 'rooms' .* holds numbers but for 'five'"
    ):
        ptflow.fit(frame, target="price", verbose=False)


def test_dataframe_column_types_are_read_natively() -> None:
    frame = _listings(rows=80).astype({"city": "category", "garden": "boolean"})
    frame["rooms"] = pd.array([1, 2, None, 4] * 20, dtype="Int64")
    table = ptflow.load_table(frame, target="price", missing="impute")
    assert table.features == ("city", "area", "garden", "rooms")
    assert table.fingerprint["rows"] == 80


@pytest.mark.slow  # a fit or two each: keeps the default suite under five minutes
def test_a_named_index_is_not_used_and_the_run_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    frame = _listings(rows=60).set_index("listing_id")
    run = ptflow.fit(frame, target="price", progress=False, epochs=2)
    assert "index (listing_id) is not one of its columns" in capsys.readouterr().out
    assert "listing_id" not in run.features


def test_short_reprs(tmp_path: Path) -> None:
    result = ptflow.run_workflow(ptflow.Config(epochs=30), out_dir=tmp_path / "run")
    assert len(repr(result.history)) < 300 and "30 epochs" in repr(result.history)
    assert "\n" not in repr(result) and "test: mae" in repr(result)
    assert repr(result.config) == "Config(epochs=30)"
    assert repr(result.splits) == (
        "Splits(train 40 rows, val 0, test 10; 1 feature(s) -> 1 target(s))"
    )
    assert "<table>" in result.history._repr_html_()
    for shown in (result, result.config, result.splits, result.metrics["test"]):
        assert "<table>" in shown._repr_html_()  # type: ignore[union-attr]
    assert "<img" in result._repr_html_()
    frame = result.history.to_pandas()
    assert list(frame.columns) == ["epoch", "train_loss", "test_loss", "lr"] and len(frame) == 30


def test_in_a_notebook_without_ipywidgets_the_bar_is_text_and_warns_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util
    import warnings

    from ptflow.training import _progress_bar

    class ZMQInteractiveShell:  # what get_ipython() returns inside a Jupyter kernel
        pass

    shell = ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ipywidgets" else real(name, *a),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = _progress_bar(range(3), "training", show=True, total=3)
    assert type(bar).__module__ == "tqdm.std" and not bar.disable
    bar.close()
