"""Looking at runs: `ptflow runs` lists run folders from their files, and `--log-format json`
prints what a machine can read."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ptflow
from ptflow import Config, TrainingInterrupted
from tests.conftest import RunCli


@pytest.fixture
def three_runs(tmp_path: Path, sine_table: Path) -> Path:
    """Two finished runs (a line and a table with a validation split) and an unfinished one."""
    runs = tmp_path / "runs"
    ptflow.run_workflow(Config(epochs=30), runs / "line")
    ptflow.run_workflow(
        Config.for_table(str(sine_table), "y", model="mlp", hidden=(8,), epochs=5), runs / "table"
    )
    with pytest.raises(TrainingInterrupted):
        ptflow.run_workflow(Config(epochs=30), runs / "cut", should_stop=lambda: True)
    (runs / "notes").mkdir()  # not a run: skipped
    return runs


def test_runs_lists_each_run_from_its_files(three_runs: Path, run_cli: RunCli) -> None:
    done = run_cli("runs", str(three_runs), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"line", "table", "cut"}
    table = json.loads((three_runs / "table" / "summary.json").read_text())
    assert rows["table"]["test_r2"] == table["metrics"]["test"]["r2"]
    assert rows["table"]["test_mae"] == table["metrics"]["test"]["mae"]
    assert rows["table"]["data"] == "sine.csv" and rows["table"]["model"] == "mlp(8)"
    with open(three_runs / "table" / "history.csv", newline="") as file:
        best = min(float(row["val_loss"]) for row in csv.DictReader(file))
    assert rows["table"]["best_val_loss"] == best
    assert rows["line"]["best_val_loss"] is None  # no validation split
    assert rows["cut"]["status"] == "unfinished" and rows["cut"]["epochs"] is None
    assert rows["line"]["epochs"] == 30 and rows["line"]["status"] == "finished"


def test_runs_sorts_and_prints_a_table(three_runs: Path, run_cli: RunCli) -> None:
    done = run_cli("runs", str(three_runs), "--sort", "test_r2", "--desc")
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "date", "data", "model"]
    names = [line.split()[0] for line in lines[1:]]
    r2 = {
        name: json.loads((three_runs / name / "summary.json").read_text())["metrics"]["test"]["r2"]
        for name in ("line", "table")
    }
    assert names[:2] == sorted(r2, key=r2.__getitem__, reverse=True)
    assert names[2] == "cut"  # no value: last, whichever the order
    bad = run_cli("runs", str(three_runs), "--sort", "colour")
    assert bad.returncode == 2 and "cannot sort by 'colour'" in bad.stderr
    missing = run_cli("runs", "nowhere")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    empty = run_cli("runs", str(three_runs / "notes"))
    assert empty.returncode == 0 and empty.stdout.startswith("no runs in")


def test_log_format_json_prints_each_logged_epoch(tmp_path: Path, run_cli: RunCli) -> None:
    done = run_cli(
        "run", "--epochs", "25", "--log-every", "5", "--log-format", "json", "--out", "r"
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON
    epochs = [event for event in events if event["event"] == "epoch"]
    assert [event["epoch"] for event in epochs] == [1, 5, 10, 15, 20, 25]
    with open(tmp_path / "r" / "history.csv", newline="") as file:
        history = {int(row["epoch"]): row for row in csv.DictReader(file)}
    for event in epochs:
        row = history[event["epoch"]]
        assert event["train_loss"] == float(row["train_loss"])
        assert event["test_loss"] == float(row["test_loss"]) and event["lr"] == float(row["lr"])
    elapsed = [event["elapsed_s"] for event in epochs]
    assert elapsed == sorted(elapsed)
    finished = events[-1]
    assert finished["event"] == "finished" and finished["run_dir"] == "r"
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert finished["metrics"] == summary["metrics"]


def test_runs_answers_without_importing_torch(three_runs: Path) -> None:
    code = (
        "import sys; from ptflow.cli import main; "
        f"main(['runs', {str(three_runs)!r}]); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "False"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.slow  # several ptflow processes
def test_a_terminal_gets_a_live_progress_line_and_a_pipe_does_not(
    tmp_path: Path, run_cli: RunCli
) -> None:
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # A terminal 120 columns wide, as a user's would be (a new pty has no size at all).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    command = [sys.executable, "-m", "ptflow", "run", "--epochs", "3000", "--out", "tty"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output.extend(chunk)
    assert process.wait(timeout=300) == 0
    os.close(leader)
    screen = output.decode(errors="replace")
    # tqdm's line: epoch count, losses, learning rate, elapsed time and ETA
    assert "training:" in screen and "3000/3000" in screen
    assert "train_loss=" in screen and "test_loss=" in screen and "lr=0.01" in screen
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", screen)  # elapsed < remaining
    piped = run_cli("run", "--epochs", "300", "--out", "pipe")
    assert "training:" not in piped.stdout + piped.stderr and "\r" not in piped.stdout
    assert "epoch 300/300" in piped.stdout  # the periodic lines instead


@pytest.mark.slow
def test_runs_raise_no_python_warnings(tmp_path: Path, sine_table: Path) -> None:
    for args in (
        ["run", "--epochs", "5", "--out", "a"],
        ["train", "--data", "sine.csv", "--target", "y", "--epochs", "3", "--out", "b"],
        ["train", "--data", "sine.parquet", "--target", "y", "--stream", "--out", "c",
         "--epochs", "2"],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-W", "error", "-m", "ptflow", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_run_named_with_a_newline_stays_on_one_row() -> None:
    from ptflow.runs import RunRow, format_table

    row = RunRow("bad\nname", "", "data\t.csv", "linear", None, None, {}, None, "damaged")
    lines = format_table([row]).splitlines()
    assert len(lines) == 2 and "bad\\nname" in lines[1] and "data\\t.csv" in lines[1]
