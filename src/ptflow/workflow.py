"""The whole workflow end to end, and the run folder it leaves behind.

data -> split -> model -> train -> evaluate -> plots -> save. `ptflow run` (the tutorial's
line) and `ptflow train` (a table) are thin layers over `run_workflow`, their `--resume`
over `resume_workflow`; `ptflow predict` and `ptflow evaluate` over `load_run`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptflow import __version__
from ptflow.checkpoint import (
    CHECKPOINT_SECONDS,
    Checkpoint,
    CheckpointSchedule,
    checkpoint_label,
    latest_checkpoint,
    list_checkpoints,
    load_weights,
    save_weights,
)
from ptflow.config import (
    CIRCLES_NOISE,
    CIRCLES_POINTS,
    Config,
    check_resumable,
    relevant_settings,
)
from ptflow.data import (
    Split,
    Splits,
    make_circles_data,
    make_linear_data,
    scale_splits,
    split,
    stratified_split,
)
from ptflow.devices import check_bf16, device_of, resolve_device
from ptflow.distributed import World, check_batches, lost_processes
from ptflow.encoding import Encoding, fit_encoding
from ptflow.errors import TrainingDiverged, TrainingInterrupted, WorkflowError
from ptflow.evaluation import (
    PREDICT_ROWS,
    ClassMetricSums,
    LossFn,
    Predictor,
    Scores,
    TableMetrics,
    evaluate_blocks,
    evaluate_table,
    feature_inputs,
    majority_class,
    permutation_importance,
    predict,
    predicted_classes,
    probabilities,
)
from ptflow.files import remove_stale_temporaries, to_json_safe
from ptflow.models import (
    BASELINE_MOST_CATEGORIES,
    Standardized,
    baseline_design,
    build_table_model,
    check_mlp_fits,
    linear_coefficients,
    linear_parameters,
)
from ptflow.plots import (
    plot_calibration,
    plot_confusion_matrix,
    plot_decision_regions,
    plot_loss_curves,
    plot_predicted_vs_actual,
    plot_predictions,
    plot_residuals,
    plot_roc_curves,
    plot_table_data,
)
from ptflow.report import write_report
from ptflow.run_folder import (
    CHECKPOINTS,
    CONFIG,
    MODEL,
    RUN_FILES,
    SUMMARY,
    check_new_run_dir,
    locked,
    read_encoding,
    read_record,
    read_summary,
    write_encoding,
    write_history,
    write_record,
    write_split,
    write_summary,
    writing,
)
from ptflow.run_folder import (
    write_config_toml as write_settings_toml,
)
from ptflow.stats import fit_least_squares, fit_logistic, fit_scaling
from ptflow.streaming import (
    MAJORITY,
    PARTS,
    STREAM_LOGISTIC_ROWS,
    STREAM_MOST_CATEGORIES,
    TRAIN,
    StreamedTable,
    evaluate_streamed,
    scan_table,
)
from ptflow.tables import (
    Table,
    describe_roles,
    holds_classes,
    iter_table,
    load_table,
    open_table,
    row_count,
    rows_left_out,
    whole_number_values,
)
from ptflow.tasks import CLASSIFICATION, REGRESSION, Task, task_of
from ptflow.training import (
    EpochEnd,
    History,
    balanced_class_weights,
    batch_size_for,
    make_class_loss_fn,
    optimizer_for,
    train,
    weight_decay_for,
)

__all__ = [
    "CHECKPOINT_SECONDS",
    "RUN_FILES",
    "LoadedRun",
    "RunResult",
    "default_run_dir",
    "load_data",
    "load_run",
    "resume_command",
    "resume_workflow",
    "run_workflow",
    "write_config_toml",
]

logger = logging.getLogger(__name__)


def task_for(cfg: Config) -> Task:
    """The run's task: the one `cfg.task` names, or for "auto" the one its data suggests:
    classification for a target of text or true/false values, regression otherwise (a
    whole-number target of a few values is regression too, with a hint on how to ask for
    classes)."""
    if cfg.task != "auto" or cfg.data is None:
        return CLASSIFICATION if cfg.task == "classification" else REGRESSION
    table = open_table(cfg.data, cfg.format)
    if holds_classes(table, cfg.target):
        return CLASSIFICATION
    for name in cfg.target:
        if name in table.columns and (values := whole_number_values(table, name)):
            logger.info(
                "hint: target %s holds only the whole numbers %s in its first rows; if they "
                "are classes, pass --task classification",
                name,
                ", ".join(values),
            )
    return REGRESSION


@dataclass(frozen=True, repr=False)
class RunResult:
    """What a finished run produced; the same numbers are in its run folder."""

    run_dir: Path
    config: Config
    model: nn.Module  # takes raw columns: standardisation, if any, is inside
    data: Table | StreamedTable  # StreamedTable: trained with --stream, never held
    splits: Splits | None  # raw columns, as read; None when streamed
    history: History
    # "train", "val" (when there is one), "test": Metrics, or for classes ClassMetrics
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]  # least squares (classes: logistic) on the same rows
    learned: tuple[float, float] | None  # (weight, bias) of a one-feature linear model
    wall_s: float
    task: Task = REGRESSION  # what the metrics are, how they print
    # By input column, how much the test rows' first metric worsens when it is shuffled
    importance: dict[str, float] | None = None
    encoding: Encoding | None = None  # how a table's columns became the model's inputs
    # Other baselines' metrics by name and part (classes: the majority class)
    other_baselines: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # classes: the model's sums on the test rows, for the confusion matrix and each class
    test_sums: ClassMetricSums | None = None

    def __repr__(self) -> str:  # what it learned and measured, not its tensors
        test = self.metrics.get("test")
        shown = test.to_dict() if test is not None else {}
        scores = ", ".join(
            f"{name} {'n/a' if value is None else format(value, '.4g')}"
            for name, value in shown.items()
        )
        return (
            f"RunResult({self.task.name}, {self.config.model}, {len(self.history)} epochs; "
            f"test: {scores}; folder {self.run_dir})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        from ptflow.evaluation import metrics_html

        metrics = {part: values.to_dict() for part, values in self.metrics.items()}
        return (
            f"<div><p><b>ptflow RunResult</b>: {escape(self.task.name)}, "
            f"{escape(self.config.model)}, {len(self.history)} epochs<br>"
            f"<code>{escape(str(self.run_dir))}</code></p>{metrics_html(metrics)}"
            f"{plot_loss_curves(self.history).to_html(width=480)}</div>"
        )


@dataclass(frozen=True)
class LoadedRun:
    """A saved run's configuration and trained model, ready to predict."""

    run_dir: Path
    config: Config
    model: nn.Module
    features: tuple[str, ...]
    target: tuple[str, ...]
    task: Task = REGRESSION  # what the metrics are, how they print
    encoding: Encoding | None = None  # how a table's columns become the model's inputs

    def evaluate(self, path: str | os.PathLike[str], **options: Any) -> TableMetrics:
        """The model's metrics on every row of a raw CSV or Parquet table, read block by
        block and encoded as in training (`evaluate_table`'s `options`)."""
        return evaluate_table(
            self.model, path, self.features, self.target, encoding=self.encoding,
            task=self.task, **options,
        )  # fmt: skip

    def predict(self, path: str | os.PathLike[str], **options: Any) -> torch.Tensor:
        """The model's outputs (logits, for classes) for every row of a raw table, its
        columns encoded as in training (`iter_table`'s `options`)."""
        blocks = iter_table(path, self.features, encoding=self.encoding, **options)
        return torch.cat([predict(self.model, block.X).cpu() for block in blocks])


