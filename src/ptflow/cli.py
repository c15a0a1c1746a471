"""The `ptflow` command: a thin layer that parses arguments and calls the library.

torch, matplotlib and the table readers are imported inside the subcommands, so
`ptflow --help` is instant. A `WorkflowError` becomes one `error: ...` line on stderr and
its exit code: 2 for bad input, 3 when training diverged; an interrupted training prints
`stopped: ...` and exits 130 (SIGINT) or 143 (SIGTERM). An error of the operating system
(a full disk, a read-only folder, no permission) is one `error:` line and exit 2 too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ptflow import __version__
from ptflow.config import (
    CIRCLES_DEFAULTS,
    FORMATS,
    LINEAR_CLASSIFIER_DEFAULTS,
    LINEAR_REGRESSION_DEFAULTS,
    MISSING,
    ROW_GROUP_ROWS,
    TABLE_DEFAULTS,
    Config,
    MissingName,
    check_setting_names,
    relevant_settings,
    table_settings,
    told_task,
)
from ptflow.console import (
    check_utf8,
    launched_rank,
    logging_to_stdout,
    run_as_process,
    run_reporting_errors,
    stop_on_signals,
)
from ptflow.errors import WorkflowError
from ptflow.runs import COLUMNS as _RUNS_COLUMNS
from ptflow.tasks import TASKS, Task, format_metric

if TYPE_CHECKING:
    from ptflow.predictions import PredictedTable
    from ptflow.workflow import RunResult

__all__ = ["build_parser", "main"]

_FIELDS = {field.name: field.default for field in dataclasses.fields(Config)}
_RUN_DEFAULTS: dict[str, Any] = dict(_FIELDS)
_TRAIN_DEFAULTS: dict[str, Any] = {**_FIELDS, **TABLE_DEFAULTS}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ptflow command line with `argv` (default: sys.argv[1:]); return the exit code."""
    if argv is not None:  # called from Python: the caller owns the process and its signals
        return run_reporting_errors(lambda: _dispatch(list(argv)))
    return run_as_process(lambda: _dispatch(sys.argv[1:]))


