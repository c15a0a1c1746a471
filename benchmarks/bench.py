"""ptflow against the plain code a careful engineer would write, timed in the same process.

    python benchmarks/bench.py            # full sizes (minutes)
    python benchmarks/bench.py --quick    # small sizes, to keep the benchmarks working (CI)

Each row runs its baseline and ptflow alternately, repeats, and reports the medians and the
ratio ptflow / baseline (for throughput rows, rows/s ptflow / baseline). These machines are
noisy: read the ratios, not the absolute times. Results go to benchmarks/results/ too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

import ptflow

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Row:
    name: str
    baseline: str
    baseline_s: float  # median seconds
    ptflow_s: float
    ratio: float  # ptflow time / baseline time; below 1 is faster
    target: str


def _median_pair(
    baseline: Callable[[], object], ours: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, run alternately so that drift hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, bucket in ((baseline, times[0]), (ours, times[1])):
            started = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


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
    baseline_s, ptflow_s = _median_pair(plain, ours, repeats)
    return Row(
        "tutorial: 200 epochs",
        "hand-written loop",
        baseline_s,
        ptflow_s,
        ptflow_s / baseline_s,
        "<= 1.10",
    )


def bench_big_epoch(rows: int, model_name: Literal["linear", "mlp"], repeats: int) -> Row:
    """One epoch over rows x 16 features, batch 4096, Adam."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 16, generator=generator)
    y = X @ torch.randn(16, 1, generator=generator) + 0.1 * torch.randn(
        rows, 1, generator=generator
    )
    splits = ptflow.split(X, y, 0.98)
    cfg = ptflow.Config(
        model=model_name, loss="mse", optimizer="adam", epochs=1, batch_size=4096, lr=1e-3
    )

    def plain() -> None:
        model = ptflow.build_model(model_name, 16, 1, seed=0, hidden=(64, 64))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        X_train, y_train = splits.train
        order = torch.randperm(len(X_train))
        model.train()
        for start in range(0, len(X_train), 4096):
            rows_ = order[start : start + 4096]
            loss = nn.functional.mse_loss(model(X_train[rows_]), y_train[rows_])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            nn.functional.mse_loss(model(splits.test.X), splits.test.y).item()

    def ours() -> None:
        ptflow.train(ptflow.build_model(model_name, 16, 1, seed=0, hidden=(64, 64)), splits, cfg)

    baseline_s, ptflow_s = _median_pair(plain, ours, repeats)
    return Row(
        f"{rows:,} rows x 16, one epoch, {model_name}",
        "hand-written slicing loop",
        baseline_s,
        ptflow_s,
        ptflow_s / baseline_s,
        "rows/s >= 0.95x (time <= 1.05)",
    )


def bench_read_csv(rows: int, repeats: int, folder: Path) -> Row:
    """Read rows x 17 float columns from CSV into float32 tensors."""
    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(16)] + ["y"]
    frame = pd.DataFrame(rng.standard_normal((rows, 17)).astype(np.float32), columns=columns)
    path = folder / "bench.csv"
    frame.to_csv(path, index=False, float_format="%.6g")

    def plain() -> None:
        values = pd.read_csv(path, engine="c", dtype=np.float32).to_numpy()
        torch.from_numpy(values[:, :16].copy()), torch.from_numpy(values[:, 16:].copy())

    def ours() -> None:
        ptflow.load_table(path, ["y"])

    baseline_s, ptflow_s = _median_pair(plain, ours, repeats)
    return Row(
        f"read {rows:,} x 17 CSV",
        "pandas C reader, float32",
        baseline_s,
        ptflow_s,
        ptflow_s / baseline_s,
        ">= 0.9x speed",
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

    baseline_s, ptflow_s = _median_pair(plain, ours, repeats)
    return Row(
        f"predict {rows:,} rows, mlp",
        "raw model(X) in batches",
        baseline_s,
        ptflow_s,
        ptflow_s / baseline_s,
        "rows/s >= 0.95x",
    )


def bench_help(repeats: int) -> Row:
    """Whole-process start-up of `ptflow --help` against `python -c pass`."""

    def run(*args: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True)

    baseline_s, ptflow_s = _median_pair(run("-c", "pass"), run("-m", "ptflow", "--help"), repeats)
    return Row(
        "ptflow --help (process)",
        "python -c pass",
        baseline_s,
        ptflow_s,
        ptflow_s / baseline_s,
        "< 0.1 s absolute",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds in all")
    args = parser.parse_args()
    rows, repeats = (200_000, 3) if args.quick else (2_000_000, 5)

    with tempfile.TemporaryDirectory() as folder:
        results = [
            bench_tutorial_loop(repeats=5 if args.quick else 20),
            bench_big_epoch(rows, "linear", repeats),
            bench_big_epoch(rows, "mlp", repeats),
            bench_read_csv(rows, repeats, Path(folder)),
            bench_predict(rows, repeats),
            bench_help(repeats),
        ]
    machine = platform.processor() or platform.machine()
    mode = " (quick)" if args.quick else ""
    print(f"ptflow {ptflow.__version__}, torch {torch.__version__}, {machine}, ", end="")
    print(f"{torch.get_num_threads()} threads{mode}")
    print(f"{'work':40} {'baseline':28} {'baseline s':>10} {'ptflow s':>10} {'ratio':>7}  target")
    for row in results:
        times = f"{row.baseline_s:10.4f} {row.ptflow_s:10.4f} {row.ratio:7.3f}"
        print(f"{row.name:40} {row.baseline:28} {times}  {row.target}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("quick.json" if args.quick else "full.json")
    out.write_text(json.dumps([asdict(row) for row in results], indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
