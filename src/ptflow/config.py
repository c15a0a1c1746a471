"""One frozen record of every setting that decides a run's result.

Defaults reproduce the PyTorch workflow tutorial: y = 0.7·X + 0.3 on 50 points,
the first 80% for training, seed 42, L1 loss, SGD with lr 0.01, 200 epochs.

This module imports nothing heavy, so the CLI can show defaults without torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from ptflow.errors import WorkflowError
from ptflow.tasks import REGRESSION

__all__ = [
    "ACTIVATIONS",
    "AUTO_BATCH_ROWS",
    "CHECKPOINT_SECONDS",
    "CIRCLES_DEFAULTS",
    "CIRCLES_NOISE",
    "CIRCLES_POINTS",
    "DEVICES",
    "FORMATS",
    "LINEAR_CLASSIFIER_DEFAULTS",
    "LOSSES",
    "MAX_LINE_POINTS",
    "MISSING",
    "MODELS",
    "OPTIMIZERS",
    "PRECISIONS",
    "RESUMABLE_SETTINGS",
    "ROW_GROUP_ROWS",
    "SCALES",
    "SCHEDULES",
    "TABLE_DEFAULTS",
    "Config",
    "check_line_points",
    "check_resumable",
    "check_setting_names",
    "made_data",
    "relevant_settings",
    "table_settings",
    "told_task",
]

ModelName = Literal["tutorial", "linear", "mlp"]
ActivationName = Literal["relu", "gelu", "tanh"]
LossName = Literal["l1", "mse", "huber"]
OptimizerName = Literal["sgd", "adam", "adamw"]
ScheduleName = Literal["none", "step", "cosine", "onecycle", "plateau"]
FormatName = Literal["auto", "csv", "parquet"]
ScaleName = Literal["standard", "none"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionName = Literal["32", "bf16"]
MissingName = Literal["impute", "drop", "error"]
TaskName = Literal["auto", "regression", "classification"]
ClassWeightName = Literal["none", "balanced"]

MODELS: tuple[str, ...] = get_args(ModelName)
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
LOSSES: tuple[str, ...] = get_args(LossName)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
FORMATS: tuple[str, ...] = get_args(FormatName)
SCALES: tuple[str, ...] = get_args(ScaleName)
DEVICES: tuple[str, ...] = get_args(DeviceName)
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)
MISSING: tuple[str, ...] = get_args(MissingName)
TASK_NAMES: tuple[str, ...] = get_args(TaskName)

# The tutorial's line is made in memory: more points than this is a typo, not a dataset.
MAX_LINE_POINTS = 10_000_000

# `ptflow convert` writes Parquet row groups of this many rows; `--stream` reads one at a time.
ROW_GROUP_ROWS = 131_072

# Settings that may change when a run is resumed: they do not change its result.
RESUMABLE_SETTINGS = frozenset(
    {"epochs", "log_every", "checkpoint_every", "keep_checkpoints", "plots", "collective_timeout"}
)

# What `ptflow train` on a table starts from, where the tutorial's defaults make no sense:
# shuffled three-way split, standardised columns, Adam on the mean squared error, and
# early stopping on the validation rows with the best epoch's weights kept. Chosen on four
# real tables (README, "Real tables"): with 1,000 epochs and patience 50 the linear model
# reached the least-squares fit's test R² within 0.002 where 100 epochs fell 0.02-0.1
# short, and the MLP stopped before overfitting the 83-row one.
TABLE_DEFAULTS: dict[str, Any] = {
    "train_fraction": 0.7,
    "val_fraction": 0.15,
    "shuffle": True,
    "scale": "standard",
    "model": "linear",
    "loss": REGRESSION.default_loss,
    "optimizer": "adam",
    "epochs": 1000,
    "patience": 50,
}


# A linear classifier on a table starts from these instead: with weight decay's default,
# logistic regression's C = 1 penalty, its loss is convex with one minimum, so it trains to
# the end (no early stopping: on a few dozen validation rows, wine's, the kept "best" epoch
# came before the minimum) at a higher rate for fewer epochs. Chosen on four real tables
# and five seeds each (README, "Classification"): all 20 runs within 0.02 of logistic
# regression's test accuracy and 1.1x its log loss, where the table defaults missed 7.
LINEAR_CLASSIFIER_DEFAULTS: dict[str, Any] = {"lr": 0.03, "epochs": 500, "patience": 0}

# A linear regression trains to the end for the same reason: its mean squared error has one
# minimum, least squares, and stopping where the validation rows' loss is lowest lands on
# either side of it. On the four real tables the test R² was within 0.004 of least squares
# with all 1,000 epochs (patience 50: msleep 0.028 above it, and a 300-row listings table
# 0.016 below), at 0.6-1.6 s a run.
LINEAR_REGRESSION_DEFAULTS: dict[str, Any] = {"patience": 0}


def made_data(settings: Mapping[str, Any]) -> Literal["line", "circles"] | None:
    """What a run without a table learns (`settings` as `Config.to_dict` or config.json
    holds them): the tutorial's line, or for classification two circles; None for a table."""
    if settings.get("data") is not None:
        return None
    return "circles" if settings.get("task") == "classification" else "line"


