"""The command line: whole runs and `--help` as a user runs them, `python -m ptflow ...` in a
subprocess; bad input through `ptflow.cli.main` in-process, the same code without a new
interpreter per error line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import ptflow

if TYPE_CHECKING:
    from tests.conftest import Cli, RunCli


def test_run_with_no_arguments_reproduces_the_tutorial(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("run")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    weight, bias = summary["learned_parameters"]["weight"], summary["learned_parameters"]["bias"]
    assert abs(weight - 0.7) < 0.01 and abs(bias - 0.3) < 0.01
    lines = done.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 21  # epoch 1, then every 10 epochs up to 200
    assert epoch_lines[-1].startswith("epoch 200/200 | train loss")
    assert f"  weight {weight:.4f} (0.7000)" in lines
    assert f"  bias   {bias:.4f} (0.3000)" in lines
    assert any(line.startswith("Test metrics: MAE") for line in lines)
    assert lines[-2].endswith(str(Path("runs") / run_dir.name))
    # The last line says where to look: the run's report, which is there.
    report = Path("runs") / run_dir.name / "report.html"
    assert lines[-1] == f"Open {report} to see the whole run on one page."
    assert (tmp_path / report).is_file()
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # two whole runs (11 s); test_training checks the same in-process
def test_the_same_command_gives_the_same_numbers(run_cli: RunCli, tmp_path: Path) -> None:
    for out in ("a", "b"):
        done = run_cli("run", "--epochs", "40", "--batch-size", "8", "--shuffle", "--out", out)
        assert done.returncode == 0, done.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    assert (a / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert summary_a["parameters"] == summary_b["parameters"]


def test_every_option_overrides_its_default(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli(
        *("run", "--model", "linear", "--loss", "mse", "--optimizer", "adam", "--lr", "0.05"),
        *("--epochs", "60", "--seed", "7", "--weight", "2", "--bias", "-1", "--start", "0"),
        *("--end", "2", "--step", "0.1", "--train-fraction", "0.75", "--log-every", "5"),
        *("--batch-size", "4", "--out", "custom", "--quiet"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "custom"  # --quiet prints only the run folder
    config = json.loads((tmp_path / "custom" / "config.json").read_text())["config"]
    assert config == {
        **ptflow.Config().to_dict(),
        **dict(model="linear", loss="mse", optimizer="adam", lr=0.05, epochs=60, seed=7),
        **dict(weight=2.0, bias=-1.0, start=0.0, end=2.0, step=0.1, train_fraction=0.75),
        **dict(log_every=5, batch_size=4),
    }
    summary = json.loads((tmp_path / "custom" / "summary.json").read_text())
    assert summary["true_parameters"] == {"weight": 2.0, "bias": -1.0}
    assert summary["metrics"]["test"]["r2"] > 0.99


def test_predict_prints_the_saved_models_predictions(
    run_cli: RunCli, tutorial_run: ptflow.RunResult, tmp_path: Path
) -> None:
    run_dir = str(tutorial_run.run_dir)
    weight, bias = tutorial_run.learned or (0.0, 0.0)
    done = run_cli("predict", run_dir, "--x", "0.5", "1.2", "-3")
    assert done.returncode == 0, done.stderr
    printed = [float(line) for line in done.stdout.split()]
    assert printed == pytest.approx([weight * x + bias for x in (0.5, 1.2, -3)], abs=1e-6)

    (tmp_path / "xs.txt").write_text("# inputs\n0.5\n\n1.2\n-3\n")
    from_file = run_cli("predict", run_dir, "--input", "xs.txt")
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == done.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["train"], ["evaluate"], ["predict"]])
def test_help_shows_defaults_without_importing_torch(command: list[str]) -> None:
    # torch, pandas and matplotlib take seconds; logging and tomllib a few milliseconds
    # each, which is what the `--help` benchmark row measures.
    unneeded = ["torch", "pandas", "matplotlib", "logging", "tomllib"]
    code = (
        "import sys; from ptflow.cli import main; rc = main(sys.argv[1:]); "
        f"print('imported:', [m for m in {unneeded!r} if m in sys.modules]); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.rstrip().endswith("imported: []")
    if command == ["run"]:
        for default in ("(default: 200)", "(default: 0.01)", "(default: l1)", "(default: 42)"):
            assert default in done.stdout
    if command == ["train"]:
        for default in ("(default: 1000)", "(default: mse)", "(default: adam)", "(default: 0.15)"):
            assert default in " ".join(done.stdout.split())  # help text wraps lines


def test_no_command_prints_help(cli: Cli) -> None:
    done = cli()
    assert done.code == 0
    assert "run" in done.out and "predict" in done.out


@pytest.fixture
def broken_inputs(tmp_path: Path, tutorial_run: ptflow.RunResult) -> Path:
    """A corrupt copy of a run folder and a malformed input file, in the test's folder."""
    shutil.copytree(tutorial_run.run_dir, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.pt").write_bytes(b"\x00garbage")
    shutil.copytree(tutorial_run.run_dir, tmp_path / "good")
    (tmp_path / "bad.txt").write_text("0.5\nabc\n")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("mine")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--loss", "hinge"], "invalid choice: 'hinge'"),
        (["run", "--model", "cnn"], "invalid choice: 'cnn'"),
        (["run", "--epochs", "-5"], "epochs must be at least 1, got -5"),
        (["run", "--epochs", "ten"], "invalid int value: 'ten'"),
        (["run", "--lr", "0"], "lr must be positive"),
        (["run", "--train-fraction", "1.5"], "train_fraction must be between 0 and 1"),
        (["run", "--start", "1", "--end", "0"], "must be greater than start"),
        (["run", "--step", "1", "--end", "1"], "1 rows are too few"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--out", "occupied"], "pass --overwrite"),
        (["jump"], "invalid choice: 'jump'"),
        (["predict", "missing", "--x", "1"], "run folder missing does not exist"),
        (["predict", "occupied", "--x", "1"], "not a ptflow run folder"),
        (["predict", "corrupt", "--x", "1"], "corrupt"),
        (["predict", "good", "--x", "abc"], "invalid float value: 'abc'"),
        (["predict", "good", "--x", "nan"], "finite"),
        (["predict", "good"], "one of the arguments --x --input --data is required"),
        (["predict", "good", "--input", "bad.txt"], "line 2 of bad.txt is 'abc'"),
        (["predict", "good", "--input", "none.txt"], "none.txt does not exist"),
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(
    cli: Cli, broken_inputs: Path, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in broken_inputs.iterdir())
    done = cli(*args, cwd=broken_inputs)
    assert done.code == 2
    assert done.out == ""
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in done.err
    assert sorted(p.name for p in broken_inputs.iterdir()) == before  # nothing written
    assert [p.name for p in (broken_inputs / "occupied").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("args", "help_command"),
    [
        (["train", "--bogus"], "ptflow train --help"),
        (["run", "--epochs", "3", "--bogus", "1"], "ptflow run --help"),
        (["predict", "good", "--x", "1", "--bogus"], "ptflow predict --help"),
        (["--bogus"], "ptflow --help"),
    ],
)
def test_an_unknown_option_points_to_its_own_commands_help(
    cli: Cli, broken_inputs: Path, args: list[str], help_command: str
) -> None:
    done = cli(*args, cwd=broken_inputs)
    assert done.code == 2 and done.out == ""
    unknown = " ".join(args[args.index("--bogus") :])
    assert done.err == f"error: unrecognized arguments: {unknown}; see '{help_command}'.\n"


def test_an_error_reaches_the_shell_as_one_line_and_exit_code_2(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """The in-process test above checks every message; this checks the real interpreter's exit
    code, with a usage error found before torch is imported: a fraction of a second."""
    done = run_cli("run", "--epochs", "ten")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "invalid int value: 'ten'" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_installed_ptflow_command_runs_the_command_line() -> None:
    # its entry point is ptflow.__main__:main, which covers Ctrl-C while ptflow.cli imports
    command = shutil.which("ptflow", path=str(Path(sys.executable).parent))
    assert command is not None, "ptflow is not installed next to this Python"
    done = subprocess.run([command, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and ptflow.__version__ in done.stdout, done
    done = subprocess.run([command, "predict", "no-such-run"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: "), done
