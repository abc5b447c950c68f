"""The Gaussian (RBF) kernel k(x, y) = exp(−γ‖x − y‖²) in float64, batched.

The exponent −γ‖z − x‖² = 2γ z·x − γ‖z‖² − γ‖x‖² is produced by a single matrix product of
*augmented* rows, ``[2γz, −γ‖z‖², −γ] · [x, 1, ‖x‖²]``, so a kernel block costs one GEMM and one
in-place ``exp``; stored points keep their augmented form so it is built once, not per call.

Large reductions over kernel blocks go through :func:`map_blocks`. On CUDA it runs the blocks
in order with torch. On the CPU it runs them on a pool of threads, one per core, with numpy
(whose float64 ``exp`` is about twice as fast as torch's here) and single-threaded BLAS per
block, which keeps both the GEMM and the ``exp`` of every block busy on all cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from typing import TypeVar

import numpy as np
import torch

from ._threads import single_threaded_blas

T = TypeVar("T")
Array = np.ndarray | torch.Tensor


def augment_points(x: torch.Tensor) -> torch.Tensor:
    """Right-hand augmented rows ``[x, 1, ‖x‖²]`` (shape ``(n, d + 2)``)."""
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.cat([x, ones, (x * x).sum(1, keepdim=True)], 1)


def augment_query(z: torch.Tensor, gamma: float) -> torch.Tensor:
    """Left-hand augmented rows ``[2γz, −γ‖z‖², −γ]`` (shape ``(k, d + 2)``)."""
    col = torch.full((z.shape[0], 1), -gamma, dtype=z.dtype, device=z.device)
    return torch.cat([(2.0 * gamma) * z, -gamma * (z * z).sum(1, keepdim=True), col], 1)


def _numpy_exp_is_vectorised() -> bool:
    """Whether numpy's float64 ``exp`` runs its SIMD loop here: numpy dispatches one on CPUs
    with AVX-512F and calls the scalar libm ``exp`` elsewhere."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return bool(import_module(module).__cpu_features__.get("AVX512F"))
        except (ImportError, AttributeError):
            continue
    return False


#: numpy's float64 ``exp`` is vectorised on this CPU (AVX-512F): :func:`kernel_exp_` uses it.
NUMPY_SIMD_EXP = _numpy_exp_is_vectorised()
#: Elements per torch call in :func:`kernel_exp_` where numpy's ``exp`` is scalar: torch runs
#: an ``exp`` of up to 2,048 float64 values on the calling thread; a longer one wakes its
#: OpenMP team, whose threads then spin on the cores that the rest of the market needs (a
#: search's kernel values took 5 ms a call on average on a busy 2-core machine).
EXP_CHUNK = 2048


def kernel_exp_(e: np.ndarray) -> np.ndarray:
    """Kernel values from their exponents −γ‖x − y‖², in place: ``e ← exp(min(e, 0))``
    (rounding can leave an exponent just above 0; no kernel value exceeds 1).

    Always on the calling thread. With numpy's vectorised float64 ``exp`` where it has one
    (AVX-512F: about 1.1 ns an element, no thread pool); elsewhere numpy's is scalar (5 ns on
    an AVX2 AMD EPYC) and torch's vectorised one (within 1 ulp of numpy's) takes over, in
    chunks short enough that torch does not hand them to its thread pool. The kernel sums of
    a search are mostly ``exp``.
    """
    np.minimum(e, 0.0, out=e)
    if NUMPY_SIMD_EXP or e.dtype != np.float64 or not e.flags.c_contiguous or not e.flags.writeable:
        return np.exp(e, out=e)
    flat = torch.from_numpy(e).view(-1)
    for start in range(0, flat.numel(), EXP_CHUNK):
        flat[start : start + EXP_CHUNK].exp_()
    return e


def kernel_block(za: Array, xa: Array) -> Array:
    """Kernel matrix between an augmented query and augmented points (numpy or torch)."""
    e = za @ xa.T
    if isinstance(e, np.ndarray):
        return np.exp(e, out=e)
    return e.exp_()


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """Kernel matrix ``exp(−γ‖a_i − b_j‖²)`` of shape ``(len(a), len(b))``."""
    shift = a.mean(0) if a.shape[0] else 0.0  # translation keeps distances, tames cancellation
    e = augment_query(a - shift, gamma) @ augment_points(b - shift).T
    return e.clamp_(max=0.0).exp_()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cpu_pool() -> ThreadPoolExecutor:
    """The shared worker threads, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="wharf-kernel")
        return _pool


def map_blocks(
    fn: Callable[[int, int], T], n_rows: int, rows_per_block: int, device: torch.device
) -> list[T]:
    """``[fn(start, stop) for each block of rows]``, in parallel on the CPU (see module doc)."""
    rows = max(1, rows_per_block)
    return map_ranges(fn, [(s, min(s + rows, n_rows)) for s in range(0, n_rows, rows)], device)


def map_ranges(
    fn: Callable[[int, int], T],
    ranges: list[tuple[int, int]],
    device: torch.device | str = "cpu",
) -> list[T]:
    """``[fn(start, stop) for (start, stop) in ranges]``, in parallel on the CPU."""
    if torch.device(device).type != "cpu" or len(ranges) <= 2:  # threads would cost more
        return [fn(s, e) for s, e in ranges]
    with single_threaded_blas():
        return list(_cpu_pool().map(lambda r: fn(*r), ranges))


def as_backend(t: torch.Tensor) -> Array:
    """The array :func:`map_blocks` workers compute with: a numpy view on CPU, else the tensor."""
    return t.numpy() if t.device.type == "cpu" else t


def kernel_row_sums(
    z: torch.Tensor, xa: torch.Tensor, gamma: float, *, block_entries: int = 1 << 17
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every z_i: ``s_i = Σ_l k(z_i, x_l)`` and ``A_i = Σ_l k(z_i, x_l) x_l``.

    ``xa`` holds the data as augmented rows (:func:`augment_points`). Memory is
    ``O(block_entries)`` per core, not ``O(len(z) · n)``. These two sums are all an RKME fit
    needs from the data: the data term of the objective (``s / n``) and of its gradient
    (``s_i z_i − A_i``).
    """
    d = z.shape[1]
    za, xb = as_backend(augment_query(z, gamma)), as_backend(xa)

    def block(start: int, stop: int):
        xc = xb[start:stop]
        k = kernel_block(za, xc)
        return k.sum(1), k @ xc[:, :d]

    parts = map_blocks(block, xa.shape[0], block_entries // max(1, z.shape[0]), xa.device)
    s = sum(p[0] for p in parts)
    A = sum(p[1] for p in parts)
    return torch.as_tensor(s, device=z.device), torch.as_tensor(A, device=z.device)
