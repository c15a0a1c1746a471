"""Training on tables larger than memory: `--stream` reads a Parquet file one row group at
a time, and must give the split, statistics, metrics and resumes an in-memory run gives."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ptflow
import ptflow.tables
from ptflow import Config, TrainingInterrupted, WorkflowError
from ptflow.stats import fit_least_squares, fit_scaling
from ptflow.streaming import TEST, TRAIN, VAL, RowSplit, evaluate_streamed, scan_table
from tests.conftest import Cli, RunCli


def _write_parquet(path: Path, rows: int = 3000, group_rows: int = 256, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, size=(rows, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.7 + 0.1 * rng.normal(size=rows)
    columns = {f"x{i}": X[:, i] for i in range(3)}
    pq.write_table(pa.table({**columns, "y": y}), path, row_group_size=group_rows)
    return path


def _scan(path: Path, **changes: Any) -> ptflow.StreamedTable:
    options: dict[str, Any] = {"train_fraction": 0.6, "val_fraction": 0.2, "seed": 3}
    return scan_table(path, ["y"], **{**options, **changes})


def test_row_split_depends_on_row_numbers_only() -> None:
    rule = RowSplit(100_000, 0.7, 0.15, shuffle=True, seed=5)
    whole = rule.parts(0, 100_000)
    edges = [0, 1, 7, 4096, 50_001, 100_000]
    pieces = np.concatenate([rule.parts(a, b - a) for a, b in itertools.pairwise(edges)])
    assert np.array_equal(whole, pieces)  # however the file is cut into blocks
    counts = np.bincount(whole, minlength=3)
    expected = np.array([0.7, 0.15, 0.15]) * 100_000
    assert (abs(counts - expected) < 4 * np.sqrt(expected)).all()  # within sampling noise
    other_seed = RowSplit(100_000, 0.7, 0.15, shuffle=True, seed=6).parts(0, 100_000)
    assert (whole != other_seed).mean() > 0.3


def test_unshuffled_row_split_is_the_in_memory_split() -> None:
    X = torch.arange(1001.0).unsqueeze(1)
    splits = ptflow.split(X, X, 0.7, 0.1)
    parts = RowSplit(1001, 0.7, 0.1, shuffle=False, seed=0).parts(0, 1001)
    for part, indices in ((TRAIN, splits.train_indices), (VAL, splits.val_indices)):
        assert np.flatnonzero(parts == part).tolist() == indices.tolist()
    assert np.flatnonzero(parts == TEST).tolist() == splits.test_indices.tolist()


def test_scan_fits_what_the_in_memory_path_fits(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "t.parquet")
    table = _scan(path, shuffle=False)
    data = ptflow.load_table(path, ["y"])
    splits = ptflow.split(data.X, data.y, 0.6, 0.2)
    assert [table.part_size(p) for p in (TRAIN, VAL, TEST)] == [1800, 600, 600]
    assert table.scaling is not None
    expected = fit_scaling(*splits.train)
    for name in ("x_mean", "x_std", "y_mean", "y_std"):
        assert torch.allclose(getattr(table.scaling, name), getattr(expected, name), rtol=1e-6)
    baseline = fit_least_squares(*splits.train)
    assert torch.allclose(table.baseline.coef, baseline.coef, atol=1e-9)
    assert table.fingerprint["row_groups"] == 12 and table.fingerprint["rows"] == 3000
    assert table.roles == data.roles and {r.role for r in table.roles} == {"feature", "target"}


def test_each_epoch_trains_on_every_training_row_once(tmp_path: Path) -> None:
    table = _scan(_write_parquet(tmp_path / "t.parquet"), scale=False)
    data = table.on(torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    first = list(data.batches(100, generator))
    second = list(data.batches(100, generator))
    assert [len(X) for X, _ in first[:-1]] == [100] * (len(first) - 1)  # full but the last
    rows = torch.cat([X for X, _ in first])
    assert len(rows) == data.train_rows == table.part_size(TRAIN)
    training = ptflow.load_table(table.path, ["y"]).X[
        torch.from_numpy(table.split.parts(0, 3000) == TRAIN)
    ]
    assert torch.equal(_sorted_rows(rows), _sorted_rows(training))
    assert not torch.equal(rows, torch.cat([X for X, _ in second]))  # reshuffled every epoch


def test_skipping_batches_continues_the_same_epoch(tmp_path: Path) -> None:
    data = _scan(_write_parquet(tmp_path / "t.parquet")).on(torch.device("cpu"))
    start = torch.Generator().manual_seed(9).get_state()
    whole = [X for X, _ in data.batches(64, torch.Generator().set_state(start))]
    for skip in (1, 5, len(whole) - 1):
        generator = torch.Generator().set_state(start)
        rest = [X for X, _ in data.batches(64, generator, skip)]
        assert len(rest) == len(whole) - skip
        assert all(torch.equal(a, b) for a, b in zip(rest, whole[skip:], strict=True))


def _sorted_rows(X: torch.Tensor) -> torch.Tensor:
    return X[torch.from_numpy(np.lexsort(X.numpy().T[::-1]))]


def _stream_config(path: Path, **changes: Any) -> Config:
    settings: dict[str, Any] = {"epochs": 4, "batch_size": 128, "model": "mlp", "hidden": (8,)}
    return Config.for_table(str(path), "y", stream=True, **{**settings, **changes})


def test_streamed_metrics_are_the_in_memory_metrics(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "t.parquet")
    result = ptflow.run_workflow(_stream_config(path, shuffle=False), tmp_path / "run")
    assert result.splits is None and not (tmp_path / "run" / "split_indices.npz").exists()
    data = ptflow.load_table(path, ["y"])
    splits = ptflow.split(data.X, data.y, 0.7, 0.15)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    for name, part in parts.items():
        assert part is not None
        expected = ptflow.evaluate(result.model, *part)
        assert result.metrics[name].mse == pytest.approx(expected.mse, rel=1e-9)
        assert result.metrics[name].r2 == pytest.approx(expected.r2, rel=1e-9)
    baseline = fit_least_squares(*splits.train)
    test = ptflow.compute_metrics(baseline.predict(splits.test.X), splits.test.y)
    assert result.baseline_metrics["test"].mse == pytest.approx(test.mse, rel=1e-6)
    shown, _ = evaluate_streamed(result.model, result.data).shown  # type: ignore[arg-type]
    assert torch.equal(shown, splits.test.y)  # the plot's rows: targets, then predictions


def test_streamed_run_learns_and_is_reproducible(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "t.parquet")
    cfg = _stream_config(path, epochs=15, model="linear", lr=0.05)
    first = ptflow.run_workflow(cfg, tmp_path / "a")
    ptflow.run_workflow(cfg, tmp_path / "b")
    assert first.metrics["test"].r2 > 0.99
    files = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("a", "b")]
    assert files[0] == files[1]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert sum(summary["split_rows"].values()) == 3000
    assert summary["data"]["row_groups"] == 12
    # the tutorial line's parameters belong to the line's runs only
    assert "true_parameters" not in summary and "parameters" not in summary


@pytest.mark.parametrize("stop_after", [7, 21])  # mid-epoch, and a batch into another epoch
def test_streamed_run_resumes_bit_for_bit(tmp_path: Path, stop_after: int) -> None:
    path = _write_parquet(tmp_path / "t.parquet")
    cfg = _stream_config(path, dropout=0.1)
    ptflow.run_workflow(cfg, tmp_path / "whole")
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls >= stop_after

    with pytest.raises(TrainingInterrupted):
        ptflow.run_workflow(cfg, tmp_path / "cut", should_stop=should_stop)
    ptflow.resume_workflow(tmp_path / "cut")
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_file_changed_during_training_is_an_error(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "t.parquet")
    table = _scan(path)
    _write_parquet(path, group_rows=500)  # the same rows, cut into other row groups
    with pytest.raises(WorkflowError, match="changed while the run read it"):
        list(table.on(torch.device("cpu")).batches(64, torch.Generator()))


@pytest.mark.slow  # several ptflow processes
def test_bad_streamed_input_is_one_error_line(tmp_path: Path, run_cli: RunCli) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = np.arange(40.0)
    holes = values.copy()
    holes[33] = np.nan
    pq.write_table(pa.table({"x": holes, "y": values}), tmp_path / "nan.parquet", row_group_size=8)
    (tmp_path / "t.csv").write_text("x,y\n1,2\n3,4\n")
    cases = {
        ("--data", "t.csv"): "convert it with `ptflow convert t.csv t.parquet`",
        ("--data", "nan.parquet", "--missing", "error"): "in column 'x' at row 34; pass "
        "--missing impute or --missing drop",
        ("--data", "nan.parquet", "--features", "z"): "no column 'z'",
    }
    for args, message in cases.items():
        done = run_cli("train", *args, "--target", "y", "--stream", "--out", "run")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
    done = run_cli(
        "train", "--data", "nan.parquet", "--target", "y", "--stream", "--drop-missing",
        "--epochs", "2", "--out", "run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["dropped_rows"] == 1 and sum(summary["split_rows"].values()) == 39


@pytest.mark.slow
def test_cli_converts_then_streams_then_predicts(tmp_path: Path, run_cli: RunCli) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"n": np.arange(2000), "x": rng.normal(size=2000)})
    frame["y"] = 2 * frame["x"] + 0.001 * frame["n"]
    frame.to_csv(tmp_path / "big.csv", index=False)
    done = run_cli("convert", "big.csv", "big.parquet", "--row-group-rows", "300")
    assert done.returncode == 0 and "2,000 rows" in done.stdout, done.stderr
    file = pq.ParquetFile(tmp_path / "big.parquet")
    assert [file.metadata.row_group(g).num_rows for g in range(7)] == [300] * 6 + [200]
    assert np.array_equal(pd.read_parquet(tmp_path / "big.parquet")["n"], frame["n"])
    again = run_cli("convert", "big.csv", "big.parquet")
    assert again.returncode == 2 and "already exists" in again.stderr

    done = run_cli(
        "train", "--data", "big.parquet", "--target", "y", "--numeric", "n", "--stream",
        "--epochs", "20", "--batch-size", "64", "--lr", "0.01", "--out", "run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "streamed, 7 row groups" in done.stdout
    assert (tmp_path / "run" / "predicted_vs_actual.png").is_file()
    predicted = run_cli("predict", "run", "--data", "big.csv")
    assert predicted.returncode == 0, predicted.stderr
    values = np.array([float(line) for line in predicted.stdout.split()[1:]])
    assert np.abs(values - frame["y"].to_numpy()).mean() < 0.05


def test_whole_numbers_in_the_first_block_do_not_fix_a_column_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    monkeypatch.setattr(ptflow.tables, "CSV_BLOCK_BYTES", 64)  # many blocks of a few lines
    lines = [f"{i},{i * 2}" for i in range(100)] + ["100.5,201"]
    (tmp_path / "t.csv").write_text("n,y\n" + "\n".join(lines) + "\n")
    assert ptflow.convert_table(tmp_path / "t.csv", tmp_path / "t.parquet") == 101
    frame = pd.read_parquet(tmp_path / "t.parquet")
    assert frame["n"].dtype == np.float64 and frame["n"].iloc[-1] == 100.5


def test_a_broken_csv_is_not_converted(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3\n")
    done = run_cli("convert", "bad.csv", "bad.parquet")
    assert done.returncode == 2 and "Expected 2 columns" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no partial file


def test_a_task_that_keeps_its_targets_scales_the_features_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task.scales_targets decides, in the scan and in memory (classification's labels are
    not standardised)."""
    import dataclasses

    import ptflow.workflow
    from ptflow.tasks import REGRESSION

    path = _write_parquet(tmp_path / "t.parquet")
    scaled, kept = _scan(path), _scan(path, scale_targets=False)
    assert scaled.scaling is not None and kept.scaling is not None
    assert torch.equal(kept.scaling.x_mean, scaled.scaling.x_mean)
    assert kept.scaling.y_mean.tolist() == [0.0] and kept.scaling.y_std.tolist() == [1.0]
    keeps = dataclasses.replace(REGRESSION, scales_targets=False)
    monkeypatch.setattr(ptflow.workflow, "task_for", lambda cfg: keeps)
    cfg = Config.for_table(str(path), "y", epochs=2)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    buffers = dict(result.model.named_buffers())
    assert buffers["y_mean"].tolist() == [0.0] and buffers["y_std"].tolist() == [1.0]
    assert not torch.equal(buffers["x_mean"], torch.zeros_like(buffers["x_mean"]))


