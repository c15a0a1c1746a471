"""Every failure a user can cause is one `error:` line, exit 2, no traceback, nothing written:
the cases the hostile-user audit (issue 14) found printing a traceback or the wrong reason."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import ptflow
from ptflow.cli import main


def _error(*args: str) -> str:
    """Run ptflow in-process; return its one error line (after checking it is one line)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    lines = err.getvalue().strip().splitlines()
    assert code == 2, (code, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tutorial_run: ptflow.RunResult) -> Path:
    """A finished run folder (the session's tutorial run): copy it before changing it."""
    return tutorial_run.run_dir


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("--weight-decay", "nan"),
        ("--weight-decay", "inf"),
        ("--min-delta", "nan"),
        ("--momentum", "nan"),
        ("--huber-delta", "inf"),
    ],
)
def test_a_setting_that_is_not_finite_is_refused(tmp_path: Path, setting: str, value: str) -> None:
    line = _error("run", setting, value, "--out", str(tmp_path / "run"))
    assert "must be a finite number" in line and value in line
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(tmp_path: Path) -> None:
    line = _error("run", "--model", "mlp", "--hidden", "100000000", "--out", str(tmp_path / "r"))
    assert "GiB to train" in line and "smaller --hidden" in line
    assert not (tmp_path / "r").exists()


def test_a_feature_named_twice_is_refused(sine_table: Path) -> None:
    line = _error("train", "--data", str(sine_table), "--target", "y", "--features", "a", "a")
    assert "names 'a' more than once" in line


def test_a_header_with_spaces_around_names_trains_predicts_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / "spaced.csv"
    rows = "\n".join(f"{i * 7 % 30},{i % 3},{2 * i + i % 3}" for i in range(30))  # not in order
    data.write_text(" a,b ,y\n" + rows + "\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--target", "y", "--epochs", "2", "--quiet",
                 "--out", str(run)]) == 0  # fmt: skip
    assert ptflow.load_run(run).features == ("a", "b")
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert main(["predict", str(run), "--data", str(data), "--id", "a"]) == 0  # a feature too