def _dispatch(argv: list[str]) -> int:
    check_utf8(argv)
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # parse_args would leave them to `ptflow`, whose error names only its own help
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler: Callable[[argparse.Namespace, list[str]], int] = args.handler
    return handler(args, argv)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for `ptflow` and its subcommands."""
    parser = _Parser(
        prog="ptflow",
        description="The PyTorch workflow: data, model, training, evaluation, saving.",
    )
    parser.add_argument("--version", action="version", version=f"ptflow {__version__}")
    parser.set_defaults(handler=lambda args, argv: _print_help(parser), command_parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_command in _COMMANDS:  # in the order `ptflow --help` lists them
        add_command(commands)
    for command in commands.choices.values():  # whose help an unknown option points to
        command.set_defaults(command_parser=command)
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="train on the tutorial's straight-line data and save a run folder",
        description="Run the PyTorch workflow tutorial end to end: make data y = weight*X + "
        "bias, split it, build a model, train it, evaluate it, and save the model, config, "
        "history, metrics and plots in a run folder. Every default reproduces the tutorial.",
    )
    _add_settings(
        run.add_argument_group("data: the line y = weight * X + bias"), "line", _RUN_DEFAULTS
    )
    _add_settings(
        run.add_argument_group(
            "task: classification learns two noisy circles' classes instead (1,000 points; "
            f"its defaults: {_shown_settings(CIRCLES_DEFAULTS)})"
        ),
        "task",
        _RUN_DEFAULTS,
    )
    _add_common_options(run, _RUN_DEFAULTS)
    run.set_defaults(handler=_run, command="run", defaults=_RUN_DEFAULTS)


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a regression or classification model on a CSV or Parquet table",
        description="Train, evaluate and save a model of a CSV or Parquet file's target "
        "column (numbers: regression; text or true/false: classification, see --task): a "
        "shuffled train/validation/test split, standardised columns, the tutorial's training "
        "loop, and a baseline to compare with (least squares; for classes, logistic "
        "regression and the majority class). A linear model trains to its end (a convex "
        f"fit): a regression with {_shown_settings(LINEAR_REGRESSION_DEFAULTS)}, a classifier "
        f"with {_shown_settings(LINEAR_CLASSIFIER_DEFAULTS)} and weight decay 1 / training "
        "rows. Options can also come from a TOML file "
        "(--config); options given here override it.",
    )
    table = train.add_argument_group("data: a table")
    table.add_argument("--data", type=_path, metavar="FILE", help=_help("data"))
    # --target a b, --target a,b, --target a --target b
    for name in ("target", "features", "categorical", "numeric", "ignore"):
        table.add_argument(f"--{name}", action=_CommaList, metavar="COLUMN", help=_help(name))
    _add_settings(table, "table", _TRAIN_DEFAULTS, skip=_COLUMN_LISTS)
    _add_settings(table, "task", _TRAIN_DEFAULTS)
    _add_drop_missing(table)
    _add_common_options(train, _TRAIN_DEFAULTS)
    train.set_defaults(handler=_run, command="train", defaults=_TRAIN_DEFAULTS)


def _add_evaluate(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a trained model on a table",
        description=f"Print the metrics of the run's task ({_metric_names()}) for a run folder's "
        "model on every row of a table that has the model's feature and target columns.",
    )
    evaluate.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a folder ptflow made")
    evaluate.add_argument(
        "--data", type=_path, metavar="FILE", required=True, help="CSV or Parquet file"
    )
    _add_format_option(evaluate)
    _add_missing_option(evaluate)
    _add_drop_missing(evaluate)
    evaluate.add_argument(
        "--importance",
        action="store_true",
        help="also the permutation importance of each feature column, on the first "
        "100,000 rows (default: off)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    evaluate.set_defaults(handler=_evaluate)


def _add_predict(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        help="predict with the model saved in a run folder",
        description="Predict with a run folder's saved model: for the tutorial's one-feature "
        "models from numbers (--x, --input), for any model from a table (--data) with the "
        "feature columns it was trained on.",
    )
    predict.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a folder ptflow made")
    inputs = predict.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--x", type=float, nargs="+", metavar="X", help="input values")
    inputs.add_argument(
        "--input", type=_path, metavar="FILE", help="file with one input value per line"
    )
    inputs.add_argument(
        "--data", type=_path, metavar="FILE", help="CSV or Parquet file with the feature columns"
    )
    _add_format_option(predict)
    _add_missing_option(predict)
    _add_drop_missing(predict)
    predict.add_argument(
        "--output",
        type=_path,
        metavar="FILE",
        help="CSV file for the predictions (default: stdout)",
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace --output if it exists (default: off)"
    )
    predict.add_argument(
        "--id", metavar="COLUMN", help="column of --data to copy beside each prediction"
    )
    predict.add_argument(
        "--threshold",
        type=_probability,
        metavar="P",
        help="two classes: predict the second (in the sorted order) where its probability is "
        "at least P, e.g. 0.3 to miss fewer of a rare class (default: the more probable one)",
    )
    predict.set_defaults(handler=_predict)


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser(
        "convert",
        help="convert a CSV file to Parquet, for --stream",
        description="Convert a CSV file to Parquet block by block, whatever its size, in row "
        "groups that `ptflow train --stream` reads one at a time.",
    )
    convert.add_argument("source", type=_path, metavar="CSV", help="the CSV file to convert")
    convert.add_argument("destination", type=_path, metavar="PARQUET", help="the file to write")
    convert.add_argument(
        "--row-group-rows",
        type=int,
        default=ROW_GROUP_ROWS,
        metavar="N",
        help=f"rows per row group: --stream's memory follows it (default: {ROW_GROUP_ROWS})",
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace PARQUET if it exists (default: refuse)"
    )
    convert.add_argument(
        "--categorical",
        action=_CommaList,
        metavar="COLUMN",
        default=[],
        help="columns to keep as text, whatever their values look like",
    )
    convert.set_defaults(handler=_convert)


def _add_runs(commands: Any) -> None:
    runs = commands.add_parser(
        "runs",
        help="list the runs in a folder",
        description="List the run folders in a folder as a table: name, date, data, model, "
        f"epochs, best validation loss, the test metrics ({_metric_names(brief=True)}), wall "
        "time, and whether it finished.",
    )
    runs.add_argument("folder", type=_path, nargs="?", default=Path("runs"), help="(default: runs)")
    runs.add_argument(
        "--sort",
        default="date",
        metavar="COLUMN",
        help=f"order by: {', '.join(_RUNS_COLUMNS)} (default: date)",
    )
    runs.add_argument("--desc", action="store_true", help="largest first (default: smallest)")
    runs.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    runs.set_defaults(handler=_runs)


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write a run folder's report.html again",
        description="Render RUN_DIR/report.html again from the files in the run folder, "
        "without retraining: one self-contained page with the run's settings, data, "
        "metrics, plots and environment.",
    )
    report.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a folder ptflow made")
    report.set_defaults(handler=_report)


def _add_compare(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare runs on one page",
        description="Write one self-contained HTML page (and a PNG of its plot) comparing run "
        "folders: their loss curves overlaid, their test metrics, and their settings side by "
        "side with the ones that differ highlighted.",
    )
    compare.add_argument("run_dirs", type=_path, nargs="+", metavar="RUN_DIR")
    compare.add_argument(
        "--out",
        type=_path,
        default=Path("compare.html"),
        help="the page to write, .html added if its name lacks it; the PNG goes beside it "
        "(default: compare.html)",
    )
    compare.set_defaults(handler=_compare)


_COMMANDS = (
    _add_run,
    _add_train,
    _add_evaluate,
    _add_predict,
    _add_convert,
    _add_runs,
    _add_report,
    _add_compare,
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one-line `WorkflowError`s."""

    def error(self, message: str) -> NoReturn:
        raise WorkflowError(f"{message}; see '{self.prog} --help'.")


