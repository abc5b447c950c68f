"""Independent numpy oracles: plain loops, no code shared with ``specification``."""

from __future__ import annotations

import numpy as np


def inner(za, ba, zb, bb, gamma: float) -> float:
    za = np.asarray(za, dtype=np.float64).reshape(len(ba), -1)
    zb = np.asarray(zb, dtype=np.float64).reshape(len(bb), -1)
    total = 0.0
    for i in range(len(ba)):
        for j in range(len(bb)):
            diff = za[i] - zb[j]
            total += ba[i] * bb[j] * np.exp(-gamma * float(diff @ diff))
    return total


def mmd2(a, b) -> float:
    g = float(a.gamma)
    return (
        inner(a.z_, a.beta_, a.z_, a.beta_, g)
        - 2 * inner(a.z_, a.beta_, b.z_, b.beta_, g)
        + inner(b.z_, b.beta_, b.z_, b.beta_, g)
    )


def mmd2_to_data(z, beta, X, gamma: float) -> float:
    """Squared MMD between Σβ_j k(z_j, ·) and the empirical embedding of X (vectorised rows)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(beta), -1)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)

    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-gamma * d)

    return float(beta @ k(z, z) @ beta - 2 * beta @ k(z, X).mean(1) + k(X, X).mean())


def gaussian_mixture(n: int, d: int, seed: int, components: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(components, d))
    labels = rng.integers(0, components, n)
    return centres[labels] + rng.normal(size=(n, d))
