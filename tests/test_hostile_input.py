"""Property-based tests: random and malformed tables, TOML files and command lines.

Whatever goes in, `ptflow` ends in one of a few clean ways: success with a finished run
folder, or one `error: ...` line with exit code 2 and no run folder. The same holds for
where the run is written (`--out`, `--overwrite`: no file of the user's may change) and for
damaged run folders read by `report`, `compare`, `predict` and `runs`. (A loss that
diverges is exit code 3, with the folder kept only if it holds a checkpoint.) An uncaught
exception, which a user would see as a traceback, fails the test, and so does a warning.

The CLI runs in-process here (`ptflow.cli.main`): the same code path as the `ptflow`
command without a new interpreter per example.
"""

from __future__ import annotations

import dataclasses
import io
import math
import string
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ptflow
from ptflow.cli import main
from ptflow.config import Config

# Few examples by default, each a real (one-epoch) run; more under -m slow.
DEFAULT = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For the run-folder generators, whose every example copies and reads whole run folders.
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For the table generators, whose examples now mostly train (text columns are categories).
FEWER = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(argv: list[str]) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


def _assert_clean_outcome(code: int, stderr: str, out: Path) -> None:
    if code == 0:
        assert not out.exists() or (out / "summary.json").is_file()
        return
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    if code == 3:  # diverged: the folder stays only to keep a checkpoint
        assert not out.exists() or any((out / "checkpoints").glob("epoch-*.json"))
        return
    assert code == 2, stderr
    assert not out.exists(), f"{out} was left behind: {stderr}"


def _train_on(path: Path, *extra: str) -> None:
    out = path.parent / "run"
    argv = ["train", "--data", str(path), "--target", "y", "--epochs", "1", "--quiet"]
    code, stderr = _run([*argv, *extra, "--out", str(out)])
    _assert_clean_outcome(code, stderr, out)


# --- CSV -----------------------------------------------------------------------------

_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "NA", "null", "1e400", "-0", " 3 "]),
    st.text(string.printable, max_size=6),
)
_NAMES = st.sampled_from(["y", "a", "b", "c", "", "y", "a b", "é", "1"])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV-like file: mostly well-formed, with any cell, name or line possibly wrong."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))  # not a CSV at all
    names = draw(st.lists(_NAMES, min_size=1, max_size=4))
    rows = draw(
        st.lists(
            st.lists(_CELLS, min_size=len(names) - 1, max_size=len(names) + 1),
            max_size=25,
        )
    )
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(names), *(",".join(row) for row in rows)]
    return newline.join(lines).encode(draw(st.sampled_from(["utf-8", "utf-16"])))


def _numeric_rows(draw: st.DrawFn, n: int) -> list[str]:
    value = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(repr)
    return [",".join(draw(st.lists(value, min_size=3, max_size=3))) for _ in range(n)]


@st.composite
def nearly_good_csv_files(draw: st.DrawFn) -> bytes:
    """Enough good rows to train on, with a few hostile cells mixed in."""
    rows = _numeric_rows(draw, draw(st.integers(10, 40)))
    for _ in range(draw(st.integers(0, 3))):
        row, cell = draw(st.integers(0, len(rows) - 1)), draw(_CELLS)
        cells = rows[row].split(",")
        cells[draw(st.integers(0, 2))] = cell
        rows[row] = ",".join(cells)
    return "\n".join(["a,b,y", *rows]).encode()