_SETTINGS = {setting.name: setting for setting in dataclasses.fields(Config)}
# Settings that name columns: spelled by hand in `_add_train`, as COLUMN lists.
_COLUMN_LISTS = ("data", "target", "features", "categorical", "numeric", "ignore")
_HINTS = typing.get_type_hints(Config)
_GROUPS = {  # the help sections that list Config's settings, in order
    "split": "split and scaling",
    "model": "model",
    "training": "training",
    "hardware": "hardware",
    "checkpoints": "checkpoints and resuming",
    "output": "output",
}


def _help(name: str) -> str:
    """A setting's help text, as Config declares it."""
    return str(_SETTINGS[name].metadata["help"])


def _add_settings(
    group: argparse._ActionsContainer,
    section: str,
    defaults: dict[str, Any],
    skip: tuple[str, ...] = (),
) -> None:
    """Add an option for each setting of `section`, as Config declares it, showing its default.

    Unset, an option stays None, so a TOML file (--config) or the default decides.
    """
    for setting in _SETTINGS.values():
        if setting.metadata["group"] != section or setting.name in skip:
            continue
        flag = "--" + setting.name.replace("_", "-")
        text = f"{_help(setting.name)} (default: {_shown(defaults[setting.name])})"
        hint = _HINTS[setting.name]
        if hint is bool:
            negatable = setting.metadata["negatable"]
            action = argparse.BooleanOptionalAction if negatable else "store_true"
            group.add_argument(flag, action=action, default=None, help=text)
            continue
        if typing.get_origin(hint) is tuple:  # tuple[int, ...]: --hidden 64 64, or 64,64
            group.add_argument(flag, action=_CommaList, item=int, metavar="N", help=text)
            continue
        kind, choices = _parse_as(hint)
        group.add_argument(flag, type=kind, choices=choices, help=text)


def _parse_as(hint: Any) -> tuple[Callable[[str], Any], tuple[str, ...] | None]:
    """How to read a setting of type `hint` from the command line, and its choices."""
    arguments = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return str, typing.get_args(hint)
    if arguments:  # X | None: read as X, or `none`
        kind, choices = _parse_as(arguments[0])
        return _or_none(kind), choices
    return hint, None


class _NoneGiven:
    """`none` on the command line: the setting's None, over a TOML file's or a default."""


_NONE_GIVEN = _NoneGiven()


def _or_none(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return _NONE_GIVEN if text.strip().lower() == "none" else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse: "invalid int value"
    return parse


def _shown_settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"--{name.replace('_', '-')} {_shown(v)}" for name, v in settings.items())


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def _add_missing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--missing",
        choices=MISSING,
        default=None,
        help="a missing feature value: impute it as in training, drop its row, or error; "
        "rows without a target are left out (default: impute)",
    )


