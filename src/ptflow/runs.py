"""Looking back: the run folders in a folder, side by side, from their files alone.

Reads each run's record, summary and history through `run_folder`; imports nothing heavy, so
`ptflow runs` answers at once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptflow.config import made_data
from ptflow.errors import WorkflowError
from ptflow.files import to_json_safe
from ptflow.tasks import TASKS, task_of

__all__ = [
    "COLUMNS",
    "RunRow",
    "format_table",
    "list_runs",
    "rows_as_json",
    "sort_runs",
]


@dataclass(frozen=True)
class RunRow:
    """One run folder, summed up."""

    name: str
    date: str  # when the run was created, ISO 8601
    data: str  # the table's file name, or "line" for the tutorial's line, "circles" for its classes
    model: str
    epochs: int | None  # epochs trained; None for an unfinished run
    best_val_loss: float | None  # the lowest validation loss (None without a validation split)
    test: dict[str, float | None]  # the task's brief metrics on the test rows, by name
    wall_s: float | None
    status: str  # "finished", "unfinished", or "damaged" (its files cannot be read)

    def value(self, column: str) -> Any:
        """The row's value in `column` (one of COLUMNS; test_<metric> for a test metric)."""
        if column.startswith("test_"):
            return self.test.get(column.removeprefix("test_"))
        return getattr(self, column)

    def to_dict(self) -> dict[str, Any]:
        """The row as one flat object, as COLUMNS orders it."""
        return {column: self.value(column) for column in COLUMNS}


# The test metrics every task lists here, as columns test_<name>, in the tasks' order.
_TEST_METRICS = tuple(dict.fromkeys(name for task in TASKS.values() for name in task.brief))
COLUMNS = (
    "name", "date", "data", "model", "epochs", "best_val_loss",
    *(f"test_{name}" for name in _TEST_METRICS),
    "wall_s", "status",
)  # fmt: skip


def list_runs(folder: str | os.PathLike[str] = "runs") -> list[RunRow]:
    """Return a row for every run folder directly inside `folder`, oldest first.

    A folder without a record (config.json) is not a run and is skipped; one without a
    summary is an unfinished run; a run whose files cannot be read is listed as "damaged".
    """
    from ptflow.run_folder import CONFIG  # here: `ptflow --help` imports this module

    folder = Path(folder)
    if not folder.is_dir():
        raise WorkflowError(f"{folder} is not a folder; pass the folder that holds the runs.")
    rows = [_row(path) for path in sorted(folder.iterdir()) if (path / CONFIG).is_file()]
    return sorted(rows, key=lambda row: (row.date, row.name))


def _row(run: Path) -> RunRow:
    from ptflow.run_folder import read_record, read_summary

    try:
        record = read_record(run)
        config = record["config"]
        summary = read_summary(run)
        task = task_of(summary)  # a summary naming no task ptflow knows is damaged too
    except (OSError, WorkflowError):
        return RunRow(run.name, "", "", "", None, None, {}, None, "damaged")
    model = str(config.get("model", ""))
    if model == "mlp":
        model += "(" + ",".join(str(size) for size in config.get("hidden", [])) + ")"
    test = (summary or {}).get("metrics", {}).get("test", {})
    return RunRow(
        name=run.name,
        date=str(record.get("created", "")),
        data=Path(config["data"]).name if config.get("data") else str(made_data(config)),
        model=model,
        epochs=summary.get("epochs") if summary else None,
        best_val_loss=_best_val_loss(run),
        test={name: test.get(name) for name in task.brief},
        wall_s=summary.get("wall_s") if summary else None,
        status="finished" if summary else "unfinished",
    )


def _best_val_loss(run: Path) -> float | None:
    from ptflow.run_folder import read_history

    try:
        losses = read_history(run).get("val_loss", [])
    except (OSError, WorkflowError):
        return None
    finite = [loss for loss in losses if math.isfinite(loss)]
    return min(finite) if finite else None


def sort_runs(rows: list[RunRow], column: str, descending: bool = False) -> list[RunRow]:
    """Rows ordered by a column; rows without a value come last either way."""
    if column not in COLUMNS:
        raise WorkflowError(f"cannot sort by {column!r}; choose one of {', '.join(COLUMNS)}.")
    present = [row for row in rows if row.value(column) is not None]
    missing = [row for row in rows if row.value(column) is None]
    ordered = sorted(present, key=lambda row: row.value(column), reverse=descending)
    return ordered + missing


def format_table(rows: list[RunRow]) -> str:
    """The rows as an aligned text table with a header."""
    header = [_HEADERS.get(column, column) for column in COLUMNS]
    lines = [header, *([_cell(row.value(column)) for column in COLUMNS] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


_HEADERS = {
    "best_val_loss": "best val",
    "wall_s": "wall s",
    **{
        f"test_{metric.name}": f"test {metric.label}"
        for task in TASKS.values()
        for metric in task.metrics
    },
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) > 19 and value[10:11] == "T":
        return value[:19].replace("T", " ")  # the date, to the second
    # A folder or file name may hold a newline or a tab: shown escaped, one row per run.
    return (
        str(value).encode("unicode_escape").decode("ascii")
        if not str(value).isprintable()
        else str(value)
    )


def rows_as_json(rows: list[RunRow]) -> str:
    """The rows as a JSON list of objects, for scripts."""
    # A summary.json edited to hold NaN or Infinity: null, as ptflow writes them itself.
    rows_data = to_json_safe([row.to_dict() for row in rows])
    return json.dumps(rows_data, indent=2, allow_nan=False, default=str)
