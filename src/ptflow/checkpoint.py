"""Step 6, save and load: model weights, and training checkpoints that resume exactly.

Weights are a plain `state_dict`: a `.pt` file as in the tutorial, or a `.safetensors`
file. `.pt` files are read with `torch.load(..., weights_only=True)` only, so loading a
file can never run code hidden in it: a pickle that tries is refused as corrupt.

Checkpoints hold no pickle at all: tensors in a safetensors file, everything else in a
JSON file beside it, both checked against SHA-256 digests when read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ptflow.config import CHECKPOINT_SECONDS
from ptflow.errors import WorkflowError, first_line
from ptflow.files import atomic_path, check_regular_file, write_text

__all__ = [
    "CHECKPOINT_SECONDS",
    "Checkpoint",
    "CheckpointSchedule",
    "check_compatible",
    "checkpoint_label",
    "checkpoint_name",
    "checkpoint_position",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
]

logger = logging.getLogger(__name__)


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save the model's `state_dict` (its learned tensors) to `path`, atomically.

    A `.safetensors` path gets the safetensors format; any other the tutorial's `torch.save`.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        import safetensors.torch

        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        payload = safetensors.torch.save(tensors)
    else:
        # Serialised in memory first: torch.save names the archive after the file it
        # writes, and a temporary file's random name would make equal weights differ.
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        payload = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a `state_dict` file into `model` (built with the same architecture) and return it."""
    path = check_regular_file(path, "model file")
    try:
        state = _read_state_dict(path)
    except Exception as error:  # any failure to parse an untrusted file means "corrupt"
        reason = first_line(error)
        raise WorkflowError(
            f"cannot read model file {path} ({reason}); it is corrupt or not a PyTorch "
            f"state_dict: save it again with ptflow or torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WorkflowError(
            f"model file {path} holds a {type(state).__name__}, not a state_dict of tensors; "
            f"save it with torch.save(model.state_dict(), path)."
        )
    check_compatible(model, state, f"model file {path}")
    model.load_state_dict(state)  # copies onto the model's own device
    return model


def _read_state_dict(path: Path) -> Any:
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load(path.read_bytes())
    return torch.load(path, map_location="cpu", weights_only=True)


