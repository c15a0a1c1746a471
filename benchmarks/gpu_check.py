"""The checks that need a CUDA GPU, in one run of a few minutes, printing one table.

    python benchmarks/gpu_check.py

Run it when a GPU machine is lent (this project's CI has none): the CUDA cases of the test
suite, two processes against one (NCCL, and where NCCL will not share one GPU between two
processes, what it said), bf16 against float32 training, and one 2,000,000-row MLP epoch on
the GPU against the hand-written loop of `bench.py`. On a machine without CUDA it says so
and exits 0, so CI can check that it runs.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
STEP_LIMIT_S = 150  # no one check may take more: the whole stays under 8 minutes


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU checks are skipped (run this on a machine with one)")
        return 0
    rows: list[tuple[str, str, str]] = [("GPU", torch.cuda.get_device_name(0), "")]
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        _table(here / "t.csv")
        for name, check in (
            ("tests on CUDA", _cuda_tests),
            ("2 processes (NCCL) vs 1", lambda: _processes(here)),
            ("bf16 vs float32", lambda: _bf16(here)),
            ("2M-row mlp epoch vs hand loop", _epoch),
        ):
            started = time.perf_counter()
            try:
                outcome, detail = check()
            except Exception as error:  # report it and go on: one table of everything
                outcome, detail = "error", f"{type(error).__name__}: {error}"[:200]
            rows.append((name, outcome, f"{detail} ({time.perf_counter() - started:.0f} s)"))
    width = max(len(name) for name, _, _ in rows)
    for name, outcome, detail in rows:
        print(f"{name:{width}}  {outcome:8}  {detail}")
    return 0 if all(outcome != "failed" for _, outcome, _ in rows) else 1


def _table(path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(20_000, 8, generator=generator)
    y = torch.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * torch.randn(20_000, generator=generator)
    lines = ["a,b,c,d,e,f,g,h,y"]
    for row, target in zip(X.tolist(), y.tolist(), strict=True):
        lines.append(",".join(f"{v:.5f}" for v in [*row, target]))
    path.write_text("\n".join(lines) + "\n")


def _ptflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ptflow", "train", "--data", "t.csv", "--target", "y"]
    command += ["--model", "mlp", "--epochs", "5", "--patience", "0", "--quiet", "--no-plots"]
    return subprocess.run(
        [*command, *args], cwd=folder, capture_output=True, text=True, timeout=STEP_LIMIT_S
    )


def _test_mse(run: Path) -> float:
    import json

    mse: float = json.loads((run / "summary.json").read_text())["metrics"]["test"]["mse"]
    return mse


def _cuda_tests() -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests/test_training.py",
         "tests/test_devices.py", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=STEP_LIMIT_S,
    )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return ("passed" if done.returncode == 0 else "failed"), last


def _processes(folder: Path) -> tuple[str, str]:
    one = _ptflow(folder, "--device", "cuda", "--out", "one")
    if one.returncode != 0:
        return "failed", one.stderr.strip()[-200:]
    two = _ptflow(folder, "--device", "cuda", "--nproc", "2", "--out", "two")
    if two.returncode != 0:  # NCCL may refuse two processes on one GPU: say what it said
        gpus = torch.cuda.device_count()
        outcome = "failed" if gpus > 1 else "n/a"
        return outcome, f"{gpus} GPU(s); {two.stderr.strip().splitlines()[-1][:180]}"
    ratio = _test_mse(folder / "two") / _test_mse(folder / "one")
    return ("passed" if abs(ratio - 1) < 0.05 else "failed"), f"test MSE ratio {ratio:.4f}"


def _bf16(folder: Path) -> tuple[str, str]:
    bf16 = _ptflow(folder, "--device", "cuda", "--precision", "bf16", "--out", "bf16")
    f32 = _ptflow(folder, "--device", "cuda", "--out", "f32")
    if bf16.returncode != 0 or f32.returncode != 0:
        return "failed", (bf16.stderr or f32.stderr).strip()[-200:]
    ratio = _test_mse(folder / "bf16") / _test_mse(folder / "f32")
    return ("passed" if ratio < 1.5 else "failed"), f"test MSE bf16 / float32 {ratio:.3f}"


def _epoch() -> tuple[str, str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import _hand_written_epoch, _linear_problem

    import ptflow

    device = torch.device("cuda")
    splits = _linear_problem(2_000_000)

    def moved(part: ptflow.Split) -> ptflow.Split:
        return ptflow.Split(part.X.to(device), part.y.to(device))

    on_gpu = dataclasses.replace(splits, train=moved(splits.train), test=moved(splits.test))
    cfg = ptflow.Config(model="mlp", loss="mse", optimizer="adam", epochs=1, batch_size=4096)

    def model() -> torch.nn.Module:
        return ptflow.build_model("mlp", 16, 1, seed=0, hidden=(64, 64)).to(device)

    def hand() -> None:
        _hand_written_epoch(model(), on_gpu.train, on_gpu.test)

    def ours() -> None:
        ptflow.train(model(), on_gpu, cfg)

    hand_s, ours_s = _best_of(hand, 3), _best_of(ours, 3)
    ratio = ours_s / hand_s
    return ("passed" if ratio <= 1.10 else "failed"), (
        f"{ours_s:.3f} s against {hand_s:.3f} s, ratio {ratio:.2f} (target <= 1.10)"
    )


def _best_of(work: Callable[[], None], repeats: int) -> float:
    work()  # warm: CUDA context, kernels
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        work()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


if __name__ == "__main__":
    sys.exit(main())
