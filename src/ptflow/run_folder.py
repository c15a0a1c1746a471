"""The run folder: the one place that knows its files, who may write it, and what may replace it.

One writer at a time. A process that writes a run folder (`train`, `run`, `--resume`,
`--overwrite`) holds an OS lock on its `.ptflow.lock` file (`fcntl.flock`) for the whole
run; the OS releases it when the process ends, however it ends. A second writer is refused
at once, with the process that holds the folder named.

Nothing a user wrote is deleted. `--overwrite` replaces only an empty folder or a ptflow run
folder: every entry is a name ptflow writes, its `config.json` is ptflow's record, and its
`checkpoints/` and `tensorboard/` hold only ptflow's files. The current folder, the home
folder, `/`, a symbolic link and anything else are refused before anything is touched. The
old run's files are moved into `.replaced/` inside the folder and deleted once the new run
has its first checkpoint (or finishes); a new run that fails before that (bad data, a loss
that diverged on the first epoch, a full disk) is removed and the old run is put back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptflow.errors import WorkflowError
from ptflow.files import atomic_path, is_temporary_name, quoted, write_json, write_text
from ptflow.tasks import TASKS

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "CONFIG_TOML",
    "ENCODING",
    "HISTORY",
    "LINE_PLOTS",
    "LOCK_FILE",
    "MODEL",
    "PLOT_CAPTIONS",
    "REPORT",
    "RUN_FILES",
    "SPLIT",
    "SUMMARY",
    "TABLE_PLOTS",
    "FolderWriter",
    "check_new_run_dir",
    "is_run_folder",
    "locked",
    "read_encoding",
    "read_history",
    "read_json",
    "read_record",
    "read_summary",
    "run_folder_holding",
    "write_config_toml",
    "write_encoding",
    "write_history",
    "write_record",
    "write_split",
    "write_summary",
    "writing",
]

LOCK_FILE = ".ptflow.lock"
CONFIG = "config.json"  # the run's record: settings, data, model shape, command, versions
CONFIG_TOML = "config.toml"  # the settings alone, as `--config` reads them
SUMMARY = "summary.json"  # its results; written last, it marks the run finished
HISTORY = "history.csv"  # one row per epoch
SPLIT = "split_indices.npz"  # which rows went to train, validation and test
MODEL = "model.pt"  # the trained weights, a state_dict
REPORT = "report.html"  # everything on one page, to look at and share
ENCODING = "encoding.json"  # a table's columns as model inputs: medians, categories
CHECKPOINTS = "checkpoints"
REPLACED = ".replaced"  # the run --overwrite replaces, until the new one has a checkpoint
# Every run folder holds these; the plots differ between the tutorial's line and tables.
RUN_FILES = (
    LOCK_FILE,  # which process writes the folder (see `writing`)
    CHECKPOINTS,  # the newest training checkpoints, to resume or continue the run
    MODEL,
    "model.safetensors",
    CONFIG,
    CONFIG_TOML,
    HISTORY,
    SUMMARY,
    REPORT,
    SPLIT,
    "loss_curves.png",
)
# Every plot a run folder may hold, in the order the report shows them, with its caption.
PLOT_CAPTIONS = {
    "data.png": "The data: train blue, test green",
    "predictions_before.png": "Predictions before training (red)",
    "predictions_after.png": "Predictions after training (red)",
    "predicted_vs_actual_before.png": "Test rows before training: predicted against actual",
    "predicted_vs_actual.png": "Test rows after training: predicted against actual",
    "residuals.png": "Test rows after training: residuals against predictions",
    "decision_regions.png": "Decision regions: the class predicted at each point, under the "
    "rows coloured by their true class",
    "confusion_matrix.png": "Test rows: true class against predicted class",
    "roc_curve.png": "Test rows: ROC curve (true against false positive rate)",
    "calibration.png": "Test rows: predicted probability against the share of rows of the class",
}
LINE_PLOTS = ("data.png", "predictions_before.png", "predictions_after.png")
TABLE_PLOTS = tuple(dict.fromkeys(name for task in TASKS.values() for name in task.table_plots))
_OPTIONAL = ("tensorboard", REPLACED, ENCODING)  # written only when asked for, or while replacing
_NAMES = frozenset(RUN_FILES + LINE_PLOTS + TABLE_PLOTS + _OPTIONAL)
_INSIDE = {
    "checkpoints": re.compile(r"^epoch-\d+(-batch-\d+)?\.(json|safetensors)$"),
    "tensorboard": re.compile(r"^events\.out\.tfevents\..+$"),
}


def is_run_folder(path: Path) -> bool:
    """True if every file in `path` is one ptflow writes into a run folder."""
    return _foreign_entry(path) is None


def _ours(name: str) -> bool:
    """A name ptflow writes at the top of a run folder (its files, or a temporary one)."""
    return name in _NAMES or is_temporary_name(name)


def _foreign_entry(path: Path) -> str | None:
    """The first entry of `path` that ptflow did not write (relative), or None."""
    entries = sorted(path.iterdir())
    for entry in entries:
        name = entry.name
        if is_temporary_name(name) and entry.is_file():
            continue
        if name not in _NAMES or entry.is_symlink():
            return name
        if name in _INSIDE or name == REPLACED:
            if not entry.is_dir():
                return name
            if name == REPLACED:
                inner = _foreign_entry(entry)
                if inner is not None:
                    return f"{name}/{inner}"
                continue
            for child in entry.iterdir():
                theirs = not (_INSIDE[name].match(child.name) or is_temporary_name(child.name))
                if theirs or not child.is_file():
                    return f"{name}/{child.name}"
        elif entry.is_dir():
            return name
    meaningful = [e.name for e in entries if e.name not in (LOCK_FILE, REPLACED)]
    if meaningful and not _is_ptflow_record(path / CONFIG):
        return CONFIG if (path / CONFIG).exists() else meaningful[0]
    return None


def _is_ptflow_record(path: Path) -> bool:
    try:
        record = read_json(path)
    except (OSError, WorkflowError):
        return False
    return isinstance(record, dict) and isinstance(record.get("config"), dict)


def check_new_run_dir(run_dir: Path, overwrite: bool, *, holding: bool = False) -> None:
    """Refuse an output folder a new run may not write into; touch nothing.

    `holding`: this process holds the folder's lock already (see `writing`).
    """
    # (An empty --out never gets here: Path("") is ".", so the CLI and run_workflow refuse it.)
    if run_dir.is_symlink():
        raise WorkflowError(
            f"output folder {quoted(run_dir)} is a symbolic link; pass the folder it "
            f"points to, or another folder."
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise WorkflowError(
            f"{quoted(run_dir)} is a file, not a folder; choose another output folder."
        )
    if not run_dir.is_dir():
        return
    holder = None if holding else _holder_if_locked(run_dir)
    if holder is not None:
        raise _in_use(run_dir, holder)
    if not any(e.name != LOCK_FILE for e in run_dir.iterdir()):
        return  # empty: nothing to lose
    unfinished = (run_dir / CONFIG).is_file() and not (run_dir / SUMMARY).is_file()
    if not overwrite:
        if unfinished:
            raise WorkflowError(
                f"output folder {quoted(run_dir)} holds an unfinished run; resume it with "
                f"--resume {quoted(run_dir)}, or pass --overwrite to replace it."
            )
        raise WorkflowError(
            f"output folder {quoted(run_dir)} already exists and is not empty; "
            f"choose another folder or pass --overwrite to replace it."
        )
    _check_replaceable(run_dir)


def _check_replaceable(run_dir: Path) -> None:
    resolved = run_dir.resolve()
    special = {  # later entries win: the current folder may be the home folder too
        Path(resolved.anchor): "the root folder",
        Path.home().resolve(): "your home folder",
        Path.cwd().resolve(): "the current folder",
    }
    name = special.get(resolved)
    if name is None and resolved in Path.cwd().resolve().parents:
        name = "a folder that holds the current folder"
    if name is not None:
        raise WorkflowError(
            f"refusing to replace {quoted(run_dir)}: it is {name}; --overwrite replaces only "
            f"a run folder ptflow made, so give --out a folder of its own."
        )
    foreign = _foreign_entry(run_dir)
    if foreign is not None:
        raise WorkflowError(
            f"refusing to replace {quoted(run_dir)} with --overwrite: it is not a ptflow run "
            f"folder (ptflow did not write {foreign!r}); move your files out, or choose "
            f"another --out."
        )


@dataclass
class FolderWriter:
    """The lock on a run folder being written, and the old run it replaces until `keep`."""

    run_dir: Path
    created: bool  # the folder did not exist before this run
    had_lock_file: bool
    kept: bool = False
    put_back: list[str] = field(default_factory=list)  # the old run's entries in .replaced

    def keep(self) -> None:
        """The new run has a checkpoint (or finished): the run it replaces may go."""
        import shutil

        if not self.kept:
            self.kept = True
            shutil.rmtree(self.run_dir / REPLACED, ignore_errors=True)

    def _restore(self) -> None:
        """Undo a run that failed before its first checkpoint: the folder as it was found."""
        import shutil

        for entry in self.run_dir.iterdir():
            if entry.name in (LOCK_FILE, REPLACED) or not _ours(entry.name):
                continue  # a file someone put there meanwhile is not this run's to delete
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        replaced = self.run_dir / REPLACED
        for name in self.put_back:
            os.replace(replaced / name, self.run_dir / name)
        if replaced.is_dir():
            shutil.rmtree(replaced, ignore_errors=True)
        if not self.had_lock_file:
            (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
        if self.created and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()


@contextmanager
def writing(run_dir: Path, *, overwrite: bool) -> Iterator[FolderWriter]:
    """Hold `run_dir` for a new run, replacing the run in it if `overwrite`; see the module."""
    import shutil

    check_new_run_dir(run_dir, overwrite)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    had_lock_file = (run_dir / LOCK_FILE).exists()
    fd = _lock(run_dir)
    writer = FolderWriter(run_dir, created, had_lock_file)
    try:
        check_new_run_dir(run_dir, overwrite, holding=True)  # again: now no one else writes
        old = [e.name for e in run_dir.iterdir() if e.name not in (LOCK_FILE, REPLACED)]
        if old:
            replaced = run_dir / REPLACED
            shutil.rmtree(replaced, ignore_errors=True)  # a killed --overwrite's leftovers
            replaced.mkdir()
            for name in old:
                os.replace(run_dir / name, replaced / name)
                writer.put_back.append(name)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield writer
        writer.keep()
    except BaseException:
        if not writer.kept and _has_checkpoint(run_dir):
            writer.keep()  # the new run can resume: it is the one worth keeping
        if not writer.kept:
            writer._restore()
        raise
    finally:
        os.close(fd)


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an existing run folder (to resume it) so that no other process writes it."""
    if not run_dir.is_dir():
        raise WorkflowError(
            f"run folder {quoted(run_dir)} does not exist; pass a folder ptflow made."
        )
    created = not (run_dir / LOCK_FILE).exists()
    fd = _lock(run_dir)
    try:
        yield
    finally:
        if created and not (run_dir / CONFIG).exists():  # not a run folder: leave no trace
            (run_dir / LOCK_FILE).unlink(missing_ok=True)
        os.close(fd)


