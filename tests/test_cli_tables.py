"""`ptflow train`, `evaluate` and `predict` on tables: whole runs as a user runs them, in a
subprocess; bad tables and configs through `ptflow.cli.main` in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_sine_table

if TYPE_CHECKING:
    from tests.conftest import Cli, RunCli


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, ptflow_process: RunCli) -> Path:
    """One MLP trained on the sine table by `ptflow train`, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("trained")
    data = write_sine_table(folder)
    done = ptflow_process(
        *("train", "--data", str(data), "--target", "y", "--features", "a", "b"),
        *("--model", "mlp", "--hidden", "32,32", "--epochs", "150", "--out", str(folder / "run")),
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    assert "test, least squares" in done.stdout
    return folder / "run"


def test_train_predict_round_trip_gives_the_summary_metrics(
    run_cli: RunCli, trained: Path, sine_table: Path, tmp_path: Path
) -> None:
    done = run_cli(
        "predict", str(trained), "--data", str(sine_table), "--id", "id", "--output", "preds.csv"
    )
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tmp_path / "preds.csv")
    assert list(predictions.columns) == ["id", "y_pred"]
    frame = pd.read_csv(sine_table)
    assert predictions["id"].tolist() == frame["id"].tolist()

    test_rows = np.load(trained / "split_indices.npz")["test"]
    error = predictions["y_pred"].to_numpy()[test_rows] - frame["y"].to_numpy()[test_rows]
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["metrics"]["test"]["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-5)
    assert summary["metrics"]["test"]["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-5)
    assert summary["metrics"]["test"]["r2"] > 0.95


@pytest.mark.slow  # ptflow processes; test_encoding checks CSV = Parquet in-process
def test_csv_and_parquet_give_identical_predictions(
    run_cli: RunCli, trained: Path, sine_table: Path
) -> None:
    from_csv = run_cli("predict", str(trained), "--data", str(sine_table))
    from_parquet = run_cli(
        "predict", str(trained), "--data", str(sine_table.with_suffix(".parquet"))
    )
    assert from_csv.returncode == from_parquet.returncode == 0
    assert from_csv.stdout == from_parquet.stdout
    assert from_csv.stdout.splitlines()[0] == "y_pred"
    assert len(from_csv.stdout.splitlines()) == 1501


def test_evaluate_on_the_test_rows_gives_the_summary_metrics(
    run_cli: RunCli, trained: Path, sine_table: Path, tmp_path: Path
) -> None:
    test_rows = np.load(trained / "split_indices.npz")["test"]
    pd.read_csv(sine_table).iloc[test_rows].to_csv(tmp_path / "test_rows.csv", index=False)
    done = run_cli("evaluate", str(trained), "--data", "test_rows.csv", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    summary = json.loads((trained / "summary.json").read_text())
    assert report["rows"] == len(test_rows)
    for name in ("mae", "mse", "rmse", "r2"):
        assert report["metrics"]["y"][name] == pytest.approx(
            summary["metrics"]["test"][name], rel=1e-5
        )
    table = run_cli("evaluate", str(trained), "--data", "test_rows.csv")
    assert table.stdout.splitlines()[0] == f"test_rows.csv: {len(test_rows)} rows"
    assert table.stdout.splitlines()[2].split()[0] == "y"


@pytest.mark.slow  # three whole trainings (11 s); test_workflow reads TOML in-process
def test_toml_config_with_command_line_overrides(
    run_cli: RunCli, sine_table: Path, tmp_path: Path
) -> None:
    (tmp_path / "run.toml").write_text(
        f'data = "{sine_table.name}"\ntarget = "y"\nmodel = "mlp"\nhidden = [8]\nepochs = 50\n'
    )
    done = run_cli("train", "--config", "run.toml", "--epochs", "4", "--out", "a", "--quiet")
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert (config["model"], config["hidden"], config["epochs"]) == ("mlp", [8], 4)
    assert config["data"] == str(sine_table.resolve())  # relative to the TOML file
    again = run_cli("train", "--config", "a/config.toml", "--out", "b", "--quiet")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert (tmp_path / "a" / "history.csv").read_bytes() == (
        tmp_path / "b" / "history.csv"
    ).read_bytes()


@pytest.mark.slow  # subprocess-heavy: keeps the default suite under five minutes
def test_drop_missing_reports_the_dropped_rows(run_cli: RunCli, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[[3, 17], "x"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    done = run_cli(
        "train",
        "--data",
        "gaps.csv",
        "--target",
        "y",
        "--drop-missing",
        "--epochs",
        "2",
        "--out",
        "r",
    )
    assert done.returncode == 0, done.stderr
    assert "left out 2 rows with a missing or infinite feature value" in done.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data"]["dropped_rows"] == 2 and summary["data"]["rows"] == 58
    # evaluate imputes a gap as training would have, or stops at it when told to
    stopped = run_cli("evaluate", "r", "--data", "gaps.csv", "--missing", "error")
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert "column 'x' at row 4 (line 5); pass --missing impute or --missing drop" in stopped.stderr
    skipped = run_cli("evaluate", "r", "--data", "gaps.csv", "--drop-missing", "--json")
    assert skipped.returncode == 0, skipped.stderr
    report = json.loads(skipped.stdout)
    assert (report["rows"], report["dropped_rows"]) == (58, 2)
    assert report["metrics"]["y"] == report["overall"]


@pytest.fixture
def bad_files(tmp_path: Path, sine_table: Path) -> Path:
    files = {
        "empty.csv": "",
        "header.csv": "x,y\n",
        "dupes.csv": "x,x,y\n1,2,3\n4,5,6\n",
        "text.csv": "x,y\n1,2\n2,3\noops,4\n",
        "nan.csv": "x,y\n1,2\n,3\n4,5\n",
        "few.csv": "x,y\n1,2\n2,3\n",
        "constant.csv": "x,y\n1,2\n2,2\n3,2\n4,2\n5,2\n6,2\n7,2\n",
        "ragged.csv": "x,y\n1,2\n2,3,4\n",
        "unknown.toml": 'target = "y"\nepoch = 3\n',
        "wrongtype.toml": 'target = "y"\nepochs = "ten"\n',
        "broken.toml": "target = \n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.csv", "--target", "y"], "missing.csv does not exist"),
        (["--data", "empty.csv", "--target", "y"], "is empty"),
        (["--data", "header.csv", "--target", "y"], "has a header but no rows"),
        (["--data", "sine.csv", "--target", "price"], "has no column 'price'"),
        (["--data", "sine.csv", "--target", "y", "--features", "a", "zz"], "has no column 'zz'"),
        (["--data", "dupes.csv", "--target", "y"], "duplicate column names 'x'"),
        # numbers but one cell: that cell named, not the column taken for text
        (["--data", "text.csv", "--target", "y"], "holds numbers but for 'oops' at row 3 (line 4)"),
        (
            ["--data", "text.csv", "--target", "y", "--features", "x"],
            "holds numbers but for 'oops' at row 3 (line 4); fix that cell",
        ),
        (
            ["--data", "nan.csv", "--target", "y", "--missing", "error"],
            "pass --missing impute or --missing drop",
        ),
        (["--data", "few.csv", "--target", "y"], "2 rows are too few"),
        (["--data", "constant.csv", "--target", "y"], "same value in every row"),
        (["--data", "ragged.csv", "--target", "y"], "one value per column"),
        (["--data", "sine.csv"], "needs a target column"),
        (["--target", "y"], "give --data FILE"),
        (["--epochs", "3"], "ptflow train needs a table: give --data FILE"),
        (
            ["--data", "sine.csv", "--target", "y", "--patience", "3", "--val-fraction", "0"],
            "validation loss",
        ),
        (["--data", "sine.csv", "--config", "unknown.toml"], "unknown setting 'epoch'"),
        (
            ["--data", "sine.csv", "--config", "wrongtype.toml"],
            "setting 'epochs' must be an integer",
        ),
        (["--data", "sine.csv", "--config", "broken.toml"], "is not valid TOML"),
        (["--data", "sine.csv", "--config", "none.toml"], "none.toml does not exist"),
        (["--data", "sine.csv", "--target", "y", "--hidden", "8,x"], "'x' is not a number"),
    ],
)
def test_bad_tables_and_configs_fail_cleanly(
    cli: Cli, bad_files: Path, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in bad_files.iterdir())
    done = cli("train", *args, cwd=bad_files)
    assert done.code == 2
    lines = done.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.err
    assert message in lines[0]
    assert "Traceback" not in done.err
    assert sorted(p.name for p in bad_files.iterdir()) == before  # no run folder


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"a": [1.0], "y": [2.0]}), "has no column 'b'"),
        (
            pd.DataFrame({"a": [1.0, 2.0], "b": ["1", "x"]}),
            "column 'b' of new.csv has a non-numeric value 'x' at row 2",
        ),
        (pd.DataFrame({"a": [1.0, np.inf], "b": [1.0, 2.0]}), "column 'a' at row 2"),
    ],
)
def test_predict_checks_the_saved_schema(
    cli: Cli, trained: Path, tmp_path: Path, frame: pd.DataFrame, message: str
) -> None:
    frame.to_csv(tmp_path / "new.csv", index=False)
    done = cli("predict", str(trained), "--data", "new.csv")
    assert done.code == 2
    assert message in done.err and "Traceback" not in done.err
    lines = done.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.err
    assert done.out == ""  # no prediction printed before the bad row


