"""Convex quadratic programs on the probability simplex.

    minimise ½ wᵀKw − cᵀw   subject to   w ≥ 0,  Σ w = 1

with K symmetric positive semi-definite. This is the β step of an RKME fit (K = k(z, z),
c = mean kernel to the data) and the weight step of a mixture search (K = Gram matrix of the
learnwares' embeddings, c = their inner products with the user's).

The primary solver is a primal active-set method: problems have at most a few hundred
variables, warm starts from the previous support are the common case, and it converges in a
handful of small dense solves to machine precision. If it does not finish cleanly, Clarabel (an
interior-point solver) takes over, and if that fails too a projected-gradient method that always
returns a feasible point does. ``QPResult.method`` says which one answered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ._threads import single_threaded_blas
from .errors import SpecificationError


@dataclass(frozen=True)
class QPResult:
    w: np.ndarray
    objective: float
    method: str  # "active-set" | "clarabel" | "projected-gradient"


def objective(K: np.ndarray, c: np.ndarray, w: np.ndarray) -> float:
    return float(0.5 * w @ K @ w - c @ w)


def _check(K, c) -> tuple[np.ndarray, np.ndarray]:
    K = np.asarray(K, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    m = c.shape[0]
    if K.shape != (m, m):
        raise SpecificationError(f"QP: K must be ({m}, {m}) to match c, got {K.shape}")
    if m == 0:
        raise SpecificationError("QP: no variables")
    if not (np.isfinite(K).all() and np.isfinite(c).all()):
        raise SpecificationError("QP: K and c must be finite")
    return 0.5 * (K + K.T), c


def solve_simplex_qp(K, c, *, w0: np.ndarray | None = None) -> QPResult:
    """Minimise ½wᵀKw − cᵀw over the probability simplex; ``w0`` warm-starts the support."""
    K, c = _check(K, c)
    m = c.shape[0]
    if m == 1:
        return QPResult(np.ones(1), objective(K, c, np.ones(1)), "active-set")
    with single_threaded_blas():  # small dense solves: extra BLAS threads only get in the way
        w = _active_set(K, c, w0)
    if w is not None:
        return QPResult(w, objective(K, c, w), "active-set")
    w = _clarabel(K, c)
    if w is not None:
        return QPResult(w, objective(K, c, w), "clarabel")
    w = _projected_gradient(K, c, w0)
    return QPResult(w, objective(K, c, w), "projected-gradient")


def _kkt_solve(K: np.ndarray, c: np.ndarray, free: np.ndarray, ridge: float) -> np.ndarray | None:
    """Minimiser of the objective on the affine hull of the face ``free`` (Σ w_F = 1)."""
    k = len(free)
    if k == 1:
        return np.ones(1)
    Kf = K[free][:, free]
    if k == 2:  # the minimiser on a segment, in closed form
        curvature = Kf[0, 0] + Kf[1, 1] - 2.0 * Kf[0, 1] + 2.0 * ridge
        if not curvature > 0:
            return None
        t = (Kf[1, 1] - Kf[0, 1] + ridge - c[free[1]] + c[free[0]]) / curvature
        return np.array([t, 1.0 - t])
    Kf = Kf + ridge * np.eye(k)
    rhs = np.stack([c[free], np.ones(k)], axis=1)
    try:
        if k <= 16:  # tiny systems: numpy's solve costs a fraction of scipy's call overhead
            a, b = np.linalg.solve(Kf, rhs).T
        else:
            a, b = scipy.linalg.cho_solve(
                scipy.linalg.cho_factor(Kf, check_finite=False), rhs, check_finite=False
            ).T
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None
    # w = a + λ b with 1ᵀw = 1
    sb = b.sum()
    if not np.isfinite(sb) or abs(sb) < 1e-300:
        return None
    lam = (1.0 - a.sum()) / sb
    return a + lam * b


def _active_set(K, c, w0) -> np.ndarray | None:
    m = c.shape[0]
    scale = max(float(np.abs(np.diag(K)).max()), float(np.abs(c).max()), 1e-300)
    ridge = 1e-13 * scale
    tol = 1e-11 * scale
    if w0 is not None and w0.shape == (m,) and np.isfinite(w0).all() and (w0 > 0).any():
        w = np.clip(w0, 0.0, None)
        w /= w.sum()
    else:
        w = np.full(m, 1.0 / m)
    free = w > 0
    f_old = objective(K, c, w)
    for _ in range(10 * m + 50):
        idx = np.flatnonzero(free)
        p_f = _kkt_solve(K, c, idx, ridge)
        if p_f is None or not np.isfinite(p_f).all():
            return None
        if (p_f > 0).all():
            w = np.zeros(m)
            w[idx] = p_f
            g = K @ w - c
            lam = float(np.dot(g[idx], p_f))  # Σ w_i g_i: the multiplier of Σw = 1
            mu = g - lam
            mu[idx] = np.inf
            j = int(np.argmin(mu))
            if mu[j] >= -tol:
                return w
            free[j] = True
        else:
            # Move from w towards p until the first free coordinate hits zero.
            p = np.zeros(m)
            p[idx] = p_f
            d = p - w
            shrinking = idx[p_f <= 0]
            ratios = w[shrinking] / (w[shrinking] - p[shrinking])
            alpha = float(ratios.min())
            if alpha <= 0.0:  # degenerate step: the coordinate just freed would go negative
                return None
            w = w + alpha * d
            w[shrinking[ratios <= alpha * (1 + 1e-12)]] = 0.0
            w = np.clip(w, 0.0, None)
            free = w > 0
            if not free.any():
                return None
            w /= w.sum()
        f_new = objective(K, c, w)
        if f_new > f_old + tol:  # numerical trouble: let a sturdier method take over
            return None
        f_old = f_new
    return None


def _clarabel(K, c) -> np.ndarray | None:
    try:
        import clarabel
        import scipy.sparse as sp
    except ImportError:
        return None
    m = c.shape[0]
    P = sp.csc_matrix(np.triu(K))
    A = sp.csc_matrix(np.vstack([np.ones((1, m)), -np.eye(m)]))
    b = np.concatenate([[1.0], np.zeros(m)])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-12
    settings.tol_feas = 1e-12
    try:
        sol = clarabel.DefaultSolver(
            P, -c, A, b, [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(m)], settings
        ).solve()
    except Exception:
        return None
    w = np.asarray(sol.x, dtype=np.float64)
    if w.shape != (m,) or not np.isfinite(w).all():
        return None
    w = np.clip(w, 0.0, None)
    total = w.sum()
    return w / total if total > 0 else None


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (sort-based, O(m log m))."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.shape[0] + 1)
    rho = np.flatnonzero(u - css / k > 0)[-1]
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def _projected_gradient(K, c, w0, iters: int = 5000) -> np.ndarray:
    m = c.shape[0]
    w = project_to_simplex(w0) if w0 is not None and np.isfinite(w0).all() else np.full(m, 1 / m)
    lip = max(float(np.linalg.eigvalsh(K)[-1]), 1e-12)
    y, t = w.copy(), 1.0
    for _ in range(iters):  # FISTA with a fixed 1/L step
        w_next = project_to_simplex(y - (K @ y - c) / lip)
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = w_next + ((t - 1) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w
