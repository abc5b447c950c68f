"""The RKME table specification: a weighted reduced set whose kernel mean embedding matches
that of the data.

The data set X = {x_1..x_n} is summarised by K points z_j with weights β_j on the simplex,
chosen to minimise the squared MMD between Φ̃ = Σ_j β_j k(z_j, ·) and Φ = (1/n) Σ_l k(x_l, ·)
under the Gaussian kernel k(x, y) = exp(−γ‖x − y‖²):

    L(z, β) = βᵀ K_zz β − (2/n) Σ_j Σ_l β_j k(z_j, x_l) + const.

The fit alternates an exact β step (a simplex QP, :mod:`specification.qp`) and a z step along
the exact gradient ∇_{z_i} L = −4γ β_i [Σ_j β_j k_ij (z_i − z_j) − (1/n) Σ_l k_il (z_i − x_l)],
preconditioned per point by its kernel mass so a step of 1 is a mean-shift move. A z step that
does not lower L is undone and retried with half the step, so L never increases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._estimator import ParamsMixin
from .errors import SpecificationError

#: The reference caps K·d at this many numbers (K is lowered, but not below 20).
MAX_REDUCED_SET_SIZE = 1_310_720

TABLE_SPEC_TYPE = "RKMETableSpecification"
#: Two γ are the same kernel when they differ by at most this, relative to the reference γ.
GAMMA_RTOL = 1e-12


def same_gamma(gamma: float, reference: float) -> bool:
    """Whether ``gamma`` is the kernel parameter ``reference`` (within :data:`GAMMA_RTOL`)."""
    return abs(float(gamma) - float(reference)) <= GAMMA_RTOL * abs(float(reference))


def effective_n_points(n_points: int, n_samples: int, n_features: int) -> int:
    """K after the reference's caps: K·d ≤ 1,310,720 (K ≥ 20), then K < n (else ⌊2n/3⌋, ≥ 1)."""
    k = int(n_points)
    if k * n_features > MAX_REDUCED_SET_SIZE:
        k = max(20, MAX_REDUCED_SET_SIZE // n_features)
    if k >= n_samples:
        k = max(1, (2 * n_samples) // 3)
    return k


class RKME(ParamsMixin):
    """Reduced kernel mean embedding of a table, the reference's ``RKMETableSpecification``.

    Parameters
    ----------
    n_points : int, default=100
        Size K of the reduced set (capped as the reference does, see ``effective_n_points``).
    gamma : float, default=0.1
        Kernel parameter γ of k(x, y) = exp(−γ‖x − y‖²), applied to the raw features.
    steps : int, default=10
        Number of z steps, each followed by a β step.
    init_iters : int, default=8
        Lloyd iterations of the k-means initialisation.
    seed : int, default=0
        Seed of every random choice; the same seed and device give the same spec.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where the fit runs; ``"auto"`` picks CUDA when available.

    Attributes
    ----------
    z_ : ndarray of shape (K, *feature_shape)
        Reduced-set points.
    beta_ : ndarray of shape (K,)
        Their weights (non-negative, summing to 1).
    num_points_ : int
        Number of rows the spec was fitted on.
    n_features_in_ : int
        Numbers in one row (the product of ``feature_shape``).
    objective_ : float
        Final βᵀK_zzβ − 2βᵀC (the squared MMD to the data minus the data's own term).

    It is a scikit-learn estimator: the constructor stores its arguments as given
    (``get_params``, ``set_params``, ``sklearn.base.clone``), ``fit(X, y=None)`` learns and
    returns the spec. NaN and infinite entries are replaced by the mean of their column's
    finite values.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 4))
    >>> spec = RKME(n_points=20, seed=0).fit(X)
    >>> spec.z_.shape, round(float(spec.beta_.sum()), 6)
    ((20, 4), 1.0)
    """

    spec_type = TABLE_SPEC_TYPE

    def __init__(
        self,
        n_points: int = 100,
        gamma: float = 0.1,
        *,
        steps: int = 10,
        init_iters: int = 8,
        seed: int = 0,
        device: str = "auto",
    ):
        self.n_points = n_points
        self.gamma = gamma
        self.steps = steps
        self.init_iters = init_iters
        self.seed = seed
        self.device = device

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> RKME:
        if not (
            isinstance(self.gamma, int | float) and math.isfinite(self.gamma) and self.gamma > 0
        ):
            raise SpecificationError(f"gamma must be a finite number > 0, got {self.gamma!r}")
        if int(self.n_points) < 1:
            raise SpecificationError(f"n_points must be ≥ 1, got {self.n_points!r}")
        from ._fit import fit_table  # torch is imported only when a spec is fitted

        self.z_, self.beta_, self.num_points_, self.objective_ = fit_table(
            X,
            n_points=int(self.n_points),
            gamma=float(self.gamma),
            steps=int(self.steps),
            init_iters=int(self.init_iters),
            seed=int(self.seed),
            device=self.device,
        )
        return self

    # -- state ---------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, z: Any, beta: Any, gamma: float, num_points: int) -> RKME:
        """A spec from stored arrays (e.g. a spec file) without fitting."""
        spec = cls(n_points=len(beta), gamma=float(gamma))
        spec.z_ = np.ascontiguousarray(z, dtype=np.float64)
        spec.beta_ = np.ascontiguousarray(beta, dtype=np.float64).reshape(-1)
        spec.num_points_ = int(num_points)
        return spec

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.z_.shape[1:])

    @property
    def n_features_in_(self) -> int:
        """Numbers in one row of the data the spec summarises (of its sentence embeddings, for
        a text spec); only a fitted or loaded spec has it."""
        return math.prod(self.feature_shape)

    @property
    def z_flat(self) -> np.ndarray:
        return self.z_.reshape(self.z_.shape[0], -1)

    def __repr__(self) -> str:
        if hasattr(self, "z_"):
            return (
                f"RKME(K={self.z_.shape[0]}, feature_shape={self.feature_shape}, "
                f"gamma={self.gamma}, num_points={self.num_points_})"
            )
        return f"RKME(n_points={self.n_points}, gamma={self.gamma}, unfitted)"
