"""Exact squared MMD between RKME specifications, one query against many at once.

For Φ_a = Σ_i β^a_i k(z^a_i, ·) and Φ_b likewise,

    MMD²(a, b) = ‖Φ_a − Φ_b‖² = ⟨Φ_a, Φ_a⟩ − 2⟨Φ_a, Φ_b⟩ + ⟨Φ_b, Φ_b⟩,
    ⟨Φ_a, Φ_b⟩ = β^aᵀ K(z^a, z^b) β^b.

:class:`SpecBank` stacks the reduced sets of many specs (any mix of K) into one array with each
spec's self-term ⟨Φ_b, Φ_b⟩ computed once when it is added; a query then costs one pass of
matrix products over the stacked points, in blocks of bounded size, plus a segmented sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import torch

from ._arrays import resolve_device
from .blockwise import gaussian_sum, self_inner_product
from .errors import SpecificationError
from .kernel import (
    as_backend,
    augment_points,
    augment_query,
    kernel_block,
    map_blocks,
)
from .rkme import same_gamma


class KernelMeanEmbedding(Protocol):
    """Anything with a reduced set: ``z_`` (K, *shape), ``beta_`` (K,), ``gamma``."""

    z_: np.ndarray
    beta_: np.ndarray
    gamma: float


def _flat(spec: KernelMeanEmbedding) -> np.ndarray:
    return np.asarray(spec.z_, dtype=np.float64).reshape(len(spec.beta_), -1)


def inner_product(
    a: KernelMeanEmbedding, b: KernelMeanEmbedding, gamma: float | None = None
) -> float:
    """⟨Φ_a, Φ_b⟩ under the kernel of γ (``a.gamma`` unless given); image specs under the
    NNGP kernel."""
    if _is_image(a) or _is_image(b):
        if not (_is_image(a) and _is_image(b)):
            raise SpecificationError("cannot compare an image spec with another kind of spec")
        from .nngp import inner_product as image_inner_product

        return image_inner_product(a, b)
    g = float(a.gamma if gamma is None else gamma)
    za, zb = _flat(a), _flat(b)
    if za.shape[1] != zb.shape[1]:
        raise SpecificationError(
            f"specs have different feature sizes ({za.shape[1]} and {zb.shape[1]})"
        )
    return gaussian_sum(za, a.beta_, zb, b.beta_, g)


def _is_image(spec) -> bool:
    return getattr(spec, "spec_type", None) == "RKMEImageSpecification"


def check_comparable(a: KernelMeanEmbedding, b: KernelMeanEmbedding) -> None:
    if not same_gamma(a.gamma, b.gamma):
        raise SpecificationError(
            f"specs use different kernels (gamma {a.gamma} and {b.gamma}); MMD between them "
            "is not meaningful — refit one with the other's gamma"
        )
    if tuple(np.shape(a.z_)[1:]) != tuple(np.shape(b.z_)[1:]):
        raise SpecificationError(
            f"specs have different feature shapes ({tuple(np.shape(a.z_)[1:])} and "
            f"{tuple(np.shape(b.z_)[1:])})"
        )


def mmd2(a: KernelMeanEmbedding, b: KernelMeanEmbedding) -> float:
    """Squared MMD between two specs of the same type, γ and feature shape (image specs
    under the NNGP kernel of :mod:`specification.nngp`)."""
    kinds = {getattr(a, "spec_type", None), getattr(b, "spec_type", None)}
    if "RKMEImageSpecification" in kinds:
        if len(kinds) > 1:
            raise SpecificationError(f"cannot compare specs of types {sorted(map(str, kinds))}")
        from .nngp import mmd2 as image_mmd2

        return image_mmd2(a, b)
    check_comparable(a, b)
    return inner_product(a, a) - 2.0 * inner_product(a, b) + inner_product(b, b)


def self_inner_products(
    z: torch.Tensor,
    beta: torch.Tensor,
    sizes: Sequence[int],
    gamma: float,
    block_entries: int = 1 << 19,
) -> torch.Tensor:
    """⟨Φ_i, Φ_i⟩ of specs stacked in ``z`` (rows) and ``beta``, ``sizes[i]`` rows each.

    Kernel values come from direct differences, not the GEMM form: a self-term is computed
    once per spec, so it is computed exactly. Specs of equal K go through one batched product;
    a spec whose K × K kernel alone is over ``block_entries`` goes tile by tile.
    """
    out = torch.empty(len(sizes), dtype=torch.float64, device=z.device)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    by_size: dict[int, list[int]] = {}
    for i, k in enumerate(sizes):
        by_size.setdefault(int(k), []).append(i)
    dim = z.shape[1]
    for k, idx in by_size.items():
        if k * k > block_entries:
            for i in idx:
                rows = slice(offsets[i], offsets[i] + k)
                out[i] = self_inner_product(z[rows].cpu().numpy(), beta[rows].cpu().numpy(), gamma)
            continue
        step = max(1, block_entries // max(1, k * k))
        for s in range(0, len(idx), step):
            part = idx[s : s + step]
            rows = torch.from_numpy(
                np.concatenate([np.arange(offsets[i], offsets[i] + k) for i in part])
            ).to(z.device)
            zb = z[rows].reshape(len(part), k, dim)
            bb = beta[rows].reshape(len(part), k)
            dist = torch.cdist(zb, zb, compute_mode="donot_use_mm_for_euclid_dist")
            kern = dist.square_().mul_(-gamma).exp_()
            out[torch.as_tensor(part, device=z.device)] = torch.einsum("ni,nij,nj->n", bb, kern, bb)
    return out


class SpecBank:
    """Many specs of one partition (same γ and feature size) for batched exact MMD².

    Parameters
    ----------
    gamma : float
        Kernel parameter shared by every spec in the bank.
    dim : int
        Flattened feature size shared by every spec.
    device : str, default="cpu"
        Where the stacked points live and the products run.
    block_entries : int, default=2**19
        Kernel entries computed per block: bounds the working memory of a query
        (``8 · block_entries`` bytes) whatever the number of specs.

    Points are stored relative to a fixed centre (the mean of the first specs added) so the
    GEMM form of the kernel keeps its precision for features far from the origin.
    """

    def __init__(
        self, gamma: float, dim: int, *, device: str = "cpu", block_entries: int = 1 << 19
    ):
        self.gamma = float(gamma)
        self.dim = int(dim)
        self.device = resolve_device(device)
        self.block_entries = int(block_entries)
        self._center: torch.Tensor | None = None
        self._points = torch.empty(0, self.dim + 2, dtype=torch.float64, device=self.device)
        self._beta = torch.empty(0, dtype=torch.float64, device=self.device)
        self._owner = torch.empty(0, dtype=torch.long, device=self.device)
        self._self = torch.empty(0, dtype=torch.float64, device=self.device)
        self._start = torch.empty(0, dtype=torch.long, device=self.device)  # first row of spec i
        self._count = torch.empty(0, dtype=torch.long, device=self.device)  # its number of rows

    def __len__(self) -> int:
        return int(self._self.shape[0])

    @property
    def self_terms(self) -> np.ndarray:
        """⟨Φ_i, Φ_i⟩ of every spec, in insertion order."""
        return self._self.cpu().numpy()

    def add(self, specs: Iterable[KernelMeanEmbedding]) -> range:
        """Append specs; returns their positions in the bank."""
        specs = list(specs)
        start = len(self)
        if not specs:
            return range(start, start)
        zs, bs = [], []
        for spec in specs:
            if not same_gamma(spec.gamma, self.gamma):
                raise SpecificationError(
                    f"spec gamma {spec.gamma} differs from the bank's {self.gamma}"
                )
            z = _flat(spec)
            if z.shape[1] != self.dim:
                raise SpecificationError(f"spec has {z.shape[1]} features, the bank {self.dim}")
            zs.append(z)
            bs.append(np.asarray(spec.beta_, dtype=np.float64).reshape(-1))
        z = torch.from_numpy(np.concatenate(zs)).to(self.device)
        beta = torch.from_numpy(np.concatenate(bs)).to(self.device)
        counts = torch.tensor([len(b) for b in bs], device=self.device)
        owner = torch.repeat_interleave(
            torch.arange(start, start + len(specs), device=self.device), counts
        )
        if self._center is None:
            self._center = z.mean(0)
        z = z - self._center
        self._points = torch.cat([self._points, augment_points(z)])
        self._beta = torch.cat([self._beta, beta])
        self._owner = torch.cat([self._owner, owner])
        self._self = torch.cat(
            [
                self._self,
                self_inner_products(z, beta, [len(b) for b in bs], self.gamma, self.block_entries),
            ]
        )
        self._start = torch.cat(
            [self._start, self._points.shape[0] - len(z) + torch.cumsum(counts, 0) - counts]
        )
        self._count = torch.cat([self._count, counts])
        return range(start, len(self))

    def mmd2(self, query: KernelMeanEmbedding, subset: Sequence[int] | None = None) -> np.ndarray:
        """Squared MMD from ``query`` to every spec in the bank (insertion order), or to the
        specs at positions ``subset`` (in that order), e.g. the candidates of a coarse search."""
        if subset is not None:
            pos = torch.as_tensor(np.asarray(subset, dtype=np.int64), device=self.device)
            if len(pos) and (int(pos.min()) < 0 or int(pos.max()) >= len(self)):
                raise SpecificationError(f"subset positions must lie in [0, {len(self)})")
            starts, counts = self._start[pos], self._count[pos]
            rows = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
            rows += torch.arange(int(counts.sum()), device=self.device)
            owner = torch.repeat_interleave(torch.arange(len(pos), device=self.device), counts)
            return self._mmd2(query, self._points[rows], self._beta[rows], owner, self._self[pos])
        return self._mmd2(query, self._points, self._beta, self._owner, self._self)

    def _mmd2(self, query, points_t, beta_t, owner, self_terms) -> np.ndarray:
        if len(self_terms) == 0:
            return np.empty(0)
        if not same_gamma(query.gamma, self.gamma):
            raise SpecificationError(
                f"query gamma {query.gamma} differs from the bank's {self.gamma}"
            )
        flat = _flat(query)
        if flat.shape[1] != self.dim:
            raise SpecificationError(f"query has {flat.shape[1]} features, the bank {self.dim}")
        self_q = self_inner_product(flat, query.beta_, self.gamma)
        zq = torch.from_numpy(flat).to(self.device)
        bq = torch.as_tensor(np.asarray(query.beta_, dtype=np.float64), device=self.device)
        zq = zq - self._center
        qa = augment_query(zq, self.gamma)
        qb, bqb = as_backend(qa), as_backend(bq)
        points, beta = as_backend(points_t), as_backend(beta_t)

        owners = as_backend(owner)

        def block(start: int, stop: int):
            # Reduce to per-spec sums inside the block, so memory stays O(block + specs).
            v = bqb @ kernel_block(qb, points[start:stop])
            v *= beta[start:stop]
            first = int(owners[start])
            local = owners[start:stop] - first
            if isinstance(v, np.ndarray):
                return first, np.bincount(local, weights=v)
            return first, torch.zeros(
                int(local[-1]) + 1, dtype=v.dtype, device=v.device
            ).index_add_(0, local, v)

        rows = max(256, self.block_entries // zq.shape[0])
        cross = torch.zeros(len(self_terms), dtype=torch.float64, device=self.device)
        for first, sums in map_blocks(block, points.shape[0], rows, self.device):
            cross[first : first + len(sums)] += torch.as_tensor(sums, device=self.device)
        return (self_q + self_terms - 2.0 * cross).cpu().numpy()
