"""The README's Python examples run as written, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the examples write files into the current folder
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert {"model.pt", "predictions.png", "loss_curves.png"} <= {
        p.name for p in tmp_path.iterdir()
    }
