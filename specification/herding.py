"""Kernel herding: pseudo-samples whose empirical embedding tracks an RKME.

Candidates are drawn in one batch: reduced-set points chosen ∝ β, plus Gaussian noise. By
default 20 per requested sample, at most 20,000: for 500 samples of a 64-feature spec that is
18× faster than the reference's 100 per sample, for a herded-set MMD² about 20 % higher. Then
herding picks T of them greedily, the t-th maximising (t + 1)·f(x) − Σ_{s<t} k(x_s, x) with
f(x) = Σ_j β_j k(z_j, x). Each pick depends on the previous ones, so the T picks are sequential,
but each is a single vectorised update of the running sum over the whole pool: O(T · pool · d)
in all, against the reference's recomputation from scratch at every step.
"""

from __future__ import annotations

import numpy as np
import torch

from ._arrays import resolve_device
from ._threads import single_threaded_blas
from .errors import SpecificationError
from .kernel import as_backend, augment_points, augment_query, kernel_block
from .mmd import KernelMeanEmbedding


def herd(
    spec: KernelMeanEmbedding,
    n_samples: int,
    *,
    seed: int = 0,
    noise: float = 0.25,
    pool_factor: int = 20,
    max_pool: int = 20_000,
    device: str = "auto",
) -> np.ndarray:
    """Return ``n_samples`` pseudo-samples of shape ``(n_samples, *feature_shape)``."""
    if int(n_samples) < 1:
        raise SpecificationError(f"n_samples must be ≥ 1, got {n_samples!r}")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    z_np = np.asarray(spec.z_, dtype=np.float64)
    shape = z_np.shape[1:]
    z = torch.from_numpy(z_np.reshape(len(z_np), -1))
    beta = torch.as_tensor(np.asarray(spec.beta_, dtype=np.float64)).clamp(min=0.0)
    if not float(beta.sum()) > 0:
        raise SpecificationError("spec has no positive weight to sample from")
    gamma = float(spec.gamma)

    pool = int(min(max(pool_factor * n_samples, n_samples), max_pool))
    picks = torch.multinomial(beta / beta.sum(), pool, replacement=True, generator=gen)
    cand = z[picks] + noise * torch.randn(pool, z.shape[1], generator=gen, dtype=torch.float64)
    cand, z, beta = cand.to(dev), z.to(dev), beta.to(dev)

    ca = augment_points(cand)
    f = beta @ kernel_block(augment_query(z, gamma), ca)  # Σ_j β_j k(z_j, x) per candidate
    # The picks are many small operations: on the CPU they run in numpy on one thread, where
    # torch's threads would cost more to wake than the work (7× slower on a busy machine).
    qa, ca, f = as_backend(augment_query(cand, gamma)), as_backend(ca), as_backend(f)
    running = f * 0  # Σ_{s<t} k(x_s, x)
    chosen = []
    with single_threaded_blas():
        for t in range(n_samples):
            j = int(((t + 1) * f - running).argmax())
            chosen.append(j)
            running += kernel_block(qa[j : j + 1], ca)[0]
    picked = cand[torch.as_tensor(chosen, device=cand.device)]
    return picked.cpu().numpy().reshape((n_samples, *shape))