def table_settings(given: dict[str, Any]) -> Config:
    """The settings of `ptflow train`: TABLE_DEFAULTS, for a linear model those of
    LINEAR_CLASSIFIER_DEFAULTS or LINEAR_REGRESSION_DEFAULTS over them, then `given` over
    both. Whether the run is a
    classification may take a look at the table (`task = "auto"`: its target's values)."""
    cfg = Config.from_dict({**TABLE_DEFAULTS, **given})
    if cfg.model != "linear" or cfg.data is None:
        return cfg
    task = told_task(cfg)
    if task is None:  # the table cannot be read yet: the run itself will say why
        return cfg
    linear = LINEAR_CLASSIFIER_DEFAULTS if task == "classification" else LINEAR_REGRESSION_DEFAULTS
    return Config.from_dict({**TABLE_DEFAULTS, **linear, **given})


def told_task(cfg: Config) -> str | None:
    """The run's task as far as the settings tell it, or for `task = "auto"` a look at the
    table's target does (text or true/false values: classification); None where the table
    cannot be read yet (no such file or column: the run itself will say so)."""
    if cfg.task != "auto" or cfg.data is None:
        return "classification" if cfg.task == "classification" else "regression"
    from ptflow.tables import holds_classes, open_table

    try:
        classes = holds_classes(open_table(cfg.data, cfg.format), cfg.target)
    except WorkflowError:
        return None
    return "classification" if classes else "regression"


# What `ptflow run --task classification` starts from: the classification course's circles
# and its model with a nonlinearity (two hidden layers of 10 ReLU units), trained with Adam
# for 300 full-batch epochs; the points come in random order, so the 80/20 split is too.
# With seed 42 the test loss was lowest at epoch 271 of 1,000 (0.0135, 99% accuracy) and
# rose to 0.038 by epoch 1,000: the course's 1,000 epochs of SGD at 0.1 fit more slowly.
CIRCLES_DEFAULTS: dict[str, Any] = {
    "model": "mlp",
    "hidden": (10, 10),
    "optimizer": "adam",
    "lr": 0.01,
    "epochs": 300,
}
# The circles' size and noise, as the course makes them.
CIRCLES_POINTS, CIRCLES_NOISE = 1000, 0.03


# Without --batch-size, up to this many training rows go in one batch (the tutorial's full
# batch); larger tables are cut into batches of this size, where full batch stops paying.
AUTO_BATCH_ROWS = 4096
# Without --checkpoint-every, a checkpoint is written once this long has passed since the
# last one: long runs lose little to a crash, short runs do not pay for many writes.
CHECKPOINT_SECONDS = 60.0


