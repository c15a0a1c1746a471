from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import ptflow
from ptflow import Config, LinearRegressionModel, Splits, WorkflowError


def _tutorial_loop(
    splits: Splits, epochs: int
) -> tuple[LinearRegressionModel, list[float], list[float]]:
    """The tutorial's loop written out by hand: the oracle for ptflow.train."""
    torch.manual_seed(42)
    model = LinearRegressionModel()
    loss_fn = nn.L1Loss()
    optimizer = torch.optim.SGD(params=model.parameters(), lr=0.01)
    train_losses, test_losses = [], []
    for _ in range(epochs):
        model.train()
        y_pred = model(splits.train.X)
        loss = loss_fn(y_pred, splits.train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.inference_mode():
            test_loss = loss_fn(model(splits.test.X), splits.test.y)
        train_losses.append(loss.item())
        test_losses.append(test_loss.item())
    return model, train_losses, test_losses


def test_train_matches_the_hand_written_tutorial_loop(tutorial_splits: Splits) -> None:
    expected_model, train_losses, test_losses = _tutorial_loop(tutorial_splits, 200)
    model = ptflow.build_model("tutorial", seed=42)
    history = ptflow.train(model, tutorial_splits, Config())
    assert torch.equal(model.weights, expected_model.weights)
    assert torch.equal(model.bias, expected_model.bias)
    assert history.epoch == list(range(1, 201))
    assert history.train_loss == pytest.approx(train_losses, rel=1e-6)
    assert history.eval_loss == pytest.approx(test_losses, rel=1e-6)
    assert history.eval_split == "test" and set(history.lr) == {0.01}


def test_default_run_converges_to_the_true_line(tutorial_splits: Splits) -> None:
    model = ptflow.build_model("tutorial", seed=42)
    history = ptflow.train(model, tutorial_splits)
    assert abs(model.weights.item() - 0.7) < 0.01
    assert abs(model.bias.item() - 0.3) < 0.01
    assert history.eval_loss[-1] < history.eval_loss[0] / 10


def test_same_seed_gives_bit_identical_parameters(tutorial_splits: Splits) -> None:
    cfg = Config(batch_size=8, shuffle=True, optimizer="adam", epochs=20)
    runs = []
    for _ in range(2):
        model = ptflow.build_model("tutorial", seed=cfg.seed)
        history = ptflow.train(model, tutorial_splits, cfg)
        runs.append((model.state_dict(), history.train_loss))
    assert runs[0][1] == runs[1][1]
    for name, tensor in runs[0][0].items():
        assert torch.equal(tensor, runs[1][0][name]), name


def test_mini_batches_match_a_hand_written_loop(tutorial_splits: Splits) -> None:
    cfg = Config(batch_size=16, epochs=5, seed=3)
    model = ptflow.build_model("tutorial", seed=3)
    history = ptflow.train(model, tutorial_splits, cfg)

    torch.manual_seed(3)
    expected = LinearRegressionModel()
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.01)
    order = torch.Generator().manual_seed(3)
    X, y = tutorial_splits.train
    for epoch in range(5):
        total = 0.0
        permutation = torch.randperm(len(X), generator=order)  # reshuffled every epoch
        for rows in permutation.split(16):  # batches of 16, 16 and 8 rows
            loss = nn.functional.l1_loss(expected(X[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        assert history.train_loss[epoch] == pytest.approx(total / len(X), rel=1e-6)  # per sample
    assert torch.equal(model.weights, expected.weights)
    assert torch.equal(model.bias, expected.bias)


def test_linear_mse_reaches_the_least_squares_solution(
    linear_problem: tuple[torch.Tensor, torch.Tensor],
) -> None:
    splits = ptflow.split(*linear_problem)
    X, y = splits.train
    design = torch.cat([X, torch.ones(len(X), 1)], dim=1).double()  # a column of ones for the bias
    solution = torch.linalg.lstsq(design, y.double()).solution.flatten()

    model = ptflow.build_model("linear", 3, 1, seed=0)
    cfg = Config(model="linear", loss="mse", optimizer="sgd", lr=0.3, epochs=300)
    ptflow.train(model, splits, cfg)
    learned = torch.cat([model.linear.weight.flatten(), model.linear.bias]).double()
    assert torch.allclose(learned, solution, atol=1e-3, rtol=0)


def test_validation_split_is_used_for_the_epoch_loss(tutorial_splits: Splits) -> None:
    X, y = ptflow.make_linear_data()
    splits = ptflow.split(X, y, 0.6, 0.2)
    assert splits.val is not None
    model = ptflow.build_model("tutorial")
    history = ptflow.train(model, splits, Config(epochs=3, optimizer="adam"))
    assert history.eval_split == "val"
    val_loss = nn.functional.l1_loss(ptflow.predict(model, splits.val.X), splits.val.y).item()
    test_loss = nn.functional.l1_loss(ptflow.predict(model, splits.test.X), splits.test.y).item()
    assert history.eval_loss[-1] == pytest.approx(val_loss)
    assert history.eval_loss[-1] != pytest.approx(test_loss)


def test_logs_every_log_every_epochs(
    tutorial_splits: Splits, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ptflow"):
        ptflow.train(ptflow.build_model(), tutorial_splits, Config(epochs=25, log_every=10))
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split("|")[0].strip() for line in lines] == [
        "epoch  1/25",
        "epoch 10/25",
        "epoch 20/25",
        "epoch 25/25",
    ]
    assert "train loss" in lines[0] and "test loss" in lines[0]


def test_losses_and_optimizers_by_name() -> None:
    assert isinstance(ptflow.make_loss_fn("l1"), nn.L1Loss)
    assert isinstance(ptflow.make_loss_fn("mse"), nn.MSELoss)
    parameters = list(nn.Linear(1, 1).parameters())
    assert isinstance(ptflow.make_optimizer("sgd", parameters, 0.1), torch.optim.SGD)
    adam = ptflow.make_optimizer("adam", parameters, 0.1)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.1
    with pytest.raises(WorkflowError, match="unknown loss"):
        ptflow.make_loss_fn("hinge")
    with pytest.raises(WorkflowError, match="unknown optimizer"):
        ptflow.make_optimizer("lbfgs", parameters)


ACCELERATORS = [
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device"),
    ),
]


@pytest.mark.parametrize("device", ACCELERATORS)
def test_trains_on_an_accelerator_from_cpu_data(tutorial_splits: Splits, device: str) -> None:
    model = ptflow.build_model("tutorial", seed=42).to(device)
    ptflow.train(model, tutorial_splits)  # the CPU data moves to the model's device
    assert abs(model.weights.item() - 0.7) < 0.01
    assert ptflow.predict(model, tutorial_splits.test.X).device.type == device


def _line_splits() -> Splits:
    X, y = ptflow.make_linear_data()
    return ptflow.split(X, y, 0.6, 0.2)


@pytest.mark.parametrize(
    ("schedule", "check"),
    [
        ("step", lambda lr: lr[:3] == [0.1] * 3 and lr[3] == pytest.approx(0.01)),
        ("cosine", lambda lr: lr[0] == 0.1 and lr[-1] < lr[5] < lr[1]),
        (
            "onecycle",
            lambda lr: lr[0] < 0.1 and max(lr) == pytest.approx(0.1, rel=0.05) and lr[-1] < lr[0],
        ),
    ],
)
def test_learning_rate_schedules(schedule: str, check: object) -> None:
    cfg = Config.from_dict(
        dict(epochs=10, lr=0.1, schedule=schedule, step_size=3, optimizer="adam", batch_size=8)
    )
    history = ptflow.train(ptflow.build_model(), _line_splits(), cfg)
    assert callable(check) and check(history.lr), history.lr


def test_plateau_schedule_cuts_the_rate_when_validation_stalls() -> None:
    # A rate far too small to move anything: the validation loss stalls, so the rate is cut.
    cfg = Config(
        epochs=6,
        lr=1e-5,
        schedule="plateau",
        plateau_patience=1,
        gamma=0.5,
        train_fraction=0.6,
        val_fraction=0.2,
    )
    history = ptflow.train(ptflow.build_model(), _line_splits(), cfg)
    assert history.lr[0] == 1e-5 and history.lr[-1] < 1e-5


def test_gradient_clipping_bounds_each_update() -> None:
    splits = _line_splits()
    model = ptflow.build_model("linear", seed=0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    ptflow.train(
        model, splits, Config(epochs=1, lr=1.0, loss="mse", clip_grad_norm=0.01, model="linear")
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (
        after - before
    ).norm().item() <= 0.01 + 1e-6  # one SGD step of lr 1 on a clipped gradient


def test_early_stopping_restores_the_best_epoch() -> None:
    splits = _line_splits()
    # No later epoch can improve by 1e9, so patience 2 stops at epoch 3 and epoch 1 wins.
    cfg = Config(epochs=50, patience=2, min_delta=1e9, train_fraction=0.6, val_fraction=0.2)
    model = ptflow.build_model(seed=42)
    history = ptflow.train(model, splits, cfg)
    assert (len(history), history.best_epoch, history.stopped_early) == (3, 1, True)

    one_epoch = ptflow.build_model(seed=42)
    ptflow.train(one_epoch, splits, cfg.replace(epochs=1, patience=None))
    assert torch.equal(model.weights, one_epoch.weights) and torch.equal(model.bias, one_epoch.bias)


def test_huber_adamw_and_sgd_momentum_all_learn_the_line() -> None:
    splits = _line_splits()
    for changes in (
        {
            "loss": "huber",
            "huber_delta": 0.5,
            "optimizer": "adamw",
            "lr": 0.05,
            "weight_decay": 1e-4,
        },
        {"loss": "mse", "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 0.1},
    ):
        model = ptflow.build_model("linear", seed=0)
        cfg = Config.from_dict({"epochs": 300, "model": "linear", **changes})
        history = ptflow.train(model, splits, cfg)
        assert history.eval_loss[-1] < 0.01, changes
    huber = ptflow.make_loss_fn("huber", huber_delta=0.5)
    assert isinstance(huber, nn.HuberLoss) and huber.delta == 0.5
    sgd = ptflow.make_optimizer(
        "sgd", nn.Linear(1, 1).parameters(), 0.1, momentum=0.9, nesterov=True
    )
    assert sgd.param_groups[0]["nesterov"] is True


def test_automatic_batch_size() -> None:
    from ptflow.training import AUTO_BATCH_ROWS, batch_size_for

    assert batch_size_for(Config(), 40) == 40
    assert batch_size_for(Config(), 10 * AUTO_BATCH_ROWS) == AUTO_BATCH_ROWS
    assert batch_size_for(Config(batch_size=64), 40) == 40


@pytest.mark.slow  # compiling takes seconds, and a C++ compiler
def test_compile_trains_the_same_model_as_eager(tutorial_splits: ptflow.Splits) -> None:
    histories, weights = [], []
    for compiled in (False, True):
        model = ptflow.build_model("mlp", 1, 1, seed=0, hidden=(16,))
        cfg = ptflow.Config(model="mlp", epochs=20, batch_size=8, compile=compiled)
        histories.append(ptflow.train(model, tutorial_splits, cfg).train_loss)
        weights.append(model.state_dict())
    assert set(weights[0]) == set(weights[1])  # the plain module's keys: saved files load anywhere
    assert histories[0] == pytest.approx(histories[1], rel=1e-4)
    for name, value in weights[0].items():
        assert torch.allclose(value, weights[1][name], atol=1e-5), name


def test_weight_decay_shrinks_weights_and_leaves_biases_alone() -> None:
    from ptflow.training import optimizer_for

    first, second = nn.Linear(3, 2), nn.Linear(2, 1)
    model = nn.Sequential(first, nn.ReLU(), second)
    weights = [first.weight.detach().clone(), second.weight.detach().clone()]
    biases = [first.bias.detach().clone(), second.bias.detach().clone()]
    optimizer = optimizer_for(Config(optimizer="sgd", lr=0.5), model, weight_decay=0.1)
    for parameter in model.parameters():  # no loss: only the decay moves anything
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert torch.allclose(first.weight, weights[0] * 0.95)  # 1 - lr * decay
    assert torch.allclose(second.weight, weights[1] * 0.95)
    assert torch.equal(first.bias, biases[0]) and torch.equal(second.bias, biases[1])
    plain = optimizer_for(Config(optimizer="adam"), model)  # no decay: one group, as before
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 0


def test_weight_decay_by_default_is_logistic_regressions_penalty_for_a_linear_classifier() -> None:
    from ptflow.training import weight_decay_for

    linear, mlp = Config(model="linear"), Config(model="mlp")
    assert weight_decay_for(linear, classes=True, train_rows=125) == 1 / 125
    assert weight_decay_for(linear, classes=False, train_rows=125) == 0.0  # regression
    assert weight_decay_for(mlp, classes=True, train_rows=125) == 0.0  # early stopping's job
    assert weight_decay_for(linear.replace(weight_decay=0.0), True, 125) == 0.0  # as given
    assert weight_decay_for(mlp.replace(weight_decay=0.3), True, 125) == 0.3
