"""The examples are documentation; running them keeps them true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_tutorial_example_runs_and_meets_its_target(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "tutorial.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical predictions: True" in done.stdout
    names = {"data.png", "before.png", "after.png", "loss_curves.png", "model.pt"}
    assert names <= {p.name for p in tmp_path.iterdir()}
