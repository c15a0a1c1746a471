"""`--explain` tells the steps on the run's own numbers: checked against the tutorial's loop
written out by hand, and against the run it narrates."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import ptflow
from ptflow.models import MLP, LinearRegressionModel
from tests.conftest import Cli, RunCli


def _numbers(line: str) -> list[float]:
    return [float(value) for value in re.findall(r"-?\d+\.\d+", line)]


def _line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.strip().startswith(start))


def test_explain_tells_the_first_step_with_its_real_values(tmp_path: Path, run_cli: RunCli) -> None:
    done = run_cli("run", "--explain", "--epochs", "1", "--out", "run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line[:2] for line in lines if re.match(r"\d\. ", line)] == [
        "1.", "2.", "3.", "4.", "5.", "6.",
    ]  # fmt: skip
    # The oracle: the tutorial's first step, by hand.
    torch.manual_seed(42)
    model = LinearRegressionModel()
    X = torch.arange(0, 1, 0.02).unsqueeze(1)[:40]
    y = 0.7 * X + 0.3
    start = {name: value.item() for name, value in model.named_parameters()}
    y_pred = model(X)
    loss = nn.L1Loss()(y_pred, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    grads = {name: value.grad.item() for name, value in model.named_parameters()}  # type: ignore[union-attr]
    optimizer.step()
    after = {name: value.item() for name, value in model.named_parameters()}

    for name in ("weights", "bias"):
        assert _numbers(_line(lines, f"{name} shape"))[0] == round(start[name], 4)
        assert _numbers(_line(lines, f"{name}.grad"))[0] == round(grads[name], 4)
        step = _numbers(_line(lines, f"{name} ["))
        assert step == [round(start[name], 4), round(after[name], 4)]
    assert _numbers(_line(lines, "1. Forward"))[:3] == [round(v, 4) for v in y_pred[:3, 0].tolist()]
    assert _numbers(_line(lines, "2. Loss"))[-1] == round(loss.item(), 6)
    # ... and they are the run's own: one full-batch epoch is that one step.
    assert f"train loss {loss.item():.6f}" in _line(lines, "epoch 1/1")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    learned = summary["learned_parameters"]
    assert [round(learned["weight"], 4), round(learned["bias"], 4)] == [
        round(after["weights"], 4), round(after["bias"], 4),
    ]  # fmt: skip
    # The load recipe told, as written, gives back the trained parameters.
    recipe = _line(lines, "Load it into a fresh model").split(" with ", 1)[1].split(", path")[0]
    assert recipe == "model.load_state_dict(torch.load(path, weights_only=True))"
    model = LinearRegressionModel()
    eval(recipe, {"model": model, "torch": torch, "path": tmp_path / "run" / "model.pt"})
    assert model.weights.item() == learned["weight"] and model.bias.item() == learned["bias"]


@pytest.mark.slow
def test_explaining_does_not_change_the_run(
    tmp_path: Path, run_cli: RunCli, linear_table: Path
) -> None:
    args = ["train", "--data", "linear.csv", "--target", "y", "--model", "mlp", "--dropout", "0.2"]
    args += ["--batch-size", "16", "--epochs", "3"]
    plain = run_cli(*args, "--out", "plain")
    told = run_cli(*args, "--out", "told", "--explain")
    assert plain.returncode == 0 and told.returncode == 0, told.stderr
    assert "first batch (16 rows" in told.stdout and "Dropout" not in told.stderr
    files = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("plain", "told")]
    assert files[0] == files[1]  # the rehearsal put every random generator back


def test_explain_narrates_the_step_as_trained_with_clipping_and_bf16(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rehearsal is `train_step` itself: clipped gradients, bf16 autocast, same step."""
    from ptflow.cli import main

    args = ["run", "--explain", "--epochs", "1", "--clip-grad-norm", "0.01", "--lr", "1"]
    assert main([*args, "--precision", "bf16", "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "then clips their length to 0.01" in _line(lines, "4. loss.backward()")
    assert "torch.autocast(bfloat16)" in _line(lines, "1. Forward")
    grads = [_numbers(_line(lines, f"{name}.grad"))[0] for name in ("weights", "bias")]
    assert 0.0099 <= sum(g * g for g in grads) ** 0.5 <= 0.0101  # the clipped gradient
    steps = {name: _numbers(_line(lines, f"{name} [")) for name in ("weights", "bias")}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    learned = summary["learned_parameters"]
    # lr 1 times the clipped gradient: the step told is the step trained
    assert [round(learned["weight"], 4), round(learned["bias"], 4)] == [
        steps["weights"][1], steps["bias"][1],
    ]  # fmt: skip


@pytest.mark.slow  # two runs: keeps the default suite under five minutes
def test_explain_tells_classes_as_logits_probabilities_and_cross_entropy(
    tmp_path: Path, cli: Cli
) -> None:
    from tests.test_classification import _blobs

    data = _blobs(tmp_path / "blobs.csv", rows=200)
    for name, argv in (
        ("three", ["train", "--data", str(data), "--target", "species"]),
        ("two", ["run", "--task", "classification"]),
    ):
        done = cli(*argv, "--explain", "--epochs", "1", "--out", name)
        assert done.code == 0, done.err
        lines = done.out.splitlines()
        forward, loss = _line(lines, "1. Forward pass"), _line(lines, "2. Loss")
        assert "logits = model(X)" in forward and "stratified" in _line(lines, "Split")
        # The loss told is the loss trained on: one full batch, so the first epoch's.
        with open(tmp_path / name / "history.csv") as file:
            first_epoch = float(file.read().splitlines()[1].split(",")[1])
        told, p, minus_log = _numbers(loss.split(" = ", 1)[1])[0], *_numbers(loss)[-2:]
        assert told == pytest.approx(first_epoch, abs=1e-6)
        assert minus_log == pytest.approx(-math.log(p), abs=1e-4)
        if name == "three":  # the softmax of the logits shown, as the probabilities shown
            assert "CrossEntropyLoss" in loss and "which sum to 1" in forward
            logits, shares = (
                _numbers(forward.split("turns the first row's")[1])[:3],
                _numbers(forward.split("into probabilities")[1]),
            )
            assert torch.softmax(torch.tensor(logits), 0).tolist() == pytest.approx(
                shares, abs=1e-4
            )
        else:
            assert "BCEWithLogitsLoss" in loss and "torch.sigmoid(logit)" in forward
            assert "two noisy circles" in _line(lines, "1. Data")


def test_explain_says_a_table_is_standardised_and_loads_as_it_tells(
    tmp_path: Path, cli: Cli, linear_table: Path
) -> None:
    argv = ["train", "--data", "linear.csv", "--target", "y", "--model", "mlp", "--epochs", "2"]
    done = cli(*argv, "--explain", "--out", "run")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert "standardised: minus the training rows' mean" in _line(lines, "With --scale standard")
    assert "X (standardised)" in _line(lines, "4. Train")
    assert "the targets y (standardised)" in _line(lines, "1. Forward")
    assert _line(lines, "2. Loss").endswith("(in standardised units).")
    # The recipe told works as written, where a bare model refuses model.pt.
    recipe = _line(lines, "Load it with").split("run = ", 1)[1].split(":", 1)[0]
    assert recipe == "ptflow.load_run('run')"
    with pytest.raises(RuntimeError, match="Unexpected key"):
        MLP(3, 1).load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    with contextlib.chdir(tmp_path):
        run = eval(recipe, {"ptflow": ptflow})
        predicted = run.predict("linear.csv")
    printed = cli("predict", "run", "--data", "linear.csv")
    assert printed.code == 0, printed.err
    rows = [float(line) for line in printed.out.splitlines()[1:]]
    assert predicted[:, 0].tolist() == pytest.approx(rows, rel=1e-6)
