"""What every reuse estimator shares: scikit-learn tags that follow the task, and ``score``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags

TASKS = ("classification", "regression")


def check_task(task: Any, *, allow_auto: bool = False) -> str:
    allowed = (*TASKS, "auto") if allow_auto else TASKS
    if task not in allowed:
        raise ValueError(f"task must be one of {', '.join(map(repr, allowed))}; got {task!r}")
    return task


class Reuser(BaseEstimator):
    """Base of the reuse estimators.

    A subclass says which task it solves with :meth:`_task` (``None`` when that is only known
    from the learnwares' outputs); the scikit-learn tags (classifier or regressor, whether
    ``fit`` needs ``y``) and :meth:`score` follow from it.
    """

    _requires_y = False

    def _task(self) -> str | None:
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        task = self._task()
        if task == "classification":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif task == "regression":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        tags.target_tags.required = self._requires_y
        return tags

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        """The task the prediction turned out to be, and the prediction."""
        raise NotImplementedError

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy for a classification, R² for a regression (as scikit-learn's mixins)."""
        task, prediction = self._predict_task(X)
        if task == "classification":
            return float(accuracy_score(y, prediction, sample_weight=sample_weight))
        return float(r2_score(y, prediction, sample_weight=sample_weight))
