"""Real public tables with categorical columns and missing values, and scikit-learn's
models fitted on the same training rows, to compare ptflow's defaults with.

The files in tests/data were written once from packages that ship them offline (see
tests/data/README.md for sources and licences). Run `python -m tests.real_tables` to print
the README's table.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"

# file, target
TABLES = {
    "penguins": ("penguins.csv", "body_mass_g"),
    "msleep": ("msleep.csv", "sleep_total"),
    "cars": ("cars.csv", "Miles_per_Gallon"),
    "txhousing": ("txhousing.csv", "median"),
}


# file, target: classification (issue 17)
CLASS_TABLES = {
    "penguins": ("penguins.csv", "species"),
    "iris": ("iris.csv", "species"),
    "wine": ("wine.csv", "cultivar"),
    "breast cancer": ("breast_cancer.csv", "diagnosis"),
}


def r2(y: np.ndarray[Any, Any], y_pred: np.ndarray[Any, Any]) -> float:
    return float(1 - ((y - y_pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def sklearn_scores(path: Path, target: str, run_dir: Path) -> dict[str, float]:
    """Test R² of scikit-learn's models on the rows and columns a ptflow run used.

    The features are the run's (its encoding.json), one-hot and median-imputed with
    was-missing indicators, fitted on the run's training rows (split_indices.npz holds
    the file's row numbers), as ptflow's own encoding is.
    """

    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, test, numeric, categorical = _run_rows(path, run_dir)
    y_train, y_test = train[target].to_numpy(float), test[target].to_numpy(float)

    def columns(scale: bool) -> ColumnTransformer:
        number_steps: list[Any] = [SimpleImputer(strategy="median", add_indicator=True)]
        if scale:
            number_steps.append(StandardScaler())
        category_steps = [
            SimpleImputer(strategy="constant", fill_value="(missing)"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        ]
        return ColumnTransformer(
            [("numbers", make_pipeline(*number_steps), numeric),
             ("categories", make_pipeline(*category_steps), categorical)]
        )  # fmt: skip

    ridge = make_pipeline(columns(scale=True), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    mlp = make_pipeline(
        columns(scale=True),
        MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=2000, random_state=0),
    )
    hgb = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=0)
    scores = {}
    for name, model in (("ridge", ridge), ("mlp", mlp)):
        if name == "mlp":  # scaled target too
            mean, std = y_train.mean(), y_train.std()
            model.fit(train, (y_train - mean) / std)
            scores[name] = r2(y_test, model.predict(test) * std + mean)
        else:
            model.fit(train, y_train)
            scores[name] = r2(y_test, model.predict(test))
    as_category = {name: "category" for name in categorical}
    hgb.fit(train[numeric + categorical].astype(as_category), y_train)
    scores["hgb"] = r2(y_test, hgb.predict(test[numeric + categorical].astype(as_category)))
    return scores


def _run_rows(path: Path, run_dir: Path) -> tuple[Any, Any, list[str], list[str]]:
    """A run's training and test rows of its file, read as scikit-learn takes them, and
    its numeric and categorical features (from its encoding.json)."""
    import json

    import pandas as pd

    from ptflow.tables import MISSING_MARKERS

    inputs = json.loads((run_dir / "encoding.json").read_text())["inputs"]
    categorical = [i["name"] for i in inputs if i["kind"] == "categorical"]
    numeric = [i["name"] for i in inputs if i["kind"] != "categorical"]
    frame = pd.read_csv(path, keep_default_na=False, na_values=list(MISSING_MARKERS))
    for name in categorical:
        frame[name] = frame[name].astype("string").astype(object).where(frame[name].notna(), None)
    words = {"true": 1.0, "yes": 1.0, "false": 0.0, "no": 0.0}
    for name in numeric:  # true/false and yes/no as 1/0
        if not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = frame[name].map(lambda v: words.get(str(v).lower(), np.nan))
    split = np.load(run_dir / "split_indices.npz")
    return frame.iloc[split["train"]], frame.iloc[split["test"]], numeric, categorical


def sklearn_class_scores(path: Path, target: str, run_dir: Path) -> dict[str, float]:
    """Test accuracy and log loss of scikit-learn's LogisticRegression (scaled, one-hot,
    median-imputed) and HistGradientBoostingClassifier on a ptflow run's rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, test, numeric, categorical = _run_rows(path, run_dir)
    y_train, y_test = train[target].astype(str), test[target].astype(str)
    columns = ColumnTransformer(
        [("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                   StandardScaler()), numeric),
         ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                      OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
          categorical)]
    )  # fmt: skip
    logistic = make_pipeline(columns, LogisticRegression(max_iter=10_000)).fit(train, y_train)
    hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    as_category = {name: "category" for name in categorical}
    hgb.fit(train[numeric + categorical].astype(as_category), y_train)
    hgb_test = test[numeric + categorical].astype(as_category)
    return {
        "logistic_accuracy": accuracy_score(y_test, logistic.predict(test)),
        "logistic_log_loss": log_loss(
            y_test, logistic.predict_proba(test), labels=logistic.classes_
        ),
        "hgb_accuracy": accuracy_score(y_test, hgb.predict(hgb_test)),
        "hgb_log_loss": log_loss(y_test, hgb.predict_proba(hgb_test), labels=hgb.classes_),
    }


