"""The reduced sets of one partition's specs, packed by learnware id, for exact MMD².

A search worker holds every accepted spec of a partition; at a million learnwares of K=50
points in 10 features that is 4 GB of float64, so the points live in fixed-size chunks of
plain arrays (appends never copy what is stored, and there is no per-spec Python object) and
each spec's self-term ⟨Φ_s, Φ_s⟩ is computed once, when it is added, from direct differences.

A query's cross terms ⟨Φ_q, Φ_s⟩ use the GEMM form of the kernel on points taken relative to
the partition's fixed centre (as :class:`specification.mmd.SpecBank`), so the squared MMD

    MMD²(q, s) = ⟨Φ_q, Φ_q⟩ − 2⟨Φ_q, Φ_s⟩ + ⟨Φ_s, Φ_s⟩

of any subset of specs agrees with a direct computation to about 1e-15.

Points that were computed in float32 (the heterogeneous map's) can be kept as float32
(``points="float32"``): half the memory, and nothing is lost, as each float64 value is a
float32 one. Those chunks hold the points themselves, and a scan takes them back to float64
relative to the centre before any arithmetic, so the results are the float64 store's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from wharf.specification.blockwise import self_inner_product
from wharf.specification.errors import SpecificationError
from wharf.specification.kernel import kernel_exp_, map_ranges
from wharf.specification.mmd import KernelMeanEmbedding, self_inner_products
from wharf.specification.rkme import same_gamma

#: Rows per chunk of stored points (8 · dim · this many bytes each).
CHUNK_ROWS = 1 << 18
#: Stored points gathered at a time for a query (whole specs; a larger spec alone): bounds the
#: working memory of a scan to about 8 · (dim + 3) · this many bytes.
GATHER_ROWS = 1 << 16
#: Kernel values per tile of a query: the tile's exponents, their exp and its weighted sums
#: stay in the core's cache (512 KiB of float64), where a tile of 4 MiB went to memory and
#: back at each step.
TILE_ENTRIES = 1 << 16


@dataclass(frozen=True)
class StoredSpec:
    """One stored spec, shaped like an RKME for code that needs ``z_``, ``beta_``, ``gamma``."""

    z_: np.ndarray
    beta_: np.ndarray
    gamma: float


class _Growable:
    """A 1-d array that doubles its capacity; ``view`` is the filled part."""

    def __init__(self, dtype, fill=0):
        self._a = np.full(16, fill, dtype=dtype)
        self._fill = fill
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self._a):
            grown = np.full(max(need, 2 * len(self._a)), self._fill, dtype=self._a.dtype)
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self._a[: self.n]


class PackedSpecs:
    """Specs of one γ and feature size, by integer learnware id.

    Each spec has a *slot*; removing a spec frees its slot's id, and once removed slots
    outnumber live ones :meth:`compact` rewrites the arrays from the live specs (memory stays
    within about twice the live size). Adding an id that is present replaces its spec.

    Parameters
    ----------
    gamma : float
        The kernel parameter of every spec.
    dim : int
        The flattened feature size of every spec.
    chunk_rows : int
        Points per storage chunk.
    points : {"float64", "float32"}
        How points are kept: float64 relative to the centre, or float32 as they are (points
        with more precision than float32 are rounded to it).
    """

    def __init__(
        self, gamma: float, dim: int, *, chunk_rows: int = CHUNK_ROWS, points: str = "float64"
    ):
        if points not in ("float64", "float32"):
            raise ValueError(f"points must be 'float64' or 'float32', got {points!r}")
        self.gamma = float(gamma)
        self.dim = int(dim)
        self.chunk_rows = int(chunk_rows)
        self.points = points
        self.center: np.ndarray | None = None
        #: chunks of points: relative to the centre (float64), or as they are (float32)
        self._z: list[np.ndarray] = []
        self._beta: list[np.ndarray] = []
        self._used: list[int] = []  # rows filled in each chunk
        # per slot
        self._ids = _Growable(np.int64, -1)  # -1: removed
        self._chunk = _Growable(np.int32)
        self._start = _Growable(np.int64)
        self._count = _Growable(np.int32)
        self._self = _Growable(np.float64)
        self._slot: dict[int, int] = {}
        self._live_rows = 0

    # -- membership --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, learnware_id: object) -> bool:
        return learnware_id in self._slot

    @property
    def ids(self) -> np.ndarray:
        """Live ids in slot order."""
        ids = self._ids.view
        return ids[ids >= 0].copy()

    def rows(self, ids: Sequence[int] | np.ndarray | None = None) -> int:
        """Points stored for the live specs, or for ``ids``."""
        if ids is None:
            return self._live_rows
        return int(self._count.view[self.slots(ids)].sum())

    @property
    def nbytes(self) -> int:
        return sum(z.nbytes + b.nbytes for z, b in zip(self._z, self._beta, strict=True))

    def slots(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The slots of ``ids``, in that order; :class:`LookupError` names missing ones."""
        try:
            return np.fromiter((self._slot[int(i)] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise LookupError(f"learnware {exc.args[0]} is not in this partition") from None

    # -- changes -----------------------------------------------------------------------
    def add(self, ids: Sequence[int], specs: Sequence[KernelMeanEmbedding]) -> None:
        """Add (or replace) specs under these ids."""
        if len(ids) != len(specs):
            raise ValueError("add: as many ids as specs")
        if len(set(map(int, ids))) != len(ids):
            raise ValueError("add: duplicate learnware ids in one batch")
        if not len(ids):
            return
        zs, bs = [], []
        for spec in specs:
            if not same_gamma(spec.gamma, self.gamma):
                raise SpecificationError(f"spec gamma {spec.gamma} differs from {self.gamma}")
            z = np.asarray(spec.z_, dtype=np.float64).reshape(len(spec.beta_), -1)
            if self.points == "float32":  # the self-terms are those of the points kept
                z = z.astype(np.float32).astype(np.float64)
            if z.shape[1] != self.dim:
                raise SpecificationError(
                    f"spec has {z.shape[1]} features, the partition {self.dim}"
                )
            zs.append(z)
            bs.append(np.asarray(spec.beta_, dtype=np.float64).reshape(-1))
        if self.center is None:
            self.center = np.concatenate(zs).mean(0)
        self.remove(ids)
        sizes = [len(b) for b in bs]
        z_all = np.concatenate(zs) - self.center
        beta_all = np.concatenate(bs)
        self_terms = self_inner_products(
            torch.from_numpy(z_all), torch.from_numpy(beta_all), sizes, self.gamma
        ).numpy()
        self.add_packed(np.asarray(ids, dtype=np.int64), z_all, beta_all, sizes, self_terms)

    def add_packed(
        self,
        ids: np.ndarray,
        z: np.ndarray,
        beta: np.ndarray,
        sizes: Sequence[int],
        self_terms: np.ndarray,
    ) -> None:
        """Append specs already relative to :attr:`center`, with their self-terms (trusted:
        snapshots and :meth:`compact`). The ids must not be present."""
        if self.points == "float32":
            z = (z + self.center).astype(np.float32)
        chunks, starts = [], []
        offset = 0
        for k in sizes:
            c = self._room_for(k)
            used = self._used[c]
            self._z[c][used : used + k] = z[offset : offset + k]
            self._beta[c][used : used + k] = beta[offset : offset + k]
            self._used[c] = used + k
            chunks.append(c)
            starts.append(used)
            offset += k
        first = self._ids.n
        self._ids.extend(ids)
        self._chunk.extend(np.asarray(chunks, dtype=np.int32))
        self._start.extend(np.asarray(starts, dtype=np.int64))
        self._count.extend(np.asarray(sizes, dtype=np.int32))
        self._self.extend(np.asarray(self_terms, dtype=np.float64))
        self._slot.update(zip(ids.tolist(), range(first, first + len(ids)), strict=True))
        self._live_rows += int(np.sum(sizes))

    def _room_for(self, k: int) -> int:
        if self._z and self._used[-1] + k <= len(self._z[-1]):
            return len(self._z) - 1
        rows = max(self.chunk_rows, k)
        self._z.append(np.empty((rows, self.dim), dtype=self.points))
        self._beta.append(np.empty(rows))
        self._used.append(0)
        return len(self._z) - 1

    def remove(self, ids: Sequence[int]) -> int:
        """Remove these ids (absent ones are ignored); returns how many were present."""
        removed = 0
        slot_ids = self._ids.view
        for i in ids:
            slot = self._slot.pop(int(i), None)
            if slot is not None:
                slot_ids[slot] = -1
                self._live_rows -= int(self._count.view[slot])
                removed += 1
        if removed and self._ids.n - len(self._slot) > max(len(self._slot), 1024):
            self.compact()
        return removed

    def compact(self) -> None:
        """Rewrite the storage with only the live specs, in slot order."""
        ids, z, beta, sizes, self_terms = self.export()
        center = self.center
        self.__init__(self.gamma, self.dim, chunk_rows=self.chunk_rows, points=self.points)
        self.center = center
        if len(ids):
            self.add_packed(ids, z, beta, sizes, self_terms)

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ids, z, beta, sizes, self_terms) of the live specs, points relative to the centre."""
        live = np.flatnonzero(self._ids.view >= 0)
        z, beta = self._gather(live)
        return (
            self._ids.view[live].copy(),
            z,
            beta,
            self._count.view[live].copy(),
            self._self.view[live].copy(),
        )

    def state(self) -> dict[str, np.ndarray]:
        """The storage as named arrays (views, not copies, of a float64 store), for a
        snapshot; it loads as a float64 store."""
        out = {
            "center": np.empty(0) if self.center is None else self.center,
            "used": np.asarray(self._used, dtype=np.int64),
            "ids": self._ids.view,
            "chunk": self._chunk.view,
            "start": self._start.view,
            "count": self._count.view,
            "self": self._self.view,
        }
        for c, (z, beta) in enumerate(zip(self._z, self._beta, strict=True)):
            out[f"z{c}"], out[f"beta{c}"] = (
                self._relative(z[: self._used[c]]),
                beta[: self._used[c]],
            )
        return out

    def _relative(self, z: np.ndarray) -> np.ndarray:
        """Stored points as float64 relative to the centre."""
        return z if self.points == "float64" else z.astype(np.float64) - self.center

    @classmethod
    def from_state(cls, gamma: float, dim: int, state, *, chunk_rows: int = CHUNK_ROWS):
        """The inverse of :meth:`state` (``state`` maps names to arrays, e.g. an ``NpzFile``)."""
        out = cls(gamma, dim, chunk_rows=chunk_rows)
        center = np.asarray(state["center"])
        out.center = center if len(center) else None
        out._used = [int(u) for u in state["used"]]
        for c, used in enumerate(out._used):
            rows = max(chunk_rows, used)
            z, beta = np.empty((rows, out.dim)), np.empty(rows)
            z[:used], beta[:used] = state[f"z{c}"], state[f"beta{c}"]
            out._z.append(z)
            out._beta.append(beta)
        for name, arr in (
            ("ids", out._ids),
            ("chunk", out._chunk),
            ("start", out._start),
            ("count", out._count),
            ("self", out._self),
        ):
            arr.extend(np.asarray(state[name]))
        ids = out._ids.view
        live = np.flatnonzero(ids >= 0)
        out._slot = dict(zip(ids[live].tolist(), live.tolist(), strict=True))
        out._live_rows = int(out._count.view[live].sum())
        return out

    # -- reading -----------------------------------------------------------------------
    def _gather(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The points and weights of these slots, stacked in that order (one fancy index per
        chunk, no Python loop over the specs)."""
        if len(slots) == 0:
            return np.empty((0, self.dim)), np.empty(0)
        chunk = self._chunk.view[slots]
        count = self._count.view[slots].astype(np.int64)
        ends = np.cumsum(count)
        rows = np.arange(int(ends[-1]), dtype=np.int64)
        rows += np.repeat(self._start.view[slots] - (ends - count), count)
        first = int(chunk[0])
        if (chunk == first).all():
            return self._relative(self._z[first][rows]), self._beta[first][rows]
        z, beta = np.empty((len(rows), self.dim)), np.empty(len(rows))
        where = np.repeat(chunk, count)
        for c in np.unique(chunk).tolist():
            mask = where == c
            z[mask], beta[mask] = self._z[c][rows[mask]], self._beta[c][rows[mask]]
        if self.points == "float32":
            z -= self.center
        return z, beta

    def spec(self, learnware_id: int) -> StoredSpec:
        """The stored spec of one learnware (points back in the original coordinates)."""
        slot = self.slots([learnware_id])[0]
        c, a = int(self._chunk.view[slot]), int(self._start.view[slot])
        k = int(self._count.view[slot])
        z, beta = self._z[c][a : a + k], self._beta[c][a : a + k]
        points = z.astype(np.float64) if self.points == "float32" else z + self.center
        return StoredSpec(points, beta.copy(), self.gamma)

    def self_terms(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._self.view[self.slots(ids)]

    def mmd2(self, query: KernelMeanEmbedding, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Squared MMD from ``query`` to the specs of ``ids``, in that order."""
        return self.distances(query, ids)[0]

    def distances(
        self, query: KernelMeanEmbedding, ids: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Squared MMD from ``query`` to the specs of ``ids``, the inner products
        ⟨Φ_q, Φ_s⟩ it is made of (a search's mixture uses them) and the specs' self-terms
        ⟨Φ_s, Φ_s⟩, in that order."""
        slots = self.slots(ids)
        if len(slots) == 0:
            return np.empty(0), np.empty(0), np.empty(0)
        if not same_gamma(query.gamma, self.gamma):
            raise SpecificationError(f"query gamma {query.gamma} differs from {self.gamma}")
        zq = np.asarray(query.z_, dtype=np.float64).reshape(len(query.beta_), -1)
        if zq.shape[1] != self.dim:
            raise SpecificationError(f"query has {zq.shape[1]} features, the partition {self.dim}")
        bq = np.asarray(query.beta_, dtype=np.float64).reshape(-1)
        zq = zq - self.center
        # The query's own ⟨Φ_q, Φ_q⟩ from direct differences, in numpy (a torch call here
        # would wake torch's thread pool), tile by tile whatever its K.
        self_q = self_inner_product(zq, bq, self.gamma)
        g, d = self.gamma, self.dim
        qa = np.concatenate(
            [2.0 * g * zq, -g * (zq * zq).sum(1, keepdims=True), np.full((len(zq), 1), -g)], 1
        )
        counts = self._count.view[slots]
        # Groups of whole specs, about GATHER_ROWS points each (a larger spec alone).
        bounds = [0]
        rows = 0
        for i, k in enumerate(counts.tolist()):
            rows += k
            if rows >= GATHER_ROWS:
                bounds.append(i + 1)
                rows = 0
        if bounds[-1] != len(slots):
            bounds.append(len(slots))
        tile = max(1, TILE_ENTRIES // len(qa))  # stored points per tile

        def group(lo: int, hi: int) -> np.ndarray:
            z, beta = self._gather(slots[lo:hi])
            za = np.empty((len(z), d + 2))
            za[:, :d] = z
            za[:, d] = 1.0
            np.einsum("ij,ij->i", z, z, out=za[:, d + 1])
            v = np.empty(len(z))
            for s in range(0, len(z), tile):
                e = za[s : s + tile] @ qa.T
                kernel_exp_(e)
                np.dot(e, bq, out=v[s : s + tile])
            v *= beta
            k = counts[lo:hi]
            return np.add.reduceat(v, np.cumsum(k) - k)

        cross = np.concatenate(map_ranges(group, list(pairwise(bounds))))
        self_terms = self._self.view[slots]
        return self_q + self_terms - 2.0 * cross, cross, self_terms