def test_list_options_take_items_apart_or_with_commas(
    sine_table: Path, tmp_path: Path, cli: Cli
) -> None:
    """--features a b, a,b and a --features b are one list; --hidden 8 8 and 8,8 too."""
    records: list[tuple[list[str], list[int]]] = []
    for features, hidden in (
        (["a", "b"], ["8", "8"]),
        (["a,b"], ["8,8"]),
        (["a", "--features", "b"], ["8", "8"]),
    ):
        out = tmp_path / f"run{len(records)}"
        argv = [
            "train",
            "--data",
            str(sine_table),
            "--target",
            "y",
            "--features",
            *features,
            "--model",
            "mlp",
            "--hidden",
            *hidden,
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
        assert cli(*argv).code == 0
        config = json.loads((out / "config.json").read_text())["config"]
        records.append((config["features"], config["hidden"]))
    assert records == [(["a", "b"], [8, 8])] * 3
    refused = cli("train", "--data", str(sine_table), "--target", "y", "--features", "a,,b")
    assert refused.code == 2 and "'a,,b' has an empty item" in refused.err


def test_a_model_behind_least_squares_is_told_so(
    sine_table: Path, tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "short"
    argv = ["train", "--data", str(sine_table), "--target", "y", "--epochs", "1", "--out", str(out)]
    result = cli(*argv)
    assert result.code == 0, result.err
    said = [line for line in result.out.splitlines() if "does worse than least squares" in line]
    assert len(said) == 1 and said[0].startswith("The model does worse than least squares on"), said
    assert "does worse than least squares" in (out / "report.html").read_text()


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_none_on_the_command_line_turns_a_setting_off_over_the_defaults(
    sine_table: Path, tmp_path: Path, cli: Cli
) -> None:
    """--patience none: off, over the tables' default of 50 and a TOML file's value."""
    (tmp_path / "run.toml").write_text("patience = 7\nbatch_size = 16\n")
    argv = ["train", "--data", str(sine_table), "--target", "y", "--epochs", "2", "--quiet"]
    out = tmp_path / "run"
    given = ["--config", str(tmp_path / "run.toml"), "--patience", "none", "--batch-size", "None"]
    assert cli(*argv, *given, "--out", str(out)).code == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["patience"] is None and config["batch_size"] is None
    assert (
        cli(*argv, "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "b")).code == 0
    )
    kept = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert kept["patience"] == 7 and kept["batch_size"] == 16
    refused = cli(*argv, "--patience", "nine")
    assert refused.code == 2 and "invalid int value: 'nine'" in refused.err


@pytest.mark.slow  # a 400-epoch run: keeps the default suite under five minutes
def test_early_stopping_says_once_which_epoch_it_kept(sine_table: Path, cli: Cli) -> None:
    done = cli("train", "--data", str(sine_table), "--target", "y", "--epochs", "400",
               "--patience", "2", "--lr", "0.5", "--out", "run")  # fmt: skip
    assert done.code == 0, done.err
    kept = [line for line in done.out.splitlines() if "epoch" in line and "best" in line]
    assert len(kept) == 1 and kept[0].startswith("restored the weights of epoch "), kept
    assert "(stopped early at epoch" in kept[0]


def test_predict_stops_at_a_bad_value_with_the_whole_blocks_before_it_on_stdout(
    tmp_path: Path, cli: Cli, linear_table: Path
) -> None:
    """Predictions go out a block of READ_BLOCK_ROWS rows at a time, so stdout holds the
    blocks before the bad value's block, whole, and none of that block's rows."""
    from ptflow.tables import READ_BLOCK_ROWS

    trained = cli("train", "--data", "linear.csv", "--target", "y", "--epochs", "2", "--quiet")
    assert trained.code == 0, trained.err
    rows = READ_BLOCK_ROWS + 5_000
    frame = pd.DataFrame(
        np.random.default_rng(0).normal(size=(rows, 3)), columns=["x0", "x1", "x2"]
    )
    frame = frame.astype(object)
    frame.loc[READ_BLOCK_ROWS + 100, "x1"] = "oops"  # in the second block
    frame.to_csv(tmp_path / "bad.csv", index=False)
    done = cli("predict", trained.out.strip(), "--data", "bad.csv")
    assert done.code == 2
    assert done.err.startswith("error: column 'x1' of bad.csv has a non-numeric value 'oops'")
    assert done.out.splitlines()[0] == "y_pred"
    assert len(done.out.splitlines()) == 1 + READ_BLOCK_ROWS  # the header and the first block
