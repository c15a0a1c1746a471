"""Where the model runs: choosing a device by name, and what each device can do.

Kept apart from `models.py`, whose modules know nothing of devices: a model is moved to
its device once, by the workflow.
"""

from __future__ import annotations

import torch
from torch import nn

from ptflow.errors import WorkflowError

__all__ = ["check_bf16", "device_of", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device `name` means: "auto" is CUDA, then MPS, then the CPU."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise WorkflowError(
            f"this machine has no {name} device that torch {torch.__version__} can use; "
            f"choose --device cpu, or auto to take the best one there is."
        )
    if name not in ("cpu", "cuda", "mps"):
        raise WorkflowError(f"unknown device {name!r}; choose auto, cpu, cuda or mps.")
    return torch.device(name)


def check_bf16(device: torch.device) -> None:
    """Raise `WorkflowError` unless `device` can run bfloat16 autocast."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise WorkflowError(
            f"{torch.cuda.get_device_name(device)} has no bfloat16 support; "
            f"use --precision 32 or a newer GPU."
        )
    if device.type == "mps":
        try:
            torch.ones(1, device=device, dtype=torch.bfloat16)
        except (RuntimeError, TypeError):
            raise WorkflowError(
                "this Mac's MPS device has no bfloat16 support (macOS 14 or later has it); "
                "use --precision 32."
            ) from None


def device_of(model: nn.Module) -> torch.device:
    """Return the device the model's parameters live on (CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
