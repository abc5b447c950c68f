"""Searching for the best multiset of learnwares under an objective to minimise.

``evaluate`` takes a (b, m) array of non-negative integer copy counts (one candidate ensemble
per row) and returns the b objective values; lower is better. Both searches prefer, among
equally good ensembles, the one with fewer learnwares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

Evaluate = Callable[[np.ndarray], np.ndarray]
#: Candidates per call of ``evaluate`` in the exact search.
BATCH = 512
#: Forward-selection rounds at most (each adds one copy of a learnware).
MAX_ROUNDS = 100


def _better(value: float, best: float) -> bool:
    return value < best - 1e-12 * max(1.0, abs(best))


def exact_search(evaluate: Evaluate, m: int, max_size: int) -> tuple[np.ndarray, float]:
    """Every non-empty subset of at most ``max_size`` learnwares, equally weighted; ties go
    to the first found, and subsets are visited by size, so to the smallest."""
    best_counts, best_value = None, np.inf
    for batch in _subsets(m, max_size):
        values = evaluate(batch)
        i = int(np.argmin(values))
        if best_counts is None or _better(float(values[i]), best_value):
            best_counts, best_value = batch[i].copy(), float(values[i])
    return best_counts, best_value


def _subsets(m: int, max_size: int) -> Iterator[np.ndarray]:
    rows: list[tuple[int, ...]] = []
    for size in range(1, max_size + 1):
        for combo in itertools.combinations(range(m), size):
            rows.append(combo)
            if len(rows) == BATCH:
                yield _indicator(rows, m)
                rows = []
    if rows:
        yield _indicator(rows, m)


def _indicator(rows: list[tuple[int, ...]], m: int) -> np.ndarray:
    out = np.zeros((len(rows), m), dtype=np.int64)
    for r, combo in enumerate(rows):
        out[r, list(combo)] = 1
    return out


def greedy_search(
    evaluate: Evaluate, m: int, max_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Forward selection with replacement from the best single learnware (each round adds
    the copy that lowers the objective most, while any does), then backward elimination
    (each round removes the copy whose removal does not make it worse). Equal candidates are
    taken in one random order drawn from ``rng``."""
    order = rng.permutation(m)
    eye = np.eye(m, dtype=np.int64)[order]
    values = evaluate(eye)
    i = int(np.argmin(values))
    counts, current = eye[i].copy(), float(values[i])
    for _ in range(MAX_ROUNDS):
        allowed = order if np.count_nonzero(counts) < max_size else order[counts[order] > 0]
        candidates = counts + np.eye(m, dtype=np.int64)[allowed]
        values = evaluate(candidates)
        i = int(np.argmin(values))
        if not _better(float(values[i]), current):
            break
        counts, current = candidates[i], float(values[i])
    while counts.sum() > 1:
        members = order[counts[order] > 0]
        candidates = counts - np.eye(m, dtype=np.int64)[members]
        values = evaluate(candidates)
        i = int(np.argmin(values))
        if _better(current, float(values[i])):  # removing any copy makes it worse
            break
        counts, current = candidates[i], float(values[i])
    return counts, current
