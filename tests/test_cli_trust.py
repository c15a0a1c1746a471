"""Trustworthy runs through the command line, as a user meets them: killed and resumed runs,
Ctrl-C and SIGTERM, a diverging loss, crafted pickles, and files that survive a kill.

Kills and signals need a real process (`python -m ptflow`); the error lines and exit codes
of a refused resume, a diverging loss and a crafted pickle are checked in-process. The
random epoch and delay of a kill come from `random.Random(SEED)`, and every assertion
message names the seed and what it drew, so a failure can be replayed.
"""

from __future__ import annotations

import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

import ptflow
from ptflow import WorkflowError
from ptflow.checkpoint import checkpoint_position, list_checkpoints

if TYPE_CHECKING:
    from tests.conftest import Cli, RunCli

SEED = 20240611  # of the random epochs and delays below: fixed, so that a failure replays

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
def reference(table: Path, ptflow_process: RunCli) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    out = table.parent / "reference"
    done = ptflow_process(
        "train", "--data", str(table), *TRAIN_ARGS, "--out", str(out), cwd=out.parent
    )
    assert done.returncode == 0, done.stderr
    return out


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ptflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(
    process: subprocess.Popen[str], folder: Path, epoch: int, drawn: str
) -> None:
    """Return once `folder` holds a checkpoint of `epoch` or later."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{drawn}: the run ended before epoch {epoch}: {process.communicate()}"
            )
        saved = [checkpoint_position(path) for path in list_checkpoints(folder)]
        if any(at is not None and at[0] >= epoch for at in saved):
            return
        time.sleep(0.005)
    raise AssertionError(f"{drawn}: no checkpoint of epoch {epoch} within two minutes")


def _assert_same_run(run: Path, reference: Path, drawn: str) -> None:
    assert (run / "history.csv").read_text() == (reference / "history.csv").read_text(), drawn
    assert (run / "model.pt").read_bytes() == (reference / "model.pt").read_bytes(), drawn
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes(), drawn


@pytest.mark.slow  # subprocess-heavy: keeps the default suite under five minutes
def test_sigkill_at_a_random_epoch_then_resume_is_bit_identical(
    table: Path, reference: Path, tmp_path: Path, cli: Cli, run_cli: RunCli
) -> None:
    epoch = random.Random(SEED).randint(2, 20)
    drawn = f"seed {SEED}: SIGKILL at epoch {epoch}"
    out = tmp_path / "run"
    process = _start("train", "--data", str(table), *TRAIN_ARGS, "--out", str(out))
    _wait_for_checkpoint(process, out / "checkpoints", epoch, drawn)
    process.kill()  # SIGKILL: no handler runs, no file is closed properly
    process.communicate()
    assert not (out / "summary.json").exists(), drawn

    unfinished = cli("predict", str(out), "--data", str(table))
    assert unfinished.code == 2, (drawn, unfinished.err)
    assert f"finish it with: ptflow train --resume {out}" in unfinished.err, drawn
    assert len(unfinished.err.splitlines()) == 1, (drawn, unfinished.err)
    assert unfinished.err.startswith("error: "), (drawn, unfinished.err)

    resumed = run_cli("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, (drawn, resumed.stderr)
    _assert_same_run(out, reference, drawn)


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [
        # 31 s each (three whole processes): with the slow tests, which CI runs
        pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
)
def test_a_signal_checkpoints_at_the_next_batch_and_resume_is_bit_identical(
    table: Path, reference: Path, tmp_path: Path, run_cli: RunCli, signum: int, exit_code: int
) -> None:
    rng = random.Random(SEED)
    epoch, delay = rng.randint(2, 15), rng.uniform(0, 0.1)  # anywhere within an epoch
    drawn = f"seed {SEED}: {signal.Signals(signum).name} {delay:.3f} s after epoch {epoch}"
    out = tmp_path / "run"
    process = _start("train", "--data", str(table), *TRAIN_ARGS, "--out", str(out))
    _wait_for_checkpoint(process, out / "checkpoints", epoch, drawn)
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, (drawn, stderr)
    assert "Traceback" not in stderr, (drawn, stderr)
    assert stderr.startswith("stopped: training stopped after epoch "), (drawn, stderr)
    assert f"resume with: ptflow train --resume {out}" in stderr, (drawn, stderr)
    assert len(stderr.strip().splitlines()) == 1, (drawn, stderr)

    resumed = run_cli("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, (drawn, resumed.stderr)
    _assert_same_run(out, reference, drawn)


@pytest.mark.slow  # five whole processes
def test_a_second_ctrl_c_ends_in_one_line_at_any_moment(tmp_path: Path) -> None:
    """Ctrl-C twice: while the checkpoint is saved, while the line is printed, or while
    Python shuts down (where torch unloading once printed a KeyboardInterrupt traceback)."""
    for delay in (0.0, 0.02, 0.1, 0.3, 1.0):
        out = tmp_path / f"run-{delay}"
        process = _start("run", "--epochs", "100000", "--checkpoint-every", "1", "--out", str(out))
        _wait_for_checkpoint(process, out / "checkpoints", 2, f"delay {delay}")
        process.send_signal(signal.SIGINT)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        # 130 from ptflow, or -2 when the second one came after Python's own handlers were
        # gone: a shell reports both as 130
        assert process.returncode in (130, -signal.SIGINT), (delay, process.returncode, stderr)
        assert "Traceback" not in stderr, (delay, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (delay, stderr)
        assert lines[0].startswith(("stopped: training stopped", "error: interrupted")), lines
        assert not list(out.rglob("*.tmp")), (delay, sorted(out.rglob("*")))
        assert ptflow.latest_checkpoint(out / "checkpoints") is not None


@pytest.mark.slow  # eight whole processes
def test_ctrl_c_while_ptflow_starts_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C while torch and numpy import once printed a 70-line traceback (a module left
    half made), or was swallowed and the run went on to the end; while ptflow.cli itself
    imported (0.1 s here, after Python's own start), Python's traceback."""
    for delay in (0.1, 0.2, 0.3, 0.6, 0.8, 0.9, 1.0, 1.5, 2.0, 3.0):
        out = tmp_path / f"run-{delay}"
        process = subprocess.Popen(
            [sys.executable, "-m", "ptflow", "run", "--epochs", "20", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr, (delay, stderr)
        lines = stderr.strip().splitlines()
        if process.returncode == 0:  # it had finished before the signal came
            assert (out / "summary.json").exists() and not lines, (delay, stderr)
            continue
        assert process.returncode in (130, -signal.SIGINT), (delay, process.returncode, stderr)
        assert len(lines) <= 1, (delay, stderr)
        assert not lines or lines[0].startswith(("stopped:", "error: interrupted")), lines


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_an_import_is_held_until_the_module_is_whole(
    tmp_path: Path, presses: int
) -> None:
    """Raised inside torch's import, KeyboardInterrupt once aborted ptflow (SIGABRT from
    pybind11: 'terminate called after throwing ...'). One Ctrl-C is held until the import
    is done; a second interrupts at once."""
    (tmp_path / "slow_module.py").write_text(
        textwrap.dedent(f"""
            import os, signal, time
            for _ in range({presses}):
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.monotonic() + 0.2  # Python code, where a handler can run
                while time.monotonic() < deadline:
                    pass
            finished = True
        """)
    )
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from ptflow.console import run_as_process
        def command():
            import slow_module
            print("imported whole:", slow_module.finished, flush=True)
            time.sleep(10)  # the held Ctrl-C ends this
            print("not interrupted")
            return 0
        sys.exit(run_as_process(command))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done
    assert done.stderr == "error: interrupted; files already written are complete.\n"
    assert done.stdout == ("imported whole: True\n" if presses == 1 else "")


def test_resume_from_the_command_line_refuses_changed_settings(cli: Cli, tmp_path: Path) -> None:
    reference = tmp_path / "reference"  # in-process: the refusal comes before any training
    assert cli("run", "--quiet", "--epochs", "3", "--out", str(reference)).code == 0
    before = sorted(p.relative_to(reference) for p in reference.rglob("*"))
    changed = cli("run", "--resume", str(reference), "--lr", "0.5")
    assert changed.code == 2
    assert changed.err.startswith("error: cannot resume with changed lr (0.01 -> 0.5)")
    with_out = cli("run", "--resume", str(reference), "--out", str(tmp_path / "x"))
    assert with_out.code == 2 and "drop --out" in with_out.err
    assert not (tmp_path / "x").exists()
    for result in (changed, with_out):
        assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err, result.err
    assert sorted(p.relative_to(reference) for p in reference.rglob("*")) == before


def test_a_diverging_loss_exits_3_and_keeps_the_last_good_checkpoint(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli("run", "--loss", "mse", "--lr", "50", "--checkpoint-every", "1", "--out", "run")
    assert result.code == 3, result.err
    assert result.err.startswith("error: the training loss became inf at epoch 11, batch 1")
    assert "lower --lr" in result.err
    assert "keeps its last good checkpoint, epoch-000010.json" in result.err
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    checkpoint = ptflow.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint is not None and checkpoint.epoch == 10
    assert all(torch.isfinite(value).all() for value in checkpoint.state["model"].values())


def test_a_diverging_loss_without_checkpoints_leaves_no_folder(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", "--loss", "mse", "--lr", "50", "--out", "run")
    assert result.code == 3
    assert "No checkpoint had been written" in result.err
    assert len(result.err.splitlines()) == 1 and result.err.startswith("error: "), result.err
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
    cli: Cli, tutorial_run: ptflow.RunResult, tmp_path: Path
) -> None:
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
    predicted = cli("predict", str(run), "--x", "0.5")
    assert predicted.code == 2 and "corrupt" in predicted.err
    table = tmp_path / "line.csv"
    table.write_text("X,y\n0.1,0.37\n0.2,0.44\n")
    evaluated = cli("evaluate", str(run), "--data", str(table))
    assert evaluated.code == 2 and "corrupt" in evaluated.err
    # resume reads checkpoints: a pickle there, in either file, is refused as well
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(evil)
    resumed = cli("run", "--resume", str(run))
    assert resumed.code == 2 and "no usable checkpoint" in resumed.err
    with pytest.raises(WorkflowError, match="no usable checkpoint"):
        ptflow.resume_workflow(run)
    for result in (predicted, evaluated, resumed):
        assert "Traceback" not in result.err
        assert len(result.err.splitlines()) == 1 and result.err.startswith("error: "), result.err
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
    rng = random.Random(SEED)
    for attempt in range(12):
        started.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(started)])
        while not started.exists():
            time.sleep(0.001)
        delay = rng.uniform(0, 0.2)
        time.sleep(delay)
        writer.kill()
        writer.wait()
        drawn = f"seed {SEED}: kill {attempt} after {delay:.3f} s"
        assert path.read_text() in whole, f"{drawn}: a partial file"
