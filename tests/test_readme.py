"""The README's Python examples run as written, and its table of `ptflow run`'s options is
the command's own, so the documentation cannot rot."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ptflow.cli import build_parser

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the examples write files into the current folder
    namespace: dict[str, object] = {}  # one after another, as a reader runs them
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert {"model.pt", "predictions.png", "loss_curves.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_the_options_table_lists_every_option_of_ptflow_run() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("Every default can be changed", 1)[1].split("\n\n", 2)[1]
    listed = {
        flag
        for row in table.splitlines()[2:]
        for flag in re.findall(r"`(--[\w-]+)", row.split(" | ")[0])
    }
    (commands,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    flags = {
        flag
        for action in run._actions
        for flag in action.option_strings
        if flag != "--help" and not flag.startswith("--no-") and flag.startswith("--")
    }
    assert listed == flags