def _setting(default: Any, group: str, help: str, *, negatable: bool = False) -> Any:
    """A setting's default, and what the command line shows of it (see cli.py).

    `group` is the help section it is listed under (`line`, `split`, `model`, `training`,
    `hardware`, `checkpoints`, `output`), or `table`, whose options `ptflow train` spells by hand;
    `negatable` booleans get a --no- form (their default differs between run and train).
    """
    metadata = {"group": group, "help": help, "negatable": negatable}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Every setting of a run; invalid values raise `WorkflowError` on construction."""

    # data: a table (`data`, `target`, `features`), or without one the tutorial's line
    # y = weight * X + bias with X = arange(start, end, step)
    data: str | None = _setting(None, "table", "CSV or Parquet file to learn from")
    target: tuple[str, ...] = _setting((), "table", "column(s) to predict (a b or a,b)")
    features: tuple[str, ...] | None = _setting(  # None: the columns the rules keep
        None,
        "table",
        "columns to learn from, as a b or a,b (default: every other column the rules keep)",
    )
    format: FormatName = _setting("auto", "table", "file format")  # auto: by the extension
    categorical: tuple[str, ...] = _setting(
        (), "table", "columns to read as categories, whatever their values look like"
    )
    numeric: tuple[str, ...] = _setting(
        (), "table", "columns to read as numbers, also those the rules would leave out"
    )
    ignore: tuple[str, ...] = _setting((), "table", "columns to leave out")
    missing: MissingName = _setting(
        "impute",
        "table",
        "a missing feature value: impute (the training median, and a was-missing input), "
        "drop its row, or error; rows without a target are always left out",
    )
    task: TaskName = _setting(
        "auto",
        "task",
        "what to predict: auto (classes for a text or true/false target, numbers otherwise), "
        "regression or classification; without a table, `ptflow run` learns the tutorial's "
        "line, or for classification two circles",
    )
    stream: bool = _setting(  # read a Parquet table a row group at a time, never all at once
        False,
        "table",
        "for Parquet tables larger than memory: read one row group at a time on every pass, "
        "never the whole table (off: read it once into memory)",
    )
    weight: float = _setting(0.7, "line", "true weight of the line")
    bias: float = _setting(0.3, "line", "true bias of the line")
    start: float = _setting(0.0, "line", "first X value")
    end: float = _setting(1.0, "line", "X stops before this value")
    step: float = _setting(0.02, "line", "spacing of the X values")
    # split: sequential by default, as in the tutorial; the rest after train/val is test
    train_fraction: float = _setting(0.8, "split", "fraction of rows for training")
    val_fraction: float = _setting(
        0.0,
        "split",
        "fraction of rows for validation; with one, the per-epoch loss is measured on it and "
        "the test rows are used only at the end",
    )
    shuffle: bool = _setting(
        False, "split", "shuffle the rows (seeded) before splitting", negatable=True
    )
    scale: ScaleName = _setting(  # standard: zero mean, unit variance, fitted on training rows
        "none", "split", "standardise columns on the training rows"
    )
    # model
    model: ModelName = _setting("tutorial", "model", "model to train")
    hidden: tuple[int, ...] = _setting(
        (64, 64), "model", "mlp: hidden layer sizes (64 64 or 64,64)"
    )
    activation: ActivationName = _setting("relu", "model", "mlp: activation")
    dropout: float = _setting(0.0, "model", "mlp: dropout probability")
    embedding_size: int | None = _setting(
        None,
        "model",
        "mlp: width of each categorical column's embedding; none: min(600, round(1.6 * "
        "n ** 0.56)) for a column of n categories (fastai's rule)",
    )
    # training
    seed: int = _setting(42, "training", "random seed")
    epochs: int = _setting(200, "training", "passes over the training data")
    lr: float = _setting(0.01, "training", "learning rate")
    loss: LossName = _setting("l1", "training", "loss function")
    huber_delta: float = _setting(1.0, "training", "huber: where the loss turns linear")
    class_weight: ClassWeightName = _setting(
        "none",
        "training",
        "classification: balanced weighs each class's rows by rows / (classes * its rows), "
        "counted on the training rows",
    )
    label_smoothing: float = _setting(
        0.0, "training", "classification, three or more classes: label smoothing of the loss"
    )
    optimizer: OptimizerName = _setting("sgd", "training", "optimizer")
    momentum: float = _setting(0.0, "training", "sgd: momentum")
    nesterov: bool = _setting(False, "training", "sgd: Nesterov momentum", negatable=True)
    weight_decay: float | None = _setting(
        None,
        "training",
        "L2 weight decay on the weights (never the biases); none: for a linear classifier "
        "1 / training rows, logistic regression's C = 1 penalty, else 0",
    )
    schedule: ScheduleName = _setting("none", "training", "learning-rate schedule")
    step_size: int = _setting(30, "training", "step: epochs between drops")
    gamma: float = _setting(0.1, "training", "step, plateau: factor of each drop")
    plateau_patience: int = _setting(10, "training", "plateau: epochs to wait before a drop")
    clip_grad_norm: float | None = _setting(None, "training", "clip the gradient norm to this")
    batch_size: int | None = _setting(
        None, "training", f"rows per step; none: all rows up to {AUTO_BATCH_ROWS} in one batch"
    )
    patience: int | None = _setting(  # early stopping
        None,
        "training",
        "stop after this many epochs without validation improvement, keeping the best "
        "epoch's weights; 0 or none: never stop early",
    )
    min_delta: float = _setting(0.0, "training", "early stopping: smallest improvement that counts")
    log_every: int = _setting(10, "training", "log the losses every N epochs")
    # hardware
    device: DeviceName = _setting(
        "auto", "hardware", "where to train: auto is cuda, then mps, then cpu"
    )
    precision: PrecisionName = _setting(
        "32",
        "hardware",
        "32: float32 throughout; bf16: bfloat16 autocast for the training passes",
    )
    collective_timeout: float = _setting(
        300.0,
        "hardware",
        "several processes: seconds a process waits for the others at a collective before "
        "it fails instead of hanging (the first waits while each reads its data)",
    )
    compile: bool = _setting(
        False,
        "hardware",
        "torch.compile the model: seconds to compile first, and on a CPU no faster epochs "
        "for these models (the README's Performance); worth trying on a GPU",
    )
    # checkpoints: always at the end too
    checkpoint_every: int | None = _setting(
        None,
        "checkpoints",
        f"write a checkpoint every N epochs; none: every {CHECKPOINT_SECONDS:g} seconds, and "
        f"always at the end",
    )
    keep_checkpoints: int = _setting(  # the older one is the fallback if one is damaged
        2, "checkpoints", "how many checkpoints to keep"
    )
    from_weights: str | None = _setting(
        None,
        "checkpoints",
        "start from these weights instead of seeded ones: a model.pt or .safetensors file, or "
        "a run folder (a new run, with this run's data and settings; say, a run's weights "
        "trained on with another number of processes)",
    )
    # the run folder
    plots: bool = _setting(
        True,
        "output",
        "draw the PNG plots into the run folder (--no-plots: the report keeps its loss "
        "curves; a second or so less per run, for many quick fits)",
        negatable=True,
    )

    def __post_init__(self) -> None:
        _check_types(self)
        for setting in dataclasses.fields(self):  # NaN passes every comparison below: not here
            value = getattr(self, setting.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise WorkflowError(f"{setting.name} must be a finite number, got {value}.")
        if self.step <= 0:
            raise WorkflowError(f"step must be positive, got {self.step}.")
        if self.end <= self.start:
            raise WorkflowError(
                f"end ({self.end}) must be greater than start ({self.start}); swap them."
            )
        check_line_points(self.start, self.end, self.step)
        if not 0 < self.train_fraction < 1:
            raise WorkflowError(
                f"train_fraction must be between 0 and 1, got {self.train_fraction}."
            )
        if not 0 <= self.val_fraction < 1:
            raise WorkflowError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.train_fraction + self.val_fraction >= 1:
            raise WorkflowError(
                f"train_fraction + val_fraction must leave rows for testing, got "
                f"{self.train_fraction} + {self.val_fraction}; lower one of them."
            )
        if not 0 <= self.seed < 2**63:
            raise WorkflowError(f"seed must be between 0 and 2**63 - 1, got {self.seed}.")
        if self.epochs < 1:
            raise WorkflowError(f"epochs must be at least 1, got {self.epochs}.")
        if self.lr <= 0:
            raise WorkflowError(f"lr must be positive, got {self.lr}.")
        if self.collective_timeout <= 0:
            raise WorkflowError(
                f"collective_timeout must be a positive number of seconds, got "
                f"{self.collective_timeout}."
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise WorkflowError(
                f"batch_size must be at least 1, got {self.batch_size}; omit it for full batch."
            )
        if self.log_every < 1:
            raise WorkflowError(f"log_every must be at least 1, got {self.log_every}.")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise WorkflowError(
                f"checkpoint_every must be at least 1, got {self.checkpoint_every}; "
                f"omit it to checkpoint by time."
            )
        if self.keep_checkpoints < 1:
            raise WorkflowError(
                f"keep_checkpoints must be at least 1, got {self.keep_checkpoints}."
            )
        self._check_table_and_model()
        self._check_training()

    def _check_table_and_model(self) -> None:
        if self.data is not None and not self.target:
            raise WorkflowError("a table needs a target column; name it with --target COLUMN.")
        if self.data is None and (self.target or self.features is not None):
            raise WorkflowError("target and features name columns of a table; give --data FILE.")
        if self.data is None and self.stream:
            raise WorkflowError("stream reads a table a row group at a time; give --data FILE.")
        if len(set(self.target)) != len(self.target):
            raise WorkflowError(f"target names a column twice: {list(self.target)}.")
        if self.features is not None:
            if not self.features:
                raise WorkflowError("features is empty; name at least one column or omit it.")
            if twice := sorted({f for f in self.features if self.features.count(f) > 1}):
                raise WorkflowError(
                    f"features names {', '.join(map(repr, twice))} more than once; name each "
                    f"column once."
                )
            if overlap := sorted(set(self.features) & set(self.target)):
                raise WorkflowError(
                    f"{', '.join(overlap)} is both a feature and a target; use it as one only."
                )
        if self.data is None and (self.categorical or self.numeric or self.ignore):
            raise WorkflowError(
                "categorical, numeric and ignore name columns of a table; give --data FILE."
            )
        if self.embedding_size is not None and self.embedding_size < 1:
            raise WorkflowError(f"embedding_size must be at least 1, got {self.embedding_size}.")
        if not self.hidden or min(self.hidden) < 1:
            raise WorkflowError(f"hidden must list positive layer sizes, got {list(self.hidden)}.")
        if not 0 <= self.dropout < 1:
            raise WorkflowError(f"dropout must be in [0, 1), got {self.dropout}.")

    def _check_training(self) -> None:
        for name in ("huber_delta", "gamma"):
            if not getattr(self, name) > 0:
                raise WorkflowError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0 <= self.momentum < 1:
            raise WorkflowError(f"momentum must be in [0, 1), got {self.momentum}.")
        if not 0 <= self.label_smoothing < 1:
            raise WorkflowError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise WorkflowError("nesterov needs the sgd optimizer and a momentum above 0.")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise WorkflowError(f"weight_decay must be 0 or more, got {self.weight_decay}.")
        if self.step_size < 1 or self.plateau_patience < 0:
            raise WorkflowError("step_size must be at least 1 and plateau_patience at least 0.")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise WorkflowError(f"clip_grad_norm must be positive, got {self.clip_grad_norm}.")
        if self.min_delta < 0:
            raise WorkflowError(f"min_delta must be 0 or more, got {self.min_delta}.")
        if self.patience is not None and self.patience < 0:
            raise WorkflowError(f"patience must be 0 (off) or more, got {self.patience}.")
        if (self.patience or self.schedule == "plateau") and self.val_fraction == 0:
            raise WorkflowError(
                "early stopping (patience, on by default for tables) and the plateau schedule "
                "watch the validation loss; set val_fraction above 0, or patience to 0."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict, ready for JSON and TOML (tuples as lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build a Config from a mapping; unknown keys and wrong types name the key."""
        check_setting_names(values)
        # JSON and TOML have lists, not tuples; a lone column name is a list of one.
        values = {
            key: tuple(value) if isinstance(value, list) else value for key, value in values.items()
        }
        for key in ("target", "features", "categorical", "numeric", "ignore"):
            if isinstance(values.get(key), str):
                values[key] = (values[key],)
        # drop_missing, a setting of earlier versions (and config.json files): missing "drop"
        if "drop_missing" in values and values.pop("drop_missing") is True:
            values.setdefault("missing", "drop")
        return cls(**values)

    @property
    def line(self) -> bool:
        """The run learns the tutorial's line: no table, and no classes asked for."""
        return made_data({"data": self.data, "task": self.task}) == "line"

    @property
    def circles(self) -> bool:
        """The run learns two circles' classes (`make_circles_data`): no table, classes."""
        return made_data({"data": self.data, "task": self.task}) == "circles"

    @classmethod
    def for_table(cls, data: str, target: str | Sequence[str], **changes: Any) -> Config:
        """Return the settings `ptflow train` starts from for a table, with changes."""
        return table_settings({"data": data, "target": target, **changes})

    def replace(self, **changes: Any) -> Config:
        """Return a copy with some settings changed, validated again."""
        return Config.from_dict({**self.to_dict(), **changes})

    def changed(self) -> dict[str, Any]:
        """The settings that differ from `Config()`'s, by name."""
        defaults = Config()
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(defaults, field.name)
        }

    def __repr__(self) -> str:  # the changed settings only: the whole is over 50 of them
        changed = ", ".join(f"{name}={value!r}" for name, value in self.changed().items())
        return f"Config({changed})"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(repr(value))}</td></tr>"
            for name, value in self.changed().items()
        )
        return f"<table><tr><th>setting</th><th>value (others as Config())</th></tr>{rows}</table>"


