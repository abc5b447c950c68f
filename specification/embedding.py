"""Fixed-length index embeddings of RKMEs: ‖e(a) − e(b)‖² ≈ MMD²(a, b).

Random Fourier features turn the Gaussian kernel into an inner product of finite vectors:
for ω ~ N(0, 2γI), k(x, y) = E[cos(ω·(x − y))], so with m frequencies
φ(x) = [cos(Wx), sin(Wx)] / √m gives φ(x)·φ(y) ≈ k(x, y), and the embedding of a spec is
e(spec) = Σ_j β_j φ(z_j) — its kernel mean embedding projected on the features. Then
⟨e(a), e(b)⟩ ≈ ⟨Φ_a, Φ_b⟩ and ‖e(a) − e(b)‖² ≈ MMD²(a, b), which is what a FAISS L2 index
searches on.

The frequencies are *orthogonal* random features (blocks of a random orthogonal matrix with
chi-distributed row norms), which have lower variance than i.i.d. draws at the same size. They
depend only on (version, seed, feature size, embedding size) and are scaled by √(2γ), and the
generator is numpy's PCG64: every worker on every platform computes the same embedding, and the
embedding's ``key`` names exactly what it was built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse

from .errors import SpecificationError
from .mmd import KernelMeanEmbedding
from .rkme import same_gamma

EMBEDDING_VERSION = 1


@dataclass(frozen=True)
class IndexEmbedding:
    """The embedding of one partition (feature size ``dim``, kernel ``gamma``).

    Parameters
    ----------
    dim : int
        Flattened feature size of the partition's specs.
    gamma : float
        Kernel parameter of the partition.
    size : int, default=256
        Length of the embedding vectors (must be even: a cosine and a sine per frequency).
    seed : int, default=0
        Seed of the frequencies.
    """

    dim: int
    gamma: float
    size: int = 256
    seed: int = 0
    version: int = EMBEDDING_VERSION

    def __post_init__(self):
        if self.size < 2 or self.size % 2:
            raise SpecificationError(f"embedding size must be an even number ≥ 2, got {self.size}")
        if self.dim < 1:
            raise SpecificationError(f"dim must be ≥ 1, got {self.dim}")
        if not self.gamma > 0:
            raise SpecificationError(f"gamma must be > 0, got {self.gamma}")
        if self.version != EMBEDDING_VERSION:
            raise SpecificationError(
                f"embedding version {self.version} is not known "
                f"(this build has {EMBEDDING_VERSION})"
            )

    @property
    def key(self) -> str:
        """A string naming this embedding exactly; equal keys give equal vectors."""
        return (
            f"orf-v{self.version}:d={self.dim}:gamma={self.gamma!r}"
            f":size={self.size}:seed={self.seed}"
        )

    @cached_property
    def frequencies(self) -> np.ndarray:
        """The (size/2, dim) frequency matrix W, rows ~ N(0, 2γI) marginally."""
        m = self.size // 2
        rng = np.random.Generator(np.random.PCG64([self.seed, self.dim, self.size, self.version]))
        blocks = []
        for _ in range(-(-m // self.dim)):
            q, r = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
            q *= np.sign(np.diag(r))  # a uniformly distributed orthogonal matrix
            norms = np.sqrt(rng.chisquare(self.dim, size=self.dim))
            blocks.append(q * norms[:, None])
        w = np.concatenate(blocks)[:m]
        return np.sqrt(2.0 * self.gamma) * w

    def features(self, x: np.ndarray) -> np.ndarray:
        """φ(x) for the rows of ``x`` (n, dim) → (n, size), float32.

        The phases are computed in float64, the cosines in float32: the index that consumes
        the vectors is float32, and float32 cos/sin are an order of magnitude faster here.
        """
        proj = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ self.frequencies.T).astype(
            np.float32
        )
        proj *= np.float32(1.0)  # contiguous float32: the fast SIMD path of cos/sin
        out = np.concatenate([np.cos(proj), np.sin(proj)], axis=1)
        out *= np.float32(1.0 / np.sqrt(self.size // 2))
        return out

    def embed(self, spec: KernelMeanEmbedding) -> np.ndarray:
        """e(spec) = Σ_j β_j φ(z_j), a float32 vector of length ``size``."""
        return self.embed_many([spec])[0]

    def embed_many(
        self, specs: Sequence[KernelMeanEmbedding], *, block_rows: int = 1 << 14
    ) -> np.ndarray:
        """Embeddings of many specs, (len(specs), size); memory bounded by ``block_rows``."""
        out = np.empty((len(specs), self.size), dtype=np.float32)
        start = 0
        while start < len(specs):
            stop, rows = start, 0
            while stop < len(specs) and (rows == 0 or rows + len(specs[stop].beta_) <= block_rows):
                rows += len(specs[stop].beta_)
                stop += 1
            out[start:stop] = self._embed_block(specs[start:stop])
            start = stop
        return out

    def _embed_block(self, specs: Sequence[KernelMeanEmbedding]) -> np.ndarray:
        for spec in specs:
            if not same_gamma(spec.gamma, self.gamma):
                raise SpecificationError(
                    f"spec gamma {spec.gamma} differs from the partition's {self.gamma}"
                )
        z = [np.asarray(s.z_, dtype=np.float64).reshape(len(s.beta_), -1) for s in specs]
        bad = {zz.shape[1] for zz in z} - {self.dim}
        if bad:
            raise SpecificationError(f"spec has {bad.pop()} features, the partition {self.dim}")
        feats = self.features(np.concatenate(z))
        # e = S · φ(Z) with S the sparse (specs × points) matrix of the β weights.
        sizes = np.array([len(zz) for zz in z])
        beta = np.concatenate([np.asarray(s.beta_, dtype=np.float32) for s in specs])
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        weights = scipy.sparse.csr_matrix(
            (beta, np.arange(len(beta)), indptr), shape=(len(specs), len(beta))
        )
        return np.asarray(weights @ feats, dtype=np.float32)