def _add_drop_missing(parser: argparse._ActionsContainer) -> None:
    """--drop-missing, the earlier spelling of --missing drop."""
    parser.add_argument("--drop-missing", action="store_true", help="the same as --missing drop")


def _missing_given(args: argparse.Namespace) -> MissingName | None:
    """--missing, with --drop-missing read as --missing drop; the two may not disagree."""
    missing: MissingName | None = getattr(args, "missing", None)
    if getattr(args, "drop_missing", False):
        if missing not in (None, "drop"):
            raise WorkflowError(
                f"--missing {missing} and --drop-missing disagree; give one of them."
            )
        return "drop"
    return missing


def _add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="format of --data (default: auto, from the extension)",
    )


def _add_launch_options(hardware: argparse._ArgumentGroup) -> None:
    """How many processes, on how many machines, restarted how often (torchrun's launcher)."""
    hardware.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine, data-parallel through torchrun: gloo "
        "on the CPU, NCCL on GPUs (default: 1)",
    )
    hardware.add_argument(
        "--nnodes",
        type=int,
        metavar="N",
        help="with --rdzv-endpoint: train on N machines, --nproc processes on each; run the "
        "same command on every machine (default: 1)",
    )
    hardware.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="with --nnodes: the first machine's address and a free port there, where the "
        "machines meet, as torchrun's --rdzv-endpoint",
    )
    hardware.add_argument(
        "--rdzv-id",
        metavar="ID",
        help="with --nnodes: the job's id, the same on every machine (default: from --out)",
    )
    hardware.add_argument(
        "--max-restarts",
        type=int,
        metavar="N",
        help="with --nproc: when a process fails, start them all again up to N times, "
        "resuming from the newest checkpoint, as torchrun --max-restarts does (default: 0)",
    )


def _add_common_options(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    parser.add_argument(
        "--config", type=_path, metavar="TOML", help="read settings from a TOML file first"
    )
    groups = {name: parser.add_argument_group(title) for name, title in _GROUPS.items()}
    for name, group in groups.items():
        _add_settings(group, name, defaults)
    _add_launch_options(groups["hardware"])
    groups["checkpoints"].add_argument(
        "--resume",
        type=_path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its newest checkpoint; only --epochs, --no-plots, "
        "--log-every and the checkpoint options may change",
    )

    groups["checkpoints"].add_argument(
        "--resume-if-exists",
        action="store_true",
        help="if --out holds an unfinished run with a checkpoint, resume it instead of "
        "refusing (a job that a scheduler may start again); otherwise start the run",
    )

    output = groups["output"]
    output.add_argument(
        "--out", type=_path, help="run folder to write (default: runs/<date>_<time>)"
    )
    output.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    output.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each epoch's losses and learning rate as TensorBoard scalars into "
        "RUN_DIR/tensorboard; needs pip install 'ptflow[tensorboard]' (default: off)",
    )
    output.add_argument(
        "--explain",
        action="store_true",
        help="tell each step of the workflow in plain sentences as it happens, with the "
        "first batch's actual values (default: off)",
    )
    output.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: log lines and a progress bar; json: one JSON object per line (each logged "
        "epoch, then the finished run), no progress bar (default: text)",
    )
    output.add_argument(
        "--quiet",
        action="store_true",
        help="print only the run folder: no progress bar, logs or summary (default: off)",
    )


def _metric_names(brief: bool = False) -> str:
    """Every task's metrics, for help texts: "regression: MAE, MSE, RMSE and R²"."""
    named = []
    for task in TASKS.values():
        shown = [task.metric(name) for name in task.brief] if brief else task.metrics
        labels = [metric.label for metric in shown]
        named.append(f"{task.name}: " + ", ".join(labels[:-1]) + f" and {labels[-1]}")
    return "; ".join(named)


def _path(text: str) -> Path:
    """A path argument; an empty one (an unset variable in a script) is refused, not '.'."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "got an empty path (an unset variable in a script?); give a file or folder name"
        )
    return Path(text)


def _probability(text: str) -> float:
    """A probability strictly between 0 and 1 (at 0 or 1 a threshold decides nothing)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; give a probability strictly between 0 and 1 (at 0 or 1 it would "
            f"predict one class for every row)"
        )
    return value