def _has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / CHECKPOINTS
    return folder.is_dir() and any(folder.glob("epoch-*.json"))


def _lock(run_dir: Path) -> int:
    """Take the folder's lock without waiting and record who holds it; return its descriptor."""
    import fcntl
    import socket

    path = run_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):  # the folder may be replaced between open and lock: then try again
        fd = os.open(path, flags, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _in_use(run_dir, holder) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            return fd
        os.close(fd)
    raise WorkflowError(
        f"{quoted(run_dir)} kept changing while ptflow tried to lock it; another program is "
        f"moving it: stop that, or choose another folder."
    )


def _holder_if_locked(run_dir: Path) -> str | None:
    """Who holds `run_dir`'s lock, without taking it (None: no one)."""
    import fcntl

    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    import socket

    try:
        record = json.loads(os.pread(fd, 4096, 0).decode())
        where = "" if record["host"] == socket.gethostname() else f" on {record['host']}"
        return f"process {int(record['pid'])}{where}, {' '.join(record['command'])!r}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"  # it has locked the file and not yet said who it is


def _in_use(run_dir: Path, holder: str) -> WorkflowError:
    return WorkflowError(
        f"run folder {quoted(run_dir)} is in use by {holder}; wait for it to finish, "
        f"or choose another folder."
    )


def _command() -> list[str]:
    """This process's command line, as the user typed it when it is ptflow's."""
    import sys

    program = Path(sys.argv[0]) if sys.argv else Path()
    if program.name == "ptflow" or (
        program.name == "__main__.py" and program.parent.name == "ptflow"
    ):
        return ["ptflow", *sys.argv[1:]]  # `ptflow ...` or `python -m ptflow ...`
    return sys.argv


def run_folder_holding(path: Path) -> Path | None:
    """The ptflow run folder that `path` lies inside (any depth), or None."""
    for folder in Path(path).resolve().parents:
        if _is_ptflow_record(folder / CONFIG):
            return folder
    return None


def read_json(path: Path) -> Any:
    """A JSON file ptflow wrote; damage (even 200,000 nested brackets) is a WorkflowError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        kind = "nested too deeply" if isinstance(error, RecursionError) else "not valid JSON"
        raise WorkflowError(
            f"{quoted(path)} is damaged ({kind}); train again to make a fresh run folder."
        ) from None


# The parts of config.json and summary.json that readers use, with the types they need.
_NUMBER = (int, float, type(None))
_RECORD_SHAPE: dict[str, tuple[type, ...]] = {
    "config": (dict,),
    "model": (dict,),
    "data": (dict,),
    "versions": (dict,),
    "command": (list, type(None)),
    "created": (str,),
    "processes": (int,),
}
_SUMMARY_SHAPE: dict[str, tuple[type, ...]] = {
    "metrics": (dict,),
    "baseline_metrics": (dict,),
    "features": (list,),
    "target": (list,),
    "split_rows": (dict,),
    "data": (dict,),
    "parameters": (dict,),
    "learned_parameters": (dict,),
    "true_parameters": (dict,),
    "epochs": _NUMBER,
    "best_epoch": _NUMBER,
    "wall_s": _NUMBER,
}


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run folder's config.json: its settings, data, model shape, command and versions."""
    if not run_dir.is_dir():
        raise WorkflowError(
            f"run folder {quoted(run_dir)} does not exist; pass a folder ptflow made."
        )
    path = run_dir / CONFIG
    if not path.is_file():
        raise WorkflowError(
            f"{quoted(run_dir)} has no config.json, so it is not a ptflow run folder; "
            f"pass a folder ptflow made."
        )
    record = _checked(read_json(path), _RECORD_SHAPE, path)
    for key in ("features", "target"):
        if not _names(record.get("model", {}).get(key)):
            raise _damaged(path, f"model.{key} is not a list of column names")
    return record


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's summary.json (its results), or None while the run is unfinished."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return None
    summary = _checked(read_json(path), _SUMMARY_SHAPE, path)
    for key in ("features", "target"):
        if key in summary and not _names(summary[key]):
            raise _damaged(path, f"{key} is not a list of column names")
    for key in ("metrics", "baseline_metrics"):
        for part, values in summary.get(key, {}).items():
            if not isinstance(values, dict) or not all(
                isinstance(v, _NUMBER) for v in values.values()
            ):
                raise _damaged(path, f"{key}.{part} is not a table of numbers")
    return summary


def _checked(value: Any, shape: dict[str, tuple[type, ...]], path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _damaged(path, f"it holds a {type(value).__name__}, not an object")
    for key, types in shape.items():
        if key in value and not isinstance(value[key], types):
            raise _damaged(path, f"{key} is a {type(value[key]).__name__}")
    return value


def _damaged(path: Path, detail: str) -> WorkflowError:
    return WorkflowError(
        f"{quoted(path)} is damaged ({detail}); train again to make a fresh run folder."
    )


def write_record(run_dir: Path, record: dict[str, Any], settings: dict[str, Any]) -> None:
    """Write config.json (the whole record) and config.toml (the settings), atomically."""
    write_json(run_dir / CONFIG, record)
    write_config_toml(settings, run_dir / CONFIG_TOML)


def write_config_toml(settings: dict[str, Any], path: Path) -> None:
    """Write settings as TOML, the format `--config` reads, atomically."""
    import tomli_w

    # TOML has no null: an unset setting is left out and comes back as its default.
    values = {key: value for key, value in settings.items() if value is not None}
    write_text(path, tomli_w.dumps(values))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write summary.json, the mark of a finished run: call it last."""
    write_json(run_dir / SUMMARY, summary)


def write_history(run_dir: Path, columns: dict[str, list[Any]]) -> None:
    """Write history.csv: one row per epoch, one column per entry of `columns`, in order."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    write_text(run_dir / HISTORY, buffer.getvalue())


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """A run's history.csv as columns of numbers, by column name."""
    import csv

    path = run_dir / HISTORY
    try:
        with open(path, encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))
        columns = rows[0].keys() if rows else []
        return {name: [float(row[name]) for row in rows] for name in columns}
    except FileNotFoundError:
        raise WorkflowError(f"{quoted(run_dir)} lacks {HISTORY}; train again.") from None
    except (ValueError, TypeError, KeyError, csv.Error) as error:
        raise _damaged(path, str(error)) from None


def write_encoding(run_dir: Path, encoding: dict[str, Any]) -> None:
    """Write encoding.json: how the table's columns become the model's inputs."""
    write_json(run_dir / ENCODING, encoding)


def read_encoding(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's encoding.json, or None for a run without one (the tutorial's line, or
    a run of an earlier version)."""
    path = run_dir / ENCODING
    if not path.is_file():
        return None
    return _checked(read_json(path), {"inputs": (list,)}, path)


def write_split(run_dir: Path, **indices: Any) -> None:
    """Write split_indices.npz: the row numbers of each part (train=..., val=..., test=...)."""
    import numpy as np

    with atomic_path(run_dir / SPLIT) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **indices)