# Settings that matter only for the tutorial's line, or only for a table.
_LINE_SETTINGS = ("weight", "bias", "start", "end", "step")
_TABLE_SETTINGS = ("data", "target", "features", "categorical", "numeric", "ignore", "format",
                   "missing", "stream")  # fmt: skip


def relevant_settings(settings: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """The settings (`Config.to_dict()`) that take part in a run, as report.html and
    config.toml list them: the line's for the tutorial, the table's for a table, an MLP's
    for an MLP, an optimizer's, a loss's and a schedule's own, and the task's (`task`: the
    one the run had; with "auto" and no `task`, both tasks' settings may apply). The others
    keep their defaults and change nothing."""
    table = settings.get("data") is not None
    task = task or settings.get("task", "auto")
    line = not table and task != "classification"
    classes = task == "classification" or (table and task == "auto")
    regression = task != "classification"
    model, optimizer = settings.get("model"), settings.get("optimizer")
    schedule, patience = settings.get("schedule"), settings.get("patience")
    applies = {
        **{name: line for name in _LINE_SETTINGS},
        **{name: table for name in _TABLE_SETTINGS},
        "task": not line,
        **{name: model == "mlp" for name in ("hidden", "activation", "dropout")},
        "embedding_size": model == "mlp" and table,
        "momentum": optimizer == "sgd",
        "nesterov": optimizer == "sgd",
        "loss": regression,  # classes: cross-entropy, always
        "huber_delta": settings.get("loss") == "huber" and regression,
        "class_weight": classes,
        "label_smoothing": classes,
        "step_size": schedule == "step",
        "gamma": schedule in ("step", "plateau"),
        "plateau_patience": schedule == "plateau",
        "min_delta": bool(patience),
    }
    return {key: value for key, value in settings.items() if applies.get(key, True)}


def check_line_points(start: float, end: float, step: float) -> None:
    """Refuse a line of more than MAX_LINE_POINTS points, before memory runs out."""
    points = (end - start) / step  # may overflow to infinity: still too many
    if not points <= MAX_LINE_POINTS:
        raise WorkflowError(
            f"arange({start}, {end}, {step}) would make {points:.3g} points, more than "
            f"{MAX_LINE_POINTS:,}; use a larger step or a shorter range."
        )


def check_resumable(saved: Config, new: Config) -> None:
    """Refuse to resume `saved` with `new` settings that would change the run's result.

    Only RESUMABLE_SETTINGS may differ, and `epochs` only where the schedule does not span
    the whole run. The data file is compared by content elsewhere, so it may have moved.
    """
    changed = [
        f"{key} ({value!r} -> {getattr(new, key)!r})"
        for key, value in dataclasses.asdict(saved).items()
        if key not in RESUMABLE_SETTINGS | {"data"} and getattr(new, key) != value
    ]
    if changed:
        raise WorkflowError(
            f"cannot resume with changed {', '.join(changed)}: that would change the result; "
            f"only {', '.join(sorted(RESUMABLE_SETTINGS))} may change, or start a new run."
        )
    if new.epochs != saved.epochs and saved.schedule in ("cosine", "onecycle"):
        raise WorkflowError(
            f"cannot change epochs ({saved.epochs} -> {new.epochs}) on resume: the "
            f"{saved.schedule} schedule spans the whole run; start a new run instead."
        )


def check_setting_names(names: Iterable[str], where: str = "") -> None:
    """Raise `WorkflowError` naming every name that is not a setting; `where` prefixes it."""
    known = {field.name for field in dataclasses.fields(Config)} | {"drop_missing"}
    if unknown := sorted(set(names) - known):
        raise WorkflowError(
            f"{where}unknown setting {', '.join(map(repr, unknown))}; "
            f"known settings are: {', '.join(sorted(known))}."
        )


def _check_types(cfg: Config) -> None:
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if not _matches(value, hints[field.name]):
            raise WorkflowError(
                f"setting {field.name!r} must be {_describe(hints[field.name])}, got {value!r}."
            )


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if origin is tuple:  # tuple[X, ...]
        return isinstance(value, tuple) and all(_matches(v, get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an int is a fine float, a bool is not
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if origin is tuple:
        item = _describe(get_args(hint)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {item}s"
    if hint is type(None):
        return "None"
    if hint is str:
        return "a string"
    return {bool: "true or false", int: "an integer", float: "a number"}[hint]
