from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ptflow import Config, WorkflowError


def test_defaults_are_the_tutorial() -> None:
    cfg = Config()
    assert (cfg.weight, cfg.bias, cfg.start, cfg.end, cfg.step) == (0.7, 0.3, 0.0, 1.0, 0.02)
    assert (cfg.train_fraction, cfg.val_fraction, cfg.shuffle) == (0.8, 0.0, False)
    assert (cfg.model, cfg.seed, cfg.loss, cfg.optimizer, cfg.lr) == (
        "tutorial",
        42,
        "l1",
        "sgd",
        0.01,
    )
    assert (cfg.epochs, cfg.batch_size, cfg.log_every) == (200, None, 10)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().epochs = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"step": -0.1}, "step"),
        ({"start": 2.0}, "end"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"train_fraction": 0.6, "val_fraction": 0.4}, "train_fraction + val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"log_every": 0}, "log_every"),
        ({"seed": -3}, "seed"),
        ({"loss": "hinge"}, "'loss'"),
        ({"model": "cnn"}, "'model'"),
        ({"epochs": 2.5}, "'epochs'"),
        ({"epochs": True}, "'epochs'"),
        ({"shuffle": "yes"}, "'shuffle'"),
        ({"lr": "0.1"}, "'lr'"),
    ],
)
def test_invalid_settings_name_the_setting(changes: dict[str, object], named: str) -> None:
    with pytest.raises(WorkflowError, match=named.replace("+", r"\+")) as caught:
        Config.from_dict(changes)
    assert "\n" not in str(caught.value)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(WorkflowError, match="unknown setting 'epoch'"):
        Config.from_dict({"epoch": 3})


def test_round_trip_and_replace() -> None:
    cfg = Config(epochs=7, batch_size=4, lr=1)
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(seed=1).seed == 1
    with pytest.raises(WorkflowError, match="epochs"):
        cfg.replace(epochs=-5)


def test_a_linear_classifier_starts_from_its_own_defaults(tmp_path: Path) -> None:
    from ptflow.config import (
        LINEAR_CLASSIFIER_DEFAULTS,
        LINEAR_REGRESSION_DEFAULTS,
        TABLE_DEFAULTS,
    )

    classes, numbers = tmp_path / "classes.csv", tmp_path / "numbers.csv"
    classes.write_text("x,y\n1,yes\n2,no\n3,yes\n")
    numbers.write_text("x,y\n1,0.5\n2,1.5\n3,2.5\n")
    mine = Config.for_table(str(classes), "y")
    assert {name: getattr(mine, name) for name in LINEAR_CLASSIFIER_DEFAULTS} == (
        LINEAR_CLASSIFIER_DEFAULTS
    )
    assert mine.weight_decay is None  # resolved by the training rows: 1 / n
    assert Config.for_table(str(classes), "y", lr=0.1).lr == 0.1  # given: kept
    for table, changes, patience in (
        (classes, {"model": "mlp"}, TABLE_DEFAULTS["patience"]),  # an MLP stops early
        (numbers, {}, LINEAR_REGRESSION_DEFAULTS["patience"]),  # a linear fit trains on
        (numbers, {"task": "regression"}, LINEAR_REGRESSION_DEFAULTS["patience"]),
    ):
        cfg = Config.for_table(str(table), "y", **changes)
        assert (cfg.lr, cfg.epochs, cfg.patience) == (0.01, TABLE_DEFAULTS["epochs"], patience)
    asked = Config.for_table(str(numbers), "y", task="classification")
    assert asked.epochs == LINEAR_CLASSIFIER_DEFAULTS["epochs"]
