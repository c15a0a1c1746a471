"""Devices and precision: --device picks and records where a run trains; bf16 autocasts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ptflow
from ptflow import Config, WorkflowError
from ptflow.devices import resolve_device
from tests.conftest import RunCli


def test_auto_takes_the_best_device_there_is() -> None:
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.slow  # two ptflow processes: keeps the default suite under five minutes
def test_the_device_is_recorded_in_the_run_folder(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("run", "--device", "cpu", "--epochs", "5", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert record["device"] == summary["device"] == "cpu"
    assert record["config"]["device"] == "cpu" and summary["precision"] == "32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_device_is_a_clear_error(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("run", "--device", "cuda", "--out", "run")
    assert done.returncode == 2
    assert done.stderr.startswith("error: this machine has no cuda device")
    assert "--device cpu" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(WorkflowError, match="no cuda device"):
        resolve_device("cuda")


def _train_mlp(precision: str) -> tuple[torch.nn.Module, float]:
    """Train a small MLP on sin features; return it and its test MSE."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(512, 4, generator=generator)
    y = X.sin().sum(dim=1, keepdim=True)
    splits = ptflow.split(X, y, 0.8)
    cfg = Config(model="mlp", hidden=(32,), optimizer="adam", epochs=30, batch_size=64)
    model = ptflow.build_model("mlp", 4, 1, seed=0, hidden=(32,))
    ptflow.train(model, splits, cfg.replace(precision=precision))
    return model, ptflow.evaluate(model, *splits.test).mse


def test_bf16_trains_as_well_as_float32_and_reproducibly() -> None:
    (full, full_mse), (half, half_mse), (again, _) = (
        _train_mlp("32"),
        _train_mlp("bf16"),
        _train_mlp("bf16"),
    )
    for b, c in zip(half.parameters(), again.parameters(), strict=True):
        assert b.dtype == torch.float32  # the weights stay float32; only the passes are bf16
        assert torch.equal(b, c)  # same seed, same result
    assert not all(
        torch.equal(a, b) for a, b in zip(full.parameters(), half.parameters(), strict=True)
    )
    assert half_mse < 1.5 * full_mse and full_mse < 0.1  # y's variance is about 1.6


@pytest.mark.slow  # ptflow processes: keeps the default suite under five minutes
def test_bf16_from_the_command_line(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("run", "--precision", "bf16", "--epochs", "50", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "bf16"
    assert abs(summary["learned_parameters"]["weight"] - 0.6) < 0.2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: it runs the checks")
def test_the_gpu_check_script_says_it_skips_without_cuda() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no CUDA device: the GPU checks are skipped"), done.stdout