def default_run_dir(root: str | os.PathLike[str] = "runs") -> Path:
    """Return a new folder name under `root` from the current time, unique in `root`."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate = Path(root) / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stamp}-{n}"
    return candidate


def load_data(cfg: Config, task: Task = REGRESSION) -> Table:
    """Return the run's data: the table `cfg.data` names, or else the tutorial's line; a
    target of classes for classification."""
    if cfg.data is not None:
        table = load_table(
            cfg.data,
            cfg.target,
            cfg.features,
            format=cfg.format,
            missing=cfg.missing,
            categorical=cfg.categorical,
            numeric=cfg.numeric,
            ignore=cfg.ignore,
            classes=task.classes,
        )
        logger.info("%s", describe_roles(table.roles))
        for left_out in rows_left_out(table.dropped_rows, table.missing_target):
            logger.info("left out %s", left_out)
        return table
    if task.classes:  # two circles, as numeric columns with classes "0" (outer), "1" (inner)
        X, y = make_circles_data(CIRCLES_POINTS, noise=CIRCLES_NOISE, seed=cfg.seed)
        logger.info(
            "data: two circles of %d points (noise %g), class 0 the outer, 1 the inner",
            CIRCLES_POINTS,
            CIRCLES_NOISE,
        )
        return Table(
            X, y, features=("x1", "x2"), target=("label",), fingerprint={},
            kinds=("numeric", "numeric"), classes=("0", "1"),
        )  # fmt: skip
    X, y = make_linear_data(cfg.weight, cfg.bias, cfg.start, cfg.end, cfg.step)
    return Table(X, y, features=("X",), target=("y",), fingerprint={})


@dataclass(frozen=True)
class _Prepared:
    """Steps 1 and 3: the data, its split, and the model before training."""

    data: Table | StreamedTable
    splits: Splits | None  # the model's inputs, unscaled; None when streamed
    model: nn.Module  # takes raw columns: standardisation, if any, is inside
    network: nn.Module  # what trains: the model itself, or the network inside Standardized
    train_splits: Splits | StreamedTable  # what the network sees: standardised if asked
    y_pred_before: torch.Tensor | None  # the tutorial's "predictions before training"
    encoding: Encoding | None = None  # a table's columns as inputs, fitted on training rows
    loss_fn: LossFn | None = None  # classes: cross-entropy; None: the loss cfg names
    task: Task = REGRESSION


def run_workflow(
    cfg: Config | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    resume_if_exists: bool = False,
    progress: bool = False,
    command: list[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    narrate: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run the workflow with `cfg` and write its run folder to `out_dir`.

    The folder is made once the data has loaded and the model is built, so bad input
    leaves nothing behind. It holds the configuration from the start and checkpoints
    during training (see `resume_workflow`); `summary.json`, written last, marks it
    finished. An existing non-empty `out_dir` is an error unless `overwrite` is set.

    `resume_if_exists`: an unfinished run in `out_dir` with a checkpoint is resumed
    (`resume_workflow`) instead, as it is, without asking, when torchrun restarted the job
    that made it (`torchrun --max-restarts`); `overwrite` never replaces a run that resumes.
    """
    cfg = cfg if cfg is not None else Config()
    if out_dir is not None and not os.fspath(out_dir).strip():
        raise WorkflowError("out_dir is an empty path; give a folder name (it is not '.').")
    world = World.current()
    run_dir = Path(out_dir) if out_dir is not None else _default_run_dir(world)
    if world is not None:  # under torchrun: one folder, which rank 0 alone writes
        run_dir = Path(world.broadcast_text(str(run_dir)))
    found = _decided(world, lambda: _existing_run(run_dir, resume_if_exists, world))
    if found == "resume":
        return resume_workflow(
            run_dir,
            _settings_changed(run_dir, cfg),
            progress=progress,
            command=command,
            should_stop=should_stop,
            on_epoch=on_epoch,
        )
    overwrite = overwrite or found == "replace"
    _agree(world, lambda: check_new_run_dir(run_dir, overwrite))
    started = time.perf_counter()
    prepared = _prepare(cfg)
    if world is not None:  # before the folder is made: bad settings leave nothing behind
        data = prepared.train_splits
        rows = len(data.train.X) if isinstance(data, Splits) else data.part_size(TRAIN)
        check_batches(world, batch_size_for(cfg, rows), rows)
    if world is not None and not world.is_main:
        return _train_and_finish(run_dir, cfg, prepared, None, started, progress, should_stop)
    with writing(run_dir, overwrite=overwrite) as folder:
        _write_run_record(run_dir, cfg, prepared, command)
        if prepared.encoding is not None:
            write_encoding(run_dir, prepared.encoding.to_dict())
        if (splits := prepared.splits) is not None:  # a streamed split is a rule, in config.json
            # Row numbers of the file, also when rows were left out, to audit against it.
            file_rows = getattr(prepared.data, "file_rows", None)
            indices = (splits.train_indices, splits.val_indices, splits.test_indices)
            train, val, test = (
                part.numpy() if file_rows is None else file_rows[part.numpy()] for part in indices
            )
            write_split(run_dir, train=train, val=val, test=test)
        if narrate is not None:
            _narrate_start(cfg, prepared, narrate)
        return _train_and_finish(
            run_dir,
            cfg,
            prepared,
            None,
            started,
            progress,
            should_stop,
            narrate,
            on_epoch,
            on_checkpoint=folder.keep,
        )


