"""A search worker's index of accepted specs: one :class:`PartitionIndex` per partition.

A partition is what two specs must share to be compared (spec type, feature shape, γ). Each
holds the exact reduced sets (:class:`~market.index.packed.PackedSpecs`) and, for spec types
with an index embedding, a FAISS index of the embeddings
(:class:`~market.index.coarse.CoarseIndex`). :meth:`PartitionIndex.rank` answers a query

- by an exact scan when the specs in scope hold at most ``exact_max_rows`` points, or number
  no more than the candidates asked for;
- otherwise by taking the ``candidates`` nearest embeddings from FAISS and ranking those by
  exact MMD².

Either way the distances returned are exact; only *which* specs are ranked can differ from a
full scan, and the benchmarks ``bench/search_scale.py`` and ``bench/image_index.py`` measure
how often that changes a top-10. Table and text partitions embed with random Fourier features
(:class:`~specification.embedding.IndexEmbedding`); image partitions keep their specs in an
:class:`~market.index.images.ImageSpecs` store and embed with random ConvNets
(:class:`~specification.image_embedding.ImageIndexEmbedding`). An NNGP kernel pair costs about
a thousand Gaussian ones, so image partitions have their own, smaller thresholds. Text
partitions also keep each learnware's languages, and a query ranks only those whose languages
include all of its own (the reference's filter).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from wharf.market.scoring import PartitionKey, partition_key
from wharf.specification.embedding import IndexEmbedding
from wharf.specification.image import IMAGE_SPEC_TYPE
from wharf.specification.image_embedding import ImageIndexEmbedding
from wharf.specification.mmd import KernelMeanEmbedding
from wharf.specification.rkme import same_gamma
from wharf.specification.text import TEXT_SPEC_TYPE

from .coarse import CoarseIndex
from .config import IndexConfig
from .images import ImageSpecs
from .packed import PackedSpecs


@dataclass(frozen=True)
class Ranked:
    """Learnwares ranked by exact MMD² to a query, ascending (ties by id)."""

    ids: np.ndarray
    mmd2: np.ndarray
    self_terms: np.ndarray
    method: str  # "exact" or "coarse"
    in_scope: int  # learnwares the query could match in this partition
    pool: list  # the specs of the first ``pool`` ids (StoredSpec), read with the ranking
    dropped_language: int = 0  # text learnwares in scope lacking one of the query's languages
    #: ⟨Φ_query, Φ_s⟩ of each id, from the same kernel sums as ``mmd2`` (``None``: not kept,
    #: as in image partitions)
    cross: np.ndarray | None = None


class PartitionIndex:
    """The specs of one partition, exactly and (for large ones) in FAISS."""

    def __init__(self, key: PartitionKey, config: IndexConfig | None = None):
        self.key = PartitionKey(key.spec_type, tuple(key.feature_shape), float(key.gamma))
        self.config = config or IndexConfig()
        dim = math.prod(self.key.feature_shape)
        self.specs: PackedSpecs | ImageSpecs = self._new_store()
        #: Text partitions: each learnware's languages.
        self.languages: dict[int, frozenset[str]] = {}
        self.image = self.key.spec_type == IMAGE_SPEC_TYPE
        self.embedding: IndexEmbedding | ImageIndexEmbedding
        if self.image:
            channels = self.key.feature_shape[0]
            self.embedding = ImageIndexEmbedding(channels, seed=self.config.embedding_seed)
            self.exact_max_rows = self.config.image_exact_max_rows
            self.min_candidates = self.config.image_min_candidates
        else:
            self.embedding = IndexEmbedding(
                dim, self.key.gamma, self.config.embedding_size, self.config.embedding_seed
            )
            self.exact_max_rows = self.config.exact_max_rows
            self.min_candidates = self.config.min_candidates
        self.coarse = CoarseIndex(self.embedding.size, self.config.coarse)
        self._lock = threading.RLock()

    def _new_store(self, state=None) -> PackedSpecs | ImageSpecs:
        """The spec store of this partition's kind, empty or restored from a snapshot."""
        if self.key.spec_type == IMAGE_SPEC_TYPE:
            device = self.config.image_device
            if state is None:
                return ImageSpecs(self.key.feature_shape, device=device)
            return ImageSpecs.from_state(self.key.feature_shape, state, device=device)
        dim = math.prod(self.key.feature_shape)
        if state is None:
            return PackedSpecs(self.key.gamma, dim, points=self.config.point_dtype)
        return PackedSpecs.from_state(self.key.gamma, dim, state)

    def load_state(self, state, header: dict) -> None:
        """Restore the specs (and a text partition's languages) saved by a snapshot."""
        self.specs = self._new_store(state)
        self.languages = {
            int(i): frozenset(langs) for i, langs in header.get("languages", {}).items()
        }

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, learnware_id: object) -> bool:
        return learnware_id in self.specs

    def accepts(self, spec: KernelMeanEmbedding) -> bool:
        key = partition_key(spec)
        return (
            key.spec_type == self.key.spec_type
            and key.feature_shape == self.key.feature_shape
            and same_gamma(key.gamma, self.key.gamma)
        )

    def add(self, ids: Sequence[int], specs: Sequence[KernelMeanEmbedding]) -> None:
        """Add (or replace) these learnwares' specs."""
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            self.remove(ids)
            self.specs.add(ids, specs)
            if self.key.spec_type == TEXT_SPEC_TYPE:
                for i, spec in zip(ids.tolist(), specs, strict=True):
                    self.languages[i] = frozenset(getattr(spec, "language_", ()))
            self.coarse.add(ids, self._embed(specs))

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.asarray([i for i in ids if i in self.specs], dtype=np.int64)
        if not len(ids):
            return 0
        with self._lock:
            self.coarse.remove(ids)
            for i in ids.tolist():
                self.languages.pop(i, None)
            return self.specs.remove(ids)

    def rank(
        self,
        query: KernelMeanEmbedding,
        *,
        allowed: np.ndarray | None = None,
        candidates: int | None = None,
        pool: int = 0,
    ) -> Ranked:
        """Exact MMD² from ``query`` to the best learnwares in scope (``allowed``, or all).

        Returns every learnware in scope when it is scanned exactly, else the ``candidates``
        (default: :attr:`min_candidates`) that FAISS proposes. The specs of the
        best ``pool`` are read under the same lock, so a concurrent removal cannot split them
        from the ranking.
        """
        c = candidates or self.min_candidates
        with self._lock:
            scope = None  # everything: not materialised unless scanned
            if allowed is not None:
                scope = np.asarray(
                    [i for i in np.asarray(allowed).tolist() if i in self.specs], dtype=np.int64
                )
            wanted = frozenset(getattr(query, "language_", ()))
            dropped = 0
            if self.key.spec_type == TEXT_SPEC_TYPE and wanted:
                base = self.specs.ids if scope is None else scope
                keep = np.fromiter(
                    (wanted <= self.languages.get(i, frozenset()) for i in base.tolist()),
                    dtype=bool,
                    count=len(base),
                )
                scope, dropped = base[keep], int((~keep).sum())
            in_scope = len(self.specs) if scope is None else len(scope)
            rows = self.specs.rows(scope)
            if in_scope <= c or rows <= self.exact_max_rows:
                ids, method = self.specs.ids if scope is None else scope, "exact"
            else:
                ids = self.coarse.search(self._embed([query])[0], c, scope)
                method = "coarse"
            if self.image:
                dist, cross = self.specs.mmd2(query, ids), None
                self_terms = self.specs.self_terms(ids)
            else:
                dist, cross, self_terms = self.specs.distances(query, ids)
            finite = np.isfinite(dist)
            if not finite.all():
                ids, dist, self_terms = ids[finite], dist[finite], self_terms[finite]
                cross = None if cross is None else cross[finite]
            order = np.lexsort((ids, dist))
            specs = [self.specs.spec(i) for i in ids[order][:pool].tolist()]
        return Ranked(
            ids[order],
            dist[order],
            self_terms[order],
            method,
            in_scope,
            specs,
            dropped,
            None if cross is None else cross[order],
        )

    def describe(self) -> dict:
        """Size, index kind and measured recall, for search stats and metrics."""
        out = {
            "spec_type": self.key.spec_type,
            "feature_shape": list(self.key.feature_shape),
            "gamma": self.key.gamma,
            "size": len(self),
            "rows": self.specs.rows(),
            "kernel": "nngp" if self.image else "gaussian",
        }
        out["coarse"] = self.coarse.info.to_dict()
        out["embedding"] = self.embedding.key
        return out

    def _embed(self, specs: Sequence[KernelMeanEmbedding]) -> np.ndarray:
        if self.image:
            return self.embedding.embed_many(specs, device=self.config.image_device)
        return self.embedding.embed_many(specs)


