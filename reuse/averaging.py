"""Averaging: combine every learnware's output, with no labelled data (reference §6.2, fixed).

Unlike the reference, ``"mean"`` keeps the output columns (it averages across learnwares, not
across everything), and ``"vote_by_prob"`` averages probabilities as they are: rows that are
already distributions are not pushed through a softmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _combine
from ._base import Reuser
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

MODES = ("auto", "mean", "vote_by_label", "vote_by_prob")
#: Rows of X that ``fit`` runs the learnwares on, to learn their output widths.
PROBE_ROWS = 20


class Averaging(Reuser):
    """Average the outputs of several learnwares, or let them vote.

    Parameters
    ----------
    learnwares : list
        Objects with ``predict(X)`` (e.g. :class:`reuse.runner.Learnware`), all taking the
        same inputs.
    mode : {"auto", "mean", "vote_by_label", "vote_by_prob"}, default="auto"
        ``"mean"``: the mean output across learnwares, column by column (a regression;
        outputs must have the same width). ``"vote_by_prob"``: the mean of per-class
        probabilities; rows that are not distributions yet are normalised (divided by their
        sum when non-negative, else a softmax). ``"vote_by_label"``: a majority vote of
        class indices (one column, or the argmax of per-class scores); a tie goes to the
        smallest class index. ``"auto"``: ``"vote_by_prob"`` when every output has several
        columns and every row is a probability distribution, else ``"mean"``; decided in
        ``fit`` when it gets ``X``, else for each prediction. Votes return class indices
        ``0 … C-1``, the learnwares' own convention.
    weights : array-like of shape (n_learnwares,), optional
        Non-negative weight of each learnware in the mean, the probability average or the
        vote, e.g. a search's mixture weights (``result["mixture"]["weights"]``, in the order
        :func:`reuse.from_search` loads the members). Equal weights by default.

    Attributes
    ----------
    learnwares_ : list
        The learnwares, checked.
    mode_ : str
        The mode in use (``"auto"`` when it is decided for each prediction).
    n_features_in_ : int
        Input width, from ``X`` in ``fit`` or declared by the learnwares.
    n_outputs_ : int
        Common output width (``"mean"``, ``"vote_by_prob"``), when ``fit`` saw ``X``.
    classes_ : ndarray
        ``arange(C)`` for the vote modes, when ``fit`` saw ``X`` or ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> class Constant:
    ...     def __init__(self, p):
    ...         self.p = np.asarray(p, dtype=float)
    ...     def predict(self, X):
    ...         return np.tile(self.p, (len(X), 1))
    >>> X = np.zeros((3, 2))
    >>> avg = Averaging([Constant([0.8, 0.2]), Constant([0.2, 0.8]), Constant([0.6, 0.4])])
    >>> avg.fit(X).mode_
    'vote_by_prob'
    >>> avg.predict_proba(X)[0].round(3).tolist(), avg.predict(X).tolist()
    ([0.533, 0.467], [0, 0, 0])
    """

    def __init__(self, learnwares: Any, mode: str = "auto", weights: Any = None):
        self.learnwares = learnwares
        self.mode = mode
        self.weights = weights

    def _task(self) -> str | None:
        if self.mode == "mean":
            return "regression"
        if self.mode in ("vote_by_label", "vote_by_prob"):
            return "classification"
        return None

    def fit(self, X: Any = None, y: Any = None) -> Averaging:
        """Check the learnwares; with ``X``, also check their outputs agree and decide
        ``"auto"``. ``y`` (class indices) only fixes the number of classes of the votes."""
        if self.mode not in MODES:
            raise ValueError(
                f"mode must be one of {', '.join(map(repr, MODES))}; got {self.mode!r}"
            )
        learnwares = check_learnwares(self.learnwares)
        width = expected_width(learnwares)
        for attr in ("n_features_in_", "n_outputs_", "classes_"):
            self.__dict__.pop(attr, None)
        self.learnwares_ = learnwares
        self.weights_ = _check_weights(self.weights, len(learnwares))
        self.mode_ = self.mode
        n_classes = 0
        if X is not None:
            X = check_X(X, n_features=width)
            width = X.shape[1]
            outputs = collect_outputs(learnwares, X[:PROBE_ROWS])
            self.mode_, combined = self._merge(outputs, self.mode)
            if self.mode_ != "vote_by_label":
                self.n_outputs_ = combined.shape[1]
            n_classes = combined.shape[1]
        if width is not None:
            self.n_features_in_ = width
        if self.mode_ in ("vote_by_label", "vote_by_prob"):
            if y is not None:
                n = X.shape[0] if X is not None else len(y)
                labels = check_class_indices(check_y(y, n))
                n_classes = max(n_classes, int(labels.max()) + 1)
            if n_classes:
                self.classes_ = np.arange(n_classes)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Class indices for the vote modes; the mean output otherwise, of shape
        (n_samples,) for one output column, else (n_samples, n_outputs)."""
        return self._predict_task(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean class probabilities (``"vote_by_prob"``) or vote shares
        (``"vote_by_label"``), of shape (n_samples, n_classes)."""
        mode, combined = self._run(X)
        if mode == "mean":
            raise ValueError(
                "predict_proba needs class outputs, but these learnwares' outputs are averaged "
                "as a regression (mode 'mean'); set mode='vote_by_prob' or 'vote_by_label'"
            )
        return combined

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        mode, combined = self._run(X)
        if mode == "mean":
            return "regression", combined[:, 0] if combined.shape[1] == 1 else combined
        return "classification", _combine.winners(combined)

    def _run(self, X: Any) -> tuple[str, np.ndarray]:
        check_is_fitted(self, "learnwares_")
        X = check_X(X, n_features=getattr(self, "n_features_in_", None))
        return self._merge(collect_outputs(self.learnwares_, X), self.mode_)

    def _merge(self, outputs: list[np.ndarray], mode: str) -> tuple[str, np.ndarray]:
        learnwares = self.learnwares_
        if mode == "auto":
            mode = "vote_by_prob" if _combine.looks_like_probabilities(outputs) else "mean"
        at_least = len(getattr(self, "classes_", ()))
        if mode == "mean":
            common_width(outputs, learnwares, "mode 'mean' averages them column by column")
            return mode, _combine.weighted_mean(outputs, self.weights_)
        if mode == "vote_by_prob":
            width = common_width(
                outputs, learnwares, "mode 'vote_by_prob' needs one probability per class"
            )
            if width < 2:
                raise ValueError(
                    "mode 'vote_by_prob' needs per-class scores, but the learnwares return one "
                    "column; use mode='vote_by_label' for class indices"
                )
            probs = [_combine.to_distributions(o) for o in outputs]
            mean = _combine.weighted_mean(probs, self.weights_)
            return mode, _combine.pad_columns(mean, at_least)
        labels = np.stack(
            [
                _combine.as_labels(o, name(lw, i))
                for i, (lw, o) in enumerate(zip(learnwares, outputs, strict=True))
            ]
        )
        n_classes = _combine.n_classes_of(outputs, labels, at_least)
        return mode, _combine.weighted_votes(labels, n_classes, self.weights_)


def _check_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"weights must be {n} finite non-negative numbers (one per learnware) with a "
            f"positive sum; got {np.asarray(weights).tolist()!r}"
        )
    return w
