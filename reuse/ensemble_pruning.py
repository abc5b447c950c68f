"""Ensemble pruning: keep the learnwares whose combination does best on a little labelled
data (the reference's §6.3 goal, without its geatpy evolutionary solver)."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _combine
from ._base import Reuser, check_task
from ._checks import (
    check_class_indices,
    check_learnwares,
    check_X,
    check_y,
    collect_outputs,
    common_width,
    expected_width,
    name,
)
from ._subset_search import exact_search, greedy_search

#: Up to this many learnwares every subset is tried (2^12 − 1 = 4095 subsets).
EXACT_LIMIT = 12
#: Numbers per batch of candidate ensembles evaluated at once (bounds memory).
BATCH_NUMBERS = 4_000_000


class EnsemblePruning(Reuser):
    """Choose the subset of learnwares whose combined prediction fits labelled data best.

    The learnwares are run once on the labelled data. With up to 12 learnwares every
    non-empty subset (of at most ``max_size``) is scored, equally weighted. With more, a
    greedy search runs instead: forward selection *with replacement* (a learnware may count
    several times, which weights it) from the best single learnware, adding the copy that
    helps most while one does, then backward elimination of copies whose removal does not
    hurt. Either way, of equally good ensembles the smaller one wins.

    Classification combines per-class scores by averaging probabilities when every learnware
    returns scores of the same width, otherwise by a majority vote of class indices (ties to
    the smallest index); the objective is the error rate. Regression averages outputs; the
    objective is the mean squared error.

    Parameters
    ----------
    learnwares : list
        Objects with ``predict(X)``, all taking the same inputs.
    task : {"classification", "regression"}, default="classification"
        For classification, ``y`` holds the class indices the learnwares predict (0 … C-1).
    max_size : int, optional
        At most this many distinct learnwares are kept (default: no limit).
    random_state : int, Generator or None, default=0
        Orders equally good candidates in the greedy search (more than 12 learnwares); the
        exact search does not use it.

    Attributes
    ----------
    learnwares_ : list
        The learnwares, checked.
    counts_ : ndarray of shape (n_learnwares,)
        How many times each learnware counts in the ensemble (0: pruned).
    weights_ : ndarray of shape (n_learnwares,)
        ``counts_`` normalised to sum to 1.
    selected_ : ndarray
        Indices of the kept learnwares.
    objective_ : float
        Error rate or mean squared error of the chosen ensemble on the data ``fit`` saw.
    search_ : str
        ``"exact"`` or ``"greedy"``.
    combine_ : str
        ``"probabilities"``, ``"vote"`` (classification) or ``"mean"`` (regression).
    classes_ : ndarray
        ``arange(C)`` (classification).
    n_features_in_ : int
        Width of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> class Noisy:
    ...     def __init__(self, noise, seed):
    ...         self.noise, self.rng = noise, np.random.default_rng(seed)
    ...     def predict(self, X):
    ...         return X[:, :1] + self.noise * self.rng.normal(size=(len(X), 1))
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> pruner = EnsemblePruning([Noisy(0.1, 1), Noisy(0.1, 2), Noisy(5.0, 3)],
    ...                          task="regression").fit(X, X[:, 0])
    >>> pruner.selected_.tolist()
    [0, 1]
    """

    _requires_y = True

    def __init__(
        self,
        learnwares: Any,
        task: str = "classification",
        max_size: int | None = None,
        random_state: Any = 0,
    ):
        self.learnwares = learnwares
        self.task = task
        self.max_size = max_size
        self.random_state = random_state

    def _task(self) -> str | None:
        return self.task if self.task in ("classification", "regression") else None

    def fit(self, X: Any, y: Any) -> EnsemblePruning:
        """Run every learnware on ``X`` and keep the best-scoring combination for ``y``."""
        task = check_task(self.task)
        learnwares = check_learnwares(self.learnwares)
        m = len(learnwares)
        max_size = m if self.max_size is None else self.max_size
        if not isinstance(max_size, numbers.Integral) or max_size < 1:
            raise ValueError(f"max_size must be None or an integer ≥ 1; got {self.max_size!r}")
        max_size = min(int(max_size), m)
        X = check_X(X, n_features=expected_width(learnwares))
        self.learnwares_ = learnwares
        self.n_features_in_ = X.shape[1]
        outputs = collect_outputs(learnwares, X)
        if task == "classification":
            evaluate = self._classification_objective(outputs, check_y(y, len(X)))
        else:
            evaluate = self._regression_objective(outputs, check_y(y, len(X)))
        if m <= EXACT_LIMIT:
            counts, value = exact_search(evaluate, m, max_size)
            self.search_ = "exact"
        else:
            rng = np.random.default_rng(self.random_state)
            counts, value = greedy_search(evaluate, m, max_size, rng)
            self.search_ = "greedy"
        self.counts_ = counts
        self.weights_ = counts / counts.sum()
        self.selected_ = np.flatnonzero(counts)
        self.objective_ = value
        return self

    def _classification_objective(self, outputs: list[np.ndarray], y: np.ndarray):
        labels = check_class_indices(y)
        widths = {o.shape[1] for o in outputs}
        if len(widths) == 1 and min(widths) > 1:
            self.combine_ = "probabilities"
            n_classes = max(widths.pop(), int(labels.max()) + 1)
            stacked = np.stack(
                [_combine.pad_columns(_combine.to_distributions(o), n_classes) for o in outputs]
            )
            normalise = True
        else:
            self.combine_ = "vote"
            votes = np.stack(
                [
                    _combine.as_labels(o, name(lw, i))
                    for i, (lw, o) in enumerate(zip(self.learnwares_, outputs, strict=True))
                ]
            )
            n_classes = _combine.n_classes_of(outputs, votes, int(labels.max()) + 1)
            stacked = np.eye(n_classes, dtype=np.int64)[votes]  # (m, n, C) one-hot votes
            normalise = False
        self.classes_ = np.arange(n_classes)

        def errors(W: np.ndarray) -> np.ndarray:
            W = W / W.sum(axis=1, keepdims=True) if normalise else W
            return _batched(W, stacked, lambda s: (_combine.winners(s) != labels).mean(axis=1))

        return errors

    def _regression_objective(self, outputs: list[np.ndarray], y: np.ndarray):
        target = y.astype(np.float64).reshape(len(y), -1)
        width = common_width(outputs, self.learnwares_, "their mean is compared with y")
        if width != target.shape[1]:
            raise ValueError(
                f"y has {target.shape[1]} output column(s) but the learnwares return {width}; "
                f"y must have shape (n_samples,{'' if width == 1 else f' {width}'})"
            )
        self.combine_ = "mean"
        self.n_outputs_ = width
        self._y_1d = y.ndim == 1
        stacked = np.stack(outputs)

        def mse(W: np.ndarray) -> np.ndarray:
            W = W / W.sum(axis=1, keepdims=True)
            return _batched(W, stacked, lambda p: ((p - target) ** 2).mean(axis=(1, 2)))

        return mse

    def predict(self, X: Any) -> np.ndarray:
        """The kept learnwares' combined prediction: class indices, or the weighted mean
        output (shape (n_samples,) when ``y`` was 1-D)."""
        return self._predict_task(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Weighted mean probabilities, or vote shares, of shape (n_samples, n_classes)."""
        check_is_fitted(self, "counts_")
        if self.task != "classification":
            raise ValueError("predict_proba is only available for task='classification'")
        return self._combined(X)

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        check_is_fitted(self, "counts_")
        combined = self._combined(X)
        if self.combine_ == "mean":
            return "regression", combined[:, 0] if self._y_1d else combined
        return "classification", _combine.winners(combined)

    def _combined(self, X: Any) -> np.ndarray:
        X = check_X(X, n_features=self.n_features_in_)
        kept = [self.learnwares_[i] for i in self.selected_]
        copies = self.counts_[self.selected_]
        outputs = collect_outputs(kept, X)
        if self.combine_ == "mean":
            return _combine.weighted_mean(outputs, copies)
        if self.combine_ == "probabilities":
            common_width(outputs, kept, "their probabilities are averaged")
            probs = [_combine.to_distributions(o) for o in outputs]
            return _combine.pad_columns(_combine.weighted_mean(probs, copies), len(self.classes_))
        votes = np.stack(
            [
                _combine.as_labels(o, name(lw, i))
                for i, (lw, o) in enumerate(zip(kept, outputs, strict=True))
            ]
        )
        n_classes = _combine.n_classes_of(outputs, votes, len(self.classes_))
        return _combine.weighted_votes(votes, n_classes, copies.astype(np.float64))


def _batched(
    W: np.ndarray, stacked: np.ndarray, objective: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``objective`` of Σ_i W[b, i] · stacked[i] for every candidate b, computed in batches
    of bounded size."""
    step = max(1, BATCH_NUMBERS // max(1, stacked[0].size))
    parts = [
        objective(np.tensordot(W[start : start + step].astype(np.float64), stacked, axes=1))
        for start in range(0, len(W), step)
    ]
    return np.concatenate(parts)