def _write_class_parquet(path: Path, rows: int = 1200, seed: int = 0) -> Path:
    """Three classes as text around three centres, a category, a few gaps, row groups of 200."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    points = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5]])[label] + rng.normal(size=(rows, 2))
    frame = pd.DataFrame({
        "a": np.where(np.arange(rows) % 40 == 3, np.nan, points[:, 0]),
        "b": points[:, 1],
        "colour": np.array(["red", "blue"])[rng.integers(0, 2, rows)],
        "species": np.array(["Gentoo", "Adelie", "Chinstrap"])[label],
    })  # fmt: skip
    frame.to_parquet(path, row_group_size=200)
    return path


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_streamed_classes_score_as_in_memory(tmp_path: Path) -> None:
    from ptflow.evaluation import ClassMetricSums
    from ptflow.models import baseline_design
    from ptflow.stats import fit_logistic

    path = _write_class_parquet(tmp_path / "classes.parquet")
    cfg = Config.for_table(str(path), "species", stream=True, epochs=30)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    assert result.task.name == "classification" and result.encoding is not None
    assert result.encoding.classes == ("Adelie", "Chinstrap", "Gentoo")  # sorted, as in memory
    assert result.metrics["test"].accuracy > 0.8
    # The oracle: the same rows, read whole, encoded as the run encodes, scored in memory.
    data = ptflow.load_table(path, ["species"], missing="impute", classes=True)
    assert data.classes == result.encoding.classes
    X = torch.from_numpy(result.encoding.encode(data.X.numpy(), data.vocabularies)[0])
    parts = torch.from_numpy(result.data.split.parts(0, len(X)))  # type: ignore[union-attr]
    for name, part in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        rows = parts == part
        sums = ClassMetricSums()
        sums.add(ptflow.predict(result.model, X[rows]), data.y[rows])
        expected = sums.metrics()
        got = result.metrics[name]
        assert got.accuracy == expected.accuracy and got.roc_auc == expected.roc_auc
        assert got.log_loss == pytest.approx(expected.log_loss, rel=1e-9)
    design = baseline_design(result.encoding)[0]
    train = parts == TRAIN
    logistic = fit_logistic(design(X[train]), data.y[train], 3)
    sums = ClassMetricSums()
    sums.add(logistic.predict(design(X[parts == TEST])), data.y[parts == TEST])
    assert result.baseline_metrics["test"].log_loss == pytest.approx(
        sums.metrics().log_loss, rel=1e-6
    )
    majority = result.other_baselines["the majority class"]["test"]
    assert majority.roc_auc == 0.5
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["per_class"]["Gentoo"]["support"] == int((data.y[parts == TEST] == 2).sum())
    for plot in ("confusion_matrix", "roc_curve", "calibration"):
        assert (tmp_path / "run" / f"{plot}.png").is_file()


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_streamed_classifier_predicts_classes_and_resumes_bit_for_bit(
    tmp_path: Path, cli: Cli
) -> None:
    from tests.conftest import interrupted_and_resumed, same_bytes

    path = _write_class_parquet(tmp_path / "classes.parquet")
    cfg = Config.for_table(str(path), "species", stream=True, epochs=3, batch_size=128,
                           model="mlp", hidden=(8,), dropout=0.1)  # fmt: skip
    ptflow.run_workflow(cfg, tmp_path / "whole")
    cut = interrupted_and_resumed(cfg, tmp_path, after_steps=11)
    assert same_bytes(cut, tmp_path / "whole", ("model.safetensors", "history.csv"))
    new = tmp_path / "new.csv"
    new.write_text("a,b,colour\n0,0,red\n2.5,0,blue\n0,2.5,green\n")
    done = cli("predict", str(tmp_path / "whole"), "--data", str(new))
    lines = done.out.splitlines()
    assert lines[0] == "species_pred,species_prob_Adelie,species_prob_Chinstrap,species_prob_Gentoo"
    for line in lines[1:]:
        assert abs(sum(float(p) for p in line.split(",")[1:]) - 1) < 1e-6


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_converted_csv_streams_its_text_target_as_classes(tmp_path: Path, cli: Cli) -> None:
    from tests.test_classification import _blobs

    _blobs(tmp_path / "blobs.csv", rows=400)  # text classes, a category, gaps
    assert cli("convert", "blobs.csv", "blobs.parquet", "--row-group-rows", "100").code == 0
    streamed = cli("train", "--data", "blobs.parquet", "--target", "species", "--stream",
                   "--epochs", "5", "--quiet", "--out", "run")  # fmt: skip
    assert streamed.code == 0, streamed.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    blobs = tmp_path / "blobs.csv"
    in_memory = ptflow.load_table(blobs, ["species"], missing="impute", classes=True)
    assert summary["task"] == "classification" and summary["classes"] == list(in_memory.classes)
    rows = summary["split_rows"]
    assert sum(rows.values()) == 400 and all(count > 40 for count in rows.values())
