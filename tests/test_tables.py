"""Reading CSV and Parquet tables: every column checked, every problem named."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ptflow import WorkflowError
from ptflow.data import scale_splits, split
from ptflow.stats import fit_scaling
from ptflow.tables import load_table


def test_default_features_are_the_other_numeric_columns(sine_table: Path) -> None:
    table = load_table(sine_table, ["y"])
    assert table.features == ("a", "b", "noise")  # the text id column is left out
    assert table.target == ("y",)
    frame = pd.read_csv(sine_table)
    assert table.X.dtype == torch.float32 and table.X.shape == (1500, 3)
    assert np.allclose(table.X.numpy(), frame[["a", "b", "noise"]].to_numpy(), atol=1e-6)
    assert np.allclose(table.y[:, 0].numpy(), frame["y"].to_numpy(), atol=1e-6)


def test_fingerprint_names_the_file_and_its_hash(sine_table: Path) -> None:
    table = load_table(sine_table, ["y"], ["a"])
    assert table.fingerprint == {
        "file": "sine.csv",
        "bytes": sine_table.stat().st_size,
        "sha256": hashlib.sha256(sine_table.read_bytes()).hexdigest(),
        "rows": 1500,
        "columns": 5,
    }


def test_parquet_gives_the_same_tensors_as_csv(sine_table: Path) -> None:
    from_csv = load_table(sine_table, ["y"], ["a", "b"])
    from_parquet = load_table(sine_table.with_suffix(".parquet"), ["y"], ["a", "b"])
    assert torch.allclose(from_csv.X, from_parquet.X, atol=1e-6)
    assert torch.allclose(from_csv.y, from_parquet.y, atol=1e-6)


def test_several_targets_and_an_id_column(sine_table: Path) -> None:
    table = load_table(sine_table, ["y", "noise"], ["a", "b"], id_column="id")
    assert table.y.shape == (1500, 2)
    assert table.ids is not None and table.ids[:2] == ["row0", "row1"]


def test_format_comes_from_the_extension_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "data.dat"
    path.write_text("x,y\n1,2\n2,4\n3,7\n")
    with pytest.raises(WorkflowError, match="pass --format csv"):
        load_table(path, ["y"])
    assert load_table(path, ["y"], format="csv").X[:, 0].tolist() == [1.0, 2.0, 3.0]


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("", "y", "is empty"),
        ("x,y\n", "y", "has a header but no rows"),
        ("x,y\n1,2\n", "z", "has no column 'z'; its columns are: x, y"),
        ("x,x,y\n1,2,3\n", "y", "duplicate column names 'x'"),
        (
            "x,y\n1,2\n2,abc\n3,4\n",
            "y",
            "column 'y' of t.csv has a non-numeric value 'abc' at row 2 (line 3)",
        ),
        (
            "x,y\n1,2\n,3\n3,4\n",
            "y",
            "t.csv has a missing value in column 'x' at row 2 (line 3); pass --missing impute or "
            "--missing drop, or fill it in.",
        ),
        ("x,y\n1,2\n2,inf\n", "y", "column 'y' at row 2"),
        ("x,y\n1,2\n2,1e39\n", "y", "too large (beyond ±3.4e38, float32's range)"),
        ("x,y\n1,5\n2,5\n3,5\n", "y", "target column 'y' has the same value in every row"),
        ("x,y\n1,2\n3,4,5\n", "y", "every row has one value per column"),
        (
            "name,y\na,1\nb,2\nc,4\n",
            "y",
            "no column to learn from besides the target (name: looks like an identifier",
        ),
    ],
)
def test_bad_tables_are_named_errors(tmp_path: Path, text: str, target: str, message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_table(_write(tmp_path, text), [target])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_and_broken_parquet(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="does not exist"):
        load_table(tmp_path / "nope.csv", ["y"])
    with pytest.raises(WorkflowError, match=r"cannot read bad\.parquet as Parquet"):
        load_table(_write(tmp_path, "x,y\n1,2\n", "bad.parquet"), ["y"])


def test_parquet_text_columns_are_named(tmp_path: Path) -> None:
    pd.DataFrame({"x": ["1", "oops"], "y": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(
        WorkflowError, match=r"column 'x' of t\.parquet has a non-numeric value 'oops' at row 2"
    ):
        load_table(tmp_path / "t.parquet", ["y"], ["x"], numeric=["x"])


def test_drop_missing_removes_rows_and_counts_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "id,x,y\na,1,2\nb,,3\nc,3,nan\nd,4,8\n")
    table = load_table(path, ["y"], ["x"], drop_missing=True, id_column="id")
    assert table.dropped_rows == 2
    assert table.X[:, 0].tolist() == [1.0, 4.0]
    assert table.ids == ["a", "d"]


def test_scaling_is_fitted_on_training_rows_only() -> None:
    X = torch.tensor([[1.0, 5.0], [3.0, 5.0], [100.0, 5.0], [200.0, 5.0]])
    y = torch.tensor([[0.0], [2.0], [50.0], [60.0]])
    splits = split(X, y, 0.5)
    scaling = fit_scaling(*splits.train)
    assert scaling.x_mean.tolist() == [2.0, 5.0]
    assert scaling.x_std.tolist() == [1.0, 1.0]  # the constant column keeps 1, never 0
    assert scaling.y_mean.tolist() == [1.0]
    scaled = scale_splits(splits, scaling)
    assert scaled.train.X.tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    assert scaled.train.y.tolist() == [[-1.0], [1.0]]
    assert scaled.test.X[:, 0].tolist() == [98.0, 198.0]
    assert torch.equal(scaled.test_indices, splits.test_indices)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", "a missing value in column 'b' at row 40"),
        ("inf", "an infinite or too large (beyond ±3.4e38, float32's range) value in "
                "column 'b' at row 40"),
        ("oops", "column 'b' of t.{kind} has a non-numeric value 'oops' at row 40"),
    ],
)  # fmt: skip
def test_every_reader_names_a_bad_cell_in_the_same_words(
    tmp_path: Path, cell: str, expected: str
) -> None:
    """load_table (training), iter_table (evaluate, predict) and scan_table (--stream), on
    CSV and Parquet: one check, one wording, the same row."""
    from ptflow import iter_table, scan_table

    frame = pd.DataFrame({"a": np.arange(60.0), "b": [str(i) for i in range(60)]})
    frame.loc[39, "b"] = cell
    frame["y"] = frame["a"] * 3 + 1
    messages = []
    for kind in ("csv", "parquet"):
        path = tmp_path / f"t.{kind}"
        if kind == "csv":
            frame.to_csv(path, index=False)
        else:  # numbers where they are numbers: a text cell keeps the column text
            numeric = pd.to_numeric(frame["b"], errors="coerce") if cell != "oops" else frame["b"]
            frame.assign(b=numeric).to_parquet(path)
        readers: list[Callable[[], object]] = [
            partial(load_table, path, ["y"], ["a", "b"], numeric=["b"]),
            partial(list, iter_table(path, ["a", "b"], target=["y"], block_rows=16)),
        ]
        if kind == "parquet":
            readers.append(
                partial(scan_table, path, ["y"], ["a", "b"], missing="error", numeric=["b"])
            )
        for read in readers:
            with pytest.raises(WorkflowError) as caught:
                read()
            messages.append(str(caught.value).split(";")[0])
    for message in messages:
        wanted = expected.format(kind="csv" if "t.csv" in message else "parquet")
        assert wanted in message, (wanted, messages)
    without_name = {m.replace("t.csv", "T").replace("t.parquet", "T") for m in messages}
    without_line = {m.replace(" (line 41)", "") for m in without_name}
    assert len(without_line) == 1, messages


def test_every_column_gets_a_role_and_the_reason_for_it(tmp_path: Path) -> None:
    """What the run did with each column, said, not silently chosen (issue 16's first step)."""
    from ptflow.tables import describe_roles

    path = tmp_path / "houses.csv"
    rows = [f"h{i},{i % 7},{'true' if i % 2 else 'false'},{i % 5},{3 * i}" for i in range(40)]
    rows[3] = "h3,,true,3,9"  # a blank cell in a feature
    path.write_text("house,rooms,garden,floor,price\n" + "\n".join(rows) + "\n")
    table = load_table(path, ["price"], ["rooms", "garden"], drop_missing=True)
    assert [(r.name, r.role, r.detail) for r in table.roles] == [
        ("house", "ignored", "not in --features"),
        ("rooms", "feature", "numbers, 1 missing"),
        ("garden", "feature", "true/false as 1/0"),
        ("floor", "ignored", "not in --features"),
        ("price", "target", "numbers"),
    ]
    assert describe_roles(load_table(path, ["price"], drop_missing=True).roles).splitlines() == [
        "columns:",
        "  house   ignored  looks like an identifier (39 distinct values in 39 rows); "
        "--categorical house uses it",
        "  rooms   feature  numbers, 1 missing",
        "  garden  feature  true/false as 1/0",
        "  floor   feature  numbers",
        "  price   target   numbers",
    ]


def test_a_run_records_and_reports_its_columns(sine_table: Path, tmp_path: Path) -> None:
    import json

    import ptflow
    from ptflow.report import write_report

    cfg = ptflow.Config.for_table(str(sine_table), "y", epochs=1)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["columns"][0] == {
        "name": "id",
        "role": "ignored",
        "detail": "looks like an identifier (1,500 distinct values in 1,500 rows); "
        "--categorical id uses it",
    }
    assert [c["role"] for c in summary["columns"]] == [
        "ignored", "feature", "feature", "feature", "target"
    ]  # fmt: skip
    page = write_report(result.run_dir).read_text()
    assert "<h2>Columns</h2>" in page and "looks like an identifier" in page


def test_an_id_is_kept_as_written_even_when_it_looks_like_a_missing_value(tmp_path: Path) -> None:
    from ptflow import iter_table

    path = tmp_path / "countries.csv"
    path.write_text("code,x\nNA,1\n007,-\nUS,3\n")  # Namibia's code; a missing x
    blocks = list(iter_table(path, ["x"], id_column="code", drop_missing=True))
    assert [i for block in blocks for i in block.ids or []] == ["NA", "US"]
    assert sum(block.dropped_rows for block in blocks) == 1


def test_a_column_of_numbers_with_a_typo_is_named_not_dropped(tmp_path: Path) -> None:
    """Once a column with one 'five' in it was silently left out of the default features."""
    path = tmp_path / "typo.csv"
    rows = [f"{i},{i % 4},{2 * i}" for i in range(30)]
    rows[7] = "five,3,14"
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(WorkflowError, match=r"column 'a' of typo\.csv holds numbers but for "
                       r"'five' at row 8 \(line 9\); fix that cell"):  # fmt: skip
        load_table(path, ["y"])
    assert load_table(path, ["y"], ["b"]).features == ("b",)  # named features: a left out
    text = tmp_path / "text.csv"  # a column of a few words is categories
    text.write_text(
        "city,b,y\n" + "".join(f"c{i % 3},{i % 7},{i * 2 + i % 3}\n" for i in range(30))
    )
    assert load_table(text, ["y"]).features == ("city", "b")
