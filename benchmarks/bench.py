"""ptflow against the plain code a careful engineer would write, timed in the same process.

    python benchmarks/bench.py            # full sizes (minutes)
    python benchmarks/bench.py --quick    # small sizes, to keep the benchmarks working (CI)

Each row runs its baseline and ptflow alternately, repeats, and reports the medians and the
ratio ptflow / baseline (for throughput rows, rows/s ptflow / baseline). These machines are
noisy: read the ratios, not the absolute times. Results go to benchmarks/results/ too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

import ptflow
import ptflow.tables
from ptflow.encoding import fit_encoding
from ptflow.models import build_table_model
from ptflow.training import make_class_loss_fn

RESULTS = Path(__file__).parent / "results"
COLUMNS = [f"f{i}" for i in range(16)] + ["y"]  # of the benchmark's tables


@dataclass(frozen=True)
class Row:
    name: str
    baseline: str
    baseline_s: float  # median seconds
    ptflow_s: float
    ratio: float  # the median of the pairs' ratios ptflow / baseline; below 1 is faster
    target: str


def _interleaved_times(runs: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of each run, run back to back in an order that reverses every repeat
    (ABBA...), so that drift and warm caches hit them alike."""
    times: list[list[float]] = [[] for _ in runs]
    for repeat in range(repeats):
        order = list(zip(runs, times, strict=True))
        for run, bucket in order if repeat % 2 == 0 else reversed(order):
            started = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - started)
    return times


def _row(
    name: str, baseline_name: str, baseline: list[float], ours: list[float], target: str
) -> Row:
    """A row with the medians and the median of the ratios of runs made a moment apart.

    A ratio within a pair compares two runs under the same load: on a shared machine it
    drifts far less than either time.
    """
    ratio = statistics.median(o / b for b, o in zip(baseline, ours, strict=True))
    return Row(
        name, baseline_name, statistics.median(baseline), statistics.median(ours), ratio, target
    )


def _timed_row(
    name: str,
    baseline_name: str,
    baseline: Callable[[], object],
    ours: Callable[[], object],
    repeats: int,
    target: str,
) -> Row:
    """Time both in back-to-back pairs; the row of their medians and ratios."""
    baseline_times, ptflow_times = _interleaved_times([baseline, ours], repeats)
    return _row(name, baseline_name, baseline_times, ptflow_times, target)