class _CommaList(argparse.Action):
    """A list option: `--opt a b`, `--opt a,b` and `--opt a --opt b` all give (a, b).

    A name holding a comma can be given in a TOML file (--config), whose lists are exact.
    """

    def __init__(self, *args: Any, item: Callable[[str], Any] = str, **kwargs: Any) -> None:
        kwargs["nargs"] = "+"
        super().__init__(*args, **kwargs)
        self.item = item

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest, None) or ())
        for token in values:
            for piece in token.split(","):
                if not piece.strip():
                    raise argparse.ArgumentError(self, f"{token!r} has an empty item")
                try:
                    items.append(self.item(piece.strip()))
                except ValueError:
                    raise argparse.ArgumentError(self, f"{piece!r} is not a number") from None
        setattr(namespace, self.dest, tuple(items))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _note_ignored_settings(given: dict[str, Any], cfg: Config) -> None:
    """Say, on stderr, which `given` settings this run does not use (--hidden for a linear
    model, --momentum without SGD...): a silent choice would leave the user guessing."""
    used = relevant_settings(cfg.to_dict(), told_task(cfg))
    if unused := [name for name in given if name not in used]:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        print(
            f"note: {flags} {'does' if len(unused) == 1 else 'do'} not apply to this run "
            f"(--model {cfg.model}, --optimizer {cfg.optimizer}, --loss {cfg.loss}, "
            f"--schedule {cfg.schedule}); ignored.",
            file=sys.stderr,
        )


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the TOML file and the command line give, the latter winning."""
    values: dict[str, Any] = _read_toml(args.config) if args.config is not None else {}
    # drop_missing, the earlier spelling of missing = "drop": here, where the defaults do
    # not yet hide that the file gave no `missing` of its own
    if values.pop("drop_missing", None) is True:
        values.setdefault("missing", "drop")
    given = {name: getattr(args, name, None) for name in _FIELDS}
    given["missing"] = _missing_given(args)
    for name, value in given.items():
        if value is _NONE_GIVEN:  # `--patience none`: None, over the file and the defaults
            values[name] = None
        elif value is not None:  # None: not on the command line
            values[name] = value
    if given["data"] is not None:  # stored absolute, so the run can be repeated from anywhere
        values["data"] = str(Path(given["data"]).resolve())
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here, not at the top: `ptflow --help` needs no TOML parser

    from ptflow.files import check_regular_file

    check_regular_file(path, "config file")
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        raise WorkflowError(f"config file {path} does not exist; check the path.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise WorkflowError(
            f"config file {path} is not valid TOML ({error}); fix its syntax."
        ) from None
    check_setting_names(values, where=f"config file {path} has ")
    if isinstance(values.get("data"), str):  # a relative path is relative to the TOML file
        values["data"] = str((path.parent / values["data"]).resolve())
    return values


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    _check_launch_options(args)
    cfg, device, timeout = _run_settings(args)
    if _processes(args) > 1 and launched_rank() is None:
        return _launch(args, argv)

    from datetime import timedelta

    from ptflow.distributed import World, process_group

    world = World.launched()
    quiet = args.quiet or (world is not None and not world.is_main)  # rank 0 speaks for all
    as_json = args.log_format == "json"
    out = args.out
    if args.tensorboard and args.resume is None and out is None:  # its folder is inside
        from ptflow.workflow import default_run_dir

        out = default_run_dir()
    writes = world is None or world.is_main
    with (
        process_group(world, device, timedelta(seconds=float(timeout))),
        logging_to_stdout(quiet=quiet, as_json=as_json),
        _tensorboard(args.resume or out, enabled=args.tensorboard and writes) as on_epoch,
        stop_on_signals() as stop,
    ):
        if args.resume is not None:
            from ptflow.workflow import resume_workflow

            result = resume_workflow(
                args.resume,
                _given_settings(args),
                progress=not (quiet or as_json),
                command=["ptflow", *argv],
                should_stop=stop,
                on_epoch=on_epoch,
            )
        else:
            from ptflow.workflow import run_workflow

            result = run_workflow(
                cfg,
                out,
                overwrite=args.overwrite,
                progress=not (quiet or as_json),
                command=["ptflow", *argv],
                should_stop=stop,
                resume_if_exists=args.resume_if_exists,
                narrate=print if args.explain and not quiet else None,
                on_epoch=on_epoch,
            )
    if world is not None and not world.is_main:
        return 0
    if as_json and not quiet:
        from ptflow.run_folder import read_summary

        summary = read_summary(result.run_dir) or {}
        print(json.dumps({"event": "finished", "run_dir": str(result.run_dir), **summary}))
        return 0
    return _report_run(result, quiet=quiet)


def _run_settings(args: argparse.Namespace) -> tuple[Config | None, str, float]:
    """The run's settings (None for --resume: the folder's), its device and collectives'
    timeout, which the processes need before the run is read."""
    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise WorkflowError(
                "--resume continues in the run's own folder; drop --out and --overwrite."
            )
        device = args.device or str(_saved_setting(args.resume, "device", "auto"))
        timeout = args.collective_timeout or _saved_setting(
            args.resume, "collective_timeout", _FIELDS["collective_timeout"]
        )
        return None, device, float(timeout)
    # Defaults, then the TOML file, then the options given on the command line; invalid
    # settings fail here, before torch is imported.
    given = _given_settings(args)
    if args.command == "train":  # a linear model's own defaults, if it is one
        cfg = table_settings(given)
    elif given.get("task") == "classification":  # the circles' model, not the line's
        cfg = Config.from_dict({**args.defaults, **CIRCLES_DEFAULTS, **given})
    else:
        cfg = Config.from_dict({**args.defaults, **given})
    if args.command == "train" and cfg.data is None:
        raise WorkflowError(
            "ptflow train needs a table: give --data FILE (or data in --config); "
            "`ptflow run` trains on the tutorial's line."
        )
    if not args.quiet and launched_rank() is None:  # once, not once per process
        _note_ignored_settings(given, cfg)
    return cfg, cfg.device, cfg.collective_timeout


def _check_launch_options(args: argparse.Namespace) -> None:
    """--nproc, --nnodes, --max-restarts and --resume-if-exists: what they need, before
    anything starts."""
    for flag, value in (("--nproc", args.nproc), ("--nnodes", args.nnodes)):
        if value is not None and value < 1:
            raise WorkflowError(f"{flag} must be at least 1, got {value}.")
    several_machines = (args.nnodes or 1) > 1
    if several_machines != (args.rdzv_endpoint is not None) or (
        args.rdzv_id is not None and not several_machines
    ):
        raise WorkflowError(
            "--nnodes N (N > 1) and --rdzv-endpoint HOST:PORT go together (--rdzv-id with "
            "them): the machines meet at the first one's address."
        )
    if several_machines and args.out is None and args.resume is None:
        raise WorkflowError(
            "on several machines every process writes one folder: give --out DIR (on a "
            "file system they share)."
        )
    if args.max_restarts is not None:
        if args.max_restarts < 0:
            raise WorkflowError(f"--max-restarts must be 0 or more, got {args.max_restarts}.")
        if _processes(args) < 2 and launched_rank() is None:
            raise WorkflowError(
                "--max-restarts starts torchrun's processes again: give --nproc N too "
                "(one process is restarted by running the same command with "
                "--resume-if-exists)."
            )
    if args.resume_if_exists and (args.resume is not None or args.out is None):
        raise WorkflowError(
            "--resume-if-exists resumes the run in --out, or starts it there: give --out "
            "DIR (and no --resume)."
        )


def _processes(args: argparse.Namespace) -> int:
    """How many processes the launcher options ask for, on every machine together."""
    return (args.nproc or 1) * (args.nnodes or 1)


def _launch(args: argparse.Namespace, argv: list[str]) -> int:
    """`--nproc N`: start N ptflow processes through torchrun's launcher, all in one folder."""
    from ptflow.distributed import launch

    workers = argv
    for flag in ("--nproc", "--nnodes", "--rdzv-endpoint", "--rdzv-id", "--max-restarts"):
        workers = _without_option(workers, flag)
    if args.resume is None and args.out is None:  # every process must write one folder
        from ptflow.workflow import default_run_dir

        workers += ["--out", str(default_run_dir())]
    folder = str(args.out or args.resume)
    return launch(
        args.nproc or 1,
        workers,
        max_restarts=args.max_restarts or 0,
        machines=args.nnodes or 1,
        endpoint=args.rdzv_endpoint,
        job=args.rdzv_id or f"ptflow-{folder}",
    )


