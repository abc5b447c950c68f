"""Feature augmentation: learnware outputs become extra features of a model trained on a
little labelled data (reference §6.4, with current scikit-learn APIs)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._base import Reuser, check_task
from ._checks import check_learnwares, check_X, check_y, collect_outputs, expected_width

#: Regularisation grids of the default final models.
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
LOGISTIC_CS = np.logspace(-3, 3, 7)


class FeatureAugment(Reuser):
    """Train a model on the user's features plus every learnware's outputs.

    Parameters
    ----------
    learnwares : list
        Objects with ``predict(X)``, all taking the same inputs.
    task : {"classification", "regression"}, default="classification"
    estimator : scikit-learn estimator, optional
        The final model, cloned in ``fit``. By default standardisation followed by
        ``RidgeCV`` over ``alphas=logspace(-3, 3, 13)`` (regression), or by a
        ``LogisticRegression`` whose ``C`` is chosen among ``logspace(-3, 3, 7)`` by
        stratified cross-validation on log-loss (classification; plain ``C=1`` when a class
        has a single example).

    Attributes
    ----------
    learnwares_ : list
        The learnwares, checked.
    estimator_ : estimator
        The fitted final model.
    fill_values_ : ndarray of shape (n_features_in_,)
        Column means of the finite values of ``X`` in ``fit``; NaN and ±inf in ``X`` are
        replaced by them (0 for a column without finite values), before the learnwares see it.
    n_features_in_ : int
        Width of ``X``.
    n_augmented_features_ : int
        Width of the final model's input: the features plus all output columns.
    classes_ : ndarray
        The final model's classes (classification).

    Examples
    --------
    >>> import numpy as np
    >>> class Oracle:
    ...     def predict(self, X):
    ...         return np.sin(3 * X[:, :1])
    >>> X = np.random.default_rng(0).uniform(-1, 1, size=(60, 2))
    >>> model = FeatureAugment([Oracle()], task="regression").fit(X, np.sin(3 * X[:, 0]))
    >>> model.n_augmented_features_, round(model.score(X, np.sin(3 * X[:, 0])), 3)
    (3, 1.0)
    """

    _requires_y = True

    def __init__(self, learnwares: Any, task: str = "classification", estimator: Any = None):
        self.learnwares = learnwares
        self.task = task
        self.estimator = estimator

    def _task(self) -> str | None:
        return self.task if self.task in ("classification", "regression") else None

    def fit(self, X: Any, y: Any) -> FeatureAugment:
        """Fill non-finite values, append the learnwares' outputs, fit the final model."""
        task = check_task(self.task)
        learnwares = check_learnwares(self.learnwares)
        X = check_X(X, n_features=expected_width(learnwares), allow_nan=True)
        y = check_y(y, len(X), numeric=task == "regression")
        finite = np.isfinite(X)
        counts = finite.sum(axis=0)
        sums = np.where(finite, X, 0.0).sum(axis=0)
        self.fill_values_ = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        self.learnwares_ = learnwares
        self.n_features_in_ = X.shape[1]
        Z = self._augment(X)
        self.n_augmented_features_ = Z.shape[1]
        estimator = clone(self.estimator) if self.estimator is not None else default_model(task, y)
        self.estimator_ = estimator.fit(Z, y)
        if task == "classification" and hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The final model's prediction on the augmented features."""
        return self._predict_task(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """The final model's class probabilities (classification)."""
        check_is_fitted(self, "estimator_")
        if not hasattr(self.estimator_, "predict_proba"):
            raise AttributeError(
                f"the final model ({type(self.estimator_).__name__}) has no predict_proba"
            )
        return self.estimator_.predict_proba(self._transform(X))

    def transform(self, X: Any) -> np.ndarray:
        """The augmented features: ``X`` (non-finite values filled) and every output."""
        check_is_fitted(self, "estimator_")
        return self._transform(X)

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        check_is_fitted(self, "estimator_")
        return self.task, self.estimator_.predict(self._transform(X))

    def _transform(self, X: Any) -> np.ndarray:
        return self._augment(check_X(X, n_features=self.n_features_in_, allow_nan=True))

    def _augment(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isfinite(X), X, self.fill_values_)
        return np.hstack([X, *collect_outputs(self.learnwares_, X)])


def default_model(task: str, y: np.ndarray) -> Any:
    """The default final model: standardisation, then ridge (α by efficient leave-one-out)
    or logistic regression (C by stratified CV on log-loss when every class has ≥ 2 labels).
    Also what "training from scratch" means when reuse is compared with it."""
    if task == "regression":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    _, counts = np.unique(y, return_counts=True)
    folds = int(min(5, counts.min()))
    if len(counts) < 2 or folds < 2:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": LOGISTIC_CS},
        cv=StratifiedKFold(n_splits=folds),
        scoring="neg_log_loss",
    )
    return make_pipeline(StandardScaler(), search)
