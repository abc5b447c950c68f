"""The RKME fit (see :mod:`specification.rkme` for the method); kept apart so that reading and
writing specs never imports torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._arrays import as_table, resolve_device
from ._threads import single_threaded_blas
from .kernel import augment_points, gaussian_kernel, kernel_row_sums
from .qp import solve_simplex_qp
from .rkme import effective_n_points


def fit_table(
    X: Any, *, n_points: int, gamma: float, steps: int, init_iters: int, seed: int, device: str
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Fit a reduced set to X; returns ``(z, beta, n, objective)``."""
    with single_threaded_blas():  # torch and our thread pool use the cores; see _threads
        return _fit(X, n_points, gamma, steps, init_iters, seed, device)


def _fit(
    X: Any, n_points: int, gamma: float, steps: int, init_iters: int, seed: int, device: str
) -> tuple[np.ndarray, np.ndarray, int, float]:
    x_np, feature_shape = as_table(X)
    n, d = x_np.shape
    k = effective_n_points(n_points, n, d)
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(x_np).to(dev)

    # Centre the data: distances are unchanged and the kernel's GEMM form loses less
    # precision. The shift is added back to z at the end.
    shift = x.mean(0)
    x = x - shift
    xa = augment_points(x)

    # Two candidate starts: k-means++ seeds (data points) and the Lloyd centroids grown
    # from them. Centroids win in low dimension; in high dimension (points far apart
    # relative to 1/γ) data points do. Keep whichever has the lower objective.
    best = None
    for z0 in _kmeans_init(x, k, gen, init_iters):
        s0, A0 = kernel_row_sums(z0, xa, gamma)
        beta0, obj0 = _beta_step(z0, s0 / n, gamma, None)
        if best is None or obj0 < best[4]:
            best = (z0, s0, A0, beta0, obj0)
    z, s, A, beta, obj = best
    step = 1.0
    for _ in range(steps):
        z_new = _z_step(z, beta, s, A, n, gamma, step)
        s_new, A_new = kernel_row_sums(z_new, xa, gamma)
        beta_new, obj_new = _beta_step(z_new, s_new / n, gamma, beta)
        if obj_new <= obj:
            z, s, A, beta, obj = z_new, s_new, A_new, beta_new, obj_new
            step = min(1.0, step * 1.5)
        else:
            step *= 0.5
    return (z + shift).cpu().numpy().reshape((k, *feature_shape)), beta, n, obj


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
