"""Combining learnware outputs: means, probability averages and majority votes.

Outputs are 2-D float arrays (n_samples, n_columns). Class outputs follow the learnware
convention: one column holds the class index (0 … C−1); several columns hold one score per
class, the column being the class index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: How far a row's sum may be from 1 and still count as a probability distribution.
SUM_TOLERANCE = 1e-6


def distribution_rows(P: np.ndarray) -> np.ndarray:
    """Which rows of ``P`` are probability distributions already (non-negative, sum 1)."""
    return (P >= 0).all(axis=1) & (np.abs(P.sum(axis=1) - 1.0) <= SUM_TOLERANCE)


def looks_like_probabilities(outputs: Sequence[np.ndarray]) -> bool:
    """Every output has several columns and every row is a distribution."""
    return all(o.shape[1] > 1 and distribution_rows(o).all() for o in outputs)


def to_distributions(P: np.ndarray) -> np.ndarray:
    """Rows of class scores as probability distributions, changing only rows that are not.

    A row that already is a distribution is kept as it is; a non-negative row with a positive
    sum is divided by its sum; any other row (logits, signed scores) goes through a softmax.
    """
    out = np.array(P, dtype=np.float64, copy=True)
    ok = distribution_rows(out)
    sums = out.sum(axis=1)
    scale = ~ok & (out >= 0).all(axis=1) & (sums > 0)
    out[scale] /= sums[scale, None]
    soft = ~ok & ~scale
    if soft.any():
        shifted = out[soft] - out[soft].max(axis=1, keepdims=True)
        e = np.exp(shifted)
        out[soft] = e / e.sum(axis=1, keepdims=True)
    return out


def as_labels(output: np.ndarray, who: str) -> np.ndarray:
    """Class indices from one output: the argmax of several columns, or the one column,
    which must then hold non-negative whole numbers."""
    if output.shape[1] > 1:
        return np.argmax(output, axis=1)
    labels = output[:, 0]
    if (labels != np.round(labels)).any() or (labels < 0).any():
        raise ValueError(
            f"{who} returns one column that is not a class index (a non-negative whole number), "
            f"e.g. {labels[:3].tolist()}; voting needs class indices or per-class scores"
        )
    return labels.astype(np.int64)


def n_classes_of(outputs: Sequence[np.ndarray], labels: np.ndarray | None, at_least: int) -> int:
    """Classes implied by score widths, voted labels and a known minimum."""
    widths = [o.shape[1] for o in outputs if o.shape[1] > 1]
    top = int(labels.max()) + 1 if labels is not None and labels.size else 0
    return max([at_least, top, 2, *widths])


def weighted_mean(outputs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Σ_i w_i · outputs_i with the weights normalised to sum to 1."""
    w = np.asarray(weights, dtype=np.float64)
    return np.tensordot(w / w.sum(), np.stack(outputs), axes=1)


def pad_columns(P: np.ndarray, width: int) -> np.ndarray:
    if P.shape[1] >= width:
        return P
    return np.hstack([P, np.zeros((P.shape[0], width - P.shape[1]))])


def weighted_votes(labels: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """Vote shares per class: ``labels`` is (n_learnwares, n_samples); learnware i's vote
    counts ``weights[i]``. Returns (n_samples, n_classes), rows summing to 1."""
    m, n = labels.shape
    shares = np.zeros((n, n_classes))
    rows = np.arange(n)
    for i in range(m):
        np.add.at(shares, (rows, labels[i]), weights[i])
    return shares / weights.sum()


def winners(scores: np.ndarray) -> np.ndarray:
    """The best class per row (along the last axis); ties go to the smallest class index."""
    return np.argmax(scores, axis=-1)
