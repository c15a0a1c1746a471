"""The one exception type ptflow raises for problems a user can fix.

    Exception
     └── WorkflowError   bad input, a missing or corrupt file, an impossible setting

The message is one line: what is wrong, then what to do about it. Only the CLI
turns it into an exit code (`exit_code`); the library never calls `sys.exit`.
"""

from __future__ import annotations

__all__ = ["WorkflowError"]


class WorkflowError(Exception):
    """A problem with the user's input or files, with a message that says how to fix it."""

    exit_code: int = 2