def _default_run_dir(world: World | None) -> Path:
    """A new folder under runs/, or, when torchrun restarted this job, the unfinished
    folder an earlier start of it made there (rank 0's answer counts)."""
    attempt = world.attempt if world is not None and world.is_main else None
    if attempt is not None and attempt.is_restart and attempt.is_unique and Path("runs").is_dir():
        for folder in sorted(Path("runs").iterdir(), reverse=True):  # the newest first
            if attempt.owns(_unfinished_record(folder) or {}):
                return folder
    return default_run_dir()


def _unfinished_record(run_dir: Path) -> dict[str, Any] | None:
    """The config.json of the unfinished run in `run_dir`, or None (no run, or finished)."""
    if not (run_dir / CONFIG).is_file() or (run_dir / SUMMARY).exists():
        return None
    try:
        return read_record(run_dir)
    except WorkflowError:
        return None


def _existing_run(run_dir: Path, resume_if_exists: bool, world: World | None) -> str:
    """What a new run does with the unfinished run `run_dir` may hold: "resume" it (asked
    to, or torchrun restarted the job that made it, and it has a checkpoint), "replace" it
    (the job's own, with no checkpoint yet), or "new": as any other folder, which
    `check_new_run_dir` judges."""
    record = _unfinished_record(run_dir)
    if record is None:
        return "new"
    attempt = world.attempt if world is not None else None
    own = attempt is not None and attempt.owns(record)
    if not (own or resume_if_exists):
        return "new"
    if not list_checkpoints(run_dir / CHECKPOINTS):
        # Started again in place only where the job's id is its own: torchrun's default id
        # "none" may be another job's, whose folder --overwrite alone may replace.
        return "replace" if own and attempt is not None and attempt.is_unique else "new"
    why = (
        f"torchrun started the processes again (restart {attempt.restarts} of this job)"
        if own and attempt is not None
        else "--resume-if-exists"
    )
    logger.warning("note: %s: resuming %s from its newest checkpoint", why, run_dir)
    return "resume"


def _settings_changed(run_dir: Path, cfg: Config) -> dict[str, Any]:
    """The settings `cfg` gives other values than the run in `run_dir` has."""
    saved, _ = _read_run_record(run_dir)
    return {
        field.name: getattr(cfg, field.name)
        for field in dataclasses.fields(Config)
        if getattr(cfg, field.name) != getattr(saved, field.name)
    }


def _decided(world: World | None, decide: Callable[[], str]) -> str:
    """Rank 0's answer, on every process; an error there is raised on every process."""
    if world is None:
        return decide()
    answer = ""
    if world.is_main:
        try:
            answer = "ok:" + decide()
        except WorkflowError as error:
            answer = str(error)
    answer = world.broadcast_text(answer)
    if not answer.startswith("ok:"):
        raise WorkflowError(answer)
    return answer.removeprefix("ok:")


def _agree(world: World | None, check: Callable[[], None]) -> None:
    """Run a check of the output folder on rank 0; under torchrun every process gets its word."""
    if world is None:
        check()
        return
    problem = ""
    if world.is_main:
        try:
            check()
        except WorkflowError as error:
            problem = str(error)
    problem = world.broadcast_text(problem)
    if problem:
        raise WorkflowError(problem)


def _weight_decay(cfg: Config, prepared: _Prepared, say: bool = False) -> float:
    """The run's weight decay (`training.weight_decay_for`): by its training rows; with
    `say`, logged when it was not given."""
    data = prepared.train_splits
    rows = data.part_size(TRAIN) if isinstance(data, StreamedTable) else len(data.train.X)
    decay = weight_decay_for(cfg, prepared.task.classes, rows)
    if say and cfg.weight_decay is None and decay:
        logger.info(
            "weight decay %.4g: 1 / %d training rows, logistic regression's C = 1 penalty "
            "(--weight-decay 0: none)",
            decay,
            rows,
        )
    return decay


def _narrate_start(cfg: Config, prepared: _Prepared, narrate: Callable[[str], None]) -> None:
    """--explain: steps 1, 3 and the first batch of 4, before training starts."""
    from ptflow.explain import describe_data, describe_first_batch, describe_model

    if prepared.splits is None or not isinstance(prepared.train_splits, Splits):
        narrate("(--explain tells the steps of runs in memory; this one streams its table.)")
        return
    data = prepared.data
    lines = describe_data(cfg, prepared.splits, data.features, data.target, prepared.encoding)
    lines += describe_model(cfg, prepared.network)
    classes = prepared.encoding.classes if prepared.encoding is not None else ()
    lines += describe_first_batch(
        cfg, prepared.network, prepared.train_splits, prepared.loss_fn, classes,
        weight_decay=_weight_decay(cfg, prepared),
    )  # fmt: skip
    for line in lines:
        narrate(line)


