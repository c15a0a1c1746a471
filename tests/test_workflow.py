from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ptflow
from ptflow import Config, WorkflowError
from ptflow.run_folder import LINE_PLOTS, RUN_FILES
from ptflow.tasks import REGRESSION


def test_run_folder_holds_every_file(tutorial_run: ptflow.RunResult) -> None:
    assert sorted(p.name for p in tutorial_run.run_dir.iterdir()) == sorted(RUN_FILES + LINE_PLOTS)


def test_config_json_records_settings_seed_and_versions(tutorial_run: ptflow.RunResult) -> None:
    saved = json.loads((tutorial_run.run_dir / "config.json").read_text())
    assert Config.from_dict(saved["config"]) == Config()
    assert saved["seed"] == 42
    assert saved["model"] == {
        "name": "tutorial",
        "in_features": 1,
        "out_features": 1,
        "features": ["X"],
        "target": ["y"],
        "inputs": 1,
    }
    assert saved["versions"]["ptflow"] == ptflow.__version__
    assert saved["versions"]["torch"] == torch.__version__
    assert saved["versions"]["python"].count(".") == 2


def test_config_json_records_the_thread_count(tmp_path: Path) -> None:
    """Bit for bit holds at one thread count, so the record says which one trained."""
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # not a machine's usual count, so not recorded by chance
    try:
        ptflow.run_workflow(Config(epochs=2), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 3


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


def test_an_existing_folder_is_kept_and_only_a_run_folder_is_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WorkflowError, match="--overwrite"):
        ptflow.run_workflow(Config(epochs=2), out)
    with pytest.raises(WorkflowError, match=r"not a ptflow run folder.*'notes\.txt'"):
        ptflow.run_workflow(Config(epochs=2), out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    first = ptflow.run_workflow(Config(epochs=2), out)
    second = ptflow.run_workflow(Config(epochs=3), out, overwrite=True)
    assert len(first.history) == 2 and len(second.history) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES + LINE_PLOTS)
    assert ptflow.load_run(out).config == Config(epochs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing staged left over


def test_a_crash_while_writing_leaves_an_unfinished_run_that_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plotting failed")

    out = tmp_path / "run"
    monkeypatch.setattr("ptflow.workflow.plot_loss_curves", crash)
    with pytest.raises(RuntimeError, match="plotting failed"):
        ptflow.run_workflow(Config(epochs=2), out)
    assert not (out / "summary.json").exists()  # not marked finished
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file
    with pytest.raises(WorkflowError, match=r"unfinished run.*--resume"):
        ptflow.load_run(out)
    with pytest.raises(WorkflowError, match="unfinished run"):
        ptflow.run_workflow(Config(epochs=2), out)
    monkeypatch.undo()
    resumed = ptflow.resume_workflow(out)
    assert len(resumed.history) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES + LINE_PLOTS)
    assert ptflow.load_run(out).config == Config(epochs=2)


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


def _table_config(path: Path, **changes: object) -> Config:
    """What `ptflow train --data PATH --target y` starts from, with changes."""
    return Config.for_table(str(path), "y", **changes)


def test_a_linear_model_on_a_table_reaches_least_squares(
    tmp_path: Path, linear_table: Path
) -> None:
    cfg = _table_config(linear_table, epochs=300, lr=0.05)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    for part in ("train", "val", "test"):
        assert abs(result.metrics[part].r2 - result.baseline_metrics[part].r2) < 1e-3, part
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        (*RUN_FILES, *REGRESSION.table_plots, "encoding.json")
    )


def test_an_mlp_fits_a_curve_a_line_cannot(tmp_path: Path, sine_table: Path) -> None:
    cfg = _table_config(sine_table, features=("a", "b"), model="mlp", epochs=300, patience=30)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    assert result.metrics["test"].r2 > 0.95
    assert result.baseline_metrics["test"].r2 < 0.5