def _without_option(argv: list[str], flag: str) -> list[str]:
    """argv without `flag VALUE` or `flag=VALUE`."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(f"{flag}="):
            kept.append(token)
    return kept


def _saved_setting(run_dir: Path, name: str, default: Any) -> Any:
    """A setting a run folder was trained with (`default` if it cannot tell), for what must
    be known before the run is read: the device and the collectives' timeout."""
    from ptflow.run_folder import read_record

    try:
        return read_record(run_dir)["config"].get(name, default)
    except (OSError, KeyError, AttributeError, WorkflowError):
        return default  # resume_workflow reports what is wrong with the folder


def _report_run(result: RunResult, quiet: bool) -> int:
    if quiet:
        print(result.run_dir)
        return 0
    _print_run_summary(result)
    return 0


def _print_run_summary(result: RunResult) -> None:
    cfg = result.config
    if result.learned is not None and cfg.line:
        weight, bias = result.learned
        print("Learned parameters (true values in brackets):")
        print(f"  weight {weight:.4f} ({cfg.weight:.4f})")
        print(f"  bias   {bias:.4f} ({cfg.bias:.4f})")
    # Early stopping's outcome (the epoch kept, where it stopped) is logged by `train`, once.
    task = result.task
    if cfg.line:
        test = result.metrics["test"].to_dict()
        shown = (f"{m.label} {format_metric(m, test[m.name])}" for m in task.metrics)
        print("Test metrics: " + " | ".join(shown))
    else:
        rows = [(name, metrics.to_dict()) for name, metrics in result.metrics.items()]
        baseline = result.baseline_metrics["test"].to_dict()
        rows.append((f"test, {task.baseline}", baseline))
        for name, by_part in result.other_baselines.items():
            rows.append((f"test, {name}", by_part["test"].to_dict()))
        _print_metrics_table(task, rows)
        by = task.judged_by({"class_weight": cfg.class_weight} if task.classes else {})
        early = result.history.stopped_early
        if behind := task.behind_baseline(result.metrics["test"].to_dict(), baseline, by, early):
            print(behind)
        if result.importance:
            print(_importance_line(task, result.importance))
    print(f"Saved the model, config, history, metrics and plots to {result.run_dir}")
    from ptflow.run_folder import REPORT

    print(f"Open {result.run_dir / REPORT} to see the whole run on one page.")