def resume_workflow(
    run_dir: str | os.PathLike[str],
    changes: dict[str, Any] | None = None,
    *,
    progress: bool = False,
    command: list[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Continue a run folder's training from its newest good checkpoint and finish it.

    The result is bit for bit the one an uninterrupted run would have given. `changes`
    may only touch settings that cannot change the result (`RESUMABLE_SETTINGS`); the
    data must be the same file content (it may have moved: pass a new `data` path).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    with ExitStack() as held:  # no other process may write the folder while this one resumes
        _agree(World.current(), lambda: held.enter_context(locked(run_dir)))
        return _resume(run_dir, changes, started, progress, command, should_stop, on_epoch)


def _resume(
    run_dir: Path,
    changes: dict[str, Any] | None,
    started: float,
    progress: bool,
    command: list[str] | None,
    should_stop: Callable[[], bool] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> RunResult:
    saved, record = _read_run_record(run_dir)
    changes = dict(changes or {})
    cfg = saved.replace(**changes) if changes else saved
    check_resumable(saved, cfg)
    world = World.current()
    main = world is None or world.is_main
    processes = world.size if world is not None else 1
    if record.get("processes", 1) != processes:
        saved_processes = record.get("processes", 1)
        raise WorkflowError(
            f"{run_dir} was trained by {saved_processes} process(es), and this is "
            f"{processes}; resume with the same number (--nproc {saved_processes}), or start a "
            f"new run from its weights with any number: --from-weights {shlex.quote(str(run_dir))}"
            f" (its model.pt loads anywhere)."
        )
    if main:
        remove_stale_temporaries(run_dir)
        remove_stale_temporaries(run_dir / CHECKPOINTS)
    checkpoint = latest_checkpoint(run_dir / CHECKPOINTS)
    if checkpoint is None:
        raise WorkflowError(
            f"{run_dir} has no checkpoint to resume from; "
            f"start the run again with --out {run_dir} --overwrite."
        )
    # Fewer epochs than already trained would leave a model.pt that config.toml cannot
    # reproduce, and a history.csv that does not match it.
    fewest = checkpoint.epoch + (1 if checkpoint.batch else 0)
    if cfg.epochs < fewest:
        raise WorkflowError(
            f"--epochs {cfg.epochs} is fewer than the {checkpoint_label(checkpoint.path)} "
            f"{run_dir} has trained; resume with --epochs {fewest} or more, or train a new run."
        )
    prepared = _prepare(cfg)
    if cfg.data is not None and prepared.data.fingerprint.get("sha256") != record["data"].get(
        "sha256"
    ):
        raise WorkflowError(
            f"{cfg.data} is not the data {run_dir} was trained on (its SHA-256 differs); "
            f"resume with the same file, or start a new run."
        )
    if cfg != saved and main:
        _write_run_record(run_dir, cfg, prepared, record.get("command"), resumed_by=command)
    logger.info(
        "resuming from %s: %d of %d epochs done", checkpoint.path.name, checkpoint.epoch, cfg.epochs
    )
    return _train_and_finish(
        run_dir, cfg, prepared, checkpoint, started, progress, should_stop, None, on_epoch
    )


def resume_command(
    cfg: Config, run_dir: Path, processes: int = 1, per_machine: int | None = None
) -> str:
    """Return the command that resumes the run in `run_dir` (trained by `processes`, of
    which `per_machine` ran on each machine): on several machines, torchrun's own, with the
    same layout."""
    command = (
        f"ptflow {'run' if cfg.data is None else 'train'} --resume {shlex.quote(str(run_dir))}"
    )
    if per_machine is not None and 0 < per_machine < processes:
        return (
            f"{command} --nnodes {processes // per_machine} --nproc {per_machine} "
            f"--rdzv-endpoint HOST:PORT (on each machine; HOST:PORT on the first, as when "
            f"it started)"
        )
    return command + (f" --nproc {processes}" if processes > 1 else "")


def _layout(record: dict[str, Any]) -> tuple[int, int | None]:
    """(processes, processes per machine) of a run, as its config.json has them."""
    per_machine = record.get("processes_per_machine")
    return record.get("processes", 1), per_machine if isinstance(per_machine, int) else None


def _per_machine() -> int | None:
    """How many of this run's processes torchrun started on each machine (None: one)."""
    value = os.environ.get("LOCAL_WORLD_SIZE")
    return int(value) if value and value.isdigit() and World.current() is not None else None


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Load a finished run folder's configuration and trained model."""
    run_dir = Path(run_dir)
    cfg, record = _read_run_record(run_dir)
    if read_summary(run_dir) is None:
        done = list_checkpoints(run_dir / CHECKPOINTS)
        progress = f" after {checkpoint_label(done[-1])}" if done else ""
        raise WorkflowError(
            f"{run_dir} is an unfinished run (it stopped{progress} of {cfg.epochs} epochs); "
            f"finish it with: {resume_command(cfg, run_dir, *_layout(record))}"
        )
    features, target = tuple(record["model"]["features"]), tuple(record["model"]["target"])
    task = task_of(read_summary(run_dir))
    saved = read_encoding(run_dir)
    encoding = Encoding.from_dict(saved) if saved is not None else None
    inputs = encoding.width if encoding is not None else len(features)
    classes = len(encoding.classes) if encoding is not None else 0
    model = _build_network(cfg, inputs, task.out_features(len(target), classes), None, encoding)
    if cfg.scale == "standard":
        model = Standardized(model, None, inputs, len(target))
    load_weights(model, run_dir / MODEL)
    return LoadedRun(run_dir, cfg, model, features, target, task, encoding)


def _prepare(cfg: Config) -> _Prepared:
    if cfg.stream:
        return _prepare_streamed(cfg)
    # 1. data: the line or a table, split into train, validation and test rows
    task = task_for(cfg)
    data = load_data(cfg, task)
    cut = stratified_split if task.classes else split  # classes: each one in every part
    splits = cut(
        data.X, data.y, cfg.train_fraction, cfg.val_fraction, shuffle=cfg.shuffle, seed=cfg.seed
    )
    encoding = None
    if data.kinds:  # a table: medians and categories from the training rows only
        kinds = dict(zip(data.features, data.kinds, strict=True))
        encoding = fit_encoding(splits.train.X.numpy(), data.features, kinds, data.vocabularies)
        encoding = dataclasses.replace(encoding, classes=data.classes)
        splits = _encoded(splits, encoding, data)
    if task.classes:
        _say_classes(data.target[0], data.classes, splits)
    logger.info(
        "data: %d rows | features: %d | targets: %d | split: %d train, %d validation, %d test",
        len(data.X),
        len(data.features),
        len(data.target),
        len(splits.train.X),
        len(splits.val.X) if splits.val is not None else 0,
        len(splits.test.X),
    )
    # 3. model, seeded right before it is built (on the CPU: the same start on any device);
    # trained on standardised columns if asked; then moved to its device, once
    device = _device(cfg)
    outputs = task.out_features(len(data.target), len(data.classes))
    inputs = splits.train.X.shape[1]
    if cfg.model == "mlp":  # the batches' activations too, before any is allocated
        rows = max(len(part.X) for part in (splits.train, splits.test))
        batch_rows = max(batch_size_for(cfg, len(splits.train.X)), min(rows, PREDICT_ROWS))
        check_mlp_fits(inputs, outputs, cfg.hidden, batch_rows)
    network = _build_network(cfg, inputs, outputs, cfg.seed, encoding)
    if cfg.scale == "standard":
        scaling = fit_scaling(*splits.train)  # from the training rows only: no leak
        if encoding is not None:  # numbers only: not 0/1 indicators, not category codes
            scaling = scaling.only(encoding.scaled)
        if not task.scales_targets:
            scaling = scaling.features_only()
        model: nn.Module = Standardized(network, scaling)
        train_splits = scale_splits(splits, scaling)
    else:
        model, train_splits = network, splits
    _start_from_weights(cfg, model)
    model.to(device)
    # The tutorial's "predictions before training", on the test rows.
    y_pred_before = predict(model, splits.test.X)
    loss_fn = None
    if task.classes:
        loss_fn = _class_loss(cfg, _class_rows(splits.train.y, len(data.classes)), data.classes)
    return _Prepared(
        data, splits, model, network, train_splits, y_pred_before, encoding, loss_fn, task
    )


def _start_from_weights(cfg: Config, model: nn.Module) -> None:
    """--from-weights: the model starts from a saved model's weights (a table model's
    scaling too, which is part of them) instead of its seeded ones. A new run: its own data,
    split and settings; the weights must be of the same architecture."""
    if cfg.from_weights is None:
        return
    path = Path(cfg.from_weights)
    if path.is_dir():  # a run folder: its weights
        safetensors = path / "model.safetensors"
        path = safetensors if safetensors.is_file() else path / MODEL
    load_weights(model, path)
    logger.info("starting from the weights of %s", path)


def _class_rows(y: torch.Tensor, classes: int) -> torch.Tensor:
    """How many of the rows of y (class numbers) are of each class."""
    return torch.bincount(y.reshape(-1).long(), minlength=classes)


def _class_loss(cfg: Config, class_rows: torch.Tensor, classes: Sequence[str]) -> LossFn:
    """Cross-entropy on logits, weighted by class when asked (by each class's training
    rows, `class_rows`)."""
    weight = balanced_class_weights(class_rows) if cfg.class_weight == "balanced" else None
    if weight is not None:
        shown = (f"{name} {w:.4g}" for name, w in zip(classes, weight.tolist(), strict=True))
        logger.info("class weights (balanced): %s", ", ".join(shown))
    return make_class_loss_fn(len(class_rows), weight, cfg.label_smoothing)


def _say_classes(target: str, classes: tuple[str, ...], splits: Splits) -> None:
    """Log the classes, and each one a part of the split has no row of."""
    parts = [getattr(splits, name) for name in ("train", "val", "test")]
    rows = [
        _class_rows(part.y, len(classes)).tolist() if part is not None else None for part in parts
    ]
    _say_class_rows(target, classes, rows)


def _say_class_rows(
    target: str, classes: tuple[str, ...], class_rows: Sequence[Sequence[int] | None]
) -> None:
    """Log the classes, and each one a part has no row of; `class_rows`: each part's (train,
    validation, test) rows of each class, None for a part the split does not have."""
    logger.info("classes of %s: %s", target, ", ".join(classes))
    for name, counts in zip(("train", "val", "test"), class_rows, strict=True):
        if counts is None or not sum(counts):
            continue
        if absent := [c for c, count in zip(classes, counts, strict=True) if count == 0]:
            logger.info(
                "the %s rows have no row of %s: too few rows of it to split",
                name,
                ", ".join(absent),
            )


def _encoded(splits: Splits, encoding: Encoding, data: Table) -> Splits:
    """The splits' raw columns as the model's inputs; what was imputed or unseen, logged."""
    encoded: dict[str, Any] = {}
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        if part is None:
            continue
        # In place: the part's rows are the split's own copy, of no other use raw.
        X, counts = encoding.encode(part.X.numpy(), data.vocabularies, in_place=True)
        encoded[name] = Split(torch.from_numpy(X), part.y)
        for line in counts.describe():
            logger.info("%s rows: %s", name, line)
    return dataclasses.replace(splits, **encoded)


def _prepare_streamed(cfg: Config) -> _Prepared:
    # 1. data: a Parquet table checked in one pass; its rows are read again when needed
    assert cfg.data is not None  # Config refuses --stream without --data
    task = task_for(cfg)
    table = scan_table(
        cfg.data,
        cfg.target,
        cfg.features,
        format=cfg.format,
        missing=cfg.missing,
        train_fraction=cfg.train_fraction,
        val_fraction=cfg.val_fraction,
        shuffle=cfg.shuffle,
        seed=cfg.seed,
        scale=cfg.scale == "standard",
        scale_targets=task.scales_targets,
        categorical=cfg.categorical,
        numeric=cfg.numeric,
        ignore=cfg.ignore,
        classes=task.classes,
    )
    logger.info(
        "data (streamed, %d row groups): %d rows | features: %d | targets: %d | "
        "split: %d train, %d validation, %d test",
        len(table.group_rows),
        table.rows,
        len(table.features),
        len(table.target),
        *(table.part_size(part) for part in range(3)),
    )
    logger.info("%s", describe_roles(table.roles))
    if left_out := rows_left_out(table.dropped_rows, table.missing_target):
        logger.info("left out %s", " and ".join(left_out))
    for name, cells in table.capped.items():
        logger.info(
            "%s has more than %d distinct values: the first %d are its categories, the "
            "others (%s) are encoded as unseen",
            name,
            STREAM_MOST_CATEGORIES,
            STREAM_MOST_CATEGORIES,
            row_count(cells),
        )
    for line in table.counts.describe():
        logger.info("all rows: %s", line)
    _say_baseline_leaves_out(baseline_design(table.encoding)[1], task)
    encoding, loss_fn = table.encoding, None
    if (class_rows := table.class_rows) is not None:  # classes: found in the scan, by part
        _say_class_rows(table.target[0], table.classes, class_rows.tolist())
        if class_rows[TRAIN].sum() > STREAM_LOGISTIC_ROWS:
            logger.info(
                "the logistic regression baseline is fitted on the first %d training rows",
                STREAM_LOGISTIC_ROWS,
            )
        loss_fn = _class_loss(cfg, torch.from_numpy(class_rows[TRAIN]), table.classes)
    # 3. model, as for a table in memory
    device = _device(cfg)
    outputs = task.out_features(len(table.target), len(table.classes))
    network = _build_network(cfg, table.inputs, outputs, cfg.seed, encoding)
    model = Standardized(network, table.scaling) if table.scaling is not None else network
    _start_from_weights(cfg, model)
    model.to(device)
    return _Prepared(table, None, model, network, table, None, encoding, loss_fn, task)


def _device(cfg: Config) -> torch.device:
    device = resolve_device(cfg.device)
    if cfg.precision == "bf16":
        check_bf16(device)
    return device


@contextmanager
def _telling_how_to_go_on(cfg: Config, run_dir: Path, world: World | None) -> Iterator[None]:
    """Training's stops and failures, told with what the run folder now offers: the
    command that resumes it, or the checkpoint that is kept."""
    try:
        yield
    except TrainingInterrupted as stop:
        raise TrainingInterrupted(
            f"{stop} and saved a checkpoint; resume with: "
            f"{resume_command(cfg, run_dir, world.size if world else 1, _per_machine())}",
            exit_code=stop.exit_code,
        ) from None
    except TrainingDiverged as diverged:
        if world is not None and not world.is_main:  # the console names the process
            raise
        raise TrainingDiverged(f"{diverged} {_kept_checkpoint(run_dir)}") from None
    except RuntimeError as error:  # under torchrun: a process, or a machine, is gone?
        if world is None or (lost := lost_processes(error, world.rank)) is None:
            raise
        raise WorkflowError(
            f"lost the connection to {lost}: it stopped, or its machine did; resume "
            f"from the newest checkpoint with: "
            f"{resume_command(cfg, run_dir, world.size, _per_machine())}",
            exit_code=1,
        ) from None


def _train_and_finish(
    run_dir: Path,
    cfg: Config,
    prepared: _Prepared,
    checkpoint: Checkpoint | None,
    started: float,
    progress: bool,
    should_stop: Callable[[], bool] | None,
    narrate: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: Callable[[], None] | None = None,
) -> RunResult:
    splits, model = prepared.splits, prepared.model
    world = World.current()
    checkpoints = _checkpoint_schedule(run_dir, cfg, world, on_checkpoint)
    decay = _weight_decay(cfg, prepared, say=True)
    # 4. train, checkpointing on the way
    with _telling_how_to_go_on(cfg, run_dir, world):
        history = train(
            prepared.network,
            prepared.train_splits,
            cfg,
            progress=progress,
            loss_fn=prepared.loss_fn,
            optimizer=optimizer_for(cfg, prepared.network, decay),
            resume=checkpoint.state if checkpoint is not None else None,
            should_stop=should_stop,
            on_epoch_end=partial(_on_epoch_end, checkpoints, on_epoch),
        )
    # 5. evaluate on every part of the data, in the data's own units, beside the baseline
    # (under torchrun each process measures its share of the rows, and the sums are merged)
    if splits is None:
        assert isinstance(prepared.data, StreamedTable)
        scores = evaluate_streamed(model, prepared.data, world, prepared.task)
    else:
        scores = _evaluate_in_memory(model, prepared, world)
    result = RunResult(
        run_dir=run_dir,
        config=cfg,
        model=model,
        data=prepared.data,
        splits=splits,
        history=history,
        metrics=scores.metrics["model"],
        baseline_metrics=scores.metrics["baseline"],
        learned=linear_parameters(model),
        wall_s=time.perf_counter() - started,
        task=prepared.task,
        other_baselines=scores.others,
        test_sums=scores.test_sums if isinstance(scores.test_sums, ClassMetricSums) else None,
    )
    if world is not None and not world.is_main:
        return result
    result = _with_importance(result, prepared.encoding)
    # 2. and 6. visualize and save; summary.json last, as the mark of a finished run
    _write_run_files(run_dir, result, prepared.y_pred_before, Split(*scores.shown))
    summary = _summary(result)
    if checkpoint is not None:
        summary["resumed_from"] = checkpoint.path.name
    write_report(run_dir, summary)
    write_summary(run_dir, summary)
    if narrate is not None:
        from ptflow.explain import describe_result

        for line in describe_result(summary, cfg, run_dir):
            narrate(line)
    return result


def _checkpoint_schedule(
    run_dir: Path, cfg: Config, world: World | None, on_saved: Callable[[], None] | None
) -> CheckpointSchedule:
    """When and where checkpoints are written: by rank 0 alone, when every process agrees."""
    return CheckpointSchedule(
        run_dir / CHECKPOINTS,
        cfg.checkpoint_every,
        cfg.keep_checkpoints,
        {"config": cfg.to_dict(), "versions": _versions()},
        decide=world.decide if world is not None else None,
        writes=world is None or world.is_main,
        on_saved=on_saved,
    )


def _evaluate_in_memory(model: nn.Module, prepared: _Prepared, world: World | None) -> Scores:
    """The model's and the baselines' metrics on every part (for classes the majority class
    too), and the model's sums and predictions on the test rows; under torchrun, each
    process scores its share of each part's rows and the sums are merged."""
    splits, encoding, task = prepared.splits, prepared.encoding, prepared.task
    assert splits is not None  # in memory
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    present = {name: part for name, part in parts.items() if part is not None}
    shares = {
        name: world.share(len(part.X)) if world else slice(None) for name, part in present.items()
    }
    blocks = ((name, part.X[shares[name]], part.y[shares[name]]) for name, part in present.items())
    predictors: dict[str, Predictor] = {
        "model": partial(predict, model),
        "baseline": _baseline(splits.train, encoding, task),
    }
    if task.classes and encoding is not None:
        predictors[MAJORITY] = majority_class(_class_rows(splits.train.y, len(encoding.classes)))
    merge = world.merge_metric_sums if world is not None else None
    sums = evaluate_blocks(blocks, list(present), predictors, merge, task=task)
    metrics = {
        name: {part: part_sums.metrics() for part, part_sums in by_part.items()}
        for name, by_part in sums.items()
    }
    test = splits.test
    return Scores(metrics, sums["model"]["test"], Split(test.y, predict(model, test.X)))


def _baseline(train: Split, encoding: Encoding | None, task: Task) -> Predictor:
    """The task's baseline fitted on the training rows, on one-hot categories if there are
    any: least squares, or for classes logistic regression."""
    design, left_out = baseline_design(encoding)
    _say_baseline_leaves_out(left_out, task)
    X, y = design(train.X), train.y
    classes = len(encoding.classes) if encoding is not None else 0
    fit = fit_logistic(X, y, classes) if task.classes else fit_least_squares(X, y)
    return lambda X: fit.predict(design(X))


def _say_baseline_leaves_out(left_out: Sequence[str], task: Task) -> None:
    if left_out:
        logger.info(
            "the %s baseline leaves out %s: more than %d categories",
            task.baseline,
            ", ".join(left_out),
            BASELINE_MOST_CATEGORIES,
        )


def _with_importance(result: RunResult, encoding: Encoding | None) -> RunResult:
    """The result with its encoding and the permutation importance of each input column on
    the test rows (for a table in memory: the tutorial has one column, a stream is not held)."""
    splits, features = result.splits, result.data.features
    if result.config.line or splits is None:
        return dataclasses.replace(result, encoding=encoding)
    columns = feature_inputs(features, encoding)
    test = splits.test
    importance = permutation_importance(result.model, test.X, test.y, columns, result.task)
    return dataclasses.replace(result, encoding=encoding, importance=importance)


def _on_epoch_end(
    checkpoints: CheckpointSchedule,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    end: EpochEnd,
) -> None:
    """After every epoch: a checkpoint when due; the epoch's numbers to `on_epoch`."""
    checkpoints(end)
    if on_epoch is not None and end.train_loss is not None:  # a whole epoch, not cut short
        on_epoch(end.numbers())


def _kept_checkpoint(run_dir: Path) -> str:
    if done := list_checkpoints(run_dir / CHECKPOINTS):
        return f"The run folder {run_dir} keeps its last good checkpoint, {done[-1].name}."
    # run_folder.writing removes the new run and puts back any run it replaced
    return "No checkpoint had been written, so no run folder was kept."


def _read_run_record(run_dir: Path) -> tuple[Config, dict[str, Any]]:
    """Return a run folder's configuration and the whole record in its config.json."""
    record = read_record(run_dir)
    try:
        return Config.from_dict(record["config"]), record
    except WorkflowError as error:
        raise WorkflowError(
            f"{run_dir / CONFIG} is corrupt ({error}); train again to make a fresh run folder."
        ) from None


def _write_run_record(
    run_dir: Path,
    cfg: Config,
    prepared: _Prepared,
    command: list[str] | None,
    resumed_by: list[str] | None = None,
) -> None:
    """Write config.json (settings, data, model shape, versions) and config.toml."""
    data = prepared.data
    rows = data.rows if isinstance(data, StreamedTable) else len(data.X)
    inputs = prepared.splits.train.X.shape[1] if prepared.splits else len(data.features)
    record: dict[str, Any] = {
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "data": {
            **data.fingerprint,
            "rows": rows,
            "dropped_rows": data.dropped_rows,
            "left_out": rows_left_out(data.dropped_rows, data.missing_target),  # and why
        },
        "model": {
            "name": cfg.model,
            "in_features": len(data.features),
            "out_features": prepared.task.out_features(
                len(data.target), len(getattr(data, "classes", ()))
            ),
            "features": list(data.features),
            "target": list(data.target),
            "inputs": data.inputs if isinstance(data, StreamedTable) else inputs,
        },
        "command": command,
        "processes": world.size if (world := World.current()) is not None else 1,
        "processes_per_machine": _per_machine(),
        # torchrun's job: a restart of it resumes this folder (see `_existing_run`)
        "torchrun_id": world.attempt.run_id if world is not None else None,
        # Bit for bit holds only at the same thread count: torch splits its sums by thread.
        "threads": torch.get_num_threads(),
        "device": str(device_of(prepared.model)),
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    if resumed_by is not None:
        record["resumed_by"] = resumed_by
    write_record(run_dir, record, relevant_settings(cfg.to_dict(), prepared.task.name))


def write_config_toml(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the configuration as TOML, the format `--config` reads, atomically."""
    write_settings_toml(relevant_settings(cfg.to_dict()), Path(path))


def _build_network(
    cfg: Config,
    in_features: int,
    out_features: int,
    seed: int | None,
    encoding: Encoding | None = None,
) -> nn.Module:
    """The model of `cfg` for `in_features` inputs: with categorical ones at the end, if the
    `encoding` has any."""
    categorical = encoding.categorical if encoding is not None else ()
    return build_table_model(
        cfg.model,
        in_features - len(categorical),
        [column.size for column in categorical],
        out_features,
        seed=seed,
        embedding_size=cfg.embedding_size,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
    )


def _write_run_files(
    folder: Path, result: RunResult, y_pred_before: torch.Tensor | None, shown: Split
) -> None:
    """Save the model, history and plots; `shown` holds test targets and their predictions."""
    cfg, splits, model, data = result.config, result.splits, result.model, result.data
    save_weights(model, folder / MODEL)
    save_weights(model, folder / "model.safetensors")
    history = result.history
    write_history(
        folder,
        {
            "epoch": history.epoch,
            "train_loss": history.train_loss,
            f"{history.eval_split}_loss": history.eval_loss,
            "lr": history.lr,
        },
    )
    if not cfg.plots:
        return
    plot_loss_curves(result.history, path=folder / "loss_curves.png")
    y_test, y_pred_after = shown
    if not cfg.line or splits is None:
        rows = f" (the first {len(y_test):,})" if cfg.stream else ""
        if splits is not None:  # in memory: the data itself, as the tutorial plots it
            plot_table_data(
                splits.train,
                splits.test,
                data.features,
                data.target,
                path=folder / "data.png",
            )
        if (sums := result.test_sums) is not None and sums.confusion is not None:  # classes
            classes = result.encoding.classes if result.encoding is not None else ()
            _write_class_plots(folder, sums, classes)
            if splits is not None and _draws_regions(result):
                _write_decision_regions(folder, result, splits, classes)
            return
        if y_pred_before is not None and splits is not None:
            plot_predicted_vs_actual(
                splits.test.y,
                y_pred_before,
                data.target,
                title="Test rows before training: predicted vs actual",
                path=folder / "predicted_vs_actual_before.png",
            )
        plot_predicted_vs_actual(
            y_test,
            y_pred_after,
            data.target,
            title=f"Test rows{rows}: predicted vs actual",
            path=folder / "predicted_vs_actual.png",
        )
        plot_residuals(
            y_test,
            y_pred_after,
            data.target,
            title=f"Test rows{rows}: residuals after training",
            path=folder / "residuals.png",
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


# A ROC plot shows at most this many classes' curves (the most frequent), to stay legible.
ROC_MOST_CLASSES = 10


def _write_class_plots(folder: Path, sums: ClassMetricSums, classes: Sequence[str]) -> None:
    """The test rows' confusion matrix, ROC curves and calibration, from their metric sums."""
    assert sums.confusion is not None
    plot_confusion_matrix(
        sums.confusion, classes, title="Test rows: true class against predicted class",
        path=folder / "confusion_matrix.png",
    )  # fmt: skip
    if len(classes) == 2:  # the second class against the first, as its probability is given
        shown, what = [1], f"{classes[1]} against {classes[0]}"
    else:
        support = sums.confusion.sum(dim=1)
        shown = sorted(support.argsort(descending=True, stable=True)[:ROC_MOST_CLASSES].tolist())
        what = "each class against the rest" + (
            f" (the {len(shown)} most frequent of {len(classes)})"
            if len(shown) < len(classes)
            else ""
        )
    curves = {}
    for k in shown:
        false, true = sums.roc_curve(k)
        curves[classes[k]] = (false, true, sums.auc(k))
    plot_roc_curves(curves, title=f"Test rows: ROC, {what}", path=folder / "roc_curve.png")
    pooled = "" if len(classes) == 2 else ", every class's probability pooled"
    plot_calibration(
        *sums.reliability(),
        label=f"p({classes[1]})" if len(classes) == 2 else "the model",
        counted="rows" if len(classes) == 2 else "probabilities (rows x classes)",
        title=f"Test rows: calibration{pooled}",
        path=folder / "calibration.png",
    )


def _draws_regions(result: RunResult) -> bool:
    """A model of one or two numeric inputs, each a feature column as it is (no categories,
    no was-missing indicators), has decision regions to draw over its data."""
    encoding, features = result.encoding, result.data.features
    inputs = feature_inputs(features, encoding)
    numeric = not (encoding is not None and encoding.categorical)
    return len(features) in (1, 2) and numeric and all(len(i) == 1 for i in inputs.values())


def _write_decision_regions(
    folder: Path, result: RunResult, splits: Splits, classes: Sequence[str]
) -> None:
    def classify(X: torch.Tensor) -> torch.Tensor:
        return predicted_classes(probabilities(predict(result.model, X).float().cpu()))

    plot_decision_regions(
        classify, {"Train": splits.train, "Test": splits.test}, classes, result.data.features,
        path=folder / "decision_regions.png",
    )  # fmt: skip


def _summary(result: RunResult) -> dict[str, Any]:
    cfg, history = result.config, result.history
    summary: dict[str, Any] = {
        "task": result.task.name,
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
        **(
            {
                "other_baselines": {
                    name: {part: m.to_dict() for part, m in by_part.items()}
                    for name, by_part in result.other_baselines.items()
                }
            }
            if result.other_baselines
            else {}
        ),
        "features": list(result.data.features),
        "target": list(result.data.target),
        "device": str(device_of(result.model)),
        "precision": cfg.precision,
        "split_rows": _split_rows(result),
    }
    if cfg.data is not None:
        summary["data"] = {**result.data.fingerprint, "dropped_rows": result.data.dropped_rows}
        summary["columns"] = [asdict(role) for role in result.data.roles]
    elif cfg.circles:
        summary["data"] = {"circles": CIRCLES_POINTS, "noise": CIRCLES_NOISE}
    else:
        summary["parameters"] = {
            name: tensor.detach().cpu().tolist()
            for name, tensor in result.model.state_dict().items()
        }
        summary["true_parameters"] = {"weight": cfg.weight, "bias": cfg.bias}
    encoding = result.encoding
    if (sums := result.test_sums) is not None and encoding is not None:  # classes
        summary["classes"] = list(encoding.classes)
        summary["class_weight"] = cfg.class_weight
        summary["per_class"] = dict(
            zip(encoding.classes, to_json_safe(sums.per_class()), strict=True)
        )
    elif encoding and (coefficients := linear_coefficients(result.model, encoding)) is not None:
        summary["coefficients"] = coefficients
    if result.importance is not None:
        summary["importance"] = {
            "metric": result.task.metrics[0].name,
            "rows": "test",
            "columns": result.importance,
        }
    if result.learned is not None:
        summary["learned_parameters"] = dict(zip(("weight", "bias"), result.learned, strict=True))
    return summary


def _split_rows(result: RunResult) -> dict[str, int]:
    if isinstance(result.data, StreamedTable):
        return {name: result.data.part_size(part) for part, name in enumerate(PARTS)}
    assert result.splits is not None
    return {
        "train": len(result.splits.train_indices),
        "val": len(result.splits.val_indices),
        "test": len(result.splits.test_indices),
    }


def _versions() -> dict[str, str]:
    return {
        "ptflow": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }
