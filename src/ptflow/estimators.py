"""scikit-learn estimators over `ptflow.fit`: `Regressor` and `Classifier`.

They take ptflow's settings as their parameters (each `None` by default: what `ptflow
train` starts from), so `cross_val_score`, `GridSearchCV` and `Pipeline` work with them.
`fit(X, y)` takes a pandas DataFrame as it is (text categories, blanks, booleans, read by
ptflow's column rules and encoded inside the model) or a numeric array, validated as
scikit-learn validates one (missing values are imputed, as ptflow does).

Each fit splits its rows as `ptflow train` does, into training, validation (for early
stopping) and test rows (`run_.metrics["test"]`); scikit-learn's own scoring uses the rows
it holds out. Plots are not drawn (`plots=False`), which keeps many small fits fast.

scikit-learn is an optional extra: `pip install 'ptflow[sklearn]'`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ptflow.config import Config
from ptflow.errors import WorkflowError
from ptflow.fitting import Run, fit

if TYPE_CHECKING:
    import torch

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError:  # pragma: no cover - the extra is installed wherever tests run
    raise WorkflowError(
        "ptflow.Regressor and ptflow.Classifier need scikit-learn; pip install 'ptflow[sklearn]'."
    ) from None

__all__ = ["Classifier", "EstimatorError", "Regressor"]


class EstimatorError(WorkflowError, ValueError):
    """Bad input to an estimator: a ValueError too, which scikit-learn's tools expect."""


# Settings an estimator does not take: the data comes through fit(X, y), the task from the
# class, and a fit writes no checkpoints or plots worth keeping.
_NOT_PARAMETERS = frozenset(
    {
        "data", "target", "features", "format", "stream", "task", "weight", "bias",
        "start", "end", "step", "log_every", "checkpoint_every", "keep_checkpoints", "plots",
    }
)  # fmt: skip
PARAMETERS = (
    *(field.name for field in dataclasses.fields(Config) if field.name not in _NOT_PARAMETERS),
    "verbose",
)


class _Estimator(BaseEstimator):  # type: ignore[misc]
    """What both estimators share: parameters as ptflow settings, fit through `ptflow.fit`."""

    def __init__(self, **parameters: Any) -> None:
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown parameter(s) {', '.join(unknown)}; "
                f"its parameters are ptflow's settings: {', '.join(PARAMETERS)}"
            )
        for name in PARAMETERS:
            setattr(self, name, parameters.get(name))

    def _settings(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in PARAMETERS if name != "verbose"}
        return {name: value for name, value in given.items() if value is not None}

    def _fit_run(self, X: Any, y: NDArray[Any], target_kind: str) -> Run:
        frame = self._frame(X, reset=True)
        if len(frame) != len(y):
            raise EstimatorError(f"X has {len(frame)} rows and y {len(y)}; give one per row.")
        if len(frame) == 1:  # a split needs training, validation and test rows
            raise EstimatorError(
                "X has 1 sample; ptflow splits the rows into training, validation and test "
                "rows, and needs more."
            )
        names = ["y"] if y.ndim == 1 else [f"y{i}" for i in range(y.shape[1])]
        columns = {name: (y if y.ndim == 1 else y[:, i]) for i, name in enumerate(names)}
        clash = set(names) & set(frame.columns)
        if clash:
            raise EstimatorError(
                f"X has a column named {sorted(clash)[0]!r}, the name given to the target; "
                f"rename it."
            )
        frame = frame.assign(**columns)
        settings = {**_fractions(y, target_kind), **self._settings()}
        try:
            return fit(
                frame, names, task=target_kind, plots=False, progress=False,
                verbose=bool(self.verbose), **settings,
            )  # fmt: skip
        except WorkflowError as error:
            if type(error) is not WorkflowError:  # diverged or interrupted: not bad input
                raise
            raise EstimatorError(str(error)) from None

    def _frame(self, X: Any, *, reset: bool) -> Any:
        """X as a DataFrame of named columns: a DataFrame as it is, an array validated."""
        import pandas as pd

        if isinstance(X, pd.DataFrame):  # its names become text as ptflow reads it
            validate_data(self, X, reset=reset, skip_check_array=True)
            return X
        array = validate_data(self, X, reset=reset, ensure_all_finite="allow-nan")
        return pd.DataFrame({f"x{i}": array[:, i] for i in range(array.shape[1])})

    def _outputs(self, X: Any) -> torch.Tensor:
        """The model's outputs for X's rows (a classifier's logits), computed in float64:
        a float32 matrix product's last bit changes with the number of rows multiplied, so
        a row predicted alone and in a batch differed by up to 5e-7 here, more than
        scikit-learn's checks allow (1e-7); in float64 they agree to about 1e-15."""
        import torch

        check_is_fitted(self, "run_")
        frame = self._frame(X, reset=False)
        run: Run = self.run_
        try:
            return run._outputs(frame, "impute", dtype=torch.float64)
        except WorkflowError as error:
            raise EstimatorError(str(error)) from None

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # imputed with the training rows' median
        tags.non_deterministic = False  # the same seed gives the same model
        return tags


def _fractions(y: NDArray[Any], task: str) -> dict[str, float]:
    """`ptflow train`'s split (70% training, 15% validation, 15% test), widened on small
    data so that the validation and test parts each get at least one row (of each class,
    whose rows are split one class at a time): cross-validation folds can be small."""
    rows = len(y)
    if task == "classification":
        rows = int(np.unique(y, return_counts=True)[1].min())
    share = max(0.15, 1 / rows + 1e-6) if rows > 0 else 0.15
    if share >= 1 / 3:  # three parts of at least a row each, or ptflow's own refusal
        return {}
    return {"train_fraction": 1 - 2 * share, "val_fraction": share}


def _with_signature(cls: type[_Estimator]) -> type[_Estimator]:
    """Give `__init__` the explicit signature scikit-learn reads the parameters from."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in PARAMETERS
    ]
    init = cls.__init__

    def __init__(self: _Estimator, **parameters: Any) -> None:
        init(self, **parameters)

    __init__.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_with_signature
class Regressor(RegressorMixin, _Estimator):  # type: ignore[misc]
    """A ptflow model of one or more numeric targets, as a scikit-learn regressor.

    Parameters are ptflow's settings (`model="mlp"`, `hidden=(64, 64)`, `epochs`, `lr`,
    `categorical=("city",)`, ...), each None for what `ptflow train` starts from.
    After `fit`: `run_` (the `ptflow.Run`), `n_features_in_`, `feature_names_in_` for a
    DataFrame.
    """

    def fit(self, X: Any, y: Any) -> Regressor:
        y = _given_target(self, y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        y = _checked_numeric_target(y)
        self.run_ = self._fit_run(X, y, "regression")
        return self

    def predict(self, X: Any) -> NDArray[Any]:
        predicted: NDArray[np.float64] = self._outputs(X).numpy()
        return predicted[:, 0] if predicted.shape[1] == 1 else predicted

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _given_target(estimator: _Estimator, y: Any) -> NDArray[Any]:
    if y is None:
        raise EstimatorError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None."
        )
    return np.asarray(y)


def _checked_numeric_target(y: NDArray[Any]) -> NDArray[Any]:
    from sklearn.utils.validation import check_array

    checked: NDArray[Any] = check_array(
        y, ensure_2d=False, dtype="numeric", ensure_all_finite=True, input_name="y"
    )
    return checked.astype(np.float64)


@_with_signature
class Classifier(ClassifierMixin, _Estimator):  # type: ignore[misc]
    """A ptflow model of one target's classes, as a scikit-learn classifier.

    `classes_` are y's distinct values, sorted; `predict_proba`'s columns follow them.
    Parameters as `Regressor`'s, with `class_weight="balanced"` and `label_smoothing`.
    """

    def fit(self, X: Any, y: Any) -> Classifier:
        y = _given_target(self, y)
        self._frame(X, reset=True)  # X first: an empty or malformed X is named as such
        y = column_or_1d(y, warn=True)  # a column of classes: warned about, then taken
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise EstimatorError(
                f"y holds one class ({self.classes_[0]!r}); a classifier needs at least two."
            )
        self.run_ = self._fit_run(X, codes.astype(np.int64), "classification")
        return self

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        from ptflow.evaluation import probabilities

        shares = probabilities(self._outputs(X)).numpy()
        # the run's classes are y's codes, as text: its column j is class int(name)
        full = np.zeros((len(shares), len(self.classes_)))
        for j, name in enumerate(self.run_.classes):
            full[:, int(name)] = shares[:, j]
        return full

    def predict(self, X: Any) -> NDArray[Any]:
        shares = self.predict_proba(X)
        chosen: NDArray[Any] = self.classes_[shares.argmax(axis=1)]
        return chosen