def _importance_line(task: Task, importance: dict[str, float], rows: str = "test rows") -> str:
    """Permutation importance in one line, largest first."""
    first = task.metrics[0]
    shown = " | ".join(
        f"{name} {format_metric(first, value)}" for name, value in importance.items()
    )
    change = "rise" if first.lower_is_better else "fall"  # how much worse, either way
    return (
        f"Importance (the {change} in {first.label} on the {rows} when a column is shuffled): "
        f"{shown}"
    )


def _print_metrics_table(task: Task, rows: list[tuple[str, dict[str, float | None]]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}" + "".join(f"  {m.label:>{m.width}}" for m in task.metrics))
    for name, values in rows:
        cells = (format_metric(m, values[m.name], m.width) for m in task.metrics)
        print(f"{name:{width}}" + "".join(f"  {cell}" for cell in cells))


def _evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow.evaluation import evaluate_table
    from ptflow.workflow import load_run

    run = load_run(args.run_dir)
    # Block by block: memory is one block whatever the file's size.
    measured = evaluate_table(
        run.model, args.data, run.features, run.target, format=args.format,
        missing=_missing_given(args) or "impute", encoding=run.encoding,
        importance=args.importance, task=run.task,
    )  # fmt: skip
    importance = measured.importance
    if args.json:
        print(
            json.dumps(
                {
                    "rows": measured.rows,
                    "dropped_rows": measured.dropped_rows,
                    "metrics": {name: m.to_dict() for name, m in measured.by_target.items()},
                    "overall": measured.overall.to_dict(),
                    **({"importance": importance} if importance is not None else {}),
                },
                indent=2,
            )
        )
        return 0
    print(f"{args.data.name}: {measured.rows} rows{_dropped(measured)}")
    if measured.counts is not None:
        for line in measured.counts.describe():
            print(line)
    by_target = [(name, metrics.to_dict()) for name, metrics in measured.by_target.items()]
    _print_metrics_table(run.task, by_target)
    if importance is not None:
        print(_importance_line(run.task, importance, f"rows of {args.data.name}"))
    return 0


def _dropped(measured: Any) -> str:
    """What was left out of a table's rows, in brackets: " (3 rows ... left out)"."""
    from ptflow.tables import rows_left_out

    phrases = rows_left_out(measured.dropped_rows, measured.missing_target, measured.unseen_class)
    return f" ({', '.join(phrases)} left out)" if phrases else ""


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow.report import write_report

    print(write_report(args.run_dir))
    return 0


def _compare(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow.report import write_comparison

    page, png = write_comparison(args.run_dirs, args.out)
    print(page)
    print(png)
    return 0


def _runs(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow.runs import format_table, list_runs, rows_as_json, sort_runs

    rows = sort_runs(list_runs(args.folder), args.sort, args.desc)
    if args.json:
        print(rows_as_json(rows))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no runs in {args.folder}")
    return 0


def _convert(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow.tables import convert_table

    rows = convert_table(
        args.source,
        args.destination,
        row_group_rows=args.row_group_rows,
        overwrite=args.overwrite,
        categorical=args.categorical,
    )
    print(f"Wrote {rows:,} rows to {args.destination}")
    return 0


def _predict(args: argparse.Namespace, argv: list[str]) -> int:
    from ptflow import predictions
    from ptflow.workflow import load_run

    values = None
    if args.data is None:
        values = args.x if args.x is not None else predictions.read_values(args.input)
    run = load_run(args.run_dir)
    classes = run.encoding.classes if run.encoding is not None else ()
    if args.threshold is not None and len(classes) != 2:
        kind = f"{len(classes)} classes" if classes else "numbers, not classes"
        raise WorkflowError(
            f"--threshold decides between two classes, and this model predicts {kind}; "
            f"predict without --threshold."
        )
    if args.threshold is not None:  # on stderr: stdout holds the predictions, for a pipe
        second, first = classes[1], classes[0]
        print(
            f"predicting {second} where p({second}) >= {args.threshold:g}, {first} elsewhere",
            file=sys.stderr,
        )
    source = args.data if values is None else args.input
    if args.output is not None:
        predictions.check_predictions_output(args.output, source, args.run_dir, args.overwrite)
    if values is not None:
        lines = predictions.predict_values(run, values, args.threshold)
        if args.output is None:
            print(lines, end="")
        else:  # the same lines, in the file, whole or not at all
            from ptflow.files import write_text

            write_text(args.output, lines)
        return 0
    predicted = predictions.predict_table(
        run, args.data, args.output, format=args.format, id_column=args.id,
        missing=_missing_given(args) or "impute", threshold=args.threshold,
    )  # fmt: skip
    _print_left_out(predicted, with_ids=args.id is not None)
    return 0


def _print_left_out(predicted: PredictedTable, with_ids: bool) -> None:
    """What predicting did to the table's rows, on stderr: stdout holds the predictions."""
    from ptflow.tables import rows_left_out

    for line in predicted.counts.describe():
        print(line, file=sys.stderr)
    for left_out in rows_left_out(predicted.dropped_rows, 0):  # no target: features only
        # Without an id, the predictions no longer line up with the file's rows: say so.
        hint = "" if with_ids else "; pass --id COLUMN to tell which row each prediction is"
        print(f"left out {left_out}{hint}", file=sys.stderr)


@contextmanager
def _tensorboard(run_dir: Path | None, enabled: bool) -> Iterator[Any]:
    """--tensorboard: a writer of every epoch's numbers under RUN_DIR/tensorboard, or None."""
    if not enabled or run_dir is None:
        yield None
        return
    from ptflow.tensorboard import TensorBoardWriter

    writer = TensorBoardWriter(run_dir / "tensorboard")
    try:
        yield writer
    finally:
        writer.close()
