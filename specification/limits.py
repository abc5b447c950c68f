"""Bounds on a statistical specification from an untrusted source.

A spec file is small (K points, a few thousand numbers) but what a market computes with it
is not: an exact self inner product touches K² kernel entries and every search pays K times
the size of the partition. So a market bounds K and K × features before it builds an array,
and checks that the numbers describe a kernel mean embedding at all:

- the weights β lie on the probability simplex (β ≥ 0, Σβ = 1), as every reference fit with
  ``nonnegative_beta=True`` (its default) leaves them. Negative weights can cancel the
  embedding to almost nothing, and a near-null embedding is the closest spec to every user
  whose data it has never seen;
- coordinates and γ lie in ranges where float64 kernels keep their precision.

:class:`SpecLimits` with no arguments bounds only what no file of this format can sensibly
exceed (a user's own files are theirs); :meth:`SpecLimits.for_market` is what a market
applies to submissions and searches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import SpecificationError

#: Bounds any reader applies, whoever wrote the file.
ANY_MAX_POINTS = 1_000_000
ANY_MAX_NUMBERS = 50_000_000
#: How far a weight may lie below 0, and Σβ from 1, from rounding in a QP solver or in JSON.
SIMPLEX_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SpecLimits:
    """What a spec may hold.

    Attributes
    ----------
    max_points: largest K (points in the reduced set).
    max_image_points: largest K of an image spec, whose kernel costs ~1,000 Gaussian ones.
    max_numbers: largest K × features (for an image spec, K × C × 32 × 32).
    max_abs_value: largest absolute coordinate of a point (``None``: any finite value).
    gamma_range: smallest and largest γ of a Gaussian-kernel spec (``None``: any γ > 0).
    simplex: whether β must lie on the probability simplex.
    """

    max_points: int = ANY_MAX_POINTS
    max_image_points: int = ANY_MAX_POINTS
    max_numbers: int = ANY_MAX_NUMBERS
    max_abs_value: float | None = None
    gamma_range: tuple[float, float] | None = None
    simplex: bool = False

    @classmethod
    def for_market(
        cls,
        max_points: int,
        max_image_points: int,
        max_numbers: int,
        max_abs_value: float,
        gamma_range: tuple[float, float],
    ) -> SpecLimits:
        return cls(
            max_points, max_image_points, max_numbers, max_abs_value, gamma_range, simplex=True
        )

    def for_images(self) -> SpecLimits:
        return replace(self, max_points=min(self.max_points, self.max_image_points))

    def check_outer_shape(self, value: list, name: str) -> None:
        """Refuse a nested list whose shape is over the bounds, before numpy reads it."""
        if len(value) > self.max_points:
            raise SpecificationError(
                f"{name} has {len(value)} points, over this market's limit of "
                f"{self.max_points} (refit with fewer points, e.g. n_points=100)"
            )
        total, level = len(value), value
        while isinstance(level, list) and level and isinstance(level[0], list):
            level = level[0]
            total *= max(1, len(level))
            if total > self.max_numbers:
                raise SpecificationError(
                    f"{name} holds over {self.max_numbers} numbers (points × features), "
                    "this market's limit: refit with fewer points"
                )

    def check_gamma(self, gamma: float) -> None:
        if self.gamma_range is None:
            return
        low, high = self.gamma_range
        if not low <= gamma <= high:
            raise SpecificationError(
                f"gamma is {gamma:g}, outside the range this market accepts [{low:g}, {high:g}]"
            )

    def check_arrays(self, z: np.ndarray, beta: np.ndarray) -> None:
        """The points' range and the weights' simplex (shapes are already known to agree)."""
        if self.max_abs_value is not None:
            largest = float(np.abs(z).max())
            if largest > self.max_abs_value:
                raise SpecificationError(
                    f"z has a coordinate of absolute value {largest:g}, over this market's "
                    f"limit of {self.max_abs_value:g}: scale the features before fitting"
                )
        if self.simplex:
            check_simplex(beta)


def check_simplex(beta: Any) -> None:
    """Refuse weights that are not a probability vector (within :data:`SIMPLEX_TOLERANCE`)."""
    beta = np.asarray(beta, dtype=np.float64)
    low, total = float(beta.min()), float(beta.sum())
    if low < -SIMPLEX_TOLERANCE or not math.isclose(total, 1.0, abs_tol=SIMPLEX_TOLERANCE):
        raise SpecificationError(
            f"beta must be non-negative weights summing to 1 (the probability simplex, as "
            f"every fit with nonnegative_beta=True gives); got min {low:.6g}, sum {total:.6g}"
        )


def check_self_inner_product(value: float, beta: Any, *, gaussian: bool) -> None:
    """⟨Φ, Φ⟩ must be a finite positive number. Under a Gaussian kernel (values in (0, 1]) with
    weights on the simplex it also lies in [Σβ², 1]; outside that, the numbers are broken."""
    if not (math.isfinite(value) and value > 0):
        raise SpecificationError(
            f"its self inner product is {value}, not a finite positive number "
            "(check beta and gamma)"
        )
    if gaussian:
        beta = np.asarray(beta, dtype=np.float64)
        low = float(beta @ beta) * (1 - SIMPLEX_TOLERANCE)
        if not low <= value <= 1 + SIMPLEX_TOLERANCE:
            raise SpecificationError(
                f"its self inner product is {value:.6g}, outside [{low:.6g}, 1], where a "
                "Gaussian kernel mean embedding with weights on the simplex lies"
            )