class MarketIndex:
    """Every partition of a worker's index, and the last catalog change it reflects."""

    def __init__(self, config: IndexConfig | None = None):
        self.config = config or IndexConfig()
        self.partitions: dict[PartitionKey, PartitionIndex] = {}
        self.seq = 0  # the last change-log entry applied
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return sum(len(p) for p in self.partitions.values())

    def __contains__(self, learnware_id: object) -> bool:
        return any(learnware_id in p for p in self.partitions.values())

    def partition_for(self, spec: KernelMeanEmbedding) -> PartitionIndex | None:
        key = partition_key(spec)
        part = self.partitions.get(key)
        if part is not None:
            return part
        for p in self.partitions.values():
            if p.accepts(spec):
                return p
        return None

    def add(self, ids: Sequence[int], specs: Sequence[KernelMeanEmbedding]) -> None:
        """Add (or replace) learnwares; a spec that changed partition leaves its old one."""
        with self.lock:
            self.remove(ids)
            groups: dict[PartitionKey, tuple[list[int], list]] = {}
            for i, spec in zip(ids, specs, strict=True):
                part = self.partition_for(spec)
                if part is None:
                    part = self.partitions[partition_key(spec)] = PartitionIndex(
                        partition_key(spec), self.config
                    )
                group = groups.setdefault(part.key, ([], []))
                group[0].append(int(i))
                group[1].append(spec)
            for key, (group_ids, group_specs) in groups.items():
                self.partitions[key].add(group_ids, group_specs)

    def remove(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        with self.lock:
            return sum(p.remove(ids) for p in list(self.partitions.values()))

    def describe(self) -> list[dict]:
        return [p.describe() for p in self.partitions.values()]
