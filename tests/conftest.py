"""Shared fixtures: tiny seeded data, one tutorial run, and two CLI runners: `cli` calls
`ptflow.cli.main` in-process (the same code as the `ptflow` command, without a new
interpreter that imports torch), `run_cli` runs `python -m ptflow` in a subprocess, as a user
does, for what needs a real process (signals, the interpreter's exit code, imports)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import ptflow
from ptflow.cli import main

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@dataclasses.dataclass(frozen=True)
class CliResult:
    """What one in-process `ptflow` command returned and printed."""

    code: int
    out: str
    err: str


Cli = Callable[..., CliResult]


@pytest.fixture
def tutorial_splits() -> ptflow.Splits:
    X, y = ptflow.make_linear_data()
    return ptflow.split(X, y)


@pytest.fixture(scope="session")
def tutorial_run(tmp_path_factory: pytest.TempPathFactory) -> ptflow.RunResult:
    """One default run of the whole workflow, shared by the tests that only read it."""
    return ptflow.run_workflow(out_dir=tmp_path_factory.mktemp("runs") / "tutorial")


@pytest.fixture
def linear_problem() -> tuple[torch.Tensor, torch.Tensor]:
    """200 rows of y = X @ [1.5, -2, 0.5] + 0.7 plus noise, three features."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=generator)
    y = (
        X @ torch.tensor([[1.5], [-2.0], [0.5]])
        + 0.7
        + 0.1 * torch.randn(200, 1, generator=generator)
    )
    return X, y


def _ptflow_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def ptflow_process() -> RunCli:
    """Run `python -m ptflow ARGS...` in the folder `cwd=` (required), for wider-scoped fixtures."""
    return _ptflow_process


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run `python -m ptflow ARGS...` in a fresh folder and return the finished process."""

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return _ptflow_process(*args, cwd=cwd)

    return run


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """Run `ptflow ARGS...` in-process, in the test's folder (or `cwd=`), and return its exit
    code, stdout and stderr. The working folder is restored when the command returns; an
    uncaught exception (a user's traceback) propagates and fails the test."""

    def run(*args: str, cwd: Path = tmp_path) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with (
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = main(list(args))
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def write_sine_table(folder: Path) -> Path:
    """Write sine.csv and sine.parquet: y = sin(a) + cos(b) + noise, an id and a noise column."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 1500
    a, b = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    frame = pd.DataFrame(
        {
            "id": [f"row{i}" for i in range(n)],
            "a": a,
            "b": b,
            "noise": rng.normal(size=n),
            "y": np.sin(a) + np.cos(b) + 0.05 * rng.normal(size=n),
        }
    )
    frame.to_csv(folder / "sine.csv", index=False)
    frame.to_parquet(folder / "sine.parquet")
    return folder / "sine.csv"


@pytest.fixture
def sine_table(tmp_path: Path) -> Path:
    """The sine table in the test's own folder."""
    return write_sine_table(tmp_path)


@pytest.fixture
def linear_table(tmp_path: Path, linear_problem: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """The three-feature linear problem as a CSV with columns x0, x1, x2, y."""
    import pandas as pd

    X, y = linear_problem
    frame = pd.DataFrame(X.numpy(), columns=["x0", "x1", "x2"]).assign(y=y[:, 0].numpy())
    path = tmp_path / "linear.csv"
    frame.to_csv(path, index=False)
    return path


def interrupted_and_resumed(cfg: ptflow.Config, folder: Path, after_steps: int) -> Path:
    """Train `cfg` into folder/cut, stop it after `after_steps` stop checks (one per
    batch), resume it, and return the folder: to compare with an uninterrupted run."""
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after_steps

    with pytest.raises(ptflow.TrainingInterrupted):
        ptflow.run_workflow(cfg, folder / "cut", should_stop=stop)
    ptflow.resume_workflow(folder / "cut")
    return folder / "cut"


def same_bytes(first: Path, second: Path, names: tuple[str, ...]) -> bool:
    """Whether the files called `names` in two run folders hold the same bytes."""
    return all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
