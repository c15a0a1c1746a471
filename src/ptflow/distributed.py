"""Beyond one process: data-parallel training through torchrun and torch.distributed.

`torchrun --nproc_per_node N -m ptflow train ...` (or `ptflow train --nproc N ...`, which
launches torchrun's agent itself) starts N copies of ptflow. Each reads its rank from the
environment torchrun sets, joins the process group (gloo on the CPU, NCCL on CUDA), and
trains a replica of the model on its share of every global batch. The gradients are summed
across processes weighted by each share's rows (`GradientSum`, in buckets of a fixed order),
so every step is the step one process would take on the whole batch. Only rank 0 writes
files, logs and progress.

Nothing here runs in a single process: `World.current()` is None there, and `train` and
`run_workflow` take their one-process paths.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from signal import SIGTERM
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from ptflow.console import launched_rank
from ptflow.errors import WorkflowError, first_line

if TYPE_CHECKING:
    from ptflow.batches import LossFn, TrainingData
    from ptflow.evaluation import RunningSums

__all__ = ["Attempt", "Sharded", "World", "launch", "lost_processes", "process_group"]

logger = logging.getLogger(__name__)

# A collective that waits longer than this means a process is gone: fail, do not hang
# (the `collective_timeout` setting; the first collective waits while every process reads
# or scans its data, so a large table may need more).
TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class Attempt:
    """Which start of a torchrun job this is: `torchrun --max-restarts N` starts every
    process again after one fails, with the same `TORCHELASTIC_RUN_ID` (`--rdzv-id`; a
    random one with `--standalone` or `ptflow --nproc`) and a higher restart count."""

    run_id: str
    restarts: int  # 0: the first start

    @property
    def is_restart(self) -> bool:
        return self.restarts > 0

    @property
    def is_unique(self) -> bool:
        """Whether the id tells this job from others: torchrun's default `--rdzv-id` is
        "none" for every job."""
        return self.run_id not in ("", "none")

    def owns(self, record: dict[str, Any]) -> bool:
        """Whether a run folder's config.json was written by an earlier start of this job
        (or, with the id "none", of any job started by the same command, once restarted)."""
        return self.is_restart and bool(self.run_id) and record.get("torchrun_id") == self.run_id


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a data-parallel run."""

    rank: int  # 0 .. size - 1; rank 0 writes the run folder
    size: int
    local_rank: int  # the rank on this machine: which GPU to use

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def launched() -> World | None:
        """The world torchrun describes in the environment, or None for a single process."""
        rank = launched_rank()  # the one reading of torchrun's environment
        if rank is None:
            return None
        size = int(os.environ["WORLD_SIZE"])
        return World(rank, size, int(os.environ.get("LOCAL_RANK", "0")))

    @staticmethod
    def current() -> World | None:
        """The world of the initialised process group, or None outside one (or alone in it)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def attempt(self) -> Attempt:
        """torchelastic's attempt at the job this process belongs to."""
        restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return Attempt(
            os.environ.get("TORCHELASTIC_RUN_ID", ""), int(restarts) if restarts.isdigit() else 0
        )

    def share(self, rows: int) -> slice:
        """This rank's contiguous share of `rows` rows; shares differ by at most one row."""
        base, extra = divmod(rows, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, *values: float) -> list[float]:
        """Each value summed over every process (one collective for all of them)."""
        total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(total)
        return [float(value) for value in total.cpu()]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any."""
        return self.sum(float(flag))[0] > 0

    def decide(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every process: decisions that must not differ (when to save)."""
        value = torch.tensor([float(flag)], device=_collective_device())
        dist.broadcast(value, src=0)
        return bool(value.item())

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text`, on every process (a run folder name, say)."""
        device = _collective_device()
        data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=device)
        length = torch.tensor([len(data)], device=device)
        dist.broadcast(length, src=0)
        if not self.is_main:
            data = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
        dist.broadcast(data, src=0)
        return bytes(data.cpu().tolist()).decode()

    def gather_objects(self, value: Any) -> list[Any]:
        """Every process's `value` (its random generator states, its part of a sum), in
        rank order, for a checkpoint."""
        gathered: list[Any] = [None] * self.size
        # Objects travel pickled between the processes of this one run, never from a file.
        dist.all_gather_object(gathered, value)
        return gathered

    def merge_metric_sums(self, sums: RunningSums) -> RunningSums:
        """Every process's running sums merged, as if one process had seen all the rows.

        Any task's sums: they travel as the one float64 tensor their `pack` makes.
        """
        kind = type(sums)
        packed = sums.pack()
        sizes = torch.zeros(self.size, dtype=torch.long, device=_collective_device())
        sizes[self.rank] = len(packed)
        dist.all_reduce(sizes)
        width = int(sizes.max().item())
        padded = torch.zeros(width, dtype=torch.float64, device=_collective_device())
        padded[: len(packed)] = packed.to(padded.device)
        pieces = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(pieces, padded)
        merged: RunningSums | None = None
        for piece, size in zip(pieces, sizes.tolist(), strict=True):
            unpacked = kind.unpack(piece[:size].cpu())
            if merged is None:
                merged = unpacked
            else:
                merged.merge(unpacked)
        assert merged is not None  # one piece per process, at least one process
        return merged


def own_gpu(world: World) -> int:
    """The GPU of this process on its machine: its local rank, where it sees every GPU of
    the machine; 0, where it sees one (CUDA_VISIBLE_DEVICES set for each process)."""
    visible = torch.cuda.device_count()
    if world.local_rank < visible:
        return world.local_rank
    if visible == 1:
        return 0
    raise WorkflowError(
        f"process {world.rank} is number {world.local_rank} on its machine but sees "
        f"{visible} GPUs; start at most {visible} processes per machine, or give each its "
        f"own GPU with CUDA_VISIBLE_DEVICES."
    )


def _collective_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo moves CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def process_group(
    world: World | None, device_name: str = "auto", timeout: timedelta = TIMEOUT
) -> Iterator[None]:
    """Join the process group torchrun set up (gloo, or NCCL on CUDA) and leave it cleanly.

    Leaving is explicit: objects that may hold the group are collected, then the group is
    destroyed. A gloo group still alive at
    interpreter exit can crash the process ("terminate called without an active exception").
    """
    if world is None or dist.is_initialized():
        yield
        return
    from ptflow.devices import resolve_device

    store = _attempt_store(world, timeout)
    joined = {"store": store, "rank": world.rank, "world_size": world.size, "timeout": timeout}
    try:
        if resolve_device(device_name).type == "cuda":  # one GPU per process on each machine
            gpu = torch.device("cuda", own_gpu(world))
            torch.cuda.set_device(gpu)
            # device_id: NCCL binds the group to this GPU now, not at its first collective
            dist.init_process_group("nccl", device_id=gpu, **joined)
        else:
            dist.init_process_group("gloo", **joined)
    except (RuntimeError, TimeoutError) as error:  # DistError, DistStoreError are both
        raise WorkflowError(
            f"process {world.rank} of {world.size} could not join the others "
            f"({first_line(error)}); check that every process started, and the "
            f"address and port torchrun was given."
        ) from None
    _places[:] = world.gather_objects(_this_place())
    try:
        yield
    finally:
        _places.clear()
        gc.collect()
        dist.destroy_process_group()


# Where each process of the group runs, by rank: (its machine's number among torchrun's
# agents, the machine's host name and address), gathered on joining, to name a lost one.
_places: list[tuple[int, str, str]] = []


def _this_place() -> tuple[int, str, str]:
    import socket

    machine = os.environ.get("GROUP_RANK", "0")
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        address = ""
    return int(machine) if machine.isdigit() else 0, host, address


def _processes(ranks: list[int], size: int) -> str:
    """ "process 1 of 2 (machine 1: host b)", "processes 2, 3 of 4 (machine 1: host b)"."""
    machines = sorted({_places[rank][:2] for rank in ranks if rank < len(_places)})
    where = ", ".join(f"machine {machine}: host {host}" for machine, host in machines)
    named = f"process{'es' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} of {size}"
    return named + (f" ({where})" if where else "")


def lost_processes(error: BaseException, rank: int) -> str | None:
    """If `error` is a broken connection to another process (gloo's "Connection reset by
    peer", say), the processes it was most likely to: those at the peer's address on
    another machine, or else every other machine's. None for any other error."""
    import re

    text = str(error)
    if not any(sign in text for sign in _LOST_SIGNS):
        return None
    here = _places[rank][0] if rank < len(_places) else None
    elsewhere = [other for other, place in enumerate(_places) if place[0] != here]
    peer = re.search(r"\[([0-9a-fA-F.:]+)\]:\d+", text)
    at_peer = [other for other in elsewhere if peer and _places[other][2] == peer.group(1)]
    # gloo's line, without its source position and its advice: "Read error [10.0.0.2]:
    # 36018: Connection reset by peer"
    gist = re.sub(r"^\[[^\]]*:\d+\]\s*", "", first_line(error)).split(". ")[0]
    if named := at_peer or elsewhere:
        return f"{_processes(named, len(_places))} ({gist})"
    return f"another process ({gist})"


# What gloo and NCCL say when the other end of a connection is gone.
_LOST_SIGNS = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Connection refused",
    "remote process exited",
    "NCCL communicator was aborted",
)


def _attempt_store(world: World, timeout: timedelta) -> Any:
    """torchrun's key-value store, as `init_process_group` finds it, with the keys of this
    start of the job kept apart from an earlier start's.

    After `torchrun --max-restarts` starts the processes again, its agent's store still
    holds the addresses the last start's processes left there: torch reads them for the
    new group and fails to connect ("Gloo connectFullMesh failed ... Connection refused";
    7 restarts in 7 here, one of them hanging). Under a prefix per start every process
    reads only addresses of this start.
    """
    from torch.distributed import PrefixStore  # type: ignore[attr-defined]
    from torch.distributed.rendezvous import rendezvous

    store, _, _ = next(rendezvous("env://", world.rank, world.size, timeout=timeout))
    store.set_timeout(timeout)
    return PrefixStore(f"ptflow/start-{world.attempt.restarts}/default_pg", store)


# Gradients travel in buckets of at most this many bytes: one collective per bucket, and
# never more than one bucket's copy of the gradients at a time.
BUCKET_BYTES = 25 << 20


class GradientSum:
    """Every process's gradients of a batch summed, each weighted by its share of the
    batch's rows, so that each process takes the step one process would take on the whole
    batch (DDP's default would average the shares equally, though they may differ by a
    row).

    The parameters go into buckets once, in the model's own order, and every step sums the
    same buckets the same way. DDP sorts its buckets again after its first step, which
    changes how a sum over three or more processes rounds; a resumed run, whose first step
    is not the run's first, then drifted from the uninterrupted one. One more number rides
    in the last bucket: how many processes' losses were not finite, so every process makes
    the same decision on the combined flag (loss and gradients).
    """

    def __init__(self, model: nn.Module, world: World, share: _Share) -> None:
        self.world, self.share = world, share
        self.buckets: list[list[nn.Parameter]] = []
        size = BUCKET_BYTES
        for parameter in model.parameters():
            if not parameter.requires_grad:
                continue
            nbytes = parameter.numel() * parameter.element_size()
            if size + nbytes > BUCKET_BYTES and (not self.buckets or self.buckets[-1]):
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(parameter)
            size += nbytes
        # Every process starts from rank 0's weights, as DDP makes it (a script's own
        # process group may have built its replicas differently).
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor, src=0)

    def __call__(self, loss: float) -> bool:
        """Sum the gradients; whether every process's loss and gradients are finite."""
        not_finite: torch.Tensor | None = None
        for number, bucket in enumerate(self.buckets):
            gradients = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket]
            pieces = [gradient.reshape(-1) for gradient in gradients]
            if number == len(self.buckets) - 1:  # the flags ride in the last bucket
                pieces.append(pieces[0].new_tensor(self._flags(loss)))
            summed = torch.cat(pieces)  # the bucket's one copy of its gradients
            start = sum(parameter.numel() for parameter in bucket)
            summed[:start].mul_(self.share.fraction)  # weighted by this process's rows
            dist.all_reduce(summed)
            offset = 0
            for parameter in bucket:
                stop = offset + parameter.numel()
                parameter.grad = summed[offset:stop].view_as(parameter)
                offset = stop
            bad = (~torch.isfinite(summed[:start])).any().to(summed.dtype)
            not_finite = bad if not_finite is None else not_finite + bad
            flags = summed[start:]  # in the last bucket: the losses', the stop requests
        if not_finite is None:  # a model without trainable parameters: the flags alone
            bad_loss, *stops = self.world.sum(*self._flags(loss))
            self.share.stopped(stops)
            return bad_loss == 0
        values: list[float] = torch.cat([flags, not_finite.reshape(1)]).tolist()
        bad_loss, *stops, bad_gradient = values  # one wait for the device per batch
        self.share.stopped(stops)
        return bad_loss == 0 and bad_gradient == 0

    def _flags(self, loss: float) -> list[float]:
        """This process's flags: its loss is not finite, and then one number per process,
        its own set: 0 to go on, 1 asked to stop, 2 its launcher is gone (see `_Share`)."""
        should_stop = self.share.should_stop
        stops = [0.0] * self.world.size
        if should_stop is not None and should_stop():
            stops[self.world.rank] = 2.0 if getattr(should_stop, "launcher_gone", False) else 1.0
        return [0.0 if math.isfinite(loss) else 1.0, *stops]


@dataclass
class _Share:
    """What the gradients' exchange needs and tells about the current batch."""

    fraction: float = 1.0  # this process's share of the batch's rows: its gradient's weight
    should_stop: Callable[[], bool] | None = None  # this process was asked to stop
    stop: bool = False  # after the exchange: some process was asked to stop
    launcher_gone: tuple[int, ...] = ()  # after the exchange: the processes that lost theirs

    def stopped(self, stops: list[float]) -> None:
        """Take in every process's stop flag, as the exchange summed them."""
        self.stop = any(stops)
        if self.stop:
            self.launcher_gone = tuple(rank for rank, why in enumerate(stops) if why == 2)


def check_batches(world: World, batch_size: int, train_rows: int) -> None:
    """Refuse batches that would leave a process without rows: each needs at least one."""
    last = train_rows % batch_size
    if batch_size < world.size or 0 < last < world.size:
        raise WorkflowError(
            f"with {world.size} processes every batch needs at least {world.size} rows, but "
            f"batches of {batch_size} from {train_rows} training rows leave "
            f"{last or batch_size} in the last; choose another --batch-size."
        )


class Sharded:
    """This process's share of another `TrainingData`: a slice of every global batch."""

    def __init__(self, data: TrainingData, world: World, model: nn.Module) -> None:
        self.data, self.world = data, world
        self.share = _Share()
        self.gradient_sum = GradientSum(model, world, self.share)
        self.train_rows = data.train_rows
        self.eval_split = data.eval_split

    def batches(
        self, batch_size: int, generator: torch.Generator, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this process's rows of each global batch, the same batches one process draws."""
        check_batches(self.world, batch_size, self.train_rows)
        for X, y in self.data.batches(batch_size, generator, skip):
            mine = self.world.share(len(X))
            self.share.fraction = (mine.stop - mine.start) / len(X)
            yield X[mine], y[mine]

    def eval_loss(self, model: nn.Module, loss_fn: LossFn) -> float:
        """The mean loss over every process's share of the evaluation rows."""
        total, rows = self.data.eval_sums(model, loss_fn, self.world.share)
        loss_sum, row_count = self.world.sum(total, rows)
        return loss_sum / row_count

    def eval_sums(
        self, model: nn.Module, loss_fn: LossFn, share: Callable[[int], slice] | None = None
    ) -> tuple[float, int]:
        return self.data.eval_sums(model, loss_fn, share)

    def sum(self, value: float) -> float:
        """The value summed over every process."""
        return self.world.sum(value)[0]

    def stop_after_batch(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool]:
        """A stop check that every process answers alike after each batch: whether any
        process's `should_stop` was true when the batch's gradients were exchanged."""
        self.share.should_stop = should_stop
        return lambda: self.share.stop

    def why_stopped(self) -> str:
        """Why every process stopped, when it was not asked to here: which processes lost
        their launcher (their machine's torchrun was killed, or the machine is going down)."""
        gone = self.share.launcher_gone
        if not gone:
            return ""
        return (
            f"{_processes(list(gone), self.world.size)} lost "
            f"{'their' if len(gone) > 1 else 'its'} torchrun (killed, or the machine is "
            f"going down)"
        )

    def finite(self, loss: float) -> bool:
        """After backward: sum every process's gradients (`GradientSum`), and say whether
        every process's loss and gradients of this batch are finite."""
        return self.gradient_sum(loss)


def launch(
    nproc: int,
    argv: list[str],
    max_restarts: int = 0,
    machines: int = 1,
    endpoint: str | None = None,
    job: str | None = None,
) -> int:
    """Run `ptflow ARGV` in `nproc` processes on this machine with torchrun's launcher,
    which starts them all again, up to `max_restarts` times, when one fails (each restart
    resumes the run folder: `Attempt`). On several `machines`, the same call on each, with
    the first one's `endpoint` (HOST:PORT) and the same `job` id.

    Returns the exit code of the process that failed first (0 if none did), after printing
    one line for a process that died without saying why. The processes' own output (rank
    0's progress, any process's error line) reaches the terminal directly.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torch defaults to one thread per core in each process: split the cores instead.
    threads = max(1, (os.cpu_count() or 1) // nproc)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # Silence the agent's own log lines (its loggers set their own levels): the processes
    # say what happened, and a failure they could not report is reported below.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=machines,
        max_nodes=machines,
        nproc_per_node=nproc,
        run_id=job if machines > 1 and job else str(uuid.uuid4()),
        rdzv_backend="c10d",
        # one machine: a free port, as several runs may share the machine
        rdzv_endpoint=endpoint if machines > 1 and endpoint else "localhost:0",
        max_restarts=max_restarts,
        monitor_interval=0.1,
    )
    processes = nproc * machines
    try:
        elastic_launch(config, sys.executable)("-m", "ptflow", *argv)
    except SignalException as stop:  # Ctrl-C or SIGTERM: the processes got it too
        return 128 + int(stop.sigval)
    except ChildFailedError as failed:
        failures = sorted(failed.failures.items())
        # A process killed by a signal (one the agent did not send to stop the rest) is the
        # cause: another may also have exited with a code, from the connection it broke.
        killed = [(r, f) for r, f in failures if f.exitcode < 0 and f.exitcode != -SIGTERM]
        said = [f.exitcode for _, f in failures if f.exitcode > 0]
        if said and not killed:  # a process that exits with a code has printed why
            return said[0]
        rank, failure = killed[0] if killed else failed.get_first_failure()
        if failure.exitcode < 0:
            cause = f"was killed by signal {-failure.exitcode}"
        else:
            cause = f"failed with exit code {failure.exitcode}"
        print(
            f"error: process {rank} of {processes} {cause}; the others were stopped.",
            file=sys.stderr,
        )
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode
    return 0