def check_compatible(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `WorkflowError` listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    problems = []
    if missing := sorted(set(expected) - set(state)):
        problems.append(f"missing keys {', '.join(missing)}")
    if unexpected := sorted(set(state) - set(expected)):
        problems.append(f"unexpected keys {', '.join(unexpected)}")
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    if mismatched:
        problems.append(f"shape mismatches (file vs model) {', '.join(mismatched)}")
    if problems:
        raise WorkflowError(
            f"{source} does not fit a {type(model).__name__}: {'; '.join(problems)}; "
            f"build the model with the architecture it was saved from."
        )


# --- Training checkpoints: tensors in safetensors, everything else in JSON beside them ---

CHECKPOINT_FORMAT = "ptflow-checkpoint/1"
_NAME = re.compile(r"^epoch-(\d+)(?:-batch-(\d+))?\.json$")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: where training stood after `epoch` epochs and `batch` more batches."""

    path: Path  # the JSON file; its tensors are in the .safetensors file beside it
    epoch: int  # epochs finished
    batch: int  # batches of the next epoch finished (0: the checkpoint is at an epoch's end)
    state: dict[str, Any]  # the training state, tensors in place (TrainingState.state_dict)
    info: dict[str, Any]  # what the caller recorded beside it: configuration, versions


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """(epochs, batches) a checkpoint file's name says it holds; None if not a checkpoint's."""
    match = _NAME.match(path.name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def checkpoint_label(path: Path) -> str:
    """Where a checkpoint file stands, in words: "epoch 7" or "epoch 7 and 31 batches"."""
    position = checkpoint_position(path)
    if position is None:
        return path.name
    epoch, batch = position
    return f"epoch {epoch}" + (f" and {batch} batches" if batch else "")


def checkpoint_name(epoch: int, batch: int = 0) -> str:
    """Return the JSON file name of the checkpoint after `epoch` epochs and `batch` batches."""
    return f"epoch-{epoch:06d}.json" if batch == 0 else f"epoch-{epoch:06d}-batch-{batch:06d}.json"


def save_checkpoint(
    folder: str | os.PathLike[str],
    state: dict[str, Any],
    *,
    epoch: int,
    batch: int = 0,
    info: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint into `folder` and delete all but the newest `keep`; return its path.

    The tensors go to a .safetensors file, written first; the JSON file, written second,
    holds everything else, the tensors file's SHA-256 and its own checksum. A checkpoint
    counts only once its JSON file is complete, so a crash mid-save leaves the older ones.
    """
    import safetensors.torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint_name(epoch, batch)
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, tensors, "")
    payload = safetensors.torch.save(tensors)
    tensors_path = path.with_suffix(".safetensors")
    with atomic_path(tensors_path) as tmp:
        tmp.write_bytes(payload)
    body = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "batch": batch,
        "tensors": tensors_path.name,
        "tensors_sha256": hashlib.sha256(payload).hexdigest(),
        "info": _pack(info or {}, {}, ""),
        "state": tree,
    }
    write_text(path, json.dumps({**body, "sha256": _digest(body)}, indent=1) + "\n")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)  # the JSON first: without it the tensors file is inert
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    for orphan in folder.glob("epoch-*.safetensors"):  # left by a save that failed midway
        if not orphan.with_suffix(".json").exists():
            orphan.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the checkpoint JSON files in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(at, p) for p in folder.iterdir() if (at := checkpoint_position(p)) is not None]
    return [path for _, path in sorted(found)]


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify one checkpoint; a truncated or altered file is a `WorkflowError`."""
    import safetensors.torch

    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        body = {key: value for key, value in document.items() if key != "sha256"}
        if document.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a {CHECKPOINT_FORMAT} file")
        if document.get("sha256") != _digest(body):
            raise ValueError("its checksum does not match its content")
        payload = (path.parent / body["tensors"]).read_bytes()
        if hashlib.sha256(payload).hexdigest() != body["tensors_sha256"]:
            raise ValueError(f"{body['tensors']} does not match its checksum")
        tensors = safetensors.torch.load(payload)
        return Checkpoint(
            path=path,
            epoch=int(body["epoch"]),
            batch=int(body["batch"]),
            state=_unpack(body["state"], tensors),
            info=_unpack(body["info"], {}),
        )
    except FileNotFoundError as error:
        reason = f"{Path(error.filename or path).name} is missing"
    except Exception as error:  # any failure to parse an untrusted file means "corrupt"
        reason = first_line(error)
    raise WorkflowError(f"checkpoint {path} is corrupt ({reason})")


def latest_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint | None:
    """Return the newest checkpoint in `folder` that verifies, falling back to older ones.

    None when the folder holds no checkpoint; a `WorkflowError` when none of them verifies.
    """
    problems = []
    for path in reversed(list_checkpoints(folder)):
        try:
            checkpoint = load_checkpoint(path)
        except WorkflowError as error:
            logger.warning("%s; trying the checkpoint before it", error)
            problems.append(str(error))
            continue
        return checkpoint
    if problems:
        raise WorkflowError(
            f"no usable checkpoint in {folder}: {'; '.join(problems)}; start the run again."
        )
    return None


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _pack(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """Return `value` as JSON, moving every tensor into `tensors` under its path `where`.

    Tuples, non-finite floats and dicts with non-string keys (optimizer state is keyed by
    parameter number) get tagged forms, so `_unpack` returns exactly what went in.
    """
    if isinstance(value, torch.Tensor):
        tensors[where] = value.detach().cpu().contiguous()
        return {"__tensor__": where}
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_pack(v, tensors, f"{where}/{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_pack(v, tensors, f"{where}/{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _pack(v, tensors, f"{where}/{k}") for k, v in value.items()}
        return {"__items__": [[k, _pack(v, tensors, f"{where}/{k}")] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint ({where})")


def _unpack(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_unpack(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_unpack(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {k: _unpack(v, tensors) for k, v in value["__items__"]}
    return {k: _unpack(v, tensors) for k, v in value.items()}


class Progress(Protocol):
    """What a schedule needs to know at an epoch's end (`training.EpochEnd`)."""

    @property
    def epochs_done(self) -> int: ...

    @property
    def batches_done(self) -> int: ...

    @property
    def final(self) -> bool: ...  # the run's last call: always saved

    def state_dict(self) -> dict[str, Any]: ...


@dataclass
class CheckpointSchedule:
    """Saves a checkpoint every `every` epochs, or every CHECKPOINT_SECONDS, and at the end.

    Called with `train`'s `EpochEnd` after every epoch (and when a stop cuts one short).

    Under torchrun every process calls it: rank 0's clock decides (`decide`, the world's
    broadcast), every process hands in its random generators' states, and rank 0 writes.
    """

    folder: Path
    every: int | None  # epochs between checkpoints; None: by time
    keep: int  # the newest checkpoints kept
    info: dict[str, Any]  # stored beside the state: configuration, versions
    decide: Callable[[bool], bool] | None = None  # under torchrun: rank 0's decision, for all
    writes: bool = True  # False on every process but rank 0
    on_saved: Callable[[], None] | None = None  # told after each checkpoint is on disk
    last_saved: float = field(default_factory=time.monotonic)

    def __call__(self, state: Progress) -> None:
        final = state.final
        if self.every is not None:
            due = state.epochs_done % self.every == 0
        else:
            due = time.monotonic() - self.last_saved >= CHECKPOINT_SECONDS
        if self.decide is not None:
            due = self.decide(final or due)
        if not (final or due):
            return
        saved_state = state.state_dict()  # under torchrun, gathers every process's generators
        if not self.writes:
            self.last_saved = time.monotonic()
            return
        save_checkpoint(
            self.folder,
            saved_state,
            epoch=state.epochs_done,
            batch=state.batches_done,
            info={**self.info, "saved": datetime.now().astimezone().isoformat(timespec="seconds")},
            keep=self.keep,
        )
        if self.on_saved is not None:
            self.on_saved()
        self.last_saved = time.monotonic()