def test_table_run_records_split_scaling_and_fingerprint(tmp_path: Path, sine_table: Path) -> None:
    cfg = _table_config(sine_table, epochs=3)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    assert result.splits is not None
    saved = np.load(tmp_path / "run" / "split_indices.npz", allow_pickle=False)
    every = np.concatenate([saved["train"], saved["val"], saved["test"]])
    assert sorted(every.tolist()) == list(range(1500))  # a partition: no test row in training
    assert (len(saved["train"]), len(saved["val"]), len(saved["test"])) == (1050, 225, 225)
    assert torch.equal(torch.from_numpy(saved["test"]), result.splits.test_indices)

    state = result.model.state_dict()
    assert torch.allclose(state["x_mean"], result.splits.train.X.mean(dim=0), atol=1e-5)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["sha256"] == hashlib.sha256(sine_table.read_bytes()).hexdigest()
    assert summary["data"]["rows"] == 1500 and summary["features"] == ["a", "b", "noise"]
    assert set(summary["baseline_metrics"]) == {"train", "val", "test"}


def test_config_toml_reproduces_the_run(tmp_path: Path, sine_table: Path) -> None:
    import tomllib

    cfg = _table_config(sine_table, epochs=5, model="mlp", hidden=(8,), batch_size=64)
    ptflow.run_workflow(cfg, tmp_path / "first")
    saved = tomllib.loads((tmp_path / "first" / "config.toml").read_text())
    assert Config.from_dict(saved) == cfg
    ptflow.run_workflow(Config.from_dict(saved), tmp_path / "second")
    model_bytes = [(tmp_path / run / "model.pt").read_bytes() for run in ("first", "second")]
    assert model_bytes[0] == model_bytes[1]


def test_loaded_table_model_predicts_in_original_units(tmp_path: Path, sine_table: Path) -> None:
    result = ptflow.run_workflow(_table_config(sine_table, epochs=20), tmp_path / "run")
    loaded = ptflow.load_run(tmp_path / "run")
    assert loaded.features == ("a", "b", "noise") and loaded.target == ("y",)
    assert result.splits is not None
    X = result.splits.test.X
    assert torch.equal(ptflow.predict(loaded.model, X), ptflow.predict(result.model, X))


def test_several_targets_are_learned_and_reported_per_target(
    tmp_path: Path, sine_table: Path
) -> None:
    cfg = Config.for_table(str(sine_table), ["y", "noise"], features=("a", "b"), epochs=5)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    assert result.splits is not None
    assert result.splits.train.y.shape[1] == 2
    assert ptflow.predict(result.model, result.splits.test.X).shape == (225, 2)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["target"] == ["y", "noise"]
    loaded = ptflow.load_run(tmp_path / "run")
    assert loaded.target == ("y", "noise")


def test_a_run_starts_from_another_runs_weights(tmp_path: Path) -> None:
    first = ptflow.run_workflow(ptflow.Config(epochs=30), tmp_path / "first")
    again = ptflow.run_workflow(
        ptflow.Config(epochs=1, lr=1e-12, from_weights=str(first.run_dir)), tmp_path / "again"
    )
    for name, value in first.model.state_dict().items():  # its start: the first's end
        torch.testing.assert_close(again.model.state_dict()[name], value, rtol=0, atol=1e-9)
    with pytest.raises(ptflow.WorkflowError, match=r"the checkpoint's model|model file"):
        ptflow.run_workflow(  # another architecture: refused, naming what differs
            ptflow.Config(model="mlp", from_weights=str(first.run_dir)), tmp_path / "mlp"
        )
    assert not (tmp_path / "mlp").exists()


def test_the_resume_hint_keeps_the_runs_layout(tmp_path: Path) -> None:
    from ptflow.workflow import resume_command

    cfg = Config(data="fares.csv", target=("fare",))
    assert resume_command(cfg, Path("runs/f"), 1) == "ptflow train --resume runs/f"
    assert resume_command(cfg, Path("runs/f"), 2, 2) == "ptflow train --resume runs/f --nproc 2"
    on_two_machines = resume_command(cfg, Path("runs/f"), 4, 2)
    assert on_two_machines.startswith(
        "ptflow train --resume runs/f --nnodes 2 --nproc 2 --rdzv-endpoint HOST:PORT (on each"
    )
