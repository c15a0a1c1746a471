"""Exact resume: a run stopped at any batch and resumed from its checkpoint ends bit for bit
where the uninterrupted run ends, for every model, optimizer and schedule."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import ptflow
from ptflow import Config, TrainingInterrupted, WorkflowError
from ptflow.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from ptflow.training import EpochEnd
from tests.conftest import Cli


def _splits() -> ptflow.Splits:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(300, 3, generator=generator)
    y = X.sum(dim=1, keepdim=True) + 0.1 * torch.randn(300, 1, generator=generator)
    return ptflow.split(X, y, 0.6, 0.2, shuffle=True, seed=1)


def _config(model: str, optimizer: str, schedule: str, **changes: Any) -> Config:
    return Config(
        model=model,  # type: ignore[arg-type]
        optimizer=optimizer,  # type: ignore[arg-type]
        schedule=schedule,  # type: ignore[arg-type]
        momentum=0.9 if optimizer == "sgd" else 0.0,
        dropout=0.1 if model == "mlp" else 0.0,  # draws from the global generator
        hidden=(16,),
        step_size=3,
        train_fraction=0.6,
        val_fraction=0.2,
        shuffle=True,
        epochs=12,
        **changes,
    )


def _train(
    cfg: Config,
    folder: Path | None = None,
    stop_after_batches: int | None = None,
    resume: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, ptflow.History | None]:
    """Train a fresh model; with `folder`, checkpoint every epoch and when stopped."""
    model = ptflow.build_model(
        cfg.model, 3, 1, seed=cfg.seed, hidden=cfg.hidden, dropout=cfg.dropout
    )
    batches = 0

    def checkpoint(end: EpochEnd) -> None:
        if folder is not None:
            save_checkpoint(folder, end.state_dict(), epoch=end.epochs_done, batch=end.batches_done)

    def should_stop() -> bool:
        nonlocal batches
        batches += 1
        return stop_after_batches is not None and batches >= stop_after_batches

    try:
        history = ptflow.train(
            model, _splits(), cfg, resume=resume, on_epoch_end=checkpoint, should_stop=should_stop
        )
    except TrainingInterrupted:
        return model, None
    return model, history


def _assert_resume_is_exact(cfg: Config, stop_after_batches: int, tmp_path: Path) -> None:
    reference, reference_history = _train(cfg)
    _, interrupted = _train(cfg, tmp_path, stop_after_batches)
    assert interrupted is None, "the stop request came too late to interrupt the run"
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None
    resumed, resumed_history = _train(cfg, resume=checkpoint.state)
    for (name, expected), actual in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(expected, actual), f"{name} differs after resuming at {checkpoint.path}"
    assert resumed_history == reference_history  # no gap, no repeated epoch


# Each optimizer with each schedule on an MLP with dropout, mini-batches and early
# stopping, stopped mid-epoch (batch 17 of 6 per epoch is in epoch 3) and at an epoch end.
@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    list(itertools.product(["sgd", "adam", "adamw"], ["none", "step", "cosine", "onecycle"])),
)
@pytest.mark.parametrize("stop_after_batches", [17, 24])
def test_resume_is_bit_identical(
    optimizer: str, schedule: str, stop_after_batches: int, tmp_path: Path
) -> None:
    cfg = _config("mlp", optimizer, schedule, batch_size=32, patience=4, clip_grad_norm=5.0)
    _assert_resume_is_exact(cfg, stop_after_batches, tmp_path)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_resume_with_the_plateau_schedule_and_full_batch(optimizer: str, tmp_path: Path) -> None:
    cfg = _config("linear", optimizer, "plateau", plateau_patience=1, lr=0.5)
    _assert_resume_is_exact(cfg, stop_after_batches=5, tmp_path=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "optimizer", "schedule", "batch_size", "patience"),
    list(
        itertools.product(
            ["linear", "mlp"],
            ["sgd", "adam", "adamw"],
            ["none", "step", "cosine", "onecycle", "plateau"],
            [None, 32],
            [None, 3],
        )
    ),
)
def test_resume_is_bit_identical_for_every_combination(
    model: str,
    optimizer: str,
    schedule: str,
    batch_size: int | None,
    patience: int | None,
    tmp_path: Path,
) -> None:
    cfg = _config(model, optimizer, schedule, batch_size=batch_size, patience=patience)
    for stop in (3, 8, 20):
        if batch_size is None and stop > cfg.epochs:
            continue
        _assert_resume_is_exact(cfg, stop, tmp_path / str(stop))


def test_resuming_a_finished_run_gives_the_same_model(tmp_path: Path) -> None:
    cfg = _config("mlp", "adam", "none", batch_size=32, patience=2, min_delta=0.05)
    model, history = _train(cfg, tmp_path)
    assert history is not None and history.stopped_early
    final = latest_checkpoint(tmp_path)
    assert final is not None and final.epoch == len(history)
    again, again_history = _train(cfg, resume=final.state)
    assert again_history == history  # no epoch trained twice
    for expected, actual in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(expected, actual)  # the best epoch's weights restored again


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config("mlp", "adam", "step", batch_size=32)
    _train(cfg, tmp_path, stop_after_batches=30)
    newest, older = list_checkpoints(tmp_path)[::-1][:2]
    tensors = newest.with_suffix(".safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-10])  # truncated, as by a full disk
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.path == older
    assert "does not match its checksum" in caplog.text
    reference, _ = _train(cfg)
    resumed, _ = _train(cfg, resume=checkpoint.state)
    for expected, actual in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(expected, actual)


@pytest.mark.parametrize(
    "damage",
    ["truncated json", "edited json", "flipped tensor byte", "missing tensors", "not json"],
)
def test_every_kind_of_damage_is_detected(tmp_path: Path, damage: str) -> None:
    save_checkpoint(tmp_path, {"w": torch.arange(6.0), "epoch": 1}, epoch=1)
    path = tmp_path / "epoch-000001.json"
    tensors = path.with_suffix(".safetensors")
    if damage == "truncated json":
        path.write_text(path.read_text()[:-40])
    elif damage == "edited json":
        path.write_text(path.read_text().replace('"epoch": 1', '"epoch": 2', 1))
    elif damage == "flipped tensor byte":
        data = bytearray(tensors.read_bytes())
        data[-1] ^= 0xFF
        tensors.write_bytes(bytes(data))
    elif damage == "missing tensors":
        tensors.unlink()
    else:
        path.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(WorkflowError, match=r"no usable checkpoint.*is corrupt"):
        latest_checkpoint(tmp_path)


def test_checkpoints_round_trip_every_kind_of_value(tmp_path: Path) -> None:
    tensor = torch.arange(4, dtype=torch.int64)
    state: dict[str, Any] = {
        "tensor": tensor,
        "by_number": {0: {"step": torch.tensor(3.0)}, 1: None},
        "tuple": (0.9, 0.999),
        "floats": [float("inf"), -float("inf"), 0.1, 1e-300],
        "nested": [{"a": "b", "__odd": True}],
    }
    save_checkpoint(tmp_path, state, epoch=3, batch=2, info={"note": "hi"})
    loaded = ptflow.load_checkpoint(tmp_path / "epoch-000003-batch-000002.json")
    assert (loaded.epoch, loaded.batch, loaded.info) == (3, 2, {"note": "hi"})
    assert torch.equal(loaded.state["tensor"], tensor)
    assert (
        loaded.state["by_number"][0]["step"].item() == 3.0 and loaded.state["by_number"][1] is None
    )
    assert loaded.state["tuple"] == (0.9, 0.999)
    assert loaded.state["floats"] == state["floats"]
    assert loaded.state["nested"] == state["nested"]


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    for epoch in range(1, 6):
        save_checkpoint(tmp_path, {"w": torch.zeros(1)}, epoch=epoch, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-000004.json",
        "epoch-000004.safetensors",
        "epoch-000005.json",
        "epoch-000005.safetensors",
    ]


def test_a_failed_checkpoint_save_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint(tmp_path, {"w": torch.zeros(1)}, epoch=1)
    real_fsync, calls = os.fsync, []

    def fail_on_the_json(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the tensors file went through; the JSON file does not
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr("ptflow.files.os.fsync", fail_on_the_json)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, {"w": torch.ones(1)}, epoch=2)
    monkeypatch.undo()
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.epoch == 1
    assert not list(tmp_path.glob(".*.tmp"))
    save_checkpoint(tmp_path, {"w": torch.ones(1)}, epoch=3)  # and the orphan is cleared
    assert not (tmp_path / "epoch-000002.safetensors").exists()


def test_a_nan_loss_stops_before_the_update(tmp_path: Path) -> None:
    splits = _splits()
    model = ptflow.build_model("linear", 3, 1, seed=0)
    batches = 0

    def loss_fn(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal batches
        batches += not torch.is_inference_mode_enabled()  # count training batches only
        loss = torch.nn.functional.mse_loss(y_pred, y)
        return loss * float("nan") if batches == 8 else loss  # 3 batches per epoch

    before: dict[str, torch.Tensor] = {}

    def remember(end: EpochEnd) -> None:
        before.update({k: v.clone() for k, v in model.state_dict().items()})

    cfg = Config(batch_size=64, model="linear", val_fraction=0.2, train_fraction=0.6)
    with pytest.raises(ptflow.TrainingDiverged, match=r"became nan at epoch 3, batch 2") as caught:
        ptflow.train(model, splits, cfg, loss_fn=loss_fn, on_epoch_end=remember)
    assert caught.value.exit_code == 3
    assert "learning rate 0.01" in str(caught.value) and "lower --lr" in str(caught.value)
    # Epoch 2 ended with `before`; batch 1 of epoch 3 updated once more, batch 2 not at all.
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_refuses_settings_that_change_the_result(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ptflow.run_workflow(Config(epochs=20, checkpoint_every=5), out)
    final = latest_checkpoint(out / "checkpoints")
    assert final is not None and final.path.name == "epoch-000020.json"
    assert final.info["config"] == Config(epochs=20, checkpoint_every=5).to_dict()
    assert final.info["versions"]["torch"] == torch.__version__
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [
        "epoch-000015.json",
        "epoch-000020.json",
    ]
    with pytest.raises(WorkflowError, match=r"changed seed \(42 -> 1\), lr \(0.01 -> 0.1\)"):
        ptflow.resume_workflow(out, {"lr": 0.1, "seed": 1})
    longer = ptflow.resume_workflow(out, {"epochs": 30, "log_every": 5})
    assert len(longer.history) == 30
    straight = ptflow.run_workflow(Config(epochs=30), tmp_path / "straight")
    assert torch.equal(longer.model.state_dict()["weights"], straight.model.state_dict()["weights"])
    assert ptflow.load_run(out).config.epochs == 30

    cosine = tmp_path / "cosine"
    ptflow.run_workflow(Config(epochs=5, schedule="cosine"), cosine)
    with pytest.raises(WorkflowError, match="cosine schedule spans the whole run"):
        ptflow.resume_workflow(cosine, {"epochs": 10})


def test_resume_needs_a_checkpoint_and_the_same_data(tmp_path: Path) -> None:
    import pandas as pd

    data = tmp_path / "table.csv"
    pd.DataFrame({"x": range(40), "y": [2.0 * i for i in range(40)]}).to_csv(data, index=False)
    out = tmp_path / "run"
    ptflow.run_workflow(Config.for_table(str(data), "y", epochs=3), out)
    moved = tmp_path / "moved.csv"
    data.rename(moved)
    assert len(ptflow.resume_workflow(out, {"data": str(moved)}).history) == 3  # moved is fine
    moved.write_text(moved.read_text().replace("78.0", "79.0"))
    with pytest.raises(WorkflowError, match="SHA-256 differs"):
        ptflow.resume_workflow(out, {"data": str(moved)})
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(WorkflowError, match="no checkpoint to resume from"):
        ptflow.resume_workflow(out)


def test_a_checkpoint_of_another_architecture_is_explained(tmp_path: Path) -> None:
    mlp = _config("mlp", "adam", "none", batch_size=32)
    _train(mlp, tmp_path, stop_after_batches=10)
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None
    wider = mlp.replace(hidden=[32])
    with pytest.raises(WorkflowError) as caught:
        _train(wider, resume=checkpoint.state)
    message = str(caught.value)
    assert message.startswith("the checkpoint's model does not fit a MLP: shape mismatches")
    assert "layers.0.weight (16, 3) vs (32, 3)" in message
    linear = _config("linear", "adam", "none", batch_size=32)
    with pytest.raises(WorkflowError, match=r"missing keys linear\.bias, linear\.weight"):
        _train(linear, resume=checkpoint.state)
    sgd = _config("mlp", "sgd", "none", batch_size=32)
    with pytest.raises(WorkflowError, match=r"optimizer is Adam, this run.s is SGD"):
        _train(sgd, resume=checkpoint.state)


def test_resume_if_exists_resumes_an_unfinished_run_and_overwrite_keeps_it(
    tmp_path: Path, cli: Cli
) -> None:
    """A job that a scheduler starts again (the same command): `--resume-if-exists` resumes
    the run its first start left in --out, to the uninterrupted run's bytes, even with
    --overwrite, which would otherwise have deleted the checkpoints."""
    steps = {"n": 0}

    def stop() -> bool:
        steps["n"] += 1
        return steps["n"] > 12

    with pytest.raises(TrainingInterrupted):
        ptflow.run_workflow(Config(epochs=30), tmp_path / "cut", should_stop=stop)
    again = cli("run", "--epochs", "30", "--out", "cut", "--resume-if-exists", "--overwrite")
    assert again.code == 0, again.err
    assert "resuming from epoch-00000" in again.out
    assert "note: --resume-if-exists: resuming cut from its newest checkpoint" in again.out
    assert cli("run", "--epochs", "30", "--out", "whole", "--quiet").code == 0
    for name in ("model.pt", "history.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    # Finished: --resume-if-exists has nothing to resume, and refuses as any new run does.
    done = cli("run", "--epochs", "30", "--out", "cut", "--resume-if-exists")
    assert done.code == 2 and "already exists" in done.err


def test_resume_if_exists_refuses_other_settings_and_needs_out(tmp_path: Path, cli: Cli) -> None:
    with pytest.raises(TrainingInterrupted):
        ptflow.run_workflow(Config(epochs=30), tmp_path / "cut", should_stop=lambda: True)
    kept = sorted(p.name for p in (tmp_path / "cut").rglob("*"))
    changed = cli("run", "--epochs", "30", "--lr", "0.1", "--out", "cut", "--resume-if-exists")
    assert changed.code == 2 and changed.err.startswith("error: cannot resume with changed lr")
    assert sorted(p.name for p in (tmp_path / "cut").rglob("*")) == kept  # nothing touched
    no_out = cli("run", "--resume-if-exists")
    assert no_out.code == 2 and "give --out DIR" in no_out.err
    alone = cli("run", "--max-restarts", "1", "--out", "x")
    assert alone.code == 2 and "give --nproc N too" in alone.err
    assert not (tmp_path / "x").exists()