def _check_csv(content: bytes, drop: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_bytes(content)
        _train_on(path, *(["--drop-missing"] if drop else []))


_CSV = {"content": st.one_of(csv_files(), nearly_good_csv_files()), "drop": st.booleans()}
test_random_csv_files = FEWER(given(**_CSV)(_check_csv))
test_random_csv_files_thoroughly = pytest.mark.slow(THOROUGH(given(**_CSV)(_check_csv)))


# --- Parquet -------------------------------------------------------------------------


@st.composite
def parquet_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Columns of assorted types, with nulls, NaN and infinity."""
    n = draw(st.integers(0, 30))
    number = st.one_of(st.none(), st.floats(width=64), st.integers(-(2**40), 2**40))
    kinds = {
        "float": st.lists(st.one_of(st.none(), st.floats(width=64)), min_size=n, max_size=n),
        "int": st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n),
        "text": st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=n, max_size=n),
        "bool": st.lists(st.booleans(), min_size=n, max_size=n),
        "mixed": st.lists(
            number.map(lambda v: v if v is None else float(v)), min_size=n, max_size=n
        ),
    }
    names = draw(
        st.lists(st.sampled_from(["y", "a", "b", "c"]), min_size=1, max_size=4, unique=True)
    )
    return {name: draw(kinds[draw(st.sampled_from(sorted(kinds)))]) for name in names}


def _check_parquet(columns: dict[str, Any], garbage: bytes | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.parquet"
        if garbage is not None:
            path.write_bytes(garbage)
        else:
            pq.write_table(pa.table(columns), path)
        _train_on(path)


_PARQUET = {"columns": parquet_tables(), "garbage": st.one_of(st.none(), st.binary(max_size=100))}
test_random_parquet_files = FEWER(given(**_PARQUET)(_check_parquet))
test_random_parquet_files_thoroughly = pytest.mark.slow(THOROUGH(given(**_PARQUET)(_check_parquet)))


# --- TOML ----------------------------------------------------------------------------

# Every setting a config file may hold, and one it may not.
_SETTINGS = [field.name for field in dataclasses.fields(Config)] + ["not_a_setting"]
_VALUES = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([0.0, 0.5, 0.9, 1.0, -1.0, 1e-3, 1e30, math.inf, math.nan, 2.0**70]),
    st.booleans(),
    st.sampled_from(["mlp", "linear", "tutorial", "adam", "sgd", "cosine", "plateau", "x", ""]),
    st.lists(st.integers(-1, 6), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2), max_size=2),
)


def _check_toml(values: dict[str, Any], text: str | None) -> None:
    import tomli_w

    if values.get("compile") is True:
        # torch.compile takes about a minute here (and a C++ compiler), for a one-epoch run;
        # test_training covers compiling, so a drawn `compile = true` is checked as false.
        values = {**values, "compile": False}
    with tempfile.TemporaryDirectory() as folder:
        config, out = Path(folder) / "settings.toml", Path(folder) / "run"
        config.write_text(text if text is not None else tomli_w.dumps(values), encoding="utf-8")
        code, stderr = _run(
            ["run", "--config", str(config), "--epochs", "1", "--quiet", "--out", str(out)]
        )
        _assert_clean_outcome(code, stderr, out)


_TOML = {
    "values": st.dictionaries(st.sampled_from(_SETTINGS), _VALUES, max_size=6),
    "text": st.one_of(st.none(), st.text(max_size=60)),
}
test_random_toml_configs = DEFAULT(given(**_TOML)(_check_toml))
test_random_toml_configs_thoroughly = pytest.mark.slow(THOROUGH(given(**_TOML)(_check_toml)))


# --- command lines -------------------------------------------------------------------

_TOKENS = st.sampled_from(
    [
        "run", "train", "predict", "evaluate", "bogus", "--lr", "--epochs", "--model", "mlp",
        "--batch-size", "--seed", "--hidden", "3,2", "--data", "missing.csv", "--target", "y",
        "--x", "1.5", "--input", "--resume", "--weight", "--end", "--step", "--patience",
        "--val-fraction", "--schedule", "cosine", "onecycle", "--optimizer", "adam", "--no-shuffle",
        "--overwrite", "--format", "csv", "--loss", "huber", "--clip-grad-norm", "--config",
        "0", "1", "2", "-1", "0.5", "1e9", "nan", "inf", "", "--", "-", "=", "--quiet",
    ]
)  # fmt: skip


def _check_command_line(tokens: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        argv = (
            [*tokens, "--epochs", "1", "--out", str(out), "--quiet"]
            if tokens[:1]
            in (
                ["run"],
                ["train"],
            )
            else tokens
        )
        code, stderr = _run(argv)
        if code == 0 and out.exists():
            assert (out / "summary.json").is_file()
        _assert_clean_outcome(code, stderr, out)


_COMMAND_LINES = {"tokens": st.lists(_TOKENS, max_size=8)}
test_random_command_lines = DEFAULT(given(**_COMMAND_LINES)(_check_command_line))
test_random_command_lines_thoroughly = pytest.mark.slow(
    THOROUGH(given(**_COMMAND_LINES)(_check_command_line))
)


# --- output folders: what --out and --overwrite may be pointed at ------------------------

_OUT_KINDS = st.sampled_from(
    ["", " ", ".", "..", "~", "/", "new", "new/deeper", "empty", "mine", "a_file", "a_file/x",
     "link_to_mine", "finished_run", "mine/finished_run", "cr\rname", "line\nbreak"]
)  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts and ".config" not in p.parts
    }


def _check_out_folder(kind: str, overwrite: bool, finished_run: Path) -> None:
    """Whatever --out is, files that ptflow did not write survive byte for byte."""
    import os
    import shutil

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mine").mkdir()
        (root / "mine" / "notes.txt").write_text("keep me")
        (root / "empty").mkdir()
        (root / "a_file").write_text("a file of mine")
        (root / "link_to_mine").symlink_to(root / "mine")
        for where in (root / "finished_run", root / "mine" / "finished_run"):
            shutil.copytree(finished_run, where)
        mine = {name: data for name, data in _snapshot(root).items() if "finished_run" not in name}
        out = str(root / "home") if kind == "~" else kind
        (root / "home").mkdir()
        previous, home = Path.cwd(), os.environ.get("HOME")
        os.chdir(root)
        os.environ["HOME"] = str(root / "home")
        try:
            argv = ["run", "--epochs", "1", "--quiet", "--out", out]
            code, stderr = _run([*argv, "--overwrite"] if overwrite else argv)
        finally:
            os.chdir(previous)
            if home is not None:
                os.environ["HOME"] = home
        assert code in (0, 2), stderr
        if code == 2:
            assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        after = _snapshot(root)
        for name, data in mine.items():  # every file of the user's, unchanged
            assert after.get(name) == data, (kind, overwrite, name, stderr)


@pytest.fixture(scope="module")
def finished_run(tutorial_run: ptflow.RunResult) -> Path:
    """A finished run folder (the session's tutorial run): copy it before changing it."""
    return tutorial_run.run_dir


# --- damaged run folders: every reader of a run folder ends cleanly ----------------------

_JSON_DAMAGE = st.one_of(
    st.sampled_from(["", "[]", "{}", "null", "3", '"text"', "{", "[" * 5000, '{"a": NaN}']),
    st.binary(max_size=40).map(lambda data: data.decode("latin-1")),
    st.dictionaries(
        st.sampled_from(["config", "metrics", "model", "features", "target", "epochs", "task"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers())),
    ).map(lambda value: __import__("json").dumps(value)),
)


def _check_damaged_folder(file: str, text: str, finished_run: Path) -> None:
    import shutil

    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        for name in ("good", "bad"):
            shutil.copytree(finished_run, runs / name)
        (runs / "bad" / file).write_text(text, encoding="utf-8", errors="surrogateescape")
        for argv in (
            ["report", str(runs / "bad")],
            ["compare", str(runs / "good"), str(runs / "bad"), "--out", f"{folder}/c.html"],
            ["predict", str(runs / "bad"), "--x", "1"],
            ["runs", str(runs)],
            ["runs", str(runs), "--json", "--sort", "test_mae"],
        ):
            code, stderr = _run(argv)
            assert code == 0 or (
                code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
            ), (argv, code, stderr)
            if argv[0] == "runs":
                assert code == 0, stderr  # a damaged folder is listed, not fatal


_OUT_FOLDERS = {"kind": _OUT_KINDS, "overwrite": st.booleans()}
test_random_output_folders_never_lose_a_file = FEW(given(**_OUT_FOLDERS)(_check_out_folder))
test_random_output_folders_never_lose_a_file_thoroughly = pytest.mark.slow(
    THOROUGH(given(**_OUT_FOLDERS)(_check_out_folder))
)
_DAMAGE = {
    "file": st.sampled_from(["config.json", "summary.json", "history.csv"]),
    "text": _JSON_DAMAGE,
}
test_random_damaged_run_folders_end_in_one_line = FEW(given(**_DAMAGE)(_check_damaged_folder))
test_random_damaged_run_folders_end_in_one_line_thoroughly = pytest.mark.slow(
    settings(FEW, max_examples=100)(given(**_DAMAGE)(_check_damaged_folder))
)
