"""Weighted Gaussian kernel sums in bounded memory (numpy and scipy only, no torch).

``Σ_ij a_i b_j k(x_i, y_j)`` over two reduced sets is an inner product of kernel mean
embeddings; computed as one matrix it costs K_x · K_y entries, 2 GB for a single spec of
16,000 points against itself. Here it goes tile by tile, each of at most ``block_entries``
kernel values, so memory does not grow with K. Squared distances come from direct
differences (``cdist``), so a self inner product is exact to rounding.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

#: Kernel values per tile: 8 MiB of float64.
BLOCK_ENTRIES = 1 << 20


def gaussian_sum(
    x: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    b: np.ndarray,
    gamma: float,
    *,
    block_entries: int = BLOCK_ENTRIES,
) -> float:
    """``Σ_ij a_i b_j exp(−γ‖x_i − y_j‖²)`` for points ``x`` (n × d) and ``y`` (m × d)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cols = max(1, min(len(y), block_entries))
    rows = max(1, block_entries // cols)
    total = 0.0
    for i in range(0, len(x), rows):
        for j in range(0, len(y), cols):
            k = cdist(x[i : i + rows], y[j : j + cols], "sqeuclidean")
            k *= -gamma
            np.exp(k, out=k)
            total += float(a[i : i + rows] @ k @ b[j : j + cols])
    return total


def self_inner_product(z: np.ndarray, beta: np.ndarray, gamma: float) -> float:
    """⟨Φ, Φ⟩ = βᵀ K(z, z) β of one reduced set (points flattened to rows)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(beta), -1)
    return gaussian_sum(z, beta, z, beta, gamma)