@pytest.mark.parametrize("marker", ["-", "?", "NA", ""])
def test_a_missing_value_marker_is_a_missing_value_not_text(tmp_path: Path, marker: str) -> None:
    data = tmp_path / "marked.csv"
    rows = [f"{i},{2 * i + 1}" for i in range(40)]
    rows[6] = f"{marker},13"
    data.write_text("x,y\n" + "\n".join(rows) + "\n")
    args = ["--data", str(data), "--target", "y", "--epochs", "2", "--quiet"]
    line = _error("train", *args, "--missing", "error", "--out", str(tmp_path / "r"))
    assert "a missing value in column 'x' at row 7" in line, line
    assert "--missing drop" in line and not (tmp_path / "r").exists()
    assert main(["train", *args, "--drop-missing", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data"]["dropped_rows"] == 1
    if marker != "?":
        return  # one marker is enough to show the default: imputed, not dropped
    assert main(["train", *args, "--out", str(tmp_path / "imputed")]) == 0
    summary = json.loads((tmp_path / "imputed" / "summary.json").read_text())
    assert summary["data"]["dropped_rows"] == 0
    assert summary["columns"][0] == {"name": "x", "role": "feature", "detail": "numbers, 1 missing"}


def test_a_true_false_feature_trains_predicts_and_evaluates_alike(tmp_path: Path) -> None:
    """Once train took it (as 1/0) and predict and evaluate refused the very same file."""
    data = tmp_path / "flags.csv"
    data.write_text(
        "x,flag,y\n" + "".join(f"{i},{i % 2 == 0},{i + 3 * (i % 2 == 0)}\n" for i in range(40))
    )
    run, predictions = tmp_path / "run", tmp_path / "predictions.csv"
    assert main(["train", "--data", str(data), "--target", "y", "--features", "x", "flag",
                 "--epochs", "2", "--quiet", "--out", str(run)]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert main(["predict", str(run), "--data", str(data), "--output", str(predictions)]) == 0
    expected = ptflow.predict(
        ptflow.load_run(run).model, ptflow.load_table(data, "y", ["x", "flag"]).X
    )
    written = [float(line.split(",")[-1]) for line in predictions.read_text().splitlines()[1:]]
    assert written == pytest.approx(expected[:, 0].tolist(), rel=1e-6)


def test_predict_x_and_input_write_to_output_when_asked(tmp_path: Path, run_dir: Path) -> None:
    """--output was silently ignored for --x and --input: the predictions went to stdout."""
    output, values = tmp_path / "predictions.txt", tmp_path / "values.txt"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["predict", str(run_dir), "--x", "1", "2", "--output", str(output)]) == 0
    assert out.getvalue() == ""
    with redirect_stdout(out):
        assert main(["predict", str(run_dir), "--x", "1", "2"]) == 0
    assert output.read_text() == out.getvalue() and len(out.getvalue().splitlines()) == 2
    values.write_text("1\n2\n")
    again = ["predict", str(run_dir), "--input", str(values), "--output", str(output)]
    assert "already exists; choose another name, or pass --overwrite" in _error(*again)
    assert main([*again, "--overwrite"]) == 0
    assert output.read_text() == out.getvalue()
    line = _error("predict", str(run_dir), "--input", str(values), "--output", str(values))
    assert "is also an input" in line and values.read_text() == "1\n2\n"


def test_predict_x_beyond_float32_is_refused(run_dir: Path) -> None:
    assert "beyond float32's range" in _error("predict", str(run_dir), "--x", "1e39")


def test_what_a_path_is_is_said_when_it_is_not_a_file(tmp_path: Path, run_dir: Path) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    assert "is a named pipe (FIFO)" in _error("train", "--data", str(fifo), "--target", "y")
    assert "is a device" in _error("train", "--data", "/dev/zero", "--format", "csv",
                                   "--target", "y")  # fmt: skip
    (tmp_path / "settings.toml").mkdir()
    line = _error("train", "--config", str(tmp_path / "settings.toml"))
    assert "is a folder, not a file" in line
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "summary.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    (broken / "model.pt").mkdir()
    assert "is a folder, not a file" in _error("predict", str(broken), "--x", "1")


def test_an_argument_that_is_not_utf8_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")
    assert "is not valid UTF-8" in _error("run", "--out", out)
    assert list(tmp_path.iterdir()) == []


def test_carriage_return_line_ends_are_named(tmp_path: Path) -> None:
    data = tmp_path / "mac.csv"
    data.write_bytes(b"a,y\r" + b"".join(b"%d,%d\r" % (i, 2 * i) for i in range(20)))
    assert "carriage return alone" in _error("train", "--data", str(data), "--target", "y")


def test_a_line_break_in_a_name_cannot_make_a_second_error_line(tmp_path: Path) -> None:
    data = tmp_path / "table.csv"
    data.write_text("a,y\n1,2\n2,3\n3,4\n")
    line = _error("train", "--data", str(data), "--target", "y\nerror: fake")
    assert "\\nerror: fake" in line  # escaped, inside the one line


@pytest.mark.parametrize("out", ["/proc/ptflow-run", "/sys/ptflow-run", "/dev/null/run"])
def test_an_output_folder_the_system_refuses_is_one_line(out: str) -> None:
    line = _error("run", "--epochs", "1", "--out", out)
    assert line.startswith("error: cannot use") or "not a folder" in line or "is a file" in line
    assert not Path(out).exists() or out.startswith("/dev")


def test_a_row_with_more_fields_than_the_header_is_one_line(tmp_path: Path) -> None:
    """Found by the thorough CSV generator: pandas says ValueError, not ParserError, here."""
    data = tmp_path / "extra.csv"
    data.write_bytes(b"y,a,b\n0.0,0.0,0.0,:")
    line = _error("train", "--data", str(data), "--target", "y", "--out", str(tmp_path / "r"))
    assert "cannot parse extra.csv as CSV" in line
    assert not (tmp_path / "r").exists()


def test_an_id_column_that_is_also_a_feature_keeps_its_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--id` on a feature: ids as written ("007"), predictions as without --id."""
    data = tmp_path / "ids.csv"
    rows = "\n".join(f"{i:03d},{i * 1.1:.1f},{2 * i + 1}" for i in range(7, 27))
    data.write_text("id,a,y\n" + rows + "\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--target", "y", "--features", "id", "a",
                 "--epochs", "2", "--quiet", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["predict", str(run), "--data", str(data), "--id", "id"]) == 0
    with_ids = capsys.readouterr().out.splitlines()
    assert main(["predict", str(run), "--data", str(data)]) == 0
    without = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in with_ids[1:3]] == ["007", "008"]
    assert [line.split(",")[1] for line in with_ids] == without
