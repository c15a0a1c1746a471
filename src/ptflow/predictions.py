"""Step 5 for files: what `ptflow predict` writes, as CSV.

A table's predictions are written block by block, so memory is one block whatever the
file's size; into `output` they are written whole or not at all (a temporary file, then a
rename). Each row gets `<target>_pred`, and for classes `<target>_prob_<class>` for every
class. A plain list of numbers (a one-feature model, the tutorial's) gets one line each.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ptflow.errors import WorkflowError

if TYPE_CHECKING:
    import torch

    from ptflow.encoding import EncodeCounts
    from ptflow.tables import TableBlock
    from ptflow.workflow import LoadedRun

__all__ = [
    "PredictedTable",
    "check_predictions_output",
    "predict_table",
    "predict_values",
    "prediction_columns",
    "prediction_names",
    "read_values",
    "write_predictions",
]

_FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class PredictedTable:
    """What predicting a table did to its rows: the encoding's counts (values imputed,
    unseen categories) and the rows left out for a missing feature value."""

    counts: EncodeCounts
    dropped_rows: int


def read_values(path: Path) -> list[float]:
    """The numbers of a text file, one a line (blank lines and `#` comments skipped)."""
    from ptflow.files import check_regular_file

    check_regular_file(path, "input file")  # /dev/zero would fill the memory
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


def predict_values(run: LoadedRun, values: list[float], threshold: float | None = None) -> str:
    """A one-feature model's predictions for `values`, as text: a line of numbers per
    value, or for classes the CSV a table's predictions are written as."""
    import torch

    from ptflow.evaluation import predict

    if not all(math.isfinite(value) for value in values):
        raise WorkflowError("input values must be finite numbers; remove NaN and infinity.")
    if too_large := [value for value in values if abs(value) > _FLOAT32_MAX]:
        raise WorkflowError(
            f"input value {too_large[0]:g} is beyond float32's range (±{_FLOAT32_MAX:.4g}), "
            f"which the model computes in; give smaller values."
        )
    if len(run.features) != 1:
        raise WorkflowError(
            f"this model takes {len(run.features)} features ({', '.join(run.features)}); "
            f"give them as columns of a table with --data FILE."
        )
    X = torch.tensor(values, dtype=torch.float32).unsqueeze(dim=1)  # (n, 1)
    classes: tuple[str, ...] = ()
    if run.encoding is not None:
        if run.encoding.categorical:
            raise WorkflowError(
                f"this model's feature {run.features[0]!r} is categorical; give it as a "
                f"column of a table with --data FILE."
            )
        X = torch.from_numpy(run.encoding.encode(X.numpy(), {})[0])
        classes = run.encoding.classes
    y_pred = predict(run.model, X)
    if classes:  # the class and its probabilities, as a table's are written
        import pandas as pd

        columns = prediction_columns(y_pred, run.target, classes, threshold)
        text: str = pd.DataFrame(columns).to_csv(index=False)
        return text
    return "".join(" ".join(f"{v:.7g}" for v in row) + "\n" for row in y_pred.tolist())


def predict_table(
    run: LoadedRun,
    data: Path,
    output: Path | None = None,
    *,
    format: str | None = None,
    id_column: str | None = None,
    missing: str = "impute",
    threshold: float | None = None,
) -> PredictedTable:
    """Write the predictions of every row of the table `data` as CSV, to `output` (checked
    first with `check_predictions_output`, by the caller) or else stdout; with
    `id_column`, that column first. An error midway leaves `output` untouched; stdout has
    the whole blocks before the bad value's block, which is checked before any of its
    rows is predicted."""
    from ptflow.encoding import EncodeCounts
    from ptflow.files import atomic_path
    from ptflow.tables import iter_table

    classes = run.encoding.classes if run.encoding is not None else ()
    if id_column is not None and id_column in prediction_names(run.target, classes):
        raise WorkflowError(
            f"--id {id_column!r} has the name of a predictions column; rename that column "
            f"of {data.name}, or predict without --id."
        )
    blocks = iter_table(
        data, run.features, format=format, id_column=id_column,
        missing=missing,
        encoding=run.encoding,
    )  # fmt: skip
    counts = EncodeCounts()
    write = (run.model, run.target, classes, id_column, counts, threshold)
    if output is None:
        dropped = write_predictions(sys.stdout, blocks, *write)
    else:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as file:
            dropped = write_predictions(file, blocks, *write)
    return PredictedTable(counts=counts, dropped_rows=dropped)


def check_predictions_output(
    output: Path, data: Path | None, run_dir: Path, overwrite: bool
) -> None:
    """Predictions may go neither over an input (table or file) nor into a run folder,
    nor, without `overwrite`, over any file that exists."""
    from ptflow.files import check_not_an_input, check_output_path, quoted
    from ptflow.run_folder import run_folder_holding

    check_output_path(output, "--output")
    check_not_an_input(output, [data] if data is not None else [], "--output")
    inside = run_folder_holding(output)
    if inside is not None or output.resolve().is_relative_to(run_dir.resolve()):
        raise WorkflowError(
            f"--output {quoted(output)} is inside the run folder {quoted(inside or run_dir)}, "
            f"which holds only what its run wrote; write the predictions elsewhere."
        )
    if output.exists() and not overwrite:
        raise WorkflowError(
            f"--output {quoted(output)} already exists; choose another name, or pass "
            f"--overwrite to replace it."
        )


def prediction_names(target: tuple[str, ...], classes: tuple[str, ...]) -> list[str]:
    """The columns predictions are written as: `<target>_pred`, and for classes
    `<target>_prob_<class>`."""
    probabilities = [f"{target[0]}_prob_{name}" for name in classes]
    return [f"{name}_pred" for name in target] + probabilities


def write_predictions(
    file: TextIO,
    blocks: Iterable[TableBlock],
    model: torch.nn.Module,
    target: tuple[str, ...],
    classes: tuple[str, ...],
    id_column: str | None,
    counts: EncodeCounts,
    threshold: float | None = None,
) -> int:
    """Write each block's predictions as CSV (for classes: the class, by `threshold` for two
    if given, then each class's probability); add what encoding did to `counts`; return the
    rows left out."""
    import pandas as pd

    from ptflow.evaluation import predict

    dropped = 0
    for number, block in enumerate(blocks):
        dropped += block.dropped_rows
        if block.counts is not None:
            counts.add(block.counts)
        columns = prediction_columns(predict(model, block.X), target, classes, threshold)
        frame = pd.DataFrame({id_column: block.ids, **columns} if id_column else columns)
        frame.to_csv(file, header=number == 0, index=False)
    return dropped


def prediction_columns(
    y_pred: torch.Tensor,
    target: tuple[str, ...],
    classes: tuple[str, ...],
    threshold: float | None,
) -> dict[str, Any]:
    """The columns of predictions `y_pred` (the model's outputs), by name: the values, or
    for classes the class (by `threshold` for two, if given) and each class's probability."""
    import numpy as np

    from ptflow.evaluation import predicted_classes, probabilities

    y_pred = y_pred.cpu()
    if classes:
        shares = probabilities(y_pred.float())
        chosen = predicted_classes(shares, threshold).numpy()
        values = [np.asarray(classes, dtype=object)[chosen], *shares.numpy().T]
    else:
        values = list(y_pred.numpy().T)
    return dict(zip(prediction_names(target, classes), values, strict=True))
