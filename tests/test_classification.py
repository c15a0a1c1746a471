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
