"""Data-parallel training through torchrun (gloo, on the CPU): the same model as one process,
one run folder, failures that stop every process, and exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import ptflow
from ptflow.distributed import World
from ptflow.evaluation import MetricSums
from tests.conftest import Cli, RunCli

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no torch.distributed"
)


@pytest.fixture(autouse=True)
def nothing_left_running(tmp_path: Path) -> Iterator[None]:
    """After each test, no process it started is left: none runs in its folder (all of
    them start there), beyond a 30 s grace for those told to stop."""
    yield
    deadline = time.monotonic() + 30
    while left := _running_in(tmp_path):
        assert time.monotonic() < deadline, f"processes left running: {left}"
        time.sleep(0.1)


def _running_in(folder: Path) -> list[int]:
    """The live processes (not zombies) whose working folder is `folder` or below it."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        pid = int(entry.name)
        if cwd.is_relative_to(folder) and pid != os.getpid() and _alive(pid):
            found.append(pid)
    return found  # (no /proc: nothing found, and nothing checked)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model.safetensors")


def _train(run_cli: RunCli, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("train", "--data", "linear.csv", "--target", "y", "--quiet", *args)


def test_shares_split_rows_evenly_and_completely() -> None:
    for rows in (0, 1, 7, 64, 65):
        for size in (1, 2, 3):
            shares = [World(rank, size, rank).share(rows) for rank in range(size)]
            covered = [i for share in shares for i in range(rows)[share]]
            assert covered == list(range(rows))
            lengths = [share.stop - share.start for share in shares]
            assert max(lengths) - min(lengths) <= 1


def test_metric_sums_merge_as_if_one_process_saw_every_row() -> None:
    generator = torch.Generator().manual_seed(0)
    y_true, y_pred = (
        torch.randn(101, 2, generator=generator),
        torch.randn(101, 2, generator=generator),
    )
    whole = ptflow.compute_metrics(y_pred, y_true)
    merged = MetricSums()
    for rows in (slice(0, 40), slice(40, 41), slice(41, 101)):
        part = MetricSums()
        part.add(y_pred[rows], y_true[rows])
        merged.merge(MetricSums.unpack(part.pack()))  # as it travels between processes
    for name in ("mae", "mse", "rmse", "r2"):
        assert getattr(merged.metrics(), name) == pytest.approx(getattr(whole, name), rel=1e-12)


@pytest.mark.slow  # 29 s: a torchrun of two processes beside one process; CI runs it
def test_two_processes_train_the_one_process_model(
    tmp_path: Path, run_cli: RunCli, linear_table: Path
) -> None:
    # 140 training rows in batches of 33: shares of 17 and 16 rows, and a last batch of 8
    common = ("--model", "mlp", "--hidden", "8", "--batch-size", "33", "--epochs", "6")
    one = _train(run_cli, *common, "--out", "one")
    two = _train(run_cli, *common, "--out", "two", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout.strip() == "two" and two.stderr == ""  # rank 0 alone speaks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linear.csv", "one", "two"]
    # The same steps; only the order of floating-point sums differs (each process adds its
    # share of the gradient, then the shares are added): agreement to about 1e-6.
    expected, got = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name, value in expected.items():
        assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-6), name
    summaries = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two")]
    for part in ("train", "val", "test"):
        assert summaries[1]["metrics"][part]["mse"] == pytest.approx(
            summaries[0]["metrics"][part]["mse"], rel=1e-5
        )
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_torchrun_itself_runs_ptflow(tmp_path: Path, linear_table: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ptflow", "train", "--data", "linear.csv", "--target", "y", "--epochs", "3",
        "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()  # one folder, not two


@pytest.mark.slow
def test_a_nan_stops_every_process_with_one_message(
    tmp_path: Path, run_cli: RunCli, linear_table: Path
) -> None:
    done = _train(run_cli, "--nproc", "2", "--loss", "mse", "--lr", "1e9", "--optimizer", "sgd")
    assert done.returncode == 3
    assert done.stderr.count("error:") == 1 and "became" in done.stderr, done.stderr
    bad = _train(run_cli, "--nproc", "2", "--features", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


@pytest.mark.slow  # two runs of two processes
def test_a_non_finite_loss_on_one_process_stops_every_process(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """One target of 2e20 (unscaled): an infinite loss where the row falls, its gradients
    finite. Every process decides on the combined flag: one message, exit 3, no folder."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    y = X @ np.array([1.0, -1.0])
    y[57] = 2e20  # squared: beyond float32, for 20 rows or 40
    lines = ["a,b,y", *(f"{a:.6f},{b:.6f},{t:.6g}" for (a, b), t in zip(X, y, strict=True))]
    (tmp_path / "huge.csv").write_text("\n".join(lines) + "\n")
    args = ["--data", "huge.csv", "--target", "y", "--scale", "none", "--no-shuffle",
            "--train-fraction", "0.8", "--val-fraction", "0", "--batch-size", "40",
            "--loss", "mse", "--optimizer", "sgd", "--lr", "1e-30", "--epochs", "3",
            "--patience", "0", "--out", "run"]  # fmt: skip
    done = run_cli("train", *args, "--nproc", "2")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("error:") == 1 and "process 1: process 1" not in done.stderr
    assert "non-finite" in done.stderr or "became inf" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()  # nothing half-made, as with one process
    alone = run_cli("train", *args)
    assert alone.returncode == 3 and not (tmp_path / "run").exists(), alone.stderr


def _worker_ranks(launcher: int) -> dict[int, int]:
    """The ptflow processes torchrun's agent started under `launcher`, by rank."""
    listed = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True)
    ranks = {}
    for pid in map(int, listed.stdout.split()):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environment:
            if entry.startswith(b"RANK="):
                ranks[int(entry[5:])] = pid
    return ranks


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
def test_killing_one_process_stops_the_others_and_resume_finishes(
    tmp_path: Path, run_cli: RunCli, linear_table: Path
) -> None:
    common = ("--batch-size", "16", "--epochs", "40", "--checkpoint-every", "1", "--nproc", "2")
    whole = _train(run_cli, *common, "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    command = [sys.executable, "-m", "ptflow", "train", "--data", "linear.csv", "--target", "y"]
    launcher = subprocess.Popen(
        [*command, "--quiet", *common, "--out", "cut"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cut" / "checkpoints").glob("epoch-00000[2-9].json")):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    os.kill(_worker_ranks(launcher.pid)[1], signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = launcher.communicate(timeout=60)
    assert time.monotonic() - killed < 30  # bounded: the survivor does not hang
    assert launcher.returncode == 128 + signal.SIGKILL
    assert (
        stderr.strip() == "error: process 1 of 2 was killed by signal 9; the others were stopped."
    )
    assert not (tmp_path / "cut" / "summary.json").exists()

    one = run_cli("train", "--resume", "cut", "--quiet")  # another number of processes
    assert one.returncode == 2 and "--nproc 2" in one.stderr
    resumed = run_cli("train", "--resume", "cut", "--quiet", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def _mlp_table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=900)
    lines = ["a,b,c,d,y", *(",".join(f"{v:.6f}" for v in row) for row in np.c_[X, y])]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow  # three runs of 3 or 4 processes each
@pytest.mark.parametrize("processes", [3, 4])
def test_resume_is_exact_with_three_and_four_processes(
    tmp_path: Path, run_cli: RunCli, processes: int
) -> None:
    """A sum over three or more processes rounds by the order it is taken in: the buckets
    of gradients keep one order, so a resumed run takes every step as the whole run did."""
    _mlp_table(tmp_path / "t.csv")
    common = ["--data", "t.csv", "--target", "y", "--model", "mlp", "--hidden", "32,32",
              "--batch-size", "48", "--epochs", "8", "--checkpoint-every", "1", "--patience",
              "0", "--nproc", str(processes), "--quiet", "--no-plots"]  # fmt: skip
    whole = run_cli("train", *common, "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    command = [sys.executable, "-m", "ptflow", "train", *common, "--out", "cut"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cut" / "checkpoints").glob("epoch-00000[3-9].json")):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    launcher.send_signal(signal.SIGINT)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, stderr
    resumed = run_cli("train", "--resume", "cut", "--quiet", "--nproc", str(processes))
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


@pytest.mark.slow
def test_streamed_tables_train_on_two_processes(tmp_path: Path, run_cli: RunCli) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    city = np.array(["Leeds", "York", "Hull"], dtype=object)[rng.integers(0, 3, 3000)]
    y = X @ np.array([1.0, -2.0, 0.5]) + (city == "York") + 0.1 * rng.normal(size=3000)
    X[::37, 0], city[::41] = np.nan, None  # gaps: imputed, and a missing category
    columns = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "city": city, "y": y}
    pq.write_table(pa.table(columns), tmp_path / "t.parquet", row_group_size=300)
    args = ("--data", "t.parquet", "--target", "y", "--stream", "--batch-size", "64", "--quiet")
    one = run_cli("train", *args, "--epochs", "3", "--out", "one")
    two = run_cli("train", *args, "--epochs", "3", "--out", "two", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    summaries = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two")]
    encodings = [(tmp_path / run / "encoding.json").read_text() for run in ("one", "two")]
    assert encodings[0] == encodings[1] and '"categorical"' in encodings[0]
    for part in ("train", "val", "test"):
        assert summaries[1]["metrics"][part]["r2"] == pytest.approx(
            summaries[0]["metrics"][part]["r2"], rel=1e-6
        )


@pytest.mark.slow
def test_repeated_runs_exit_cleanly(tmp_path: Path, run_cli: RunCli, linear_table: Path) -> None:
    # A process group alive at interpreter exit crashed gloo runs about one time in five.
    for attempt in range(15):
        done = _train(run_cli, "--nproc", "2", "--epochs", "2", "--out", f"run{attempt}")
        assert done.returncode == 0 and "terminate called" not in done.stderr, done.stderr


def _into_the_first_epoch(folder: Path, run_cli: RunCli) -> subprocess.Popen[str]:
    """Train the long epochs into folder/whole, then start them into folder/run and
    return that launcher 1.5 s into its epoch of 4,200 batches."""
    args = _long_epochs(folder)
    whole = run_cli(*args, "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    command = [sys.executable, "-m", "ptflow", *args, "--out", "run"]
    launcher = subprocess.Popen(command, cwd=folder, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "run" / "config.json").is_file():  # training starts
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    time.sleep(1.5)
    return launcher


def _long_epochs(folder: Path) -> list[str]:
    """`ptflow train` arguments for two processes and one epoch of 4,200 batches: about 40 s
    here, longer than the 30 s torchrun's agent waits after passing a signal on before it
    kills the processes, so a stop that waited for the epoch's end would lose the work."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(48_000, 3))
    y = X @ np.array([0.5, -1.0, 2.0]) + 0.1 * rng.normal(size=48_000)
    lines = ["a,b,c,y", *(",".join(f"{v:.5f}" for v in row) for row in np.c_[X, y])]
    (folder / "long.csv").write_text("\n".join(lines) + "\n")
    return ["train", "--data", "long.csv", "--target", "y", "--batch-size", "8", "--epochs",
            "1", "--patience", "0", "--nproc", "2", "--quiet", "--no-plots"]  # fmt: skip


@pytest.mark.slow  # three torchruns of two processes
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
def test_workers_whose_launcher_is_killed_stop_with_a_checkpoint(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """SIGKILL of `ptflow train --nproc 2`: its workers notice (the kernel's SIGTERM, and
    their parent check) and stop after the same batch with a checkpoint, instead of
    training on to the end as orphans; the run resumes to the uninterrupted run's bytes."""
    launcher = _into_the_first_epoch(tmp_path, run_cli)
    workers = list(_worker_ranks(launcher.pid).values())
    assert len(workers) == 2
    launcher.kill()
    launcher.wait()
    killed = time.monotonic()
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() - killed < 30, "orphaned workers went on training"
        time.sleep(0.1)
    launcher.stderr.close()  # type: ignore[union-attr]
    assert list((tmp_path / "run" / "checkpoints").glob("*batch*"))  # after the same batch
    resumed = run_cli("train", "--resume", "run", "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, waiting for its parent, does not)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.slow  # three torchruns of two processes
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_is_taken_by_every_process_after_the_same_batch(
    tmp_path: Path, run_cli: RunCli, stop: int
) -> None:
    """Ctrl-C or SIGTERM mid-epoch: the request rides on the gradients' exchange, so every
    process stops after the same batch, well inside torchrun's 30 s grace, with a
    checkpoint there; the resumed run ends with the bytes of an uninterrupted one."""
    launcher = _into_the_first_epoch(tmp_path, run_cli)
    launcher.send_signal(stop)
    asked = time.monotonic()
    _, stderr = launcher.communicate(timeout=60)
    assert time.monotonic() - asked < 10  # at the next batch, not at the epoch's end
    assert launcher.returncode == 128 + stop, stderr
    assert stderr.startswith("stopped: training stopped after epoch") and ", batch " in stderr
    assert stderr.count("\n") == 1 and "--resume run --nproc 2" in stderr, stderr
    assert list((tmp_path / "run" / "checkpoints").glob("*batch*"))  # mid-epoch
    resumed = run_cli("train", "--resume", "run", "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


@pytest.mark.slow  # a torchrun of two processes
def test_a_process_without_rows_is_refused_before_any_file(
    tmp_path: Path, run_cli: RunCli, linear_table: Path
) -> None:
    done = _train(run_cli, "--nproc", "2", "--batch-size", "139", "--out", "run")  # 140 rows
    assert done.returncode == 2 and "leave 1 in the last" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a torchrun of two processes beside one process
def test_two_processes_encode_categories_and_gaps_as_one(tmp_path: Path, run_cli: RunCli) -> None:
    """Every process fits the same encoding from the same training rows (issue 16)."""
    rng = np.random.default_rng(2)
    city = np.array(["Leeds", "York", "Hull"])[rng.integers(0, 3, 200)]
    x = rng.normal(size=200)
    y = 2 * x + (city == "York") * 3 + rng.normal(scale=0.1, size=200)
    cells = [f"{v:.4f}" if i % 17 else "" for i, v in enumerate(x)]  # a few gaps
    lines = [f"{c},{v},{t:.4f}" for c, v, t in zip(city, cells, y, strict=True)]
    (tmp_path / "cities.csv").write_text("city,x,y\n" + "\n".join(lines) + "\n")
    common = ("--data", "cities.csv", "--target", "y", "--model", "mlp", "--hidden", "8",
              "--batch-size", "33", "--epochs", "4", "--quiet")  # fmt: skip
    one = run_cli("train", *common, "--out", "one")
    two = run_cli("train", *common, "--out", "two", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    encodings = [(tmp_path / run / "encoding.json").read_text() for run in ("one", "two")]
    assert encodings[0] == encodings[1] and '"categorical"' in encodings[0]
    expected, got = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name, value in expected.items():
        assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-6), name


def test_an_attempt_owns_only_its_own_jobs_folders() -> None:
    from ptflow.distributed import Attempt

    record = {"torchrun_id": "job-7"}
    assert Attempt("job-7", restarts=1).owns(record)
    assert not Attempt("job-7", restarts=0).owns(record)  # the first start makes its own
    assert not Attempt("job-8", restarts=1).owns(record)
    assert not Attempt("", restarts=1).owns({"torchrun_id": ""})


def _left_in_group(group: int) -> list[int]:
    """The processes still running in process group `group` (zombies do not count)."""
    listed = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True)
    return [pid for pid in map(int, listed.stdout.split()) if _alive(pid)]


@pytest.mark.slow  # two runs of two processes, one of them started twice
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
@pytest.mark.parametrize("launcher", ["torchrun", "nproc"])
def test_an_elastic_restart_resumes_to_the_uninterrupted_bytes(
    tmp_path: Path, run_cli: RunCli, linear_table: Path, launcher: str
) -> None:
    """A worker SIGKILLed under `--max-restarts=1`: torchrun starts every process again
    with the same command, and they resume the run folder from its newest checkpoint
    (--overwrite does not delete it) and end with the uninterrupted run's bytes."""
    common = ["--batch-size", "16", "--epochs", "30", "--checkpoint-every", "1", "--no-plots"]
    whole = _train(run_cli, *common, "--nproc", "2", "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    ptflow_args = ["train", "--data", "linear.csv", "--target", "y", *common, "--out", "cut"]
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=2", "--max-restarts=1", "-m", "ptflow",
                   *ptflow_args, "--overwrite"]  # fmt: skip
    else:
        command = [sys.executable, "-m", "ptflow", *ptflow_args, "--nproc", "2",
                   "--max-restarts", "1"]  # fmt: skip
    started = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: to find every process it left
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cut" / "checkpoints").glob("epoch-00000[3-9].json")):
        assert time.monotonic() < deadline and started.poll() is None
        time.sleep(0.05)
    os.kill(_worker_ranks(started.pid)[1], signal.SIGKILL)
    stdout, stderr = started.communicate(timeout=120)
    assert started.returncode == 0, stderr
    assert (
        "note: torchrun started the processes again (restart 1 of this job): resuming cut" in stdout
    )
    assert "Connection refused" not in stderr  # the group formed again at once
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert _left_in_group(started.pid) == []


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow  # two torchrun agents of one process each, one of them killed
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
@pytest.mark.parametrize("lost", ["torchrun", "machine"])
def test_a_lost_machine_is_named_in_one_line_and_nothing_is_left(
    tmp_path: Path, linear_table: Path, lost: str
) -> None:
    """Two `torchrun --nnodes=2` agents on 127.0.0.1, as two machines. SIGKILL of one's
    torchrun: its worker stops with the other after the same batch, with a checkpoint,
    and the survivor names the lost process and machine. SIGKILL of its torchrun and
    worker at once (a machine gone): the survivor names it as the connection it lost.
    Either way the survivor exits within 30 s and no process is left."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc_per_node=1", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--rdzv-id=two-machines"]  # fmt: skip
    ptflow_args = ["-m", "ptflow", "train", "--data", "linear.csv", "--target", "y",
                   "--batch-size", "4", "--epochs", "30", "--checkpoint-every", "1",
                   "--out", "run", "--quiet", "--no-plots"]  # fmt: skip
    agents = [
        subprocess.Popen(
            [*torchrun, *ptflow_args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 120
    while not list((tmp_path / "run" / "checkpoints").glob("epoch-00000[2-9].json")):
        assert time.monotonic() < deadline and all(a.poll() is None for a in agents)
        time.sleep(0.05)
    ranks = [_worker_ranks(agent.pid) for agent in agents]
    doomed, survivor = (agents[1], agents[0]) if 1 in ranks[1] else (agents[0], agents[1])
    doomed.kill()
    if lost == "machine":
        os.kill(ranks[agents.index(doomed)][1], signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = survivor.communicate(timeout=60)
    assert time.monotonic() - killed < 30, "the survivor hung"
    doomed.communicate(timeout=30)
    ours = [line for line in stderr.splitlines() if line.startswith(("error:", "stopped:"))]
    assert len(ours) == 1, stderr
    if lost == "torchrun":
        assert ours[0].startswith("stopped: process 1 of 2 (machine "), ours[0]
        assert "lost its torchrun" in ours[0] and "saved a checkpoint" in ours[0]
        assert list((tmp_path / "run" / "checkpoints").glob("*batch*"))  # after the same batch
    else:
        assert ours[0].startswith("error: lost the connection to process 1 of 2 (machine ")
        assert "Connection" in ours[0] and "--resume run" in ours[0]
    while any(_left_in_group(agent.pid) for agent in agents):
        assert time.monotonic() - killed < 30, "processes of the run were left behind"
        time.sleep(0.1)


@pytest.mark.slow  # two pairs of one-process launchers, as two machines
def test_ptflow_launches_several_machines_and_exits_with_its_own_codes(
    tmp_path: Path, linear_table: Path
) -> None:
    """`ptflow train --nnodes 2 --rdzv-endpoint HOST:PORT` on each machine (here twice on
    127.0.0.1): one run in one folder, and ptflow's exit codes (3: diverged) with its one
    line, where torchrun by hand exits 1 after its own report."""

    def on_two_machines(*args: str) -> list[subprocess.CompletedProcess[str]]:
        command = [sys.executable, "-m", "ptflow", "train", "--data", "linear.csv",
                   "--target", "y", "--batch-size", "16", "--no-plots", "--nnodes", "2",
                   "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", *args]  # fmt: skip
        machines = [
            subprocess.Popen(
                command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [machine.communicate(timeout=120) for machine in machines]
        return [
            subprocess.CompletedProcess(m.args, m.returncode, out, err)
            for m, (out, err) in zip(machines, outputs, strict=True)
        ]

    trained = on_two_machines("--epochs", "3", "--out", "run", "--quiet")
    assert [m.returncode for m in trained] == [0, 0], [m.stderr for m in trained]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (record["processes"], record["processes_per_machine"]) == (2, 1)
    assert sorted(m.stdout.strip() for m in trained) == ["", "run"]  # rank 0 speaks

    diverged = on_two_machines("--out", "bad", "--optimizer", "sgd", "--lr", "1e30")
    assert [m.returncode for m in diverged] == [3, 3], [m.stderr for m in diverged]
    said = "".join(m.stderr for m in diverged)
    assert said.count("error:") == 1 and "Traceback" not in said, said


def test_several_machines_need_their_meeting_point_and_one_folder(cli: Cli) -> None:
    alone = cli("run", "--nnodes", "2", "--out", "x")
    assert alone.code == 2 and alone.err.startswith("error: --nnodes N (N > 1) and --rdzv-")
    no_folder = cli("run", "--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:29400")
    assert no_folder.code == 2 and "give --out DIR" in no_folder.err
    stray = cli("run", "--rdzv-id", "job", "--out", "x")
    assert stray.code == 2 and "--rdzv-id with them" in stray.err


def test_a_restart_replaces_only_its_own_jobs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted process starts again in place a folder of its job that has no
    checkpoint yet, but not under torchrun's default id "none", which every job shares:
    that folder may be another job's, and only --overwrite may replace it."""
    from ptflow.workflow import _existing_run

    with pytest.raises(ptflow.TrainingInterrupted):
        ptflow.run_workflow(ptflow.Config(epochs=5), tmp_path / "run", should_stop=lambda: True)
    for checkpoint in (tmp_path / "run" / "checkpoints").iterdir():
        checkpoint.unlink()
    record_path = tmp_path / "run" / "config.json"
    world = World(rank=0, size=2, local_rank=0)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    for job, expected in (("job-7", "replace"), ("none", "new")):
        record = json.loads(record_path.read_text())
        record_path.write_text(json.dumps({**record, "torchrun_id": job}))
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
        assert _existing_run(tmp_path / "run", False, world) == expected
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-8")  # another job: as any folder
    assert _existing_run(tmp_path / "run", False, world) == "new"
