"""Typed columns (issue 16): roles, categories, missing values, saved with the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ptflow
import ptflow.tables
from ptflow.cli import main
from ptflow.encoding import MISSING, UNSEEN, Encoding, Vocabulary, fit_encoding
from ptflow.errors import WorkflowError
from ptflow.tables import describe_roles, load_table
from tests.conftest import interrupted_and_resumed, same_bytes

HOUSES = """listing_id,city,area,rooms,age,garden,price
1,Leeds,70,3,12,yes,210
2,York,55,2,,no,180
3,Leeds,90,4,30,yes,260
4,Hull,40,1,5,no,95
5,York,,3,18,yes,220
6,Leeds,65,2,22,no,190
7,Hull,80,3,9,yes,170
8,York,100,4,40,no,300
9,Leeds,75,3,15,yes,230
10,Hull,50,2,,no,110
11,York,60,2,25,yes,200
12,Leeds,85,4,11,no,250
13,Hull,45,1,35,no,90
14,York,95,4,8,yes,310
15,Leeds,,3,20,yes,225
16,Hull,70,3,14,no,150
17,York,58,2,28,no,190
18,Leeds,88,4,6,yes,270
19,Hull,52,2,19,yes,120
20,York,77,3,,no,240
21,Leeds,66,2,33,yes,
22,Hull,90,4,12,no,185
23,York,48,1,16,yes,150
24,Leeds,72,3,21,no,215
"""


@pytest.fixture
def houses(tmp_path: Path) -> Path:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES)
    return path


def test_an_ordinary_business_table_gets_a_role_for_every_column(houses: Path) -> None:
    table = load_table(houses, ["price"], missing="impute")
    roles = {role.name: (role.role, role.detail) for role in table.roles}
    assert roles == {
        "listing_id": (
            "ignored",
            "looks like an identifier or row number; --numeric listing_id uses it",
        ),
        "city": ("feature", "categories, 3 values"),
        "area": ("feature", "numbers, 2 missing"),
        "rooms": ("feature", "numbers"),
        "age": ("feature", "numbers, 3 missing"),
        "garden": ("feature", "true/false as 1/0"),  # yes/no
        "price": ("target", "numbers, 1 missing"),
    }
    assert table.features == ("city", "area", "rooms", "age", "garden")
    assert table.kinds == ("categorical", "numeric", "numeric", "numeric", "boolean")
    # the row without a price is left out, and counted; the file's rows are kept
    assert len(table.X) == 23 and table.missing_target == 1 and table.dropped_rows == 1
    assert table.file_rows is not None and 20 not in table.file_rows.tolist()
    lines = describe_roles(table.roles).splitlines()
    assert lines[0] == "columns:" and lines[2].split() == [
        "city",
        "feature",
        "categories,",
        "3",
        "values",
    ]


def test_the_role_rules_can_be_overridden(houses: Path) -> None:
    table = load_table(
        houses, ["price"], missing="impute", numeric=["listing_id"], categorical=["rooms"],
        ignore=["age"],
    )  # fmt: skip
    assert table.features == ("listing_id", "city", "area", "rooms", "garden")
    assert dict(zip(table.features, table.kinds, strict=True))["rooms"] == "categorical"
    assert table.vocabularies["rooms"].values == ["3", "2", "4", "1"]  # as written, first read
    assert {r.name: r.detail for r in table.roles}["age"] == "--ignore"
    with pytest.raises(WorkflowError, match="in both --categorical and --ignore"):
        load_table(houses, ["price"], categorical=["city"], ignore=["city"])
    with pytest.raises(WorkflowError, match="is the target and in --numeric"):
        load_table(houses, ["price"], numeric=["price"])
    with pytest.raises(WorkflowError, match="has no column 'town'"):
        load_table(houses, ["price"], categorical=["town"])


def test_a_text_column_of_nearly_distinct_values_is_an_identifier(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    rows = [f"person {i},{'ab'[i % 2]},{i % 5},{i}" for i in range(30)]
    path.write_text("name,group,x,y\n" + "\n".join(rows) + "\n")
    table = load_table(path, ["y"])
    assert table.features == ("group", "x")
    detail = {r.name: r.detail for r in table.roles}["name"]
    assert (
        detail
        == "looks like an identifier (30 distinct values in 30 rows); --categorical name uses it"
    )
    assert load_table(path, ["y"], categorical=["name"]).features == ("name", "group", "x")


def test_a_numeric_column_with_a_typo_is_an_error_naming_the_cell(tmp_path: Path) -> None:
    path = tmp_path / "typo.csv"
    rows = [f"{i},{2 * i}" for i in range(40)]
    rows[6] = "five,12"
    path.write_text("rooms,price\n" + "\n".join(rows) + "\n")
    with pytest.raises(WorkflowError) as error:
        load_table(path, ["price"])
    assert "'five' at row 7 (line 8)" in str(error.value)
    assert "--categorical rooms" in str(error.value)
    assert load_table(path, ["price"], categorical=["rooms"]).kinds == ("categorical",)


def test_missing_values_are_an_error_or_drop_rows_when_asked(houses: Path) -> None:
    with pytest.raises(
        WorkflowError,
        match=r"missing value in column 'age' at row 2 \(line 3\); pass --missing impute",
    ):
        load_table(houses, ["price"], missing="error")
    dropped = load_table(houses, ["price"], missing="drop")
    assert len(dropped.X) == 18 and dropped.dropped_rows == 6 and dropped.missing_target == 1
    assert not torch.isnan(dropped.X).any()


def test_the_encoding_is_fitted_on_training_rows_and_reserves_unseen_and_missing() -> None:
    vocabulary = Vocabulary()
    import pandas as pd

    codes = vocabulary.codes(pd.Series(["b", "a", None, "b", "c"], dtype="str"))
    assert vocabulary.values == ["b", "a", "c"] and np.isnan(codes[2])
    raw = np.column_stack([codes, np.array([1.0, np.nan, 3.0, 5.0, 2.0], dtype=np.float32)])
    encoding = fit_encoding(
        raw[:4], ["letter", "x"], {"letter": "categorical", "x": "numeric"}, {"letter": vocabulary}
    )
    assert encoding.input_names == ("x", "x (was missing)", "letter")
    encoded, counts = encoding.encode(raw, {"letter": vocabulary})
    # x: median of 1, 3, 5 fills the gap, and an indicator says where; letter: sorted levels
    assert encoded[:, 0].tolist() == [1.0, 3.0, 3.0, 5.0, 2.0]
    assert encoded[:, 1].tolist() == [0, 1, 0, 0, 0]
    assert encoded[:, 2].tolist() == [3, 2, MISSING, 3, UNSEEN]  # "c" came after training
    assert counts.imputed == {"x": 1} and counts.unseen == {"letter": 1}
    assert counts.missing == {"letter": 1}  # said, not silently coded
    assert encoding.scaled == (True, False, False)
    assert Encoding.from_dict(json.loads(encoding.to_json())) == encoding
    with pytest.raises(WorkflowError, match="saved encoding of the columns is damaged"):
        Encoding.from_dict({"inputs": [{"name": "x", "kind": "numeric", "fill": "nan"}]})


def _effects_table(path: Path, rows: int = 600, seed: int = 0) -> None:
    """y = 2·x + an effect per city + noise: what a model should learn, per category."""
    generator = np.random.default_rng(seed)
    cities = np.array(["Leeds", "York", "Hull", "Bath"])
    effect = {"Leeds": 10.0, "York": -5.0, "Hull": 0.0, "Bath": 3.0}
    city = cities[generator.integers(0, 4, rows)]
    x = generator.normal(size=rows)
    y = 2 * x + np.array([effect[c] for c in city]) + generator.normal(scale=0.1, size=rows)
    x_text = [f"{v:.4f}" for v in x]
    for i in range(0, rows, 37):
        x_text[i] = ""  # a few blanks
    lines = [f"{c},{v},{t:.4f}" for c, v, t in zip(city, x_text, y, strict=True)]
    path.write_text("city,x,y\n" + "\n".join(lines) + "\n")


@pytest.mark.slow  # trains several runs: keeps the default suite under five minutes
def test_a_linear_model_learns_each_category_as_least_squares_does(tmp_path: Path) -> None:
    path = tmp_path / "effects.csv"
    _effects_table(path)
    cfg = ptflow.Config.for_table(str(path), "y", epochs=300, lr=0.05)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    test, baseline = result.metrics["test"].to_dict(), result.baseline_metrics["test"].to_dict()
    assert test["r2"] is not None and baseline["r2"] is not None
    assert baseline["r2"] > 0.95  # the categories are what explain y: they are used
    assert abs(test["r2"] - baseline["r2"]) < 0.01
    # and the saved model predicts the same from the raw file, by category
    # the coefficients, in the data's units: 2 per unit of x, and each city's own effect
    coefficients = json.loads((result.run_dir / "summary.json").read_text())["coefficients"]
    assert coefficients["inputs"]["x"] == pytest.approx(2.0, abs=0.05)
    effect = {"Leeds": 10.0, "York": -5.0, "Hull": 0.0, "Bath": 3.0}
    for city, shift in coefficients["categories"]["city"].items():
        assert coefficients["intercept"] + shift == pytest.approx(effect[city], abs=0.1), city
    run = ptflow.load_run(result.run_dir)
    assert run.encoding is not None and run.encoding.categorical[0].levels == (
        "Bath",
        "Hull",
        "Leeds",
        "York",
    )


def test_predict_and_evaluate_encode_raw_rows_and_say_what_they_did(
    houses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(houses),
                "--target",
                "price",
                "--out",
                str(run),
                "--epochs",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    new = tmp_path / "new.csv"
    new.write_text(
        "listing_id,city,area,rooms,age,garden\n30,Leeds,70,3,,yes\n31,Bath,60,2,10,no\n32,,80,,5,\n"
    )
    capsys.readouterr()
    assert main(["predict", str(run), "--data", str(new), "--id", "listing_id"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "listing_id,price_pred" and len(lines) == 4
    assert all(np.isfinite(float(line.split(",")[1])) for line in lines[1:])
    assert "imputed missing values with the training rows' median: rooms 1, age 1, garden 1" in err
    assert "categories not seen in training (encoded as unseen): city 1" in err
    assert main(["predict", str(run), "--data", str(new), "--missing", "error"]) == 2
    assert "missing value in column 'age' at row 1" in capsys.readouterr().err
    assert main(["predict", str(run), "--data", str(new), "--missing", "drop"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "left out 2 rows" in err
    assert main(["evaluate", str(run), "--data", str(houses)]) == 0
    assert "houses.csv: 23 rows (1 row without a target value left out)" in capsys.readouterr().out
    missing_column = tmp_path / "short.csv"
    missing_column.write_text("city,area,rooms,age\nLeeds,70,3,1\n")
    assert main(["predict", str(run), "--data", str(missing_column)]) == 2
    assert "has no column 'garden'" in capsys.readouterr().err
    changed = tmp_path / "changed.csv"
    changed.write_text("city,area,rooms,age,garden\nLeeds,big,3,1,yes\n")
    assert main(["predict", str(run), "--data", str(changed)]) == 2
    assert "non-numeric value 'big' at row 1" in capsys.readouterr().err


def test_csv_and_parquet_give_the_same_encoding_and_predictions(
    houses: Path, tmp_path: Path
) -> None:
    parquet = tmp_path / "houses.parquet"
    ptflow.convert_table(houses, parquet)  # integers become float64: 3.0 still reads "3"
    runs = {}
    for name, path in (("csv", houses), ("parquet", parquet)):
        cfg = ptflow.Config.for_table(str(path), "price", epochs=5, categorical=("rooms",))
        runs[name] = ptflow.run_workflow(cfg, tmp_path / name)
    encodings = [(r.run_dir / "encoding.json").read_text() for r in runs.values()]
    assert encodings[0] == encodings[1]
    assert '"3"' in encodings[0] and '"3.0"' not in encodings[0]
    csv_model, parquet_model = (ptflow.load_run(r.run_dir).model for r in runs.values())
    for key, value in csv_model.state_dict().items():
        assert torch.equal(value, parquet_model.state_dict()[key]), key


def test_split_indices_are_rows_of_the_file_when_rows_are_left_out(
    houses: Path, tmp_path: Path
) -> None:
    cfg = ptflow.Config.for_table(str(houses), "price", epochs=1)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    saved = np.load(result.run_dir / "split_indices.npz")
    rows = sorted(np.concatenate([saved["train"], saved["val"], saved["test"]]).tolist())
    assert rows == [row for row in range(24) if row != 20]  # row 21 has no price


@pytest.mark.slow  # two trainings and a resume
def test_an_mlp_embeds_categories_and_resumes_bit_for_bit(houses: Path, tmp_path: Path) -> None:
    cfg = ptflow.Config.for_table(str(houses), "price", model="mlp", epochs=6, checkpoint_every=3)
    whole = ptflow.run_workflow(cfg, tmp_path / "whole")
    resumed = ptflow.load_run(interrupted_and_resumed(cfg, tmp_path, after_steps=3))
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    widths = [m.embedding_dim for m in whole.model.modules() if isinstance(m, torch.nn.Embedding)]
    assert widths == [round(1.6 * 5**0.56)]  # 3 cities + unseen + missing


def _typed_parquet(path: Path, rows: int = 3000, group_rows: int = 256) -> Path:
    """Numbers with gaps, a true/false column and categories (some missing, one rare)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    generator = np.random.default_rng(4)
    a, b = generator.normal(5, 2, size=rows), generator.normal(size=rows)
    cities = np.array(["Leeds", "York", "Hull", "Bath", "Ely"])
    city = cities[generator.choice(5, size=rows, p=[0.4, 0.3, 0.2, 0.09, 0.01])]
    shift = {"Leeds": 1.0, "York": -2.0, "Hull": 0.5, "Bath": 3.0, "Ely": -1.0}
    garden = generator.random(rows) < 0.5
    y = 1.5 * a - b + np.vectorize(shift.get)(city) + 2 * garden
    y = y + 0.1 * generator.normal(size=rows)
    a[generator.random(rows) < 0.05] = np.nan
    city_cells = city.astype(object)
    city_cells[generator.random(rows) < 0.03] = None
    columns = {"a": a, "b": b, "city": city_cells, "garden": garden, "y": y}
    pq.write_table(pa.table(columns), path, row_group_size=group_rows)
    return path


