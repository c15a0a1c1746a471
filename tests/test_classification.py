"""Classification, issue 17, so far: class targets read from tables, stratified splits, and
the metrics as running sums (the numbers scikit-learn gives, over blocks and across
processes' sums, on random predictions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ptflow.data import stratified_split
from ptflow.errors import WorkflowError
from ptflow.evaluation import AUC_BINS, ClassMetricSums
from ptflow.tables import class_order, load_table
from tests.conftest import Cli, RunCli, interrupted_and_resumed, same_bytes

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _random(classes: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = 1 if classes == 2 else classes
    logits = 2 * torch.randn(rows, width, generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (rows,), generator=generator)
    return logits, y


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    if logits.shape[1] == 1:
        second = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - second, second], dim=1).numpy()
    return torch.softmax(logits, dim=1).numpy()


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_the_sums_give_scikit_learns_metrics(classes: int) -> None:
    logits, y = _random(classes, 5000, seed=classes)
    sums = ClassMetricSums()
    for start in range(0, 5000, 1234):  # blocks of rows, the last one short
        sums.add(logits[start : start + 1234], y[start : start + 1234, None])
    got = sums.metrics()
    P, truth = _probabilities(logits), y.numpy()
    predicted = P.argmax(axis=1)
    assert got.accuracy == pytest.approx(
        sklearn_metrics.accuracy_score(truth, predicted), abs=1e-12
    )
    assert got.balanced_accuracy == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(truth, predicted), abs=1e-12
    )
    assert got.log_loss == pytest.approx(
        sklearn_metrics.log_loss(truth, P, labels=list(range(classes))), abs=1e-9
    )
    assert got.f1_macro == pytest.approx(
        sklearn_metrics.f1_score(truth, predicted, average="macro"), abs=1e-12
    )
    exact = (
        sklearn_metrics.roc_auc_score(truth, P[:, 1])
        if classes == 2
        else sklearn_metrics.roc_auc_score(truth, P, multi_class="ovr", average="macro")
    )
    assert abs(got.roc_auc - exact) < 1e-5  # the histogram's resolution (AUC_BINS)
    report = sklearn_metrics.precision_recall_fscore_support(truth, predicted)
    for k, row in enumerate(sums.per_class()):
        assert row["precision"] == pytest.approx(report[0][k], abs=1e-12)
        assert row["recall"] == pytest.approx(report[1][k], abs=1e-12)
        assert row["support"] == report[3][k]


def test_merged_and_packed_sums_are_the_sums_of_all_rows() -> None:
    logits, y = _random(4, 3000, seed=0)
    whole = ClassMetricSums()
    whole.add(logits, y)
    merged = ClassMetricSums()
    for share in (slice(0, 1000), slice(1000, 1001), slice(1001, 3000)):  # three processes
        part = ClassMetricSums()
        part.add(logits[share], y[share])
        merged.merge(ClassMetricSums.unpack(part.pack()))
    merged.merge(ClassMetricSums.unpack(ClassMetricSums().pack()))  # a process without rows
    assert merged.metrics() == whole.metrics()


@pytest.mark.parametrize("classes", [2, 4])
def test_roc_curves_and_calibration_are_scikit_learns(classes: int) -> None:
    from sklearn.calibration import calibration_curve

    logits, y = _random(classes, 3000, seed=5)
    sums = ClassMetricSums()
    sums.add(logits, y)
    P, truth = _probabilities(logits), y.numpy()
    for k in range(classes) if classes > 2 else [1]:
        false, true = sums.roc_curve(k)
        assert false[0] == true[0] == 0 and false[-1] == true[-1] == 1
        assert bool((false.diff() >= 0).all() and (true.diff() >= 0).all())
        area = float(torch.trapezoid(true, false))  # the curve's own area is its AUC
        assert area == pytest.approx(sums.auc(k), abs=1e-12)
        exact = sklearn_metrics.roc_auc_score(truth == k, P[:, k])
        assert area == pytest.approx(exact, abs=1e-5)
    mean, observed, counts = sums.reliability(bins=10)
    if classes == 2:
        scores, hits = P[:, 1], truth == 1
    else:  # every class's probability of every row, pooled
        scores, hits = P.T.flatten(), (truth[None, :] == np.arange(classes)[:, None]).flatten()
    theirs_true, theirs_mean = calibration_curve(hits, scores, n_bins=10)
    shown = ~torch.isnan(observed)
    assert counts.sum() == len(scores) and int(shown.sum()) == len(theirs_true)
    # Scores are binned at 1/65,536 first, so one in a thousand or so (of 12,000 pooled, a
    # couple) within that of an edge lands in the bin beside scikit-learn's.
    assert observed[shown].numpy() == pytest.approx(theirs_true, abs=1e-3)
    assert mean[shown].numpy() == pytest.approx(theirs_mean, abs=1e-4)


def test_ties_and_undefined_metrics_are_said_not_guessed() -> None:
    sums = ClassMetricSums()
    sums.add(torch.zeros(4, 1), torch.tensor([0, 1, 0, 1]))  # every score 0.5: all ties
    metrics = sums.metrics()
    assert metrics.roc_auc == 0.5 and metrics.log_loss == pytest.approx(math.log(2))
    one_class = ClassMetricSums()
    one_class.add(torch.randn(5, 3), torch.zeros(5))  # no row of classes 1 and 2
    assert math.isnan(one_class.metrics().roc_auc)
    assert one_class.per_class()[1]["support"] == 0 and math.isnan(
        one_class.per_class()[1]["recall"]
    )
    with pytest.raises(WorkflowError, match="class numbers must be 0 to 2"):
        ClassMetricSums().add(torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(WorkflowError, match="no rows to evaluate"):
        ClassMetricSums().metrics()


def test_the_auc_resolution_holds_for_confident_scores() -> None:
    """Scores crowded near 0 and 1, where bins of 1 / AUC_BINS matter most."""
    generator = torch.Generator().manual_seed(5)
    y = torch.randint(0, 2, (20_000,), generator=generator)
    logits = (4 * (2 * y - 1) + 3 * torch.randn(20_000, generator=generator)).double()
    sums = ClassMetricSums()
    sums.add(logits[:, None], y)
    exact = sklearn_metrics.roc_auc_score(y.numpy(), torch.sigmoid(logits).numpy())
    assert abs(sums.metrics().roc_auc - exact) < 1e-4
    assert AUC_BINS == 65_536  # the resolution the README states


def test_a_class_target_is_read_as_written_in_a_stated_order(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "x": np.arange(12.0),
            "species": ["Gentoo", "Adelie", None, "Chinstrap"] * 3,
            "flag": [True, False, True, True] * 3,
            "grade": [10, 2, 3, 2] * 3,
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        table = load_table(tmp_path / name, ["species"], ["x"], classes=True)
        assert table.classes == ("Adelie", "Chinstrap", "Gentoo")  # sorted
        assert table.y[:, 0].tolist() == [2, 0, 1] * 3  # rows without a class left out
        assert table.missing_target == 3
        roles = {role.name: role.detail for role in table.roles}
        assert roles["species"] == "classes, 3 values, 3 missing"
        assert load_table(tmp_path / name, ["flag"], ["x"], classes=True).classes == (
            "False",
            "True",
        )
        grades = load_table(tmp_path / name, ["grade"], ["x"], classes=True)
        assert grades.classes == ("2", "3", "10")  # numbers by value, not as text
        assert grades.y[:4, 0].tolist() == [2, 0, 1, 0]
    assert class_order(["b", "a", "10"]) == ("10", "a", "b")
    frame.assign(one="same").to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(WorkflowError, match="has one class \\('same'\\) in every row"):
        load_table(tmp_path / "one.csv", ["one"], ["x"], classes=True)
    with pytest.raises(WorkflowError, match="classification predicts one target column"):
        load_table(tmp_path / "t.csv", ["species", "flag"], ["x"], classes=True)


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_stratified_split_puts_every_class_in_every_part_it_can(shuffle: bool) -> None:
    y = torch.tensor([0] * 90 + [1] * 7 + [2] * 3, dtype=torch.float32)[:, None]
    X = torch.arange(100.0)[:, None]
    splits = stratified_split(X, y, 0.7, 0.15, shuffle=shuffle, seed=1)
    counts = {
        name: torch.bincount(part.y[:, 0].long(), minlength=3).tolist()
        for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))
        if part is not None
    }
    assert counts == {"train": [63, 4, 2], "val": [13, 1, 0], "test": [14, 2, 1]}  # floors
    every = torch.cat([splits.train_indices, splits.val_indices, splits.test_indices])
    assert sorted(every.tolist()) == list(range(100))  # each row in one part
    assert torch.equal(splits.train.X[:, 0].long(), splits.train_indices)
    again = stratified_split(X, y, 0.7, 0.15, shuffle=shuffle, seed=1)
    assert torch.equal(again.test_indices, splits.test_indices)  # the same on every run
    if not shuffle:  # file order within each part
        assert splits.train_indices.tolist() == sorted(splits.train_indices.tolist())


def _blobs(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """Three classes as text around three centres, a categorical column and a few gaps."""
    generator = np.random.default_rng(seed)
    label = generator.integers(0, 3, rows)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    points = centres[label] + generator.normal(size=(rows, 2))
    colour = np.array(["red", "blue"])[generator.integers(0, 2, rows)]
    names = np.array(["Adelie", "Chinstrap", "Gentoo"])[label]
    lines = [
        f"{'' if i % 50 == 7 else f'{x:.4f}'},{y:.4f},{c},{n}"
        for i, ((x, y), c, n) in enumerate(zip(points, colour, names, strict=True))
    ]
    path.write_text("x,y,colour,species\n" + "\n".join(lines) + "\n")
    return path


def test_a_text_target_trains_evaluates_and_predicts_classes_with_no_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from ptflow.cli import main

    data, run = _blobs(tmp_path / "blobs.csv"), tmp_path / "run"
    assert main(["train", "--data", str(data), "--target", "species", "--epochs", "300",
                 "--lr", "0.05", "--out", str(run)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "  species  target   classes, 3 values" in printed
    assert "classes of species: Adelie, Chinstrap, Gentoo" in printed
    assert "test, the majority class" in printed and "accuracy" in printed
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "classification" and summary["classes"] == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]
    test = summary["metrics"]["test"]
    assert test["accuracy"] > 0.85 and test["roc_auc"] > 0.95
    majority = summary["other_baselines"]["the majority class"]["test"]
    assert test["log_loss"] < majority["log_loss"] and majority["roc_auc"] == 0.5
    logistic = summary["baseline_metrics"]["test"]  # a linear model: about the same
    assert abs(test["accuracy"] - logistic["accuracy"]) < 0.05
    assert set(summary["per_class"]["Gentoo"]) == {"precision", "recall", "support"}
    for plot in ("confusion_matrix", "roc_curve", "calibration"):
        assert (run / f"{plot}.png").is_file()
    assert not (run / "residuals.png").exists()
    assert not (run / "decision_regions.png").exists()  # a categorical input: no plane
    report = (run / "report.html").read_text()
    assert "Test rows: ROC curve" in report and "true class against predicted" in report
    assert json.loads((run / "encoding.json").read_text())["classes"] == summary["classes"]

    new = tmp_path / "new.csv"
    new.write_text("x,y,colour\n0,0,red\n3,0,blue\n0,3,green\n,3,red\n")
    assert main(["predict", str(run), "--data", str(new)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "species_pred,species_prob_Adelie,species_prob_Chinstrap,species_prob_Gentoo"
    rows = [line.split(",") for line in out[1:]]
    assert [row[0] for row in rows[:3]] == ["Adelie", "Chinstrap", "Gentoo"]
    for row in rows:
        assert abs(sum(float(p) for p in row[1:]) - 1) < 1e-6

    scored = tmp_path / "scored.csv"
    scored.write_text("x,y,colour,species\n0,0,red,Adelie\n3,0,blue,Macaroni\n0,3,red,\n")
    assert main(["evaluate", str(run), "--data", str(scored), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["rows"] == 1 and measured["dropped_rows"] == 2
    assert measured["overall"]["accuracy"] == 1.0
    assert main(["evaluate", str(run), "--data", str(scored)]) == 0
    said = capsys.readouterr().out
    assert "1 row without a target value, 1 row of a class the model was not trained on" in said


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_threshold_moves_binary_predictions_and_nothing_else(tmp_path: Path, cli: Cli) -> None:
    generator = np.random.default_rng(3)
    x = generator.normal(size=400)
    churn = np.where(x + generator.normal(size=400) > 1, "yes", "no")
    data = tmp_path / "churn.csv"
    data.write_text("x,churn\n" + "".join(f"{a:.4f},{c}\n" for a, c in zip(x, churn, strict=True)))
    assert cli("train", "--data", str(data), "--target", "churn", "--epochs", "60",
               "--lr", "0.05", "--quiet", "--out", "run").code == 0  # fmt: skip
    default, low = (
        cli("predict", "run", "--data", str(data), *extra).out.splitlines()
        for extra in ([], ["--threshold", "0.2"])
    )
    said = cli("predict", "run", "--data", str(data), "--threshold", "0.2").err
    assert said == "predicting yes where p(yes) >= 0.2, no elsewhere\n"  # which class it moves
    assert (tmp_path / "run" / "decision_regions.png").is_file()  # along its one feature
    assert default[0] == low[0] == "churn_pred,churn_prob_no,churn_prob_yes"
    rows, low_rows = ([line.split(",") for line in lines[1:]] for lines in (default, low))
    assert [row[1:] for row in rows] == [row[1:] for row in low_rows]  # same probabilities
    for (pred, _, yes), (low_pred, _, _) in zip(rows, low_rows, strict=True):
        assert pred == ("yes" if float(yes) > 0.5 else "no")
        assert low_pred == ("yes" if float(yes) >= 0.2 else "no")
    assert sum(row[0] == "yes" for row in low_rows) > sum(row[0] == "yes" for row in rows)

    # A one-feature classifier takes --x too, and answers as --data does.
    answered = cli("predict", "run", "--x", "-3", "3", "--threshold", "0.2").out.splitlines()
    assert answered[0] == low[0] and [line.split(",")[0] for line in answered[1:]] == ["no", "yes"]

    blobs = _blobs(tmp_path / "blobs.csv", rows=90)
    assert cli("train", "--data", str(blobs), "--target", "species", "--epochs", "2",
               "--quiet", "--out", "three").code == 0  # fmt: skip
    for run, value, said in (
        ("three", "0.3", "error: --threshold decides between two classes, and this model "
         "predicts 3 classes; predict without --threshold.\n"),
        ("run", "1", "give a probability strictly between 0 and 1"),
    ):  # fmt: skip
        refused = cli("predict", run, "--data", str(blobs), "--threshold", value)
        assert refused.code == 2 and refused.out == "" and said in refused.err
        assert refused.err.startswith("error: ") and refused.err.count("\n") == 1


def test_predicted_classes_by_threshold() -> None:
    from ptflow.evaluation import predicted_classes

    shares = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    assert predicted_classes(shares).tolist() == [0, 0, 0, 1]  # ties: the first class
    assert predicted_classes(shares, 0.4).tolist() == [0, 1, 1, 1]
    assert predicted_classes(shares, 0.85).tolist() == [0, 0, 0, 0]
    with pytest.raises(WorkflowError, match="between two classes, and this model has 3"):
        predicted_classes(torch.full((1, 3), 1 / 3), 0.5)


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_csv_and_parquet_give_the_same_classes_and_probabilities(tmp_path: Path) -> None:
    import pandas as pd

    import ptflow

    csv = _blobs(tmp_path / "blobs.csv", rows=200)
    parquet = tmp_path / "blobs.parquet"
    pd.read_csv(csv).to_parquet(parquet)
    results = []
    for path in (csv, parquet):
        cfg = ptflow.Config.for_table(str(path), "species", epochs=20)
        results.append(ptflow.run_workflow(cfg, tmp_path / path.suffix[1:]))
    assert results[0].encoding == results[1].encoding
    assert results[0].task.name == "classification"
    X = results[0].splits.test.X  # type: ignore[union-attr]
    first, second = (ptflow.predict_proba(r.model, X) for r in results)
    assert torch.equal(first, second)
    assert torch.allclose(first.sum(dim=1), torch.ones(len(X)))


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_whole_number_target_is_regressed_with_a_hint_unless_classes_are_asked_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import ptflow

    generator = np.random.default_rng(1)
    x = generator.normal(size=300)
    flag = (x + 0.3 * generator.normal(size=300) > 0).astype(int)
    path = tmp_path / "flag.csv"
    path.write_text("x,default\n" + "\n".join(f"{a:.4f},{b}" for a, b in zip(x, flag, strict=True)))
    with caplog.at_level(logging.INFO, logger="ptflow.workflow"):
        regressed = ptflow.run_workflow(ptflow.Config.for_table(str(path), "default", epochs=3),
                                        tmp_path / "a")  # fmt: skip
    assert regressed.task.name == "regression"
    assert "if they are classes, pass --task classification" in caplog.text
    cfg = ptflow.Config.for_table(str(path), "default", epochs=200, lr=0.05, task="classification")
    classified = ptflow.run_workflow(cfg, tmp_path / "b")
    assert classified.task.name == "classification"
    assert classified.encoding is not None and classified.encoding.classes == ("0", "1")
    logits = ptflow.predict(classified.model, classified.splits.test.X)  # type: ignore[union-attr]
    assert logits.shape[1] == 1  # two classes: one logit, BCEWithLogitsLoss
    assert classified.metrics["test"].accuracy > 0.8


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_balanced_class_weights_lift_the_rare_class(tmp_path: Path) -> None:
    import ptflow

    generator = np.random.default_rng(2)
    rows = 2000
    rare = generator.random(rows) < 0.04
    x = generator.normal(size=rows) + 1.5 * rare
    path = tmp_path / "rare.csv"
    lines = (f"{a:.4f},{'yes' if r else 'no'}" for a, r in zip(x, rare, strict=True))
    path.write_text("x,churn\n" + "\n".join(lines) + "\n")
    scores = {}
    for weight in ("none", "balanced"):
        cfg = ptflow.Config.for_table(
            str(path), "churn", epochs=100, lr=0.05, class_weight=weight, patience=0
        )
        result = ptflow.run_workflow(cfg, tmp_path / weight)
        scores[weight] = result.metrics["test"].balanced_accuracy
    assert scores["balanced"] > scores["none"] + 0.1, scores


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_classifier_resumes_bit_for_bit(tmp_path: Path) -> None:
    import ptflow

    data = _blobs(tmp_path / "blobs.csv", rows=300)
    cfg = ptflow.Config.for_table(str(data), "species", model="mlp", hidden=(8,), epochs=6,
                                  batch_size=32, checkpoint_every=2, dropout=0.1)  # fmt: skip
    whole = ptflow.run_workflow(cfg, tmp_path / "whole").run_dir
    cut = interrupted_and_resumed(cfg, tmp_path, after_steps=25)
    assert same_bytes(cut, whole, ("model.safetensors", "history.csv", "encoding.json"))


@pytest.mark.slow  # a torchrun of two processes beside one process
@pytest.mark.parametrize("stream", [False, True])
def test_two_processes_classify_as_one(tmp_path: Path, run_cli: RunCli, stream: bool) -> None:
    import json

    import pandas as pd

    _blobs(tmp_path / "blobs.csv", rows=300)
    data = "blobs.csv"
    if stream:  # row groups of 64: each process reads its share of them
        pd.read_csv(tmp_path / data).to_parquet(tmp_path / "blobs.parquet", row_group_size=64)
        data = "blobs.parquet"
    common = ("--data", data, "--target", "species", "--epochs", "5", "--batch-size", "30",
              "--quiet", *(["--stream"] if stream else []))  # fmt: skip
    one = run_cli("train", *common, "--out", "one")
    two = run_cli("train", *common, "--out", "two", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    summaries = [
        json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two")
    ]
    for part in ("train", "val", "test"):
        for name, value in summaries[0]["metrics"][part].items():
            assert summaries[1]["metrics"][part][name] == pytest.approx(value, rel=1e-6), name
    assert summaries[0]["per_class"] == summaries[1]["per_class"]


@pytest.mark.parametrize("loader", ["load_iris", "load_wine", "load_breast_cancer"])
def test_the_logistic_baseline_is_scikit_learns_logistic_regression(loader: str) -> None:
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ptflow.evaluation import probabilities
    from ptflow.stats import fit_logistic

    X, y = getattr(datasets, loader)(return_X_y=True)
    classes = len(np.unique(y))
    fit = fit_logistic(torch.tensor(X), torch.tensor(y), classes)
    ours = probabilities(fit.predict(torch.tensor(X))).numpy()
    scaled = StandardScaler().fit_transform(X)
    theirs = LogisticRegression(max_iter=10_000).fit(scaled, y).predict_proba(scaled)
    assert np.abs(ours - theirs).max() < 5e-3  # the same penalty; the solvers stop apart
    assert sklearn_metrics.log_loss(y, ours) == pytest.approx(
        sklearn_metrics.log_loss(y, theirs), rel=1e-3
    )


@pytest.mark.slow  # 300 epochs and three runs: keeps the default suite under five minutes
def test_run_with_the_classification_task_learns_two_circles(cli: Cli, tmp_path: Path) -> None:
    import json
    import tomllib

    done = cli("run", "--task", "classification", "--out", "circles")
    assert done.code == 0, done.err
    assert "two circles of 1000 points" in done.out and "classes of label: 0, 1" in done.out
    run = tmp_path / "circles"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "classification" and summary["classes"] == ["0", "1"]
    assert summary["data"] == {"circles": 1000, "noise": 0.03}
    assert summary["metrics"]["test"]["accuracy"] >= 0.97  # the ring, found (0.995 here)
    assert summary["baseline_metrics"]["test"]["accuracy"] < 0.6  # no line separates them
    settings = tomllib.loads((run / "config.toml").read_text())
    assert settings["task"] == "classification" and settings["model"] == "mlp"
    assert settings["hidden"] == [10, 10] and settings["epochs"] == 300
    assert "weight" not in settings and "class_weight" in settings
    for plot in ("decision_regions", "confusion_matrix", "roc_curve", "calibration"):
        assert (run / f"{plot}.png").is_file()
    assert not (run / "predictions_after.png").exists()
    assert "two noisy circles" in (run / "report.html").read_text()
    listed = json.loads(cli("runs", str(tmp_path), "--json").out)
    assert {row["name"]: row["data"] for row in listed}["circles"] == "circles"
    # The line's run is as it was: no task in its settings, no circles.
    assert cli("run", "--epochs", "1", "--quiet", "--out", "line").code == 0
    line = tomllib.loads((tmp_path / "line" / "config.toml").read_text())
    assert "task" not in line and line["weight"] == 0.7
    # And options given win over the circles' defaults, as over any default.
    assert cli("run", "--task", "classification", "--epochs", "2", "--model", "linear",
               "--quiet", "--out", "short").code == 0  # fmt: skip
    short = json.loads((tmp_path / "short" / "summary.json").read_text())
    assert short["epochs"] == 2


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_yes_no_target_and_its_parquet_copy_score_each_others_runs(
    tmp_path: Path, cli: Cli
) -> None:
    import json

    generator = np.random.default_rng(4)
    x = generator.normal(size=300)
    paid = np.where(x + 0.5 * generator.normal(size=300) > 0, "yes", "no")
    (tmp_path / "paid.csv").write_text(
        "x,paid\n" + "".join(f"{a:.4f},{p}\n" for a, p in zip(x, paid, strict=True))
    )
    assert cli("convert", "paid.csv", "paid.parquet").code == 0  # yes/no become booleans
    for data, other in (("paid.csv", "paid.parquet"), ("paid.parquet", "paid.csv")):
        run = f"on-{data}"
        assert cli("train", "--data", data, "--target", "paid", "--epochs", "30", "--quiet",
                   "--out", run).code == 0  # fmt: skip
        mine, theirs = (
            json.loads(cli("evaluate", run, "--data", table, "--json").out)
            for table in (data, other)
        )
        assert theirs["rows"] == mine["rows"] == 300  # every row scored, none unseen
        assert theirs["overall"]["accuracy"] == mine["overall"]["accuracy"]
    classes = json.loads((tmp_path / "on-paid.parquet" / "summary.json").read_text())["classes"]
    assert classes == ["False", "True"]  # Parquet's booleans, as pyarrow writes them


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_classes_that_cannot_be_classes_are_one_clear_line(tmp_path: Path, cli: Cli) -> None:
    many = tmp_path / "many.csv"
    many.write_text("x,a\n" + "".join(f"{i},{i * 1.5}\n" for i in range(60)))
    refused = cli("train", "--data", str(many), "--target", "a", "--task", "classification",
                  "--out", "r")  # fmt: skip
    assert refused.code == 2 and not (tmp_path / "r").exists()
    assert refused.err == (
        "error: target column 'a' of many.csv has 60 distinct values in 60 rows, too many to "
        "be classes (most would have one row to learn from); predict it as numbers (--task "
        "regression), or choose another target.\n"
    )
    data = _blobs(tmp_path / "blobs.csv", rows=90)
    assert cli("train", "--data", str(data), "--target", "species", "--epochs", "2",
               "--quiet", "--out", "run").code == 0  # fmt: skip
    other = tmp_path / "other.csv"
    other.write_text("x,y,colour,species\n0,0,red,Emperor\n1,1,red,1.0\n")
    unseen = cli("evaluate", "run", "--data", str(other))
    assert unseen.code == 2 and unseen.err == (
        "error: no row of other.csv is of a class the model was trained on (Adelie, "
        "Chinstrap, Gentoo); its target holds 1.0, Emperor: check the target column (classes "
        "match as written: 1.0 is not 1).\n"
    )


def test_a_weighted_classifier_is_judged_by_balanced_accuracy() -> None:
    from ptflow.tasks import CLASSIFICATION

    ours = {"accuracy": 0.43, "balanced_accuracy": 0.71}
    theirs = {"accuracy": 0.97, "balanced_accuracy": 0.55}
    assert CLASSIFICATION.behind_baseline(ours, theirs) is not None  # by accuracy: behind
    by = CLASSIFICATION.judged_by({"class_weight": "balanced"})
    assert by == "balanced_accuracy" and CLASSIFICATION.behind_baseline(ours, theirs, by) is None
    assert CLASSIFICATION.judged_by({"class_weight": "none"}) is None
