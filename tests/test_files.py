from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from ptflow.files import atomic_path, remove_own_temporaries, write_json, write_text


def test_write_text_replaces_whole_files(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "first")
    write_text(tmp_path / "a.txt", "second")
    assert (tmp_path / "a.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failure_inside_the_block_leaves_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_new_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_write_json_turns_non_finite_numbers_into_null(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"r2": math.nan, "values": [1.5, math.inf], "n": 3})
    assert json.loads((tmp_path / "a.json").read_text()) == {
        "r2": None,
        "values": [1.5, None],
        "n": 3,
    }


def test_an_exit_removes_the_temporary_files_an_interrupt_left(tmp_path: Path) -> None:
    """A second Ctrl-C can land inside atomic_path's own clean-up: the exit removes them."""
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("half")
        remove_own_temporaries()  # what the command line does as it exits
        assert not tmp.exists()
        tmp.write_text("whole")  # the block may still finish: its file is then written
    assert target.read_text() == "whole"
    with atomic_path(tmp_path / "other.txt") as tmp:
        tmp.write_text("x")
    remove_own_temporaries()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "out.txt"]
