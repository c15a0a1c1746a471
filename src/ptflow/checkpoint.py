"""Step 6, save and load: a model's `state_dict` in a file, and back into a fresh model.

Files are read with `torch.load(..., weights_only=True)` only, so loading a file can
never run code hidden in it: a pickle that tries is refused as corrupt.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from ptflow.errors import WorkflowError
from ptflow.files import atomic_path

__all__ = ["load_weights", "save_weights"]


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save the model's `state_dict` (its learned tensors) to `path`, atomically."""
    path = Path(path)
    # Serialised in memory first: torch.save names the archive after the file it writes,
    # and a temporary file's random name would make identical weights differ byte-wise.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a `state_dict` file into `model` (built with the same architecture) and return it."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"model file {path} does not exist; check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to parse an untrusted file means "corrupt"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkflowError(
            f"cannot read model file {path} ({reason}); it is corrupt or not a PyTorch "
            f"state_dict: save it again with ptflow or torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WorkflowError(
            f"model file {path} holds a {type(state).__name__}, not a state_dict of tensors; "
            f"save it with torch.save(model.state_dict(), path)."
        )
    _check_compatible(model, state, path)
    model.load_state_dict(state)  # copies onto the model's own device
    return model


def _check_compatible(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
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
            f"model file {path} does not fit a {type(model).__name__}: {'; '.join(problems)}; "
            f"build the model with the architecture it was saved from."
        )