def bench_tutorial_loop(repeats: int) -> Row:
    """50 points, 200 full-batch epochs with a test loss every epoch."""
    X, y = ptflow.make_linear_data()
    splits = ptflow.split(X, y)
    cfg = ptflow.Config()

    def plain() -> None:
        torch.manual_seed(42)
        model = ptflow.LinearRegressionModel()
        loss_fn = nn.L1Loss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(200):
            model.train()
            loss = loss_fn(model(splits.train.X), splits.train.y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.eval()
            with torch.inference_mode():
                loss_fn(model(splits.test.X), splits.test.y).item()
            loss.item()

    def ours() -> None:
        ptflow.train(ptflow.build_model(seed=42), splits, cfg)

    plain()  # warm up: the first optimizer step imports torch._dynamo
    return _timed_row("tutorial: 200 epochs", "hand-written loop", plain, ours, repeats, "<= 1.10")


def _linear_problem(rows: int) -> ptflow.Splits:
    """rows x 16 features, a noisy linear target, 98% of the rows for training."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 16, generator=generator)
    y = X @ torch.randn(16, 1, generator=generator) + 0.1 * torch.randn(
        rows, 1, generator=generator
    )
    return ptflow.split(X, y, 0.98)


def _hand_written_epoch(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.mse_loss,
) -> None:
    """The baseline epoch: Adam on shuffled slices of 4,096 rows, then the test loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X_train, y_train = train
    order = torch.randperm(len(X_train))
    model.train()
    for start in range(0, len(X_train), 4096):
        rows = order[start : start + 4096]
        loss = loss_fn(model(X_train[rows]), y_train[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        loss_fn(model(test[0]), test[1]).item()


def bench_big_epoch(rows: int, model_name: Literal["linear", "mlp"], repeats: int) -> Row:
    """One epoch over rows x 16 features, batch 4096, Adam."""
    splits = _linear_problem(rows)
    cfg = ptflow.Config(
        model=model_name, loss="mse", optimizer="adam", epochs=1, batch_size=4096, lr=1e-3
    )

    def plain() -> None:
        model = ptflow.build_model(model_name, 16, 1, seed=0, hidden=(64, 64))
        _hand_written_epoch(model, splits.train, splits.test)

    def ours() -> None:
        ptflow.train(ptflow.build_model(model_name, 16, 1, seed=0, hidden=(64, 64)), splits, cfg)

    return _timed_row(
        f"{rows:,} rows x 16, one epoch, {model_name}",
        "hand-written slicing loop",
        plain,
        ours,
        repeats,
        "rows/s >= 0.95x (time <= 1.05)",
    )


CLASSES = 10  # of the classification benchmarks


def _class_problem(rows: int) -> ptflow.Splits:
    """rows x 16 features, 10 learnable classes (the argmax of X @ W for a seeded W), 98% of
    the rows for training; class numbers as float32 (rows, 1), as a run's table holds them."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 16, generator=generator)
    classes = (X @ torch.randn(16, CLASSES, generator=generator)).argmax(dim=1)
    return ptflow.split(X, classes.float().unsqueeze(1), 0.98)


def bench_class_epoch(rows: int, repeats: int) -> Row:
    """One MLP epoch over rows x 16 features and 10 classes, batch 4096, Adam, against a
    hand-written loop with cross-entropy on long class targets over the same tensors."""
    splits = _class_problem(rows)
    cfg = ptflow.Config(model="mlp", optimizer="adam", epochs=1, batch_size=4096, lr=1e-3)
    loss_fn = make_class_loss_fn(CLASSES)  # what a classification run trains with
    y_train, y_test = (part.y.reshape(-1).long() for part in (splits.train, splits.test))

    def model() -> nn.Module:
        return ptflow.build_model("mlp", 16, CLASSES, seed=0, hidden=(64, 64))

    def plain() -> None:  # cross-entropy on long class numbers, as one writes it by hand
        train, test = (splits.train.X, y_train), (splits.test.X, y_test)
        _hand_written_epoch(model(), train, test, nn.functional.cross_entropy)

    def ours() -> None:
        ptflow.train(model(), splits, cfg, loss_fn=loss_fn)

    plain()  # warm up: the first optimizer step imports torch._dynamo
    return _timed_row(
        f"{rows:,} rows x 16, 10 classes, mlp epoch",
        "hand-written cross-entropy loop",
        plain,
        ours,
        repeats,
        "time <= 1.05",
    )


# A business-like table: 12 numeric columns and 4 categorical ones of 10 to 10,000 levels.
LEVELS = (10, 100, 1_000, 10_000)


def _write_typed_table(rows: int, folder: Path) -> Path:
    path = folder / "typed.csv"
    if not path.exists():
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(
            rng.standard_normal((rows, 12)).astype(np.float32), columns=[f"n{i}" for i in range(12)]
        )
        for i, levels in enumerate(LEVELS):
            frame[f"c{i}"] = np.char.add("v", rng.integers(0, levels, rows).astype(str))
        frame["y"] = frame["n0"] + rng.standard_normal(rows).astype(np.float32)
        frame.to_csv(path, index=False, float_format="%.6g")
    return path


def bench_read_typed_csv(rows: int, repeats: int, folder: Path) -> Row:
    """Read and encode 12 numeric and 4 categorical columns, against pandas reading them
    with dtype hints and taking the categories' codes."""
    path = _write_typed_table(rows, folder)
    categorical = [f"c{i}" for i in range(len(LEVELS))]
    hints: dict[str, Any] = {f"n{i}": np.float32 for i in range(12)}
    hints.update({name: "category" for name in categorical} | {"y": np.float32})

    def with_pandas() -> None:
        frame = pd.read_csv(path, engine="c", dtype=hints)
        codes = [frame[name].cat.codes.to_numpy().astype(np.float32) for name in categorical]
        numbers = frame[[f"n{i}" for i in range(12)]].to_numpy()
        (
            torch.from_numpy(np.column_stack([numbers, *codes])),
            torch.from_numpy(frame["y"].to_numpy().copy()),
        )

    def ours() -> None:
        table = ptflow.load_table(path, ["y"], missing="impute")
        kinds = dict(zip(table.features, table.kinds, strict=True))
        encoding = fit_encoding(table.X.numpy(), table.features, kinds, table.vocabularies)
        encoding.encode(table.X.numpy(), table.vocabularies, in_place=True)

    return _timed_row(
        f"read + encode {rows:,} x (12 + 4 categorical) CSV",
        "pandas, dtype hints + cat codes",
        with_pandas,
        ours,
        repeats,
        "<= 1.2",
    )


def bench_categorical_epoch(rows: int, repeats: int) -> Row:
    """One MLP epoch over 12 numeric inputs and 4 categorical codes (embeddings), batch
    4096, against a hand-written loop over the same encoded tensors and model."""
    generator = torch.Generator().manual_seed(0)
    numbers = torch.randn(rows, 12, generator=generator)
    codes = [torch.randint(2, levels + 2, (rows, 1), generator=generator) for levels in LEVELS]
    X = torch.cat([numbers, *(c.float() for c in codes)], dim=1)
    y = numbers[:, :1] + 0.1 * torch.randn(rows, 1, generator=generator)
    splits = ptflow.split(X, y, 0.98)
    cfg = ptflow.Config(
        model="mlp", loss="mse", optimizer="adam", epochs=1, batch_size=4096, lr=1e-3
    )
    sizes = [levels + 2 for levels in LEVELS]

    def model() -> nn.Module:
        return build_table_model("mlp", 12, sizes, 1, seed=0, hidden=(64, 64))

    def plain() -> None:
        _hand_written_epoch(model(), splits.train, splits.test)

    def ours() -> None:
        ptflow.train(model(), splits, cfg)

    return _timed_row(
        f"{rows:,} rows x (12 + 4 categorical), mlp epoch",
        "hand-written loop, same tensors",
        plain,
        ours,
        repeats,
        "<= 1.10",
    )


def bench_read_csv(rows: int, repeats: int, folder: Path) -> Row:
    """Read rows x 17 float columns from CSV into float32 tensors.

    The baseline is the faster of two direct readers, timed in turn with ptflow: pandas' C
    parser and pyarrow's CSV reader, both asked for float32 columns.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = _write_table(rows, folder, "csv")
    float32 = pa_csv.ConvertOptions(column_types={name: pa.float32() for name in COLUMNS})

    def with_pandas() -> None:
        values = pd.read_csv(path, engine="c", dtype=np.float32).to_numpy()
        torch.from_numpy(values[:, :16].copy()), torch.from_numpy(values[:, 16:].copy())

    def with_pyarrow() -> None:
        table = pa_csv.read_csv(path, convert_options=float32)
        columns = [table.column(i).to_numpy() for i in range(17)]
        torch.from_numpy(np.column_stack(columns[:16])), torch.from_numpy(columns[16][:, None])

    def ours() -> None:
        ptflow.load_table(path, ["y"])

    pandas_times, pyarrow_times, ptflow_times = _interleaved_times(
        [with_pandas, with_pyarrow, ours], repeats
    )
    # The faster direct reader over the same repeats is the baseline; the other is named.
    (fastest, fastest_times), (other, other_times) = sorted(
        [("pandas C", pandas_times), ("pyarrow.csv", pyarrow_times)],
        key=lambda reader: statistics.median(reader[1]),
    )
    baseline = f"{fastest}, f32 ({other} {statistics.median(other_times):.2f} s)"
    name = f"read {rows:,} x 17 CSV"
    return _row(name, baseline, fastest_times, ptflow_times, ">= 0.9x speed")


def bench_dataloader_epoch(rows: int, repeats: int) -> Row:
    """For contrast: a default DataLoader over a TensorDataset, against ptflow's epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    splits = _linear_problem(rows)
    cfg = ptflow.Config(model="linear", loss="mse", optimizer="adam", epochs=1, batch_size=4096)

    def loader() -> None:
        model = ptflow.build_model("linear", 16, 1, seed=0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for X_batch, y_batch in DataLoader(TensorDataset(*splits.train), 4096, shuffle=True):
            loss = nn.functional.mse_loss(model(X_batch), y_batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def ours() -> None:
        ptflow.train(ptflow.build_model("linear", 16, 1, seed=0), splits, cfg)

    return _timed_row(
        f"{rows:,} rows x 16, one epoch, linear",
        "default DataLoader (contrast)",
        loader,
        ours,
        max(1, repeats // 2),
        "for contrast",
    )


def bench_lstsq(rows: int, repeats: int) -> Row:
    """The closed-form least-squares fit, next to one training epoch of a linear model."""
    splits = _linear_problem(rows)
    cfg = ptflow.Config(model="linear", loss="mse", optimizer="adam", epochs=1, batch_size=4096)

    def closed_form() -> None:  # on the same training rows
        X, y = splits.train
        torch.linalg.lstsq(torch.cat([X, torch.ones(len(X), 1)], dim=1), y)

    def one_epoch() -> None:
        ptflow.train(ptflow.build_model("linear", 16, 1, seed=0), splits, cfg)

    return _timed_row(
        f"{rows:,} rows x 16: one epoch vs lstsq",
        "torch.linalg.lstsq",
        closed_form,
        one_epoch,
        repeats,
        "report",
    )


def bench_read_parquet(rows: int, repeats: int, folder: Path) -> Row:
    """Read rows x 17 float columns from Parquet into float32 tensors."""
    import pyarrow.parquet as pq

    path = _write_table(rows, folder, "parquet")

    def plain() -> None:
        table = pq.read_table(path)
        columns = [table.column(i).to_numpy().astype(np.float32) for i in range(17)]
        torch.from_numpy(np.column_stack(columns[:16])), torch.from_numpy(columns[16][:, None])

    def ours() -> None:
        ptflow.load_table(path, ["y"])

    return _timed_row(
        f"read {rows:,} x 17 Parquet",
        "pyarrow.parquet, float32",
        plain,
        ours,
        repeats,
        ">= 0.9x speed",
    )


def _write_table(rows: int, folder: Path, kind: str) -> Path:
    path = folder / f"bench.{kind}"
    if not path.exists():
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.standard_normal((rows, 17)).astype(np.float32), columns=COLUMNS)
        if kind == "csv":
            frame.to_csv(path, index=False, float_format="%.6g")
        else:  # row groups, Parquet's unit of reading, many times smaller than the file
            frame.to_parquet(path, row_group_size=131_072)
    return path


_MEMORY_SCRIPT = """
import sys
import numpy as np, pandas as pd, pyarrow.parquet as pq, torch
import ptflow, ptflow.tables
path, reader = sys.argv[1], sys.argv[2]
def status_mib(field):
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith(field)) / 1024
before = status_mib("VmRSS")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # reset the peak (VmHWM) to the current size: only the read counts
if reader == "ptflow":
    table = ptflow.load_table(path, ["y"])
    X, y = table.X, table.y
    if "typed" in path:  # and encoded, in place, as a run encodes its parts
        from ptflow.encoding import fit_encoding
        kinds = dict(zip(table.features, table.kinds))
        encoding = fit_encoding(X.numpy(), table.features, kinds, table.vocabularies)
        X = torch.from_numpy(encoding.encode(X.numpy(), table.vocabularies, in_place=True)[0])
elif reader == "pandas-typed":  # 12 numbers, 4 categories as codes, y
    hints = {name: ("category" if name.startswith("c") else np.float32) for name in
             [*(f"n{i}" for i in range(12)), *(f"c{i}" for i in range(4)), "y"]}
    frame = pd.read_csv(path, engine="c", dtype=hints)
    codes = [frame[f"c{i}"].cat.codes.to_numpy().astype(np.float32) for i in range(4)]
    X = torch.from_numpy(np.column_stack([frame[[f"n{i}" for i in range(12)]].to_numpy(), *codes]))
    y = torch.from_numpy(frame["y"].to_numpy().copy()[:, None])
    del frame, codes
elif reader == "pandas":
    values = pd.read_csv(path, engine="c", dtype=np.float32).to_numpy()
    X, y = torch.from_numpy(values[:, :16].copy()), torch.from_numpy(values[:, 16:].copy())
    del values
else:
    table = pq.read_table(path)
    columns = [table.column(i).to_numpy().astype(np.float32) for i in range(17)]
    X, y = torch.from_numpy(np.column_stack(columns[:16])), torch.from_numpy(columns[16][:, None])
peak = status_mib("VmHWM")
tensor_mib = (X.numel() + y.numel()) * 4 / 2**20
print((peak - before) / tensor_mib)
"""


def bench_read_memory(rows: int, folder: Path, kind: str) -> Row:
    """Peak memory above the process's baseline while reading, in units of the tensors' size."""
    path = (
        _write_typed_table(rows, folder)
        if kind == "typed-csv"
        else _write_table(rows, folder, kind)
    )

    def multiple(reader: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(path), reader],
            check=True,
            capture_output=True,
            text=True,
        )
        return float(done.stdout)

    direct = {"csv": "pandas", "typed-csv": "pandas-typed"}.get(kind, "pyarrow")
    baseline, ours = multiple(direct), multiple("ptflow")
    return Row(
        f"peak memory reading {kind}, x tensor size",
        f"{direct} direct (multiple, not s)",
        baseline,
        ours,
        ours / baseline,
        "ptflow multiple <= 2.5",
    )


def bench_run_process(repeats: int, folder: Path) -> Row:
    """`ptflow run` as a whole process against a plain script with the same loop, no plots."""
    script = """
import torch
from torch import nn
torch.manual_seed(42)
weights, bias = nn.Parameter(torch.randn(1)), nn.Parameter(torch.randn(1))
X = torch.arange(0, 1, 0.02).unsqueeze(1); y = 0.7 * X + 0.3
X_train, y_train, X_test, y_test = X[:40], y[:40], X[40:], y[40:]
optimizer = torch.optim.SGD([weights, bias], lr=0.01)
for epoch in range(200):
    loss = nn.functional.l1_loss(weights * X_train + bias, y_train)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    with torch.inference_mode():
        nn.functional.l1_loss(weights * X_test + bias, y_test).item()
torch.save({"weights": weights, "bias": bias}, sys.argv[1])
"""
    out = folder / "run"

    def plain() -> None:
        subprocess.run(
            [sys.executable, "-c", "import sys\n" + script, str(folder / "plain.pt")], check=True
        )

    def ours() -> None:
        command = [sys.executable, "-m", "ptflow", "run", "--out", str(out), "--overwrite"]
        subprocess.run([*command, "--quiet"], check=True, capture_output=True)

    return _timed_row(
        "ptflow run (whole process)", "plain script, same loop", plain, ours, repeats, "<= 1.5"
    )


_COMMAND_PEAK = """
import sys
import pandas, pyarrow.parquet, torch, ptflow.workflow, ptflow.evaluation
from ptflow.cli import main
def status_mib(field):
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith(field)) / 1024
before = status_mib("VmRSS")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # reset the peak (VmHWM): only the command counts
code = main(sys.argv[1:])
if code:  # a refused command's peak would pass for a bounded one
    sys.exit(code)
print(status_mib("VmHWM") - before, file=sys.stderr)
"""


def bench_command_memory(rows: int, folder: Path, command: str) -> Row:
    """`ptflow predict` or `evaluate` on Parquet files of rows / 10 and rows: memory follows
    the block, not the file."""
    big = _write_table(rows, folder, "parquet")
    tenth, tiny = folder / "tenth.parquet", folder / "tiny.parquet"
    if not tenth.exists():
        frame = pd.read_parquet(big)
        frame.head(rows // 10).to_parquet(tenth, row_group_size=131_072)
        frame.head(1000).to_parquet(tiny)
    run = folder / "predict-run"
    if not run.exists():
        ptflow.run_workflow(ptflow.Config.for_table(str(tiny), "y", epochs=1), run)
    # --overwrite: the second measurement writes over the first's predictions
    output = (
        ["--output", str(folder / "predictions.csv"), "--overwrite"] if command == "predict" else []
    )

    def peak_mib(data: Path) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _COMMAND_PEAK, command, str(run), "--data", str(data), *output],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return float(done.stderr.strip().splitlines()[-1])

    tenth_mib, big_mib = peak_mib(tenth), peak_mib(big)
    return Row(
        f"peak MiB, {command} {rows // 10:,} vs {rows:,} rows",
        f"{rows // 10:,} rows (MiB, not s)",
        tenth_mib,
        big_mib,
        big_mib / tenth_mib,
        f"~1: bounded by the block ({ptflow.tables.READ_BLOCK_ROWS:,} rows)",
    )


def bench_streamed_epoch(rows: int, repeats: int, folder: Path) -> Row:
    """One epoch (train and validate) read from Parquet row groups, against tensors in memory."""
    path = _write_table(rows, folder, "parquet")
    settings = {"model": "linear", "epochs": 1, "batch_size": 4096, "train_fraction": 0.98}
    settings.update(val_fraction=0.0, patience=0, shuffle=False, scale="none")
    cfg = ptflow.Config.for_table(str(path), "y", **settings)
    table = ptflow.load_table(path, ["y"])
    splits = ptflow.split(table.X, table.y, 0.98)
    streamed = ptflow.scan_table(path, ["y"], train_fraction=0.98, val_fraction=0.0, scale=False)

    def train_on(data: ptflow.Splits | ptflow.StreamedTable) -> Callable[[], object]:
        return lambda: ptflow.train(ptflow.build_model("linear", 16, 1, seed=0), data, cfg)

    return _timed_row(
        f"{rows:,} rows, one epoch --stream, linear",
        "ptflow on tensors in memory",
        train_on(splits),
        train_on(streamed),
        repeats,
        "context: reads the file each pass",
    )


def bench_streamed_memory(rows: int, folder: Path) -> Row:
    """`ptflow train --stream` on Parquet files of rows / 10 and rows: memory follows a group."""
    big = _write_table(rows, folder, "parquet")
    tenth = folder / "tenth.parquet"
    if not tenth.exists():
        pd.read_parquet(big).head(rows // 10).to_parquet(tenth, row_group_size=131_072)

    def peak_mib(data: Path) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _COMMAND_PEAK, "train", "--data", str(data), "--target", "y",
             "--stream", "--epochs", "1", "--out", str(folder / "stream-run"), "--overwrite",
             "--quiet"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return float(done.stderr.strip().splitlines()[-1])

    tenth_mib, big_mib = peak_mib(tenth), peak_mib(big)
    return Row(
        f"peak MiB, train --stream {rows // 10:,} vs {rows:,}",
        f"{rows // 10:,} rows (MiB, not s)",
        tenth_mib,
        big_mib,
        big_mib / tenth_mib,
        "~1: bounded by the row group (131,072 rows)",
    )


def _cli_epoch_s(path: Path, folder: Path, *options: str) -> float:
    """Seconds of one epoch of `ptflow train` in its own process, start-up excluded.

    Trains 6 epochs, logging each as JSON, and takes the median time between the ends of
    consecutive epochs after the first (which pays for compilation, if any).
    """
    command = [
        sys.executable, "-m", "ptflow", "train", "--data", str(path), "--target", "y",
        "--batch-size", "4096", "--epochs", "6", "--out", str(folder / "cli-run"),
        "--overwrite", "--log-every", "1", "--log-format", "json", *options,
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ends = [record["elapsed_s"] for record in records if record["event"] == "epoch"]
    return float(statistics.median(b - a for a, b in itertools.pairwise(ends)))


def bench_processes(rows: int, folder: Path, model_name: str) -> Row:
    """Data-parallel training: one epoch with `--nproc 2` against one process."""
    path = _write_table(rows, folder, "parquet")
    one = _cli_epoch_s(path, folder, "--model", model_name)
    two = _cli_epoch_s(path, folder, "--model", model_name, "--nproc", "2")
    return Row(
        f"{rows:,} rows, one epoch, {model_name}, 2 processes",
        "1 process (2 threads)",
        one,
        two,
        two / one,
        "report: rows/s 2 vs 1 = 1/ratio",
    )


def bench_compile(rows: int, folder: Path) -> Row:
    """One MLP epoch with --compile against without, once compiled, each in its own process.

    (In one process, compiling model after model soon exceeds torch.compile's cache of
    recompilations, after which it quietly runs eagerly: each run gets a fresh process.)
    """
    path = _write_table(rows, folder, "parquet")
    eager = _cli_epoch_s(path, folder, "--model", "mlp")
    compiled = _cli_epoch_s(path, folder, "--model", "mlp", "--compile")
    return Row(
        f"{rows:,} rows, one epoch, mlp --compile",
        "ptflow without --compile",
        eager,
        compiled,
        compiled / eager,
        "context: off by default",
    )


def bench_predict(rows: int, repeats: int) -> Row:
    """Predict rows x 16 with an MLP."""
    model = ptflow.build_model("mlp", 16, 1, seed=0)
    X = torch.randn(rows, 16)

    def plain() -> None:
        model.eval()
        with torch.inference_mode():
            torch.cat([model(X[start : start + 65536]) for start in range(0, rows, 65536)])

    def ours() -> None:
        ptflow.predict(model, X)

    return _timed_row(
        f"predict {rows:,} rows, mlp",
        "raw model(X) in batches",
        plain,
        ours,
        repeats,
        "rows/s >= 0.95x",
    )


def bench_predict_proba(rows: int, repeats: int) -> Row:
    """Class probabilities of rows x 16 with a 10-class MLP."""
    model = ptflow.build_model("mlp", 16, CLASSES, seed=0)
    X = torch.randn(rows, 16)

    def plain() -> None:
        model.eval()
        with torch.inference_mode():
            torch.cat(
                [
                    torch.softmax(model(X[start : start + 65536]), dim=1)
                    for start in range(0, rows, 65536)
                ]
            )

    def ours() -> None:
        ptflow.predict_proba(model, X)

    return _timed_row(
        f"predict_proba {rows:,} rows, 10 classes",
        "raw softmax(model(X)) in batches",
        plain,
        ours,
        repeats,
        "time <= 1.05",
    )


def bench_help(repeats: int, folder: Path, *command: str) -> Row:
    """Whole-process start-up of `ptflow [command] --help` against `python -c pass`.

    Both read compiled bytecode, as an installed ptflow does (pip compiles it on install):
    with PYTHONDONTWRITEBYTECODE set, as on some machines, every start would compile
    ptflow's sources again, and the row would time the compiler. The bytecode goes to a
    temporary folder, so the checkout is left as it was.
    """
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")

    def run(*args: str) -> Callable[[], object]:
        def start() -> None:
            subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)

        start()  # writes the bytecode, untimed
        return start

    return _timed_row(
        " ".join(["ptflow", *command, "--help (process)"]),
        "python -c pass",
        run("-c", "pass"),
        run("-m", "ptflow", *command, "--help"),
        repeats,
        "< 0.1 s absolute",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds in all")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run the benchmarks whose names hold NAME"
    )
    args = parser.parse_args()
    rows, repeats = (200_000, 3) if args.quick else (2_000_000, 11)

    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        benches: dict[str, Callable[[], Row]] = {
            "tutorial": lambda: bench_tutorial_loop(repeats=5 if args.quick else 20),
            "epoch-linear": lambda: bench_big_epoch(rows, "linear", repeats),
            "epoch-mlp": lambda: bench_big_epoch(rows, "mlp", repeats),
            "dataloader": lambda: bench_dataloader_epoch(rows, repeats),
            "lstsq": lambda: bench_lstsq(rows, repeats),
            "read-csv": lambda: bench_read_csv(rows, repeats, here),
            "read-typed-csv": lambda: bench_read_typed_csv(rows, max(3, repeats // 3), here),
            "epoch-categorical": lambda: bench_categorical_epoch(rows, repeats),
            "epoch-classes": lambda: bench_class_epoch(rows, repeats),
            "memory-csv": lambda: bench_read_memory(rows, here, "csv"),
            "memory-typed-csv": lambda: bench_read_memory(rows, here, "typed-csv"),
            "read-parquet": lambda: bench_read_parquet(rows, repeats, here),
            "memory-parquet": lambda: bench_read_memory(rows, here, "parquet"),
            "predict": lambda: bench_predict(rows, repeats),
            "predict-proba": lambda: bench_predict_proba(rows, repeats),
            "memory-predict": lambda: bench_command_memory(rows, here, "predict"),
            "memory-evaluate": lambda: bench_command_memory(rows, here, "evaluate"),
            "stream": lambda: bench_streamed_epoch(rows, repeats, here),
            "memory-stream": lambda: bench_streamed_memory(rows, here),
            "processes-linear": lambda: bench_processes(rows, here, "linear"),
            "processes-mlp": lambda: bench_processes(rows, here, "mlp"),
            "help": lambda: bench_help(repeats, here),
            "help-train": lambda: bench_help(repeats, here, "train"),
            "run": lambda: bench_run_process(2 if args.quick else 5, here),
        }
        if not args.quick:  # compiling takes tens of seconds and a C++ compiler
            benches["compile"] = lambda: bench_compile(rows, here)
        chosen = [name for name in benches if not args.only or any(k in name for k in args.only)]
        if not chosen:
            parser.error(f"no benchmark matches {args.only}; names: {', '.join(benches)}")
        results = [benches[name]() for name in chosen]
    machine = platform.processor() or platform.machine()
    mode = " (quick)" if args.quick else ""
    print(f"ptflow {ptflow.__version__}, torch {torch.__version__}, {machine}, ", end="")
    print(f"{torch.get_num_threads()} threads{mode}")
    # Two ratios: the median of the pairs' ratios, steadier when the machine's speed drifts,
    # and the ratio of the medians, which the targets were first written for.
    header = f"{'baseline s':>10} {'ptflow s':>10} {'ratio':>7} {'med/med':>7}"
    print(f"{'work':40} {'baseline':28} {header}  target")
    for row in results:
        of_medians = row.ptflow_s / row.baseline_s
        times = f"{row.baseline_s:10.4f} {row.ptflow_s:10.4f} {row.ratio:7.3f} {of_medians:7.3f}"
        print(f"{row.name:40} {row.baseline:28} {times}  {row.target}")
    RESULTS.mkdir(exist_ok=True)
    # A partial run leaves the full run's file alone.
    stem = ("quick" if args.quick else "full") + ("-partial" if args.only else "")
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps([asdict(row) for row in results], indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
