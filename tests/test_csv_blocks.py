"""The block-parallel CSV reader gives exactly what pandas reads in one piece."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ptflow
from ptflow import csv_blocks
from ptflow.csv_blocks import SequentialReadNeeded, parallel_blocks
from ptflow.tables import MISSING_MARKERS

COLUMNS = ["a", "b", "y"]


def read_csv_float32(
    path: Path,
    columns: list[str],
    features: list[str],
    target: list[str],
    threads: int,
    digest: hashlib._Hash,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The parallel blocks side by side, as (X, y); None when a sequential read is needed."""
    try:
        blocks = list(
            parallel_blocks(path, columns, [*features, *target], threads, digest, MISSING_MARKERS)
        )
    except SequentialReadNeeded:
        return None
    assert blocks and 0 < blocks[-1][1] == 1.0  # the share read, at the end: all of it
    values = np.concatenate([np.column_stack(block) for block, _ in blocks])
    return values[:, : len(features)], values[:, len(features) :]


def _whole(path: Path) -> np.ndarray:
    values: np.ndarray = pd.read_csv(path, dtype=np.float32).to_numpy()
    return values


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 bytes, whose line ends are looked for 16 bytes at a time: every file
    here is cut into many blocks, and some lines are longer than a probe or a block."""
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 64)
    monkeypatch.setattr(csv_blocks, "PROBE_BYTES", 16)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_blocks_reassemble_the_file_in_order(
    tmp_path: Path, threads: int, newline: str, final_newline: bool
) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 3)).astype(np.float32)
    lines = ["a,b,y", *(",".join(f"{v:.7g}" for v in row) for row in values)]
    path = tmp_path / "t.csv"
    path.write_bytes((newline.join(lines) + (newline if final_newline else "")).encode())
    digest = hashlib.sha256()
    result = read_csv_float32(path, COLUMNS, ["a", "b"], ["y"], threads, digest)
    assert result is not None
    X, y = result
    expected = _whole(path)
    assert np.array_equal(X, expected[:, :2]) and np.array_equal(y, expected[:, 2:])
    # The digest of the bytes parsed, block by block, is the whole file's.
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_blank_lines_long_lines_and_unused_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    long_id = "x" * 300  # longer than a block
    path.write_text(f"id,a,b,y\nr1,1,2,3\n\n{long_id},4,5,6\n\n\nr3,7,8,9\n")
    result = read_csv_float32(path, ["id", "a", "b", "y"], ["b", "a"], ["y"], 2, hashlib.sha256())
    assert result is not None
    X, y = result
    assert X.tolist() == [[2, 1], [5, 4], [8, 7]] and y.tolist() == [[3], [6], [9]]


@pytest.mark.parametrize(
    "content",
    [
        'a,b,y\n1,2,3\n"4",5,6\n',
        '"a",b,y\n1,2,3\n',
        "a,b,y\n1,2,3\n4,x,6\n",
        "a,b,y\n1,2\n3,4,5,6\n",
    ],
)
def test_quotes_and_bad_rows_ask_for_a_sequential_read(tmp_path: Path, content: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content)
    assert read_csv_float32(path, COLUMNS, ["a", "b"], ["y"], 2, hashlib.sha256()) is None


def test_load_table_reads_quoted_files_the_same(tmp_path: Path) -> None:
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    rows = [(i, 2 * i, 3 * i + 1) for i in range(200)]
    plain.write_text("a,b,y\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows))
    quoted.write_text('"a","b","y"\n' + "".join(f'"{a}",{b},"{y}"\n' for a, b, y in rows))
    one, other = ptflow.load_table(plain, "y"), ptflow.load_table(quoted, "y")
    assert one.X.equal(other.X) and one.y.equal(other.y)
    for table, path in ((one, plain), (other, quoted)):  # read in parallel, then in sequence
        assert table.fingerprint["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bad_value_deep_in_the_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = ["a,b,y", *(f"{i},{i},{i % 7}" for i in range(300))]
    lines[250] = "1,oops,2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ptflow.WorkflowError, match=r"'oops' at row 250 \(line 251\)"):
        ptflow.load_table(path, "y", ["a", "b"])


def test_parquet_is_read_in_blocks_across_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr("ptflow.tables.READ_BLOCK_ROWS", 50)
    rng = np.random.default_rng(1)
    columns = {"a": rng.normal(size=500), "b": rng.integers(0, 9, 500), "y": rng.normal(size=500)}
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=37)
    table = ptflow.load_table(path, "y")
    assert table.features == ("a", "b")
    expected = np.column_stack([columns["a"], columns["b"]]).astype(np.float32)
    assert np.array_equal(table.X.numpy(), expected)
    assert np.array_equal(table.y.numpy()[:, 0], columns["y"].astype(np.float32))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_iter_table_yields_the_table_block_by_block(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"id": [f"r{i}" for i in range(230)], "a": rng.normal(size=230), "b": rng.normal(size=230)}
    )
    path = tmp_path / f"t.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    blocks = list(ptflow.iter_table(path, ["b", "a"], id_column="id", block_rows=100))
    assert [len(block.X) for block in blocks] == [100, 100, 30]
    assert [block.first_row for block in blocks] == [1, 101, 201]
    whole = ptflow.load_table(path, (), ["b", "a"], id_column="id")
    assert np.array_equal(np.concatenate([block.X.numpy() for block in blocks]), whole.X.numpy())
    assert [i for block in blocks for i in block.ids or []] == whole.ids


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("oops", r"non-numeric value 'oops' at row 250 \(line 251\)"),
        (
            "",
            r"t\.csv has a missing value in column 'b' at row 250 \(line 251\); pass --missing "
            r"drop to skip such rows \(a model saved without an encoding of its columns cannot "
            r"impute\)",
        ),
        ("1e39", r"too large \(.*\) value in column 'b' at row 250"),
        # the markers people type for "unknown" are missing values, not text
        ("-", r"a missing value in column 'b' at row 250 \(line 251\); pass --missing drop"),
        ("?", r"a missing value in column 'b' at row 250 \(line 251\); pass --missing drop"),
        ("NA", r"a missing value in column 'b' at row 250 \(line 251\); pass --missing drop"),
    ],
)
def test_iter_table_names_the_row_of_a_bad_value(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "t.csv"
    lines = ["a,b", *(f"{i},{i}" for i in range(300))]
    lines[250] = f"1,{value}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ptflow.WorkflowError, match=message):
        list(ptflow.iter_table(path, ["a", "b"], block_rows=100))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_every_reader_takes_a_true_false_column_as_one_and_zero(tmp_path: Path, kind: str) -> None:
    """train, predict and evaluate read a true/false column alike (once train took it and
    predict refused it); blanks among the values are missing values."""
    flags = [True, False, None, True] * 60
    frame = pd.DataFrame({"a": np.arange(240.0), "flag": pd.array(flags, dtype="boolean")})
    frame["y"] = frame["a"] * 2
    path = tmp_path / f"t.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    expected = np.array([np.nan if f is None else float(f) for f in flags], dtype=np.float32)
    table = ptflow.load_table(path, "y", ["a", "flag"], drop_missing=True)
    kept = ~np.isnan(expected)
    assert np.array_equal(table.X[:, 1].numpy(), expected[kept])
    blocks = list(ptflow.iter_table(path, ["a", "flag"], target=["y"], drop_missing=True))
    assert np.array_equal(np.concatenate([b.X[:, 1].numpy() for b in blocks]), expected[kept])
    assert sum(b.dropped_rows for b in blocks) == table.dropped_rows == 60


def test_iter_table_names_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1.0, 2.0], "flag": [True, False]}).to_parquet(path)
    with pytest.raises(ptflow.WorkflowError, match="has no column 'c'"):
        list(ptflow.iter_table(path, ["c"]))
