"""ptflow.Regressor and ptflow.Classifier inside scikit-learn's tools, and its own checks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import ptflow
from ptflow.estimators import EstimatorError
from tests.test_fitting import _listings

# scikit-learn's checks that do not apply, and why (the README lists them too).
SKIPPED_CHECKS = {
    "check_class_weight_classifiers": (
        "class_weight is 'none' or 'balanced' in ptflow; a mapping of class to weight is "
        "not a setting"
    ),
}


@pytest.mark.slow  # 107 checks, a few fits each: about a minute
@parametrize_with_checks(  # type: ignore[untyped-decorator]
    [ptflow.Regressor(), ptflow.Classifier()], expected_failed_checks=lambda _: SKIPPED_CHECKS
)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' own warnings, which they test for
        check(estimator)


@pytest.mark.slow  # cross-validation: several fits
def test_a_raw_dataframe_in_cross_validation_and_a_grid_search() -> None:
    frame = _listings(rows=200)
    X, y = frame.drop(columns="price"), frame["price"]
    scores = cross_val_score(ptflow.Regressor(epochs=100), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9  # R² on each held-out fold
    search = GridSearchCV(ptflow.Regressor(epochs=60), {"lr": [0.001, 0.1]}, cv=2).fit(X, y)
    assert search.best_params_ == {"lr": 0.1}
    fitted = search.best_estimator_
    assert list(fitted.feature_names_in_) == ["listing_id", "city", "area", "garden"]
    assert fitted.run_.features == ("city", "area", "garden")  # the id column left out
    assert fitted.n_features_in_ == 4


@pytest.mark.slow  # cross-validation: several fits
def test_a_classifier_in_a_pipeline_keeps_the_labels_as_given() -> None:
    X, codes = load_iris(return_X_y=True)
    y = np.array(["setosa", "versicolor", "virginica"])[codes]
    pipeline = make_pipeline(StandardScaler(), ptflow.Classifier())
    assert cross_val_score(pipeline, X, y, cv=3).min() > 0.9
    classifier = ptflow.Classifier(seed=0).fit(X, y)
    assert list(classifier.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(classifier.predict(X)) <= set(classifier.classes_)
    shares = classifier.predict_proba(X[:5])
    assert shares.shape == (5, 3)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    assert classifier.score(X, y) > 0.9


def test_parameters_are_ptflow_settings() -> None:
    regressor = ptflow.Regressor(model="mlp", hidden=(8,))
    assert regressor.get_params()["model"] == "mlp" and regressor.get_params()["epochs"] is None
    assert repr(regressor) == "Regressor(hidden=(8,), model='mlp')"
    with pytest.raises(TypeError, match="unknown parameter"):
        ptflow.Regressor(modle="mlp")
    with pytest.raises(EstimatorError, match="setting 'model' must be one of"):
        ptflow.Regressor(model="forest").fit(np.zeros((20, 2)), np.arange(20.0))
    with pytest.raises(ValueError, match="requires y to be passed"):  # EstimatorError is one
        ptflow.Classifier().fit(np.zeros((20, 2)), None)


def test_small_folds_still_get_validation_and_test_rows() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    y = np.array([0, 1] * 6)
    classifier = ptflow.Classifier(epochs=5).fit(X, y)
    split = classifier.run_._summary["split_rows"]
    assert split["val"] >= 2 and split["test"] >= 2  # a row of each class in each


def test_a_row_is_predicted_alike_alone_and_among_others() -> None:
    # float32 matrix products change in the last bit with the number of rows (here up
    # to 5e-7 between 300 rows and one); the estimators compute in float64, as the
    # scikit-learn check of subset invariance (1e-7) needs on every machine.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = X @ rng.normal(size=5)
    regressor = ptflow.Regressor(model="mlp", epochs=3).fit(X, y)
    classifier = ptflow.Classifier(model="mlp", epochs=3).fit(X, np.where(y > 0, "a", "b"))
    for method in (regressor.predict, classifier.predict_proba):
        together = method(X)
        alone = np.concatenate([method(X[i : i + 1]) for i in range(len(X))])
        assert together.dtype == np.float64
        np.testing.assert_allclose(alone, together, rtol=1e-12, atol=1e-12)
    # the same model as the run's float32 predictions, to float32's precision
    in_float32 = regressor.run_.predict(X)
    np.testing.assert_allclose(regressor.predict(X), in_float32, rtol=1e-5, atol=1e-6)