def ptflow_class_scores(path: Path, target: str, folder: Path) -> dict[str, Any]:
    """Test accuracy and log loss of ptflow's default linear model and mlp, trained with no
    flags but the target and the model's name."""
    import ptflow

    scores: dict[str, Any] = {}
    for model in ("linear", "mlp"):
        cfg = ptflow.Config.for_table(str(path), target, model=model)
        result = ptflow.run_workflow(cfg, folder / model)
        assert result.task.name == "classification"
        scores[f"{model}_accuracy"] = result.metrics["test"].accuracy
        scores[f"{model}_log_loss"] = result.metrics["test"].log_loss
        scores[f"{model}_epochs"] = len(result.history)
        scores["run_dir"] = result.run_dir
    return scores


def ptflow_scores(path: Path, target: str, folder: Path, **changes: Any) -> dict[str, Any]:
    """Test R² of ptflow's default linear model, its default mlp and its least-squares
    baseline, trained with no flags but the model's name."""
    import ptflow

    scores: dict[str, Any] = {}
    for model in ("linear", "mlp"):
        cfg = ptflow.Config.for_table(str(path), target, model=model, **changes)
        result = ptflow.run_workflow(cfg, folder / model)
        scores[model] = result.metrics["test"].r2
        scores[f"{model}_epochs"] = len(result.history)
        if model == "linear":
            scores["least_squares"] = result.baseline_metrics["test"].r2
            scores["run_dir"] = result.run_dir
    return scores


def main() -> None:
    print("| table | rows | ptflow linear | ptflow mlp | least squares | Ridge | MLPRegressor "
          "| HistGradientBoosting |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, (file, target) in TABLES.items():
        with tempfile.TemporaryDirectory() as folder:
            ours = ptflow_scores(DATA / file, target, Path(folder))
            theirs = sklearn_scores(DATA / file, target, ours["run_dir"])
        rows = len((DATA / file).read_text().splitlines()) - 1
        print(
            f"| {name} (`{target}`) | {rows} | {ours['linear']:.3f} ({ours['linear_epochs']} "
            f"epochs) | {ours['mlp']:.3f} ({ours['mlp_epochs']} epochs) | "
            f"{ours['least_squares']:.3f} | {theirs['ridge']:.3f} | {theirs['mlp']:.3f} | "
            f"{theirs['hgb']:.3f} |",
            flush=True,
        )


def main_classes() -> None:
    print("| table | rows | classes | ptflow linear | ptflow mlp | LogisticRegression "
          "| HistGradientBoosting |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (file, target) in CLASS_TABLES.items():
        with tempfile.TemporaryDirectory() as folder:
            ours = ptflow_class_scores(DATA / file, target, Path(folder))
            theirs = sklearn_class_scores(DATA / file, target, ours["run_dir"])
            classes = len(__import__("json").loads(
                (ours["run_dir"] / "encoding.json").read_text())["classes"])  # fmt: skip
        rows = len((DATA / file).read_text().splitlines()) - 1
        print(
            f"| {name} (`{target}`) | {rows} | {classes} | "
            f"{ours['linear_accuracy']:.3f} / {ours['linear_log_loss']:.3f} | "
            f"{ours['mlp_accuracy']:.3f} / {ours['mlp_log_loss']:.3f} | "
            f"{theirs['logistic_accuracy']:.3f} / {theirs['logistic_log_loss']:.3f} | "
            f"{theirs['hgb_accuracy']:.3f} / {theirs['hgb_log_loss']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main_classes() if "--classes" in sys.argv else main()
    sys.exit(0)
