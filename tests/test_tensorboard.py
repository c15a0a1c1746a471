"""--tensorboard: every epoch's numbers as TensorBoard scalars, and a clear error without it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunCli


def test_tensorboard_gets_every_epoch(tmp_path: Path, run_cli: RunCli) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done = run_cli("run", "--epochs", "25", "--tensorboard", "--out", "run", "--quiet")
    assert done.returncode == 0 and done.stdout.strip() == "run", done.stderr
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss/train", "loss/test", "lr"}
    with open(tmp_path / "run" / "history.csv", newline="") as file:
        history = list(csv.DictReader(file))
    for tag, column in (("loss/train", "train_loss"), ("loss/test", "test_loss"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [event.step for event in scalars] == list(range(1, 26))  # every epoch, once
        expected = [float(row[column]) for row in history]
        assert [event.value for event in scalars] == pytest.approx(expected, rel=1e-6)


def test_without_tensorboard_the_flag_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch.utils.tensorboard'] = None\n"  # as if not installed
        "from ptflow.cli import main\n"
        "sys.exit(main(['run', '--tensorboard', '--out', 'run']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --tensorboard needs TensorBoard")
    assert "pip install 'ptflow[tensorboard]'" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
