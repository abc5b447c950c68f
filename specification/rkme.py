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
import torch

from ._arrays import as_table, resolve_device
from .errors import SpecificationError
from .kernel import augment_points, gaussian_kernel, kernel_row_sums
from .qp import solve_simplex_qp

#: The reference caps K·d at this many numbers (K is lowered, but not below 20).
MAX_REDUCED_SET_SIZE = 1_310_720

TABLE_SPEC_TYPE = "RKMETableSpecification"


def effective_n_points(n_points: int, n_samples: int, n_features: int) -> int:
    """K after the reference's caps: K·d ≤ 1,310,720 (K ≥ 20), then K < n (else ⌊2n/3⌋, ≥ 1)."""
    k = int(n_points)
    if k * n_features > MAX_REDUCED_SET_SIZE:
        k = max(20, MAX_REDUCED_SET_SIZE // n_features)
    if k >= n_samples:
        k = max(1, (2 * n_samples) // 3)
    return k


class RKME:
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
    objective_ : float
        Final βᵀK_zzβ − 2βᵀC (the squared MMD to the data minus the data's own term).

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
        device: str | torch.device = "auto",
    ):
        self.n_points = n_points
        self.gamma = gamma
        self.steps = steps
        self.init_iters = init_iters
        self.seed = seed
        self.device = device

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: Any) -> RKME:
        if not (
            isinstance(self.gamma, int | float) and math.isfinite(self.gamma) and self.gamma > 0
        ):
            raise SpecificationError(f"gamma must be a finite number > 0, got {self.gamma!r}")
        if int(self.n_points) < 1:
            raise SpecificationError(f"n_points must be ≥ 1, got {self.n_points!r}")
        x_np, feature_shape = as_table(X)
        n, d = x_np.shape
        k = effective_n_points(self.n_points, n, d)
        dev = resolve_device(self.device)
        gen = torch.Generator().manual_seed(int(self.seed))
        x = torch.from_numpy(x_np).to(dev)
        gamma = float(self.gamma)

        # Centre the data: distances are unchanged and the kernel's GEMM form loses less
        # precision. The shift is added back to z at the end.
        shift = x.mean(0)
        x = x - shift
        xa = augment_points(x)

        # Two candidate starts: k-means++ seeds (data points) and the Lloyd centroids grown
        # from them. Centroids win in low dimension; in high dimension (points far apart
        # relative to 1/γ) data points do. Keep whichever has the lower objective.
        best = None
        for z0 in _kmeans_init(x, k, gen, self.init_iters):
            s0, A0 = kernel_row_sums(z0, xa, gamma)
            beta0, obj0 = _beta_step(z0, s0 / n, gamma, None)
            if best is None or obj0 < best[4]:
                best = (z0, s0, A0, beta0, obj0)
        z, s, A, beta, obj = best
        step = 1.0
        for _ in range(int(self.steps)):
            z_new = _z_step(z, beta, s, A, n, gamma, step)
            s_new, A_new = kernel_row_sums(z_new, xa, gamma)
            beta_new, obj_new = _beta_step(z_new, s_new / n, gamma, beta)
            if obj_new <= obj:
                z, s, A, beta, obj = z_new, s_new, A_new, beta_new, obj_new
                step = min(1.0, step * 1.5)
            else:
                step *= 0.5
        self.z_ = (z + shift).cpu().numpy().reshape((k, *feature_shape))
        self.beta_ = beta
        self.num_points_ = n
        self.objective_ = obj
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
    def z_flat(self) -> np.ndarray:
        return self.z_.reshape(self.z_.shape[0], -1)

    def __repr__(self) -> str:
        if hasattr(self, "z_"):
            return (
                f"RKME(K={self.z_.shape[0]}, feature_shape={self.feature_shape}, "
                f"gamma={self.gamma}, num_points={self.num_points_})"
            )
        return f"RKME(n_points={self.n_points}, gamma={self.gamma}, unfitted)"


def _kmeans_init(
    x: torch.Tensor, k: int, gen: torch.Generator, iters: int
) -> tuple[torch.Tensor, ...]:
    """k-means++ seeds and the centroids of Lloyd iterations from them, on a bounded subsample.

    The seeds are drawn on the CPU from ``gen`` so they do not depend on the device.
    """
    n = x.shape[0]
    m = min(n, max(50 * k, 5000))
    rows = torch.arange(n) if m == n else torch.randperm(n, generator=gen)[:m]
    sub_np = x[rows.to(x.device)].cpu().numpy()
    u = torch.rand(k, generator=gen, dtype=torch.float64).numpy()
    # k-means++: each new seed drawn with probability ∝ squared distance to the nearest seed.
    centres = np.empty(k, dtype=np.int64)
    centres[0] = min(int(u[0] * m), m - 1)
    d2 = ((sub_np - sub_np[centres[0]]) ** 2).sum(1)
    for i in range(1, k):
        cdf = np.cumsum(d2)
        j = min(int(np.searchsorted(cdf, u[i] * cdf[-1], side="right")), m - 1)
        centres[i] = j
        np.minimum(d2, ((sub_np - sub_np[j]) ** 2).sum(1), out=d2)
    sub = torch.from_numpy(sub_np).to(x.device)
    seeds = sub[torch.from_numpy(centres).to(x.device)]
    if iters <= 0:
        return (seeds,)
    z = seeds.clone()
    for _ in range(iters):
        assign = _sq_dists_argmin(sub, z)
        sums = torch.zeros_like(z).index_add_(0, assign, sub)
        counts = torch.bincount(assign, minlength=k).to(z.dtype)
        filled = counts > 0
        z[filled] = sums[filled] / counts[filled, None]
    return seeds, z


def _sq_dists_argmin(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # ‖x − z‖² = ‖x‖² − 2x·z + ‖z‖²; ‖x‖² does not change the argmin.
    return torch.addmm((z * z).sum(1)[None, :], x, z.T, alpha=-2.0).argmin(1)


def _beta_step(
    z: torch.Tensor, c: torch.Tensor, gamma: float, beta0: np.ndarray | None
) -> tuple[np.ndarray, float]:
    kzz = gaussian_kernel(z, z, gamma).cpu().numpy()
    res = solve_simplex_qp(kzz, c.cpu().numpy(), w0=beta0)
    return res.w, 2.0 * res.objective  # βᵀKβ − 2βᵀc


def _z_step(z, beta, s, A, n, gamma, step) -> torch.Tensor:
    """One preconditioned gradient step on z (β fixed); see the module docstring."""
    b = torch.as_tensor(beta, dtype=z.dtype, device=z.device)
    w = gaussian_kernel(z, z, gamma) * b[None, :]  # β_j k_ij
    repulse = w.sum(1, keepdim=True) * z - w @ z  # Σ_j β_j k_ij (z_i − z_j)
    attract = (s[:, None] * z - A) / n  # (1/n) Σ_l k_il (z_i − x_l)
    mass = s / n + w.sum(1) - b  # k_ii = 1 is constant in z: its term carries no curvature
    tiny = torch.finfo(z.dtype).tiny
    return z + step * (repulse - attract) / mass.clamp_min(tiny)[:, None]
