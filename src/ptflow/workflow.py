"""The whole workflow end to end, and the run folder it leaves behind.

data -> split -> model -> train -> evaluate -> plots -> save. `ptflow run` (the tutorial's
line) and `ptflow train` (a table) are thin layers over `run_workflow`; `ptflow predict`
and `ptflow evaluate` over `load_run`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
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
from ptflow.data import (
    Splits,
    Table,
    fit_scaling,
    load_table,
    make_linear_data,
    scale_splits,
    split,
)
from ptflow.errors import WorkflowError
from ptflow.evaluation import Metrics, compute_metrics, evaluate, fit_least_squares, predict
from ptflow.files import atomic_path, current_umask, write_json, write_text
from ptflow.models import Standardized, build_model, linear_parameters
from ptflow.plots import plot_loss_curves, plot_predicted_vs_actual, plot_predictions
from ptflow.training import History, train

__all__ = [
    "RUN_FILES",
    "LoadedRun",
    "RunResult",
    "default_run_dir",
    "load_data",
    "load_run",
    "run_workflow",
    "write_config_toml",
]

logger = logging.getLogger(__name__)

# Every run folder holds these; the plots differ between the tutorial's line and tables.
RUN_FILES = (
    "model.pt",
    "config.json",
    "config.toml",
    "history.csv",
    "summary.json",
    "split_indices.npz",
    "loss_curves.png",
)
LINE_PLOTS = ("data.png", "predictions_before.png", "predictions_after.png")
TABLE_PLOTS = ("predicted_vs_actual.png",)


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced; the same numbers are in its run folder."""

    run_dir: Path
    config: Config
    model: nn.Module  # takes raw columns: standardisation, if any, is inside
    data: Table
    splits: Splits  # raw columns, as read
    history: History
    metrics: dict[str, Metrics]  # "train", "val" (when there is one), "test"
    baseline_metrics: dict[str, Metrics]  # the least-squares line on the same rows
    learned: tuple[float, float] | None  # (weight, bias) of a one-feature linear model
    wall_s: float


@dataclass(frozen=True)
class LoadedRun:
    """A saved run's configuration and trained model, ready to predict."""

    run_dir: Path
    config: Config
    model: nn.Module
    features: tuple[str, ...]
    target: tuple[str, ...]


def default_run_dir(root: str | os.PathLike[str] = "runs") -> Path:
    """Return a new folder name under `root` from the current time, unique in `root`."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate = Path(root) / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stamp}-{n}"
    return candidate


def load_data(cfg: Config) -> Table:
    """Return the run's data: the table `cfg.data` names, or else the tutorial's line."""
    if cfg.data is not None:
        table = load_table(
            cfg.data,
            cfg.target,
            cfg.features,
            format=cfg.format,
            drop_missing=cfg.drop_missing,
        )
        if table.dropped_rows:
            logger.info("dropped %d rows with missing or infinite values", table.dropped_rows)
        return table
    X, y = make_linear_data(cfg.weight, cfg.bias, cfg.start, cfg.end, cfg.step)
    return Table(X, y, features=("X",), target=("y",), fingerprint={})


def run_workflow(
    cfg: Config | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: list[str] | None = None,
) -> RunResult:
    """Run the workflow with `cfg` and write its run folder to `out_dir`.

    The folder appears complete or not at all: files are written to a temporary folder
    beside it, which is renamed into place at the end. An existing non-empty `out_dir` is
    an error unless `overwrite` is set.
    """
    cfg = cfg if cfg is not None else Config()
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir()
    _check_run_dir_free(run_dir, overwrite)
    started = time.perf_counter()

    # 1. data: the line or a table, split into train, validation and test rows
    data = load_data(cfg)
    splits = split(
        data.X, data.y, cfg.train_fraction, cfg.val_fraction, shuffle=cfg.shuffle, seed=cfg.seed
    )
    logger.info(
        "data: %d rows | features: %d | targets: %d | split: %d train, %d validation, %d test",
        len(data.X),
        len(data.features),
        len(data.target),
        len(splits.train.X),
        len(splits.val.X) if splits.val is not None else 0,
        len(splits.test.X),
    )
    # 3. model, seeded right before it is built; trained on standardised columns if asked
    network = _build_network(cfg, len(data.features), len(data.target), seed=cfg.seed)
    if cfg.scale == "standard":
        scaling = fit_scaling(*splits.train)  # from the training rows only: no leak
        model: nn.Module = Standardized(network, scaling)
        train_splits = scale_splits(splits, scaling)
    else:
        model, train_splits = network, splits
    # The tutorial's "predictions before training" plot; tables have no such plot.
    y_pred_before = predict(model, splits.test.X) if cfg.data is None else None
    # 4. train
    history = train(network, train_splits, cfg, progress=progress)
    # 5. evaluate on every part of the data, in the data's own units, beside the baseline
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    metrics = {name: evaluate(model, *part) for name, part in parts.items() if part is not None}
    baseline = fit_least_squares(*splits.train)
    baseline_metrics = {
        name: compute_metrics(baseline.predict(part.X), part.y)
        for name, part in parts.items()
        if part is not None
    }
    wall_s = time.perf_counter() - started

    result = RunResult(
        run_dir=run_dir,
        config=cfg,
        model=model,
        data=data,
        splits=splits,
        history=history,
        metrics=metrics,
        baseline_metrics=baseline_metrics,
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
        raise WorkflowError(f"run folder {run_dir} does not exist; pass a folder ptflow made.")
    config_path = run_dir / "config.json"
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        cfg = Config.from_dict(saved["config"])
        shape = saved["model"]
        features, target = tuple(shape["features"]), tuple(shape["target"])
        model = _build_network(cfg, len(features), len(target), seed=None)
    except FileNotFoundError:
        raise WorkflowError(
            f"{run_dir} has no config.json, so it is not a ptflow run folder; "
            f"pass a folder ptflow made."
        ) from None
    except (ValueError, KeyError, TypeError, WorkflowError) as error:
        raise WorkflowError(
            f"{config_path} is corrupt ({type(error).__name__}: {error}); "
            f"train again to make a fresh run folder."
        ) from None
    if cfg.scale == "standard":
        model = Standardized(model, None, len(features), len(target))
    load_weights(model, run_dir / "model.pt")
    return LoadedRun(run_dir=run_dir, config=cfg, model=model, features=features, target=target)


def write_config_toml(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the configuration as TOML, the format `--config` reads, atomically."""
    import tomli_w

    # TOML has no null: an unset setting is left out and comes back as its default.
    values = {key: value for key, value in cfg.to_dict().items() if value is not None}
    write_text(path, tomli_w.dumps(values))


