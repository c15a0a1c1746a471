"""The whole workflow end to end, and the run folder it leaves behind.

data -> split -> model -> train -> evaluate -> plots -> save. `ptflow run` is a thin
layer over `run_workflow`; `ptflow predict` over `load_run`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptflow import __version__
from ptflow.checkpoint import load_weights, save_weights
from ptflow.config import Config
from ptflow.data import Splits, make_linear_data, split
from ptflow.errors import WorkflowError
from ptflow.evaluation import Metrics, evaluate, predict
from ptflow.files import current_umask, write_json, write_text
from ptflow.models import build_model, linear_parameters
from ptflow.plots import plot_loss_curves, plot_predictions
from ptflow.training import History, train

__all__ = ["LoadedRun", "RunResult", "default_run_dir", "load_run", "run_workflow"]

RUN_FILES = (
    "model.pt",
    "config.json",
    "history.csv",
    "summary.json",
    "data.png",
    "predictions_before.png",
    "predictions_after.png",
    "loss_curves.png",
)


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced; the same numbers are in its run folder."""

    run_dir: Path
    config: Config
    model: nn.Module
    splits: Splits
    history: History
    metrics: dict[str, Metrics]  # "train", "val" (when there is one), "test"
    learned: tuple[float, float] | None  # (weight, bias) of a one-feature linear model
    wall_s: float


@dataclass(frozen=True)
class LoadedRun:
    """A saved run's configuration and trained model, ready to predict."""

    run_dir: Path
    config: Config
    model: nn.Module


def default_run_dir(root: str | os.PathLike[str] = "runs") -> Path:
    """Return a new folder name under `root` from the current time, unique in `root`."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate = Path(root) / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stamp}-{n}"
    return candidate


def run_workflow(
    cfg: Config | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: list[str] | None = None,
) -> RunResult:
    """Run the tutorial workflow with `cfg` and write its run folder to `out_dir`.

    The folder appears complete or not at all: files are written to a temporary folder
    beside it, which is renamed into place at the end. An existing non-empty `out_dir` is
    an error unless `overwrite` is set.
    """
    cfg = cfg if cfg is not None else Config()
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir()
    _check_run_dir_free(run_dir, overwrite)
    started = time.perf_counter()

    # 1. data: a straight line, split into train (and validation) and test parts
    X, y = make_linear_data(cfg.weight, cfg.bias, cfg.start, cfg.end, cfg.step)
    splits = split(X, y, cfg.train_fraction, cfg.val_fraction, shuffle=cfg.shuffle, seed=cfg.seed)
    # 3. model, seeded right before it is built
    model = build_model(cfg.model, in_features=X.shape[1], out_features=y.shape[1], seed=cfg.seed)
    y_pred_before = predict(model, splits.test.X)
    # 4. train
    history = train(model, splits, cfg, progress=progress)
    # 5. evaluate on every part of the data
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    metrics = {name: evaluate(model, *part) for name, part in parts.items() if part is not None}
    wall_s = time.perf_counter() - started

    result = RunResult(
        run_dir=run_dir,
        config=cfg,
        model=model,
        splits=splits,
        history=history,
        metrics=metrics,
        learned=linear_parameters(model),
        wall_s=wall_s,
    )
    # 2. and 6. visualize and save, into a folder that appears only when complete
    with _staging_dir(run_dir, overwrite) as staging:
        _write_run_files(staging, result, y_pred_before, command)
    return result


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Load a run folder's configuration and trained model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WorkflowError(
            f"run folder {run_dir} does not exist; pass a folder `ptflow run` made."
        )
    config_path = run_dir / "config.json"
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        cfg = Config.from_dict(saved["config"])
        model_args = saved["model"]
        model = build_model(
            model_args["name"], model_args["in_features"], model_args["out_features"], seed=None
        )
    except FileNotFoundError:
        raise WorkflowError(
            f"{run_dir} has no config.json, so it is not a ptflow run folder; "
            f"pass a folder `ptflow run` made."
        ) from None
    except (ValueError, KeyError, TypeError, WorkflowError) as error:
        raise WorkflowError(
            f"{config_path} is corrupt ({type(error).__name__}: {error}); "
            f"re-run `ptflow run` to make a fresh run folder."
        ) from None
    load_weights(model, run_dir / "model.pt")
    return LoadedRun(run_dir=run_dir, config=cfg, model=model)


def _check_run_dir_free(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise WorkflowError(f"{run_dir} is a file, not a folder; choose another output folder.")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise WorkflowError(
            f"output folder {run_dir} already exists and is not empty; "
            f"choose another folder or pass --overwrite to replace it."
        )


@contextmanager
def _staging_dir(run_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `run_dir` that replaces it when the block succeeds."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; the run folder is not
    try:
        yield staging
        old = None
        if run_dir.exists():
            _check_run_dir_free(run_dir, overwrite)  # it may have appeared meanwhile
            old = staging.with_name(staging.name + ".old")
            os.replace(run_dir, old)
        os.replace(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)


def _write_run_files(
    folder: Path, result: RunResult, y_pred_before: torch.Tensor, command: list[str] | None
) -> None:
    cfg, splits, model = result.config, result.splits, result.model
    save_weights(model, folder / "model.pt")
    write_json(
        folder / "config.json",
        {
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "model": {
                "name": cfg.model,
                "in_features": splits.train.X.shape[1],
                "out_features": splits.train.y.shape[1],
            },
            "command": command,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "versions": _versions(),
        },
    )
    write_text(folder / "history.csv", _history_csv(result.history))
    write_json(folder / "summary.json", _summary(result))

    train_part, test_part = splits.train, splits.test
    plot_predictions(*train_part, *test_part, title="Data", path=folder / "data.png")
    plot_predictions(
        *train_part,
        *test_part,
        predictions=y_pred_before,
        title="Predictions before training",
        path=folder / "predictions_before.png",
    )
    plot_predictions(
        *train_part,
        *test_part,
        predictions=predict(model, test_part.X),
        title="Predictions after training",
        path=folder / "predictions_after.png",
    )
    plot_loss_curves(result.history, path=folder / "loss_curves.png")


def _history_csv(history: History) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "train_loss", f"{history.eval_split}_loss", "lr"])
    writer.writerows(
        zip(history.epoch, history.train_loss, history.eval_loss, history.lr, strict=True)
    )
    return buffer.getvalue()


def _summary(result: RunResult) -> dict[str, Any]:
    cfg = result.config
    summary: dict[str, Any] = {
        "epochs": len(result.history),
        "wall_s": round(result.wall_s, 4),
        "final_train_loss": result.history.train_loss[-1],
        f"final_{result.history.eval_split}_loss": result.history.eval_loss[-1],
        "parameters": {
            name: tensor.detach().cpu().tolist()
            for name, tensor in result.model.state_dict().items()
        },
        "true_parameters": {"weight": cfg.weight, "bias": cfg.bias},
        "metrics": {name: metrics.to_dict() for name, metrics in result.metrics.items()},
    }
    if result.learned is not None:
        summary["learned_parameters"] = dict(zip(("weight", "bias"), result.learned, strict=True))
    return summary


def _versions() -> dict[str, str]:
    return {
        "ptflow": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }
