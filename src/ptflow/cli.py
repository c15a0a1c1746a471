"""The `ptflow` command: a thin layer that parses arguments and calls the library.

torch and matplotlib are imported inside the subcommands, so `ptflow --help` is instant.
Every `WorkflowError` becomes one `error: ...` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from ptflow import __version__
from ptflow.config import LOSSES, MODELS, OPTIMIZERS, Config
from ptflow.errors import WorkflowError

__all__ = ["build_parser", "main"]

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ptflow command line with `argv` (default: sys.argv[1:]); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace, list[str]], int] = args.handler
        return handler(args, argv)
    except WorkflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except SystemExit as stop:  # --help and --version end the parse early
        return stop.code if isinstance(stop.code, int) else 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for `ptflow` and its subcommands."""
    parser = _Parser(
        prog="ptflow",
        description="The PyTorch workflow: data, model, training, evaluation, saving.",
    )
    parser.add_argument("--version", action="version", version=f"ptflow {__version__}")
    parser.set_defaults(handler=lambda args, argv: _print_help(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="train on the tutorial's straight-line data and save a run folder",
        description="Run the PyTorch workflow tutorial end to end: make data y = weight*X + "
        "bias, split it, build a model, train it, evaluate it, and save the model, config, "
        "history, metrics and plots in a run folder. Every default reproduces the tutorial.",
    )
    data = run.add_argument_group("data")
    data.add_argument("--weight", type=float, help=_default("true weight of the line", "weight"))
    data.add_argument("--bias", type=float, help=_default("true bias of the line", "bias"))
    data.add_argument("--start", type=float, help=_default("first X value", "start"))
    data.add_argument("--end", type=float, help=_default("X stops before this value", "end"))
    data.add_argument("--step", type=float, help=_default("spacing of the X values", "step"))
    data.add_argument(
        "--train-fraction",
        type=float,
        help=_default("fraction of rows for training", "train_fraction"),
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        help=_default(
            "fraction of rows for validation, after the training rows; with one, the loss "
            "each epoch is measured on it instead of the test rows",
            "val_fraction",
        ),
    )
    data.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_default("shuffle the rows (seeded) before splitting", "shuffle"),
    )
    model = run.add_argument_group("model and training")
    model.add_argument("--model", choices=MODELS, help=_default("model to train", "model"))
    model.add_argument("--seed", type=int, help=_default("random seed", "seed"))
    model.add_argument("--epochs", type=int, help=_default("passes over the data", "epochs"))
    model.add_argument("--lr", type=float, help=_default("learning rate", "lr"))
    model.add_argument("--loss", choices=LOSSES, help=_default("loss function", "loss"))
    model.add_argument("--optimizer", choices=OPTIMIZERS, help=_default("optimizer", "optimizer"))
    model.add_argument(
        "--batch-size",
        type=int,
        help="rows per training step (default: all training rows in one batch)",
    )
    model.add_argument(
        "--log-every", type=int, help=_default("log the losses every N epochs", "log_every")
    )
    output = run.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, help="run folder to write (default: runs/<date>_<time>)"
    )
    output.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    output.add_argument(
        "--quiet",
        action="store_true",
        help="print only the run folder: no progress bar, logs or summary (default: off)",
    )
    run.set_defaults(handler=_run)

    predict = commands.add_parser(
        "predict",
        help="predict with the model saved in a run folder",
        description="Print the predictions of a run folder's saved model, one per line, in "
        "the order of the input values.",
    )
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a folder `ptflow run` made")
    inputs = predict.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--x", type=float, nargs="+", metavar="X", help="input values")
    inputs.add_argument(
        "--input", type=Path, metavar="FILE", help="file with one input value per line"
    )
    predict.set_defaults(handler=_predict)
    return parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one-line `WorkflowError`s."""

    def error(self, message: str) -> NoReturn:
        raise WorkflowError(f"{message}; see '{self.prog} --help'.")


def _default(text: str, name: str) -> str:
    value = _DEFAULTS[name]
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"{text} (default: {shown})"


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    overrides = {name: getattr(args, name) for name in _DEFAULTS if getattr(args, name) is not None}
    cfg = Config.from_dict(overrides)  # invalid settings fail here, before torch is imported

    from ptflow.workflow import run_workflow

    with _logging_to_stdout(quiet=args.quiet):
        result = run_workflow(
            cfg,
            args.out,
            overwrite=args.overwrite,
            progress=not args.quiet,
            command=["ptflow", *argv],
        )
    if args.quiet:
        print(result.run_dir)
        return 0
    if result.learned is not None:
        weight, bias = result.learned
        print("Learned parameters (true values in brackets):")
        print(f"  weight {weight:.4f} ({cfg.weight:.4f})")
        print(f"  bias   {bias:.4f} ({cfg.bias:.4f})")
    test = result.metrics["test"]
    print(
        f"Test metrics: MAE {test.mae:.4g} | MSE {test.mse:.4g} | "
        f"RMSE {test.rmse:.4g} | R² {test.r2:.4f}"
    )
    print(f"Saved the model, config, history, metrics and plots to {result.run_dir}")
    return 0


def _predict(args: argparse.Namespace, argv: list[str]) -> int:
    values: list[float] = args.x if args.x is not None else _read_values(args.input)
    if not all(math.isfinite(value) for value in values):
        raise WorkflowError("input values must be finite numbers; remove NaN and infinity.")

    import torch

    from ptflow.evaluation import predict
    from ptflow.workflow import load_run

    run = load_run(args.run_dir)
    X = torch.tensor(values, dtype=torch.float32).unsqueeze(dim=1)  # (n, 1)
    y_pred = predict(run.model, X)
    print("\n".join(f"{value:.7g}" for value in y_pred.flatten().tolist()))
    return 0


def _read_values(path: Path) -> list[float]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise WorkflowError(f"input file {path} does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise WorkflowError(f"cannot read input file {path} ({error}); pass a text file.") from None
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            values.append(float(text))
        except ValueError:
            raise WorkflowError(
                f"line {number} of {path} is {text!r}, not a number; put one number per line."
            ) from None
    if not values:
        raise WorkflowError(f"input file {path} has no values; put one number per line.")
    return values


@contextmanager
def _logging_to_stdout(quiet: bool) -> Iterator[None]:
    """Send ptflow's log lines to stdout, above the progress bar, for the duration."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    logger = logging.getLogger("ptflow")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        with logging_redirect_tqdm(loggers=[logger]):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