def test_streaming_fits_the_encoding_an_in_memory_run_fits(tmp_path: Path) -> None:
    path = _typed_parquet(tmp_path / "typed.parquet")
    options = {"train_fraction": 0.6, "val_fraction": 0.2, "shuffle": False}
    streamed = ptflow.scan_table(path, ["y"], **options)  # type: ignore[arg-type]
    table = load_table(path, ["y"], missing="impute")
    splits = ptflow.split(table.X, table.y, 0.6, 0.2)
    kinds = dict(zip(table.features, table.kinds, strict=True))
    encoding = fit_encoding(splits.train.X.numpy(), table.features, kinds, table.vocabularies)
    assert streamed.encoding == encoding  # medians exact, the same categories and codes
    assert encoding.categorical[0].missing > 0 and encoding.numeric[0].indicator
    assert streamed.roles == table.roles
    train, _ = encoding.encode(splits.train.X.numpy(), table.vocabularies)
    scaling = ptflow.stats.fit_scaling(torch.from_numpy(train), splits.train.y)
    assert streamed.scaling is not None
    expected = scaling.only(encoding.scaled)
    for name in ("x_mean", "x_std", "y_mean", "y_std"):
        assert torch.allclose(getattr(streamed.scaling, name), getattr(expected, name), rtol=1e-6)
    test, _ = encoding.encode(splits.test.X.numpy(), table.vocabularies)
    design, _ = ptflow.models.baseline_design(encoding)
    fit = ptflow.stats.fit_least_squares(design(torch.from_numpy(train)), splits.train.y)
    test_X = torch.from_numpy(test)
    assert torch.allclose(streamed.predict_baseline(test_X), fit.predict(design(test_X)), atol=1e-4)
    assert streamed.counts.imputed["a"] == int(np.isnan(table.X[:, 0].numpy()).sum())


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_a_streamed_run_learns_categories_resumes_and_predicts_raw_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _typed_parquet(tmp_path / "typed.parquet")
    cfg = ptflow.Config.for_table(
        str(path), "y", stream=True, epochs=4, batch_size=128, lr=0.05, patience=0
    )
    whole = ptflow.run_workflow(cfg, tmp_path / "whole")
    assert whole.metrics["test"].r2 > 0.95  # the categories' shifts are learned
    assert whole.baseline_metrics["test"].r2 > 0.95  # rows with "a" missing are noise
    cut = interrupted_and_resumed(cfg, tmp_path, after_steps=30)
    assert same_bytes(cut, whole.run_dir, ("model.safetensors", "history.csv", "encoding.json"))
    new = tmp_path / "new.csv"
    new.write_text("a,b,city,garden\n5,0,York,true\n,0,Paris,false\n5,0,,true\n")
    assert main(["predict", str(tmp_path / "whole"), "--data", str(new)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.split()) == 4  # a header and three predictions
    assert "a 1" in captured.err and "city 1" in captured.err  # imputed, unseen, missing


def test_streaming_refuses_a_missing_value_only_when_asked(tmp_path: Path) -> None:
    path = _typed_parquet(tmp_path / "typed.parquet")
    with pytest.raises(WorkflowError, match="a missing value in column 'a' at row"):
        ptflow.scan_table(path, ["y"], missing="error")
    dropped = ptflow.scan_table(path, ["y"], missing="drop")
    assert dropped.dropped_rows > 0 and dropped.encoding is not None
    assert not any(column.indicator for column in dropped.encoding.numeric)


def test_a_streamed_column_of_too_many_values_is_an_identifier_or_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import ptflow.streaming

    monkeypatch.setattr(ptflow.streaming, "STREAM_MOST_CATEGORIES", 8)
    rows = 400
    shop = [f"shop{i % 20}" for i in range(rows)]  # 20 values, each in 20 rows
    x = np.arange(rows) % 7.0
    pq.write_table(pa.table({"shop": shop, "x": x, "y": 2 * x}), tmp_path / "t.parquet")
    inferred = ptflow.scan_table(tmp_path / "t.parquet", ["y"])
    roles = {role.name: role.detail for role in inferred.roles}
    assert roles["shop"].startswith("looks like an identifier (more than 8 distinct values)")
    named = ptflow.scan_table(tmp_path / "t.parquet", ["y"], categorical=["shop"])
    assert named.encoding is not None and len(named.encoding.categorical[0].levels) == 8
    assert named.capped == {"shop": rows - 8 * 20}


@pytest.mark.slow  # trains several runs: keeps the default suite under five minutes
def test_the_baseline_is_reproducible_when_a_one_hot_column_is_constant(tmp_path: Path) -> None:
    """Rank-deficient least squares (a category only in the test rows): one answer."""
    path = tmp_path / "rare.csv"
    lines = [f"{'a' if i < 95 else 'b'},{i % 7},{i % 7 * 2 + (i < 95)}" for i in range(100)]
    path.write_text("group,x,y\n" + "\n".join(lines) + "\n")
    cfg = ptflow.Config.for_table(str(path), "y", epochs=1, shuffle=False)
    scores = {
        ptflow.run_workflow(cfg, tmp_path / f"run{i}").baseline_metrics["test"].to_dict()["r2"]
        for i in range(3)
    }
    assert len(scores) == 1


def test_permutation_importance_finds_the_column_the_target_depends_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = np.random.default_rng(3)
    a, b = generator.normal(size=300), generator.normal(size=300)
    city = np.array(["x", "y", "z"])[generator.integers(0, 3, 300)]
    y = 3 * a + (city == "x") * 2 + generator.normal(scale=0.1, size=300)
    path = tmp_path / "t.csv"
    rows = (f"{u:.5f},{v:.5f},{c},{t:.5f}" for u, v, c, t in zip(a, b, city, y, strict=True))
    path.write_text("a,b,city,y\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--target", "y", "--epochs", "200", "--lr", "0.05",
                 "--out", str(run)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "Importance (the rise in MAE on the test rows when a column is shuffled): a " in printed
    importance = json.loads((run / "summary.json").read_text())["importance"]
    assert importance["metric"] == "mae" and importance["rows"] == "test"
    columns = importance["columns"]
    assert list(columns) == ["a", "city", "b"]  # largest first
    assert columns["a"] > 1.5 and columns["city"] > 0.3 and abs(columns["b"]) < 0.05
    assert "<h2>Importance</h2>" in (run / "report.html").read_text()
    reads = []
    original = ptflow.tables.iter_table

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr("ptflow.evaluation.iter_table", counted)
    assert main(["evaluate", str(run), "--data", str(path), "--importance", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert list(measured["importance"]) == ["a", "city", "b"]
    assert len(reads) == 1  # the metrics and the importance from one read of the file


def test_a_table_run_lists_only_the_settings_that_apply_to_it(houses: Path, tmp_path: Path) -> None:
    import tomllib

    from ptflow.config import relevant_settings

    cfg = ptflow.Config.for_table(str(houses), "price", epochs=2)
    run = ptflow.run_workflow(
        cfg, tmp_path / "run", command=["ptflow", "train", "--data", "x"]
    ).run_dir
    saved = tomllib.loads((run / "config.toml").read_text())
    assert "weight" not in saved and "hidden" not in saved and "momentum" not in saved
    assert saved["missing"] == "impute" and saved["patience"] == 0  # a linear fit: no stop
    page = (run / "report.html").read_text()
    assert "<title>ptflow train houses.csv</title>" in page
    assert "<th>weight</th>" not in page and "<th>missing</th>" in page
    assert "<h2>Coefficients</h2>" in page and "<th>city = Leeds</th>" in page
    coefficients = json.loads((run / "summary.json").read_text())["coefficients"]
    assert set(coefficients["inputs"]) == {"area", "rooms", "age", "garden", "area (was missing)",
                                          "age (was missing)"}  # fmt: skip
    # the same file, read back, is the same run
    assert ptflow.Config.for_table(**{"data": str(houses), "target": "price", **{
        k: v for k, v in saved.items() if k not in ("data", "target")
    }}) == cfg  # fmt: skip
    line = relevant_settings(ptflow.Config().to_dict())
    assert "weight" in line and "missing" not in line and "hidden" not in line
    assert "hidden" in relevant_settings(ptflow.Config(model="mlp").to_dict())


def test_parquet_columns_are_read_by_their_own_types(tmp_path: Path, houses: Path) -> None:
    """Dictionary (pandas categorical), nullable integer, nullable boolean and string."""
    import pandas as pd
    import pyarrow.parquet as pq

    frame = pd.DataFrame({
        "grade": pd.Categorical(["a", "b", "c", "a"] * 10),
        "count": pd.array([1, None, 3, 4] * 10, dtype="Int64"),
        "flag": pd.array([True, None, False, True] * 10, dtype="boolean"),
        "word": pd.array(["x", "y", None, "x"] * 10, dtype="string"),
        "y": np.arange(40) * 1.5 % 7,
    })  # fmt: skip
    frame.to_parquet(tmp_path / "typed.parquet")
    table = load_table(tmp_path / "typed.parquet", ["y"], missing="impute")
    assert table.kinds == ("categorical", "numeric", "boolean", "categorical")
    assert table.vocabularies["grade"].values == ["a", "b", "c"]
    assert torch.isnan(table.X[1, 1]) and table.X[0, 2] == 1.0 and table.X[2, 2] == 0.0
    # convert keeps text as text and true/false (yes/no) as booleans
    ptflow.convert_table(houses, tmp_path / "houses.parquet")
    schema = pq.read_schema(tmp_path / "houses.parquet")
    assert str(schema.field("city").type) == "string" and str(schema.field("garden").type) == "bool"


def test_a_setting_the_run_does_not_use_is_named_not_silently_ignored(
    houses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--data", str(houses), "--target", "price", "--epochs", "1"]
    assert main([*args, "--hidden", "8", "--momentum", "0.9", "--out", str(tmp_path / "a")]) == 0
    assert "note: --hidden, --momentum do not apply to this run (--model linear, --optimizer " \
        "adam" in capsys.readouterr().err  # fmt: skip
    assert main([*args, "--model", "mlp", "--hidden", "8", "--out", str(tmp_path / "b")]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_config_file_of_an_earlier_version_with_drop_missing_drops_rows(
    houses: Path, tmp_path: Path
) -> None:
    (tmp_path / "old.toml").write_text("drop_missing = true\n")
    args = ["train", "--data", str(houses), "--target", "price", "--epochs", "1", "--quiet"]
    assert main([*args, "--config", str(tmp_path / "old.toml"), "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["data"]["dropped_rows"] == 6  # 5 with a gap in a feature, 1 without a price
    assert json.loads((tmp_path / "a" / "config.json").read_text())["config"]["missing"] == "drop"


def test_a_column_of_more_values_than_a_code_can_hold_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pandas as pd

    import ptflow.encoding

    monkeypatch.setattr(ptflow.encoding, "MAX_CATEGORIES", 2)  # 2**24 - 2 in truth
    vocabulary = Vocabulary("code")
    with pytest.raises(WorkflowError, match="column 'code' has more than 2 distinct values"):
        vocabulary.codes(pd.Series(["a", "b", "c"], dtype="str"))


@pytest.mark.slow  # several runs: keeps the default suite under five minutes
def test_convert_keeps_missing_text_cells_missing_and_refuses_a_typo(
    tmp_path: Path, houses: Path
) -> None:
    import pyarrow.parquet as pq

    marked = tmp_path / "marked.csv"
    marked.write_text(HOUSES.replace("2,York,55,2,,no,180", "2,NA,55,2,-,no,180").replace(
        "4,Hull,40", "4,,40").replace("6,Leeds,65", "6,?,65"))  # fmt: skip
    parquet = tmp_path / "marked.parquet"
    ptflow.convert_table(marked, parquet)
    assert pq.read_table(parquet).column("city").null_count == 3  # NA, blank and ?
    encodings = []
    for path in (marked, parquet):
        cfg = ptflow.Config.for_table(str(path), "price", epochs=2, shuffle=False)
        encodings.append(ptflow.run_workflow(cfg, tmp_path / path.suffix[1:]).encoding)
    assert encodings[0] == encodings[1]
    assert encodings[0] is not None and "" not in encodings[0].categorical[0].levels
    lines = ["rooms,y", *(f"{i % 5},{i}" for i in range(60))]
    lines[7] = "five,6"
    typo = tmp_path / "typo.csv"
    typo.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkflowError, match="holds numbers but for 'five' at row 7 \\(line 8\\)"):
        ptflow.convert_table(typo, tmp_path / "typo.parquet")
    assert not (tmp_path / "typo.parquet").exists()
    ptflow.convert_table(typo, tmp_path / "typo.parquet", categorical=["rooms"])
    with pytest.raises(WorkflowError, match="'five' at row 7; fix that cell"):  # Parquet too
        load_table(tmp_path / "typo.parquet", ["y"])


def test_a_loaded_run_evaluates_and_predicts_raw_files(houses: Path, tmp_path: Path) -> None:
    cfg = ptflow.Config.for_table(str(houses), "price", epochs=5)
    result = ptflow.run_workflow(cfg, tmp_path / "run")
    run = ptflow.load_run(tmp_path / "run")
    measured = run.evaluate(houses)  # blanks imputed, cities coded, as in training
    assert measured.rows == 23 and measured.missing_target == 1
    outputs = run.predict(houses)
    assert outputs.shape == (24, 1)  # every row: predict needs no target
    assert result.splits is not None
    test_rows = torch.from_numpy(np.load(tmp_path / "run" / "split_indices.npz")["test"])
    assert torch.allclose(outputs[test_rows], ptflow.predict(result.model, result.splits.test.X))


def test_options_that_contradict_each_other_are_refused(
    houses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--data", str(houses), "--target", "price", "--out", str(tmp_path / "r")]
    cases = {
        ("--missing", "impute", "--drop-missing"): "--missing impute and --drop-missing disagree",
        ("--features", "city,area", "--categorical", "rooms"): "'rooms' is in --categorical but "
        "not in --features",
    }
    for extra, message in cases.items():
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_parquet_text_holding_numbers_or_yes_no_reads_as_a_csv_cell_would(
    tmp_path: Path,
) -> None:
    """Parquet written by another tool, every column as text: the CSV rules apply."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    generator = np.random.default_rng(0)
    xs: list[str | None] = [f"{v:.3f}" for v in generator.normal(size=200)]
    xs[5], xs[9] = "-", None
    flag = ["yes" if v > 0 else "no" for v in generator.normal(size=200)]
    city = [["Leeds", "York"][i % 2] for i in range(200)]
    y = [f"{i * 0.5}" for i in range(200)]
    columns = {"xs": xs, "flag": flag, "city": city, "y": y}
    pq.write_table(pa.table(columns), tmp_path / "text.parquet")
    rows = zip(*columns.values(), strict=True)
    lines = [",".join(cell or "" for cell in cells) for cells in rows]  # None: a blank cell
    (tmp_path / "text.csv").write_text("xs,flag,city,y\n" + "\n".join(lines) + "\n")
    tables = [
        load_table(tmp_path / name, ["y"], missing="impute")
        for name in ("text.csv", "text.parquet")
    ]
    assert tables[0].kinds == tables[1].kinds == ("numeric", "boolean", "categorical")
    assert torch.equal(tables[0].X.isnan(), tables[1].X.isnan())
    assert torch.allclose(tables[0].X.nan_to_num(), tables[1].X.nan_to_num())
    assert tables[0].roles == tables[1].roles
    bad = list(xs)
    bad[150] = "oops"
    pq.write_table(pa.table({**columns, "xs": bad}), tmp_path / "bad.parquet")
    with pytest.raises(WorkflowError, match="non-numeric value 'oops' at row 151"):
        load_table(tmp_path / "bad.parquet", ["y"], missing="impute", numeric=["xs"])
