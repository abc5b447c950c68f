"""A picture of a statistical specification: its K reduced points projected to 2-D by a
β-weighted PCA, each drawn as a dot whose area is its weight β.

Rendered on the server as a small SVG (numpy only: no plotting library in the API process)
and kept per learnware version, so a page view costs a dictionary look-up after the first.
Points are the model's summary of its training data, never the data itself; the picture shows
how that summary spreads and which points carry its mass.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import numpy as np

WIDTH, HEIGHT, PAD = 320, 240, 14
#: Radius of the heaviest dot; the others scale with √β (area ∝ β).
MAX_RADIUS = 9.0
MIN_RADIUS = 1.2
#: Dots drawn at most (the heaviest): a page stays small whatever K a market allows.
MAX_DOTS = 1000
_CACHE_SIZE = 512


@dataclass(frozen=True)
class SpecPicture:
    svg_dots: tuple[tuple[float, float, float], ...]  # (cx, cy, r) in the view box
    points: int  # K
    drawn: int
    explained: tuple[float, float]  # share of the weighted variance along each axis
    features: int


def project(z: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """2-D coordinates of the points (K × 2) and the share of the β-weighted variance each
    axis explains. One feature: the second axis is 0."""
    x = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    w = np.clip(np.asarray(beta, dtype=np.float64), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else np.full(len(x), 1.0 / len(x))
    centred = x - w @ x
    weighted = centred * np.sqrt(w)[:, None]
    # The right singular vectors of the weighted rows are the principal axes.
    _, s, vt = np.linalg.svd(weighted, full_matrices=False)
    axes = vt[:2]
    coords = centred @ axes.T
    if coords.shape[1] == 1:
        coords = np.hstack([coords, np.zeros((len(coords), 1))])
    total = float((s**2).sum())
    shares = [float(v) / total if total > 0 else 0.0 for v in (s**2)[:2]]
    shares += [0.0] * (2 - len(shares))
    return coords, (shares[0], shares[1])


def picture(z: np.ndarray, beta: np.ndarray) -> SpecPicture:
    coords, explained = project(z, beta)
    beta = np.clip(np.asarray(beta, dtype=np.float64), 0.0, None)
    order = np.argsort(-beta, kind="stable")[:MAX_DOTS]
    coords, weights = coords[order], beta[order]
    # One scale for both axes: distances in the picture are distances in the projection.
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1])) or 1.0
    inner_w, inner_h = WIDTH - 2 * (PAD + MAX_RADIUS), HEIGHT - 2 * (PAD + MAX_RADIUS)
    scale = min(inner_w, inner_h) / span
    centre = (lo + hi) / 2
    cx = WIDTH / 2 + (coords[:, 0] - centre[0]) * scale
    cy = HEIGHT / 2 - (coords[:, 1] - centre[1]) * scale
    top = float(weights.max()) if len(weights) and weights.max() > 0 else 1.0
    radius = np.maximum(MIN_RADIUS, MAX_RADIUS * np.sqrt(weights / top))
    dots = tuple(
        (round(float(a), 1), round(float(b), 1), round(float(r), 2))
        for a, b, r in zip(cx, cy, radius, strict=True)
    )
    # Light dots first, heavy ones on top.
    dots = dots[::-1]
    features = int(np.asarray(z).reshape(len(z), -1).shape[1])
    return SpecPicture(dots, len(z), len(dots), explained, features)


class PictureCache:
    """Pictures by ``(learnware id, updated_at)``: any change to a learnware moves its
    ``updated_at``, so a stale picture is never shown."""

    def __init__(self, size: int = _CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple[int, datetime], SpecPicture | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, datetime]) -> tuple[bool, SpecPicture | None]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True, self._items[key]
            return False, None

    def put(self, key: tuple[int, datetime], value: SpecPicture | None) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


pictures = PictureCache()