def _build_network(cfg: Config, in_features: int, out_features: int, seed: int | None) -> nn.Module:
    return build_model(
        cfg.model,
        in_features,
        out_features,
        seed=seed,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
    )


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
    folder: Path, result: RunResult, y_pred_before: torch.Tensor | None, command: list[str] | None
) -> None:
    cfg, splits, model, data = result.config, result.splits, result.model, result.data
    save_weights(model, folder / "model.pt")
    write_json(
        folder / "config.json",
        {
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "model": {
                "name": cfg.model,
                "in_features": len(data.features),
                "out_features": len(data.target),
                "features": list(data.features),
                "target": list(data.target),
            },
            "command": command,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "versions": _versions(),
        },
    )
    write_config_toml(cfg, folder / "config.toml")
    write_text(folder / "history.csv", _history_csv(result.history))
    write_json(folder / "summary.json", _summary(result))
    with atomic_path(folder / "split_indices.npz") as tmp, open(tmp, "wb") as file:
        np.savez_compressed(
            file,
            train=splits.train_indices.numpy(),
            val=splits.val_indices.numpy(),
            test=splits.test_indices.numpy(),
        )

    plot_loss_curves(result.history, path=folder / "loss_curves.png")
    y_pred_after = predict(model, splits.test.X)
    if cfg.data is not None:
        plot_predicted_vs_actual(
            splits.test.y,
            y_pred_after,
            data.target,
            title="Test rows: predicted vs actual",
            path=folder / "predicted_vs_actual.png",
        )
        return
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
        predictions=y_pred_after,
        title="Predictions after training",
        path=folder / "predictions_after.png",
    )


def _history_csv(history: History) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "train_loss", f"{history.eval_split}_loss", "lr"])
    rows = zip(history.epoch, history.train_loss, history.eval_loss, history.lr, strict=True)
    writer.writerows(rows)
    return buffer.getvalue()


def _summary(result: RunResult) -> dict[str, Any]:
    cfg, history = result.config, result.history
    summary: dict[str, Any] = {
        "epochs": len(history),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "wall_s": round(result.wall_s, 4),
        "final_train_loss": history.train_loss[-1],
        f"final_{history.eval_split}_loss": history.eval_loss[-1],
        "metrics": {name: metrics.to_dict() for name, metrics in result.metrics.items()},
        "baseline_metrics": {
            name: metrics.to_dict() for name, metrics in result.baseline_metrics.items()
        },
        "features": list(result.data.features),
        "target": list(result.data.target),
        "split_rows": {
            "train": len(result.splits.train_indices),
            "val": len(result.splits.val_indices),
            "test": len(result.splits.test_indices),
        },
    }
    if cfg.data is not None:
        summary["data"] = {**result.data.fingerprint, "dropped_rows": result.data.dropped_rows}
    else:
        summary["parameters"] = {
            name: tensor.detach().cpu().tolist()
            for name, tensor in result.model.state_dict().items()
        }
        summary["true_parameters"] = {"weight": cfg.weight, "bias": cfg.bias}
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
