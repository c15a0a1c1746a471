"""The exception types ptflow raises for problems a user can fix.

    Exception
     └── WorkflowError          bad input, a missing or corrupt file, an impossible setting
          ├── TrainingDiverged      the loss became NaN or infinite (exit code 3)
          └── TrainingInterrupted   SIGINT or SIGTERM stopped training at a checkpoint

The message is one line: what is wrong, then what to do about it. Only the CLI
turns it into an exit code (`exit_code`); the library never calls `sys.exit`.
"""

from __future__ import annotations

__all__ = ["TrainingDiverged", "TrainingInterrupted", "WorkflowError", "first_line"]


class WorkflowError(Exception):
    """A problem with the user's input or files, with a message that says how to fix it."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class TrainingDiverged(WorkflowError):
    """A non-finite loss stopped training before it could reach the weights."""

    exit_code = 3


class TrainingInterrupted(WorkflowError):
    """Training stopped on request after saving a checkpoint; it can be resumed."""

    exit_code = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def first_line(error: BaseException) -> str:
    """The first line of an error's message (or its type's name), to quote inside ours."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
