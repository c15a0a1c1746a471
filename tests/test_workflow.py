from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import ptflow
from ptflow import Config, WorkflowError
from ptflow.workflow import RUN_FILES


def test_run_folder_holds_every_file(tutorial_run: ptflow.RunResult) -> None:
    assert sorted(p.name for p in tutorial_run.run_dir.iterdir()) == sorted(RUN_FILES)


def test_config_json_records_settings_seed_and_versions(tutorial_run: ptflow.RunResult) -> None:
    saved = json.loads((tutorial_run.run_dir / "config.json").read_text())
    assert Config.from_dict(saved["config"]) == Config()
    assert saved["seed"] == 42
    assert saved["model"] == {"name": "tutorial", "in_features": 1, "out_features": 1}
    assert saved["versions"]["ptflow"] == ptflow.__version__
    assert saved["versions"]["torch"] == torch.__version__
    assert saved["versions"]["python"].count(".") == 2


def test_history_csv_has_one_row_per_epoch(tutorial_run: ptflow.RunResult) -> None:
    with open(tutorial_run.run_dir / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["epoch", "train_loss", "test_loss", "lr"]
    assert [int(row["epoch"]) for row in rows] == list(range(1, 201))
    assert [float(row["test_loss"]) for row in rows] == tutorial_run.history.eval_loss


def test_summary_json_matches_the_result(tutorial_run: ptflow.RunResult) -> None:
    summary = json.loads((tutorial_run.run_dir / "summary.json").read_text())
    assert summary["epochs"] == 200
    assert summary["true_parameters"] == {"weight": 0.7, "bias": 0.3}
    assert summary["parameters"]["weights"] == tutorial_run.model.state_dict()["weights"].tolist()
    weight, bias = summary["learned_parameters"]["weight"], summary["learned_parameters"]["bias"]
    assert abs(weight - 0.7) < 0.01 and abs(bias - 0.3) < 0.01
    assert summary["metrics"]["test"] == tutorial_run.metrics["test"].to_dict()
    assert summary["metrics"]["test"]["mae"] < 0.01
    assert set(summary["metrics"]) == {"train", "test"}
    assert summary["wall_s"] > 0


def test_load_run_restores_the_trained_model(tutorial_run: ptflow.RunResult) -> None:
    loaded = ptflow.load_run(tutorial_run.run_dir)
    assert loaded.config == Config()
    X = torch.linspace(-1, 2, 7).unsqueeze(1)
    assert torch.equal(ptflow.predict(loaded.model, X), ptflow.predict(tutorial_run.model, X))


def test_validation_runs_report_validation_metrics(tmp_path: Path) -> None:
    cfg = Config(val_fraction=0.1, train_fraction=0.7, epochs=5, model="linear")
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    assert set(result.metrics) == {"train", "val", "test"}
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,lr"


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WorkflowError, match="--overwrite"):
        ptflow.run_workflow(Config(epochs=2), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    ptflow.run_workflow(Config(epochs=2), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing staged left over


def test_a_crash_while_writing_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr("ptflow.workflow.plot_loss_curves", crash)
    with pytest.raises(RuntimeError, match="plotting failed"):
        ptflow.run_workflow(Config(epochs=2), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_default_run_dirs_are_unique(tmp_path: Path) -> None:
    first = ptflow.workflow.default_run_dir(tmp_path)
    first.mkdir()
    second = ptflow.workflow.default_run_dir(tmp_path)
    assert first != second and second.parent == tmp_path


@pytest.mark.parametrize("broken", ["missing", "no config", "bad json", "bad model"])
def test_load_run_explains_broken_folders(
    tmp_path: Path, broken: str, tutorial_run: ptflow.RunResult
) -> None:
    run_dir = tmp_path / "run"
    if broken != "missing":
        run_dir.mkdir()
        if broken != "no config":
            config = (tutorial_run.run_dir / "config.json").read_text()
            (run_dir / "config.json").write_text("{oops" if broken == "bad json" else config)
            (run_dir / "model.pt").write_bytes(b"garbage")
    with pytest.raises(WorkflowError):
        ptflow.load_run(run_dir)
