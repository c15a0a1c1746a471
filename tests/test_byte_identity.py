"""The restructuring changes no byte: `model.pt` and `history.csv` of two fixed runs are pinned.

Pinned at 480baef (before the table pipeline, task object and run-folder owner moved code
around) with torch 2.13.0 on one thread. A hash that moves means training changed: if that
is intended, say so in the commit and pin the new hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ptflow.cli import main

PINNED = {
    "run": {
        "model.pt": "f99dcab2255388895f9422ae763a84e0fa6e0622e062afd564ffa50ed0b3fd86",
        "history.csv": "1acb403fd4a149264996082cacfa92d22c490e493413de05803fa26e47022d07",
    },
    "train": {
        "model.pt": "e90732da02d7fee5105b0edbb15f83c03ebfa5a037cc2b896bbc87f6c5c0dd82",
        "history.csv": "6fb56d4bdc5774346daf010a9078eb6a06c9d01c2ed303450d3b325360b35450",
    },
}
# The MLP's matrix products round differently on some CPUs than on others: the same command
# gave these bytes at 480baef and after on AMD EPYC machines, one with AVX-512 and one with
# AVX2 (`torch.backends.cpu.get_cpu_capability()`, measured 2026-12-02), so the capability
# alone does not tell which bytes a machine gives. The pins above are those of the machine
# 480baef was pinned on, where CI has passed with them. Either set passes: a change to
# training moves the bytes away from both.
TRAIN_ELSEWHERE = {
    "model.pt": "5a2532e8aaf159e16824a8aaf7ff4f8a28c78ecf453b8640e1529a8473125dfb",
    "history.csv": "d85d7491957eb652001b3d7d3025b09d4bb92cdcea58de41dfd37288c1e36f3f",
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Bit for bit holds for one thread count; pin the one every machine has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hashes(run_dir: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        for name in ("model.pt", "history.csv")
    }


def _table(path: Path) -> Path:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = X @ np.array([1.5, -2.0, 0.5]) + np.sin(X[:, 0]) + 0.1 * rng.normal(size=400)
    frame.to_csv(path, index=False, float_format="%.6f")
    return path


def test_ptflow_run_gives_the_pinned_bytes(tmp_path: Path) -> None:
    assert main(["run", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert _hashes(tmp_path / "run") == PINNED["run"]


def test_a_fixed_train_command_gives_the_pinned_bytes(tmp_path: Path) -> None:
    data = _table(tmp_path / "table.csv")
    argv = ["train", "--data", str(data), "--target", "y", "--model", "mlp", "--hidden", "16"]
    argv += ["--epochs", "15", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01"]
    argv += ["--patience", "0"]  # early stopping, on by default for tables since, off
    assert main([*argv, "--quiet", "--out", str(tmp_path / "train")]) == 0
    assert _hashes(tmp_path / "train") in (PINNED["train"], TRAIN_ELSEWHERE)
