"""The terminal's side of the command line: error lines, exit codes, signals and logging.

Kept out of `cli.py`, which parses and dispatches. Under torchrun every process runs the same
command: rank 0 speaks for all of them (see `report_error`). Imports nothing heavy.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ptflow.errors import TrainingDiverged, TrainingInterrupted, WorkflowError
from ptflow.files import quoted, remove_own_temporaries

if TYPE_CHECKING:
    import logging
    from types import FrameType

__all__ = [
    "check_utf8",
    "launched_rank",
    "logging_to_stdout",
    "report_error",
    "run_as_process",
    "run_reporting_errors",
    "stop_on_signals",
]

_GRACE_S = 3.0  # how long another rank leaves rank 0 to report an error they share


def launched_rank() -> int | None:
    """This process's rank when torchrun started it with others, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ["RANK"])


_rank = launched_rank()


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run `command` and return its exit code; what it raises becomes one line and a code.

    A `WorkflowError` is `error: ...` and its exit code; an interrupted training `stopped:
    ...` and 130 or 143; an error of the operating system `error: cannot use PATH: ...` and 2;
    SIGTERM outside training unwinds (so temporary files are removed) and exits 143.
    """
    try:
        return _run_reporting_errors(command)
    except KeyboardInterrupt:  # Ctrl-C again while the first stop or an error was reported
        return _interrupted()
    finally:
        remove_own_temporaries()


class _Interrupts:
    """Ctrl-C, held while a module is being imported, and whether it came at all.

    A KeyboardInterrupt raised inside an import can be swallowed, leave a module half made
    whose next use raises something else, or, raised in Python code that torch's C++ calls
    while it loads (pybind11), abort the process ("terminate called after throwing an
    instance of 'pybind11::error_already_set'", SIGABRT). So Ctrl-C during an import is
    held, and delivered to whatever SIGINT handler is set once the import is done (looked
    at every 20 ms); a second Ctrl-C while it is held interrupts at once.
    """

    seen = False
    held = False
    _RECHECK_S = 0.02

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.seen = True
        if cls.held or not _importing(frame) or not hasattr(signal, "setitimer"):
            cls.release()
            raise KeyboardInterrupt
        cls.held = True
        signal.signal(signal.SIGALRM, cls._deliver_when_imported)
        signal.setitimer(signal.ITIMER_REAL, cls._RECHECK_S)

    @classmethod
    def _deliver_when_imported(cls, signum: int, frame: FrameType | None) -> None:
        if not cls.held:  # delivered already, by a second Ctrl-C
            return
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, cls._RECHECK_S)
            return
        cls.release()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):  # this class's (raises), or training's (stops at a batch)
            handler(signal.SIGINT, frame)

    @classmethod
    def release(cls) -> None:
        """Hold no Ctrl-C any more, and stop looking: a timer left running would end the
        process with SIGALRM once Python, shutting down, has reset its handler."""
        if cls.held:
            cls.held = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def _importing(frame: FrameType | None) -> bool:
    """Whether the code running in `frame` runs inside an import (Python's or its callers')."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def run_as_process(command: Callable[[], int]) -> int:
    """`run_reporting_errors` for the process's own entry point, which owns its signals.

    Ctrl-C raises KeyboardInterrupt as usual and is remembered: an error it causes (torch
    half imported) ends as an interruption, and training stops at once. Once the command
    has finished, Ctrl-C ends the process at once with the command's code: Python's
    shutdown (joining threads, torch unloading its libraries) can take a moment, and a
    Ctrl-C there printed a traceback. While the handlers change, Ctrl-C is ignored (the
    command has finished), so no moment is left uncovered.
    """
    try:
        signal.signal(signal.SIGINT, _Interrupts.handle)
    except ValueError:  # not the main thread: leave the signals be
        return run_reporting_errors(command)
    try:
        try:
            code = run_reporting_errors(command)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _Interrupts.release()  # a Ctrl-C held till now ends nothing more
    except KeyboardInterrupt:  # as the command returned
        code = _interrupted()

    def leave(signum: int, frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    signal.signal(signal.SIGINT, leave)
    return code


def _run_reporting_errors(command: Callable[[], int]) -> int:
    try:
        with _terminate_as_exception():
            return command()
    except _Terminated:
        if _rank is None:  # under torchrun it is the agent stopping us: it says why
            print(
                "error: terminated (SIGTERM); files already written are complete.", file=sys.stderr
            )
        return 128 + signal.SIGTERM
    except TrainingInterrupted as stop:
        if _rank in (None, 0):
            print(f"stopped: {stop}", file=sys.stderr)
        return stop.exit_code
    except TrainingDiverged as diverged:  # under torchrun every process stops on one flag
        if _rank in (None, 0):  # so rank 0 speaks for all, without waiting
            report_error(str(diverged))
        return diverged.exit_code
    except WorkflowError as error:
        report_error(str(error))
        return error.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training
        return _interrupted()
    except SystemExit as stop:  # --help and --version end the parse early
        return stop.code if isinstance(stop.code, int) else 0
    except BrokenPipeError:  # the reader went away (`ptflow predict ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # the file system said no: a full disk, a read-only folder...
        if _rank is not None and isinstance(error, ConnectionError):
            report_error(f"{type(error).__name__}: {error}", unexpected=True)  # see below
            return 1
        report_error(_os_error_line(error))
        return 2
    except Exception as error:
        if _Interrupts.seen:  # a consequence of the Ctrl-C, not a problem of its own
            return _interrupted()
        if _rank is None:
            raise
        # Under torchrun, a process that lost the others (one was killed, say) ends in one
        # line, not a traceback from each: usually the launcher's, which names the process
        # that died, as torchrun stops the rest while they wait (see _report_error).
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report_error(f"{type(error).__name__}: {detail}", unexpected=True)
        return 1


def _interrupted() -> int:
    """Ctrl-C outside training (or a second one): one line, and a shell's code for it."""
    print("error: interrupted; files already written are complete.", file=sys.stderr)
    return 128 + signal.SIGINT


class _Terminated(BaseException):
    """SIGTERM outside training: unwinds like Ctrl-C, so temporary files are removed."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (main() called from a thread): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# What to do about an error of the operating system, by its errno name.
_OS_FIXES = {
    "ENOSPC": "free some space, or write elsewhere",
    "EDQUOT": "free some space, or write elsewhere",
    "EROFS": "the file system is read-only: choose a folder you can write",
    "EACCES": "check its permissions, or choose another path",
    "EPERM": "check its permissions, or choose another path",
    "ENOENT": "check the path",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
    "EISDIR": "it is a folder: give a file",
    "ENAMETOOLONG": "use a shorter path",
    "EMFILE": "too many open files: raise the limit (ulimit -n)",
}


def _os_error_line(error: OSError) -> str:
    """One line for an OSError: what the system said, about which path, and what to do."""
    code = errno.errorcode.get(error.errno or 0, "")
    what = error.strerror or str(error) or type(error).__name__
    where = f" {quoted(error.filename)}" if error.filename is not None else ""
    fix = _OS_FIXES.get(code, "check the path and the file system")
    return f"cannot use{where}: {what}{f' ({code})' if code else ''}; {fix}."


def report_error(message: str, unexpected: bool = False) -> None:
    """Print one error line; under torchrun, rank 0 speaks for every process.

    Bad input and a NaN reach every process alike. Another rank waits a moment first: if
    rank 0 met the same error it has said so and torchrun stops this process before it
    repeats it; if not, the error is this process's own, and it says so. An `unexpected`
    error under torchrun is most often a lost connection to a process that died, which the
    launcher reports: every rank then waits a moment longer, and is usually stopped first.
    """
    if _rank is not None:
        time.sleep((_GRACE_S if unexpected else 0.0) + (_GRACE_S if _rank != 0 else 0.0))
    if _rank not in (None, 0):
        message = f"process {_rank}: {message}"
    # One line, always: a path or a header cell holding a line break cannot fake a second one.
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    print(f"error: {message}", file=sys.stderr)


def check_utf8(argv: list[str]) -> None:
    """Refuse arguments whose bytes are not UTF-8: run folders record them as JSON text."""
    for token in argv:
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:
            raise WorkflowError(
                f"argument {token!r} is not valid UTF-8 (a file name in another encoding?); "
                f"rename the file or folder."
            ) from None


class _StopRequest:
    """Set by SIGINT (Ctrl-C) or SIGTERM; training checks it after every batch.

    Under torchrun it is also set when this process's launcher is gone (it was killed, and
    the process now belongs to another parent): the process stops with a checkpoint rather
    than train on, orphaned, to the end. The kernel tells it too (`_die_with_parent`).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.parent = os.getppid() if _rank is not None else None
        self.signalled = False  # by a signal, not by the parent check

    @property
    def launcher_gone(self) -> bool:
        """Whether this process's launcher died: it now belongs to another parent, or is
        dying still (its SIGTERM from the kernel can come before the parent is gone)."""
        if self.parent is None:
            return False
        if os.getppid() != self.parent:
            return True
        try:
            return "\tZ" in Path(f"/proc/{self.parent}/status").read_text()  # State: Z
        except OSError:  # no such process: gone; no /proc: the first check is all there is
            return Path("/proc").is_dir()

    def __call__(self) -> bool:
        # `launcher_gone`'s first check alone: this runs after every batch
        if self.signal is None and self.parent is not None and os.getppid() != self.parent:
            self.signal = signal.SIGTERM  # as if the launcher had passed one on
        return self.signal is not None

    def handle(self, signum: int, frame: object) -> None:
        # A second Ctrl-C stops at once, without a checkpoint. A second SIGTERM changes
        # nothing: a launcher's and the kernel's (`_die_with_parent`) may both come, and
        # what stops at once is SIGKILL.
        if self.signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = True
        self.signal = self.signal or signum


@contextmanager
def stop_on_signals() -> Iterator[_StopRequest]:
    """Turn SIGINT and SIGTERM into a request to stop at the next batch, for the duration."""
    stop = _StopRequest()
    if _rank is not None:
        _die_with_parent()
    if _Interrupts.seen:  # Ctrl-C came before training, and something swallowed it
        stop.signal, stop.signalled = signal.SIGINT, True
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    except TrainingInterrupted as interrupted:
        if stop.signal is not None:  # as a shell reports it (else: another process's stop)
            interrupted.exit_code = 128 + stop.signal
        raise
    except Exception:
        if stop.signal is not None and _rank is not None:
            # torchrun's agent stops every process once one has died, and the collective
            # this one was in broke meanwhile: no news, the launcher says which one died.
            sys.exit(128 + stop.signal)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (torchrun's agent) dies, so
    that an orphaned process stops at its next batch with a checkpoint (elsewhere: the
    parent check of `_StopRequest` alone, at every batch)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # a libc without prctl: the parent check remains
        pass


def _stdout_handler(as_json: bool) -> logging.Handler:
    """A handler that writes each line to stdout through `tqdm.write`, which lifts a
    progress bar out of the way and draws it again below the line: as text, or with
    `as_json` as one JSON object per line (an epoch's numbers, or any other line's text).
    (tqdm's own `logging_redirect_tqdm` imports tqdm.auto, which warns "IProgress not
    found" in a notebook without ipywidgets.) Its classes are made here, not at import,
    so that `ptflow --help` does not import logging."""
    import logging

    class JsonLines(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            values = getattr(record, "epoch_record", None)
            if values is not None:
                return json.dumps({"event": "epoch", **values})
            return json.dumps({"event": "log", "message": record.getMessage()})

    class AboveTheBar(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            from tqdm import tqdm

            try:
                tqdm.write(self.format(record), file=self.stream)
            except Exception:  # logging's own rule: a failing handler reports, never raises
                self.handleError(record)

    handler = AboveTheBar(sys.stdout)
    handler.setFormatter(JsonLines() if as_json else logging.Formatter("%(message)s"))
    return handler


@contextmanager
def logging_to_stdout(quiet: bool, as_json: bool = False) -> Iterator[None]:
    """Send ptflow's log lines to stdout, above the progress bar, for the duration."""
    import logging

    logger = logging.getLogger("ptflow")
    handler = _stdout_handler(as_json)
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
