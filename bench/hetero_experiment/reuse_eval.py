"""Scoring one user's reuse of one learnware through the market's map: align with no label,
then a FeatureAugment over the aligned learnware on 10, 50, 100 labels, against the user's own
model on the same labels.

The alignment reads all of the user's rows, unlabelled (the pool and the test rows, what the
user's RKME was fit on); the aligned learnware runs **once** on them, and the labelled step
reads its outputs from then on (:class:`AlignedOutputs`): the same numbers a
``HeteroMapAlign.fit(X, y)`` would get from the package, without a sandboxed run per fit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from wharf.reuse import FeatureAugment, HeteroMapAlign
from wharf.reuse.feature_align import FeatureAlign

from bench.reuse_experiment.experiment import score, scratch_model

from .design import LearnwareDef, UserData, UserDef, seed_of


class AlignedOutputs:
    """An aligned learnware's outputs on the user's rows, looked up by row."""

    def __init__(self, X_all: np.ndarray, outputs: np.ndarray):
        self.rows = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(X_all))}
        self.outputs = np.asarray(outputs, dtype=np.float64).reshape(len(X_all), -1)

    def predict(self, X: Any) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        return self.outputs[[self.rows[row.tobytes()] for row in X]]


def align(
    learnware: Any, hmap: Any, user: UserDef, data: UserData, epochs: int
) -> tuple[AlignedOutputs, float]:
    """Align ``learnware`` to the user's columns with ``hmap``; its outputs on every user row
    and its error on the test rows (no label used)."""
    aligner = HeteroMapAlign(
        learnware, hmap, user.descriptions(), task=user.task, epochs=epochs, random_state=0
    )
    X_all = np.ascontiguousarray(data.X_all)
    aligner.fit(X_all)
    outputs = np.asarray(FeatureAlign._predict_task(aligner, X_all)[1], dtype=np.float64)
    cached = AlignedOutputs(X_all, outputs)
    return cached, score(user.task, cached.predict(data.X_test), data.y_test)


def true_columns(
    learnware: Any, definition: LearnwareDef, user: UserDef, data: UserData
) -> tuple[AlignedOutputs, float]:
    """``learnware`` on the user's rows with the true column correspondence, no alignment:
    each of its columns the user holds is copied, each it does not is 0 (the published mean,
    as the columns are standardised): what the alignment would give if it found every
    column the user shares with the learnware and knew nothing of the others."""
    X_all = np.ascontiguousarray(data.X_all)
    inputs = np.zeros((len(X_all), len(definition.columns)))
    for j, column in enumerate(definition.columns):
        if column in user.columns:
            inputs[:, j] = X_all[:, user.columns.index(column)]
    cached = AlignedOutputs(X_all, np.asarray(learnware.predict(inputs), dtype=np.float64))
    return cached, score(user.task, cached.predict(data.X_test), data.y_test)


def draw_labels(user: UserDef, data: UserData, n: int, seed: int) -> np.ndarray:
    """``n`` pool rows to label (two classes at least for a classification)."""
    rng = np.random.default_rng(seed_of("labels", user.key, n, seed))
    for _ in range(100):
        idx = rng.choice(len(data.X_pool), size=n, replace=False)
        if user.task == "regression" or len(np.unique(data.y_pool[idx])) >= 2:
            return idx
    raise RuntimeError(f"{user.key}: no sample of {n} labels holds two classes")


def labelled_errors(
    user: UserDef,
    data: UserData,
    aligned: AlignedOutputs | None,
    labels: tuple[int, ...],
    seeds: tuple[int, ...],
) -> dict[int, list[float]]:
    """Error of FeatureAugment over ``aligned`` (or, with ``None``, of the user's own model)
    for every label count the pool allows and every seed."""
    from sklearn.exceptions import ConvergenceWarning

    out: dict[int, list[float]] = {}
    for n in labels:
        if n > len(data.X_pool):
            continue
        for seed in seeds:
            idx = draw_labels(user, data, n, seed)
            X, y = data.X_pool[idx], data.y_pool[idx]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)
                if aligned is None:
                    model = scratch_model(user.task, y).fit(X, y)
                else:
                    model = FeatureAugment([aligned], task=user.task).fit(X, y)
            out.setdefault(n, []).append(score(user.task, model.predict(data.X_test), data.y_test))
    return out
