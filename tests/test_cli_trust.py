"""Trustworthy runs through the command line, as a user meets them: killed and resumed runs,
Ctrl-C and SIGTERM, a diverging loss, crafted pickles, and files that survive a kill."""

from __future__ import annotations

import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import ptflow
from ptflow import WorkflowError
from tests.conftest import RunCli

# An MLP with dropout and mini-batches: about 0.1 s per epoch here, long enough to be
# interrupted at a chosen epoch, short enough for the default suite.
TRAIN_ARGS = [
    *("--target", "y", "--model", "mlp", "--hidden", "32", "--dropout", "0.1"),
    *("--batch-size", "16", "--epochs", "25", "--checkpoint-every", "1", "--quiet"),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=3000)
    path = tmp_path_factory.mktemp("data") / "table.csv"
    pd.DataFrame(X, columns=list("abcd")).assign(y=y).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(table: Path) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    out = table.parent / "reference"
    _ptflow("train", "--data", str(table), *TRAIN_ARGS, "--out", str(out), check=True)
    return out


def _ptflow(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptflow", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ptflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(process: subprocess.Popen[str], folder: Path, epoch: int) -> None:
    """Return once `folder` holds a checkpoint of `epoch` or later."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before epoch {epoch}: {process.communicate()}")
        names = [p.name for p in folder.glob("epoch-*.json")] if folder.is_dir() else []
        if any(int(name[6:12]) >= epoch for name in names):
            return
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint of epoch {epoch} within two minutes")


def _assert_same_run(run: Path, reference: Path) -> None:
    assert (run / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert (run / "model.pt").read_bytes() == (reference / "model.pt").read_bytes()
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()


@pytest.mark.slow  # subprocess-heavy: keeps the default suite under five minutes
def test_sigkill_at_a_random_epoch_then_resume_is_bit_identical(
    table: Path, reference: Path, tmp_path: Path
) -> None:
    epoch = random.randint(2, 20)
    out = tmp_path / "run"
    process = _start("train", "--data", str(table), *TRAIN_ARGS, "--out", str(out))
    _wait_for_checkpoint(process, out / "checkpoints", epoch)
    process.kill()  # SIGKILL: no handler runs, no file is closed properly
    process.communicate()
    assert not (out / "summary.json").exists()

    unfinished = _ptflow("predict", str(out), "--data", str(table))
    assert unfinished.returncode == 2
    assert f"finish it with: ptflow train --resume {out}" in unfinished.stderr

    resumed = _ptflow("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, (epoch, resumed.stderr)
    _assert_same_run(out, reference)


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [
        (signal.SIGINT, 130),
        pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
)
def test_a_signal_checkpoints_at_the_next_batch_and_resume_is_bit_identical(
    table: Path, reference: Path, tmp_path: Path, signum: int, exit_code: int
) -> None:
    out = tmp_path / "run"
    process = _start("train", "--data", str(table), *TRAIN_ARGS, "--out", str(out))
    _wait_for_checkpoint(process, out / "checkpoints", random.randint(2, 15))
    time.sleep(random.uniform(0, 0.1))  # anywhere within an epoch
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("stopped: training stopped after epoch ")
    assert f"resume with: ptflow train --resume {out}" in stderr
    assert len(stderr.strip().splitlines()) == 1

    resumed = _ptflow("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(out, reference)


def test_resume_from_the_command_line_refuses_changed_settings(
    reference: Path, tmp_path: Path
) -> None:
    changed = _ptflow("train", "--resume", str(reference), "--lr", "0.5")
    assert changed.returncode == 2
    assert changed.stderr.startswith("error: cannot resume with changed lr (0.01 -> 0.5)")
    with_out = _ptflow("train", "--resume", str(reference), "--out", str(tmp_path / "x"))
    assert with_out.returncode == 2 and "drop --out" in with_out.stderr
    assert not (tmp_path / "x").exists()


def test_a_diverging_loss_exits_3_and_keeps_the_last_good_checkpoint(
    run_cli: RunCli, tmp_path: Path
) -> None:
    result = run_cli(
        "run", "--loss", "mse", "--lr", "50", "--checkpoint-every", "1", "--out", "run"
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("error: the training loss became inf at epoch 11, batch 1")
    assert "lower --lr" in result.stderr
    assert "keeps its last good checkpoint, epoch-000010.json" in result.stderr
    assert "Traceback" not in result.stderr
    checkpoint = ptflow.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint is not None and checkpoint.epoch == 10
    assert all(torch.isfinite(value).all() for value in checkpoint.state["model"].values())


def test_a_diverging_loss_without_checkpoints_leaves_no_folder(
    run_cli: RunCli, tmp_path: Path
) -> None:
    result = run_cli("run", "--loss", "mse", "--lr", "50", "--out", "run")
    assert result.returncode == 3
    assert "No checkpoint had been written" in result.stderr
    assert not (tmp_path / "run").exists()


class _Exploit:
    """Unpickling this object creates a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"weights": _Exploit(marker), "bias": torch.zeros(1)})


def test_a_malicious_pickle_never_runs_through_any_entry_point(
    tutorial_run: ptflow.RunResult, tmp_path: Path
) -> None:
    import shutil

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(tutorial_run.run_dir, run)
    evil = _evil_pickle(marker)
    for name in ("model.pt", "model.safetensors"):
        (run / name).write_bytes(evil)

    # the library
    with pytest.raises(WorkflowError, match="corrupt"):
        ptflow.load_run(run)
    for name in ("model.pt", "model.safetensors"):
        with pytest.raises(WorkflowError, match="corrupt"):
            ptflow.load_weights(ptflow.build_model(), run / name)
    # the command line: predict and evaluate read model.pt
    predicted = _ptflow("predict", str(run), "--x", "0.5")
    assert predicted.returncode == 2 and "corrupt" in predicted.stderr
    table = tmp_path / "line.csv"
    table.write_text("X,y\n0.1,0.37\n0.2,0.44\n")
    evaluated = _ptflow("evaluate", str(run), "--data", str(table))
    assert evaluated.returncode == 2 and "corrupt" in evaluated.stderr
    # resume reads checkpoints: a pickle there, in either file, is refused as well
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(evil)
    resumed = _ptflow("run", "--resume", str(run))
    assert resumed.returncode == 2 and "no usable checkpoint" in resumed.stderr
    with pytest.raises(WorkflowError, match="no usable checkpoint"):
        ptflow.resume_workflow(run)
    for result in (predicted, evaluated, resumed):
        assert "Traceback" not in result.stderr
    assert not marker.exists()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ptflow.files import write_text

    path, versions = Path(sys.argv[1]), ("a" * 4_000_000, "b" * 3_000_000)
    for i in range(1_000_000):
        write_text(path, versions[i % 2])
        if i == 0:
            Path(sys.argv[2]).touch()
    """
)


def test_a_kill_during_writes_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    path, started = tmp_path / "file.txt", tmp_path / "started"
    whole = {"a" * 4_000_000, "b" * 3_000_000}
    for attempt in range(12):
        started.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(started)])
        while not started.exists():
            time.sleep(0.001)
        time.sleep(random.uniform(0, 0.2))
        writer.kill()
        writer.wait()
        assert path.read_text() in whole, f"a partial file after kill {attempt}"
