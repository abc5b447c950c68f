"""FAISS over one partition's index embeddings: the coarse stage of a search.

The vectors are :class:`specification.embedding.IndexEmbedding` embeddings, whose squared L2
distances approximate MMD², and the FAISS ids are learnware ids. The kind of index follows the
partition's size and a memory budget:

- up to ``flat_max`` vectors, ``IDMap2,Flat``: exact L2 over the embeddings;
- beyond, ``IVF<nlist>,Flat`` with nlist ≈ 2√n (a power of two), trained on 40 vectors
  per list;
- and ``IVF<nlist>,SQ8`` (a quarter of the memory) when flat vectors would exceed the budget.

An IVF index is (re)built when the partition first outgrows the flat kind and again each time
it has grown fourfold since, so its coarse centroids follow the data. After each build,
``nprobe`` is the smallest power of two whose recall@``tune_k`` against an exact search of the
same embeddings, on sampled member vectors, reaches ``target_recall``; the recall it measured is
kept in :attr:`CoarseIndex.info` and reported with every search.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from .config import CoarseConfig

#: Vectors queried when tuning nprobe.
TUNE_QUERIES = 200


@dataclass
class CoarseInfo:
    """What the index is and how well it was measured to find the exact embedding neighbours."""

    kind: str = "IDMap2,Flat"
    nprobe: int = 0
    recall: float = 1.0  # recall@tune_k of the last tuning (1.0: exact)
    tune_k: int = 100
    built_at_size: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class CoarseIndex:
    """A FAISS index of ``size``-long float32 vectors by int64 id; thread-safe."""

    def __init__(self, size: int, config: CoarseConfig | None = None):
        self.size = int(size)
        self.config = config or CoarseConfig()
        self.info = CoarseInfo(tune_k=self.config.tune_k)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(self.size))
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_ivf(self) -> bool:
        return self.info.kind.startswith("IVF")

    # -- changes -----------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids (the caller removes an id before adding it again)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            self._index.add_with_ids(vectors, ids)
            if self._needs_rebuild():
                self.rebuild()

    def remove(self, ids: np.ndarray) -> int:
        with self._lock:
            return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def _needs_rebuild(self) -> bool:
        n = len(self)
        if n <= self.config.flat_max:
            return False
        return not self.is_ivf or n >= 4 * self.info.built_at_size

    def _kind_for(self, n: int) -> str:
        if n <= self.config.flat_max:
            return "IDMap2,Flat"
        # about 2√n lists (a power of two), and at least 40 training vectors per list
        nlist = 2 ** round(math.log2(max(64, 2 * math.sqrt(n))))
        nlist = min(nlist, 2 ** int(math.log2(max(1, n // 40))))
        flat_bytes = n * self.size * 4
        codec = "Flat" if flat_bytes <= self.config.memory_budget_bytes else "SQ8"
        return f"IVF{nlist},{codec}"

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything indexed."""
        with self._lock:
            n = len(self)
            if n == 0:
                return np.empty(0, dtype=np.int64), np.empty((0, self.size), dtype=np.float32)
            if self.is_ivf:
                invlists = self._index.invlists
                ids = np.concatenate(
                    [
                        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                        for i in range(self._index.nlist)
                        if invlists.list_size(i)
                    ]
                )
                return ids, self._index.reconstruct_batch(ids)
            ids = faiss.vector_to_array(self._index.id_map).copy()
            return ids, self._index.index.reconstruct_n(0, n)

    def rebuild(self) -> None:
        """Rebuild with the kind the current size calls for; retrain and retune an IVF."""
        with self._lock:
            ids, vectors = self.vectors()
            self._index = None  # free the old index before the new one is built
            self._index, self.info = build(ids, vectors, self.size, self.config)

    # -- queries -----------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids of the ``k`` vectors nearest ``query``, best first (among ``allowed`` if given)."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.size)
        with self._lock:
            k = min(int(k), len(self))
            if k <= 0:
                return np.empty(0, dtype=np.int64)
            params = _search_params(self.info, allowed)
            # One query gains nothing from FAISS's OpenMP team, whose spinning threads would
            # then hold the cores the exact re-ranking needs next.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                _, ids = self._index.search(query, k, params=params)
            finally:
                faiss.omp_set_num_threads(threads)
        ids = ids[0]
        return ids[ids >= 0]

    # -- snapshots ---------------------------------------------------------------------
    def serialize(self) -> np.ndarray:
        with self._lock:
            return faiss.serialize_index(self._index)

    @classmethod
    def deserialize(
        cls, data: np.ndarray, size: int, info: dict, config: CoarseConfig | None = None
    ) -> CoarseIndex:
        out = cls(size, config)
        out._index = faiss.deserialize_index(np.asarray(data, dtype=np.uint8))
        out.info = CoarseInfo(**info)
        if out.is_ivf:
            out._index.nprobe = out.info.nprobe
            out._index.set_direct_map_type(faiss.DirectMap.Hashtable)  # not serialized
        return out


def _search_params(info: CoarseInfo, allowed: np.ndarray | None):
    selector = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    if info.kind.startswith("IVF"):
        return faiss.SearchParametersIVF(sel=selector, nprobe=info.nprobe)
    return None if selector is None else faiss.SearchParameters(sel=selector)


def build(
    ids: np.ndarray, vectors: np.ndarray, size: int, config: CoarseConfig
) -> tuple[faiss.Index, CoarseInfo]:
    """A new index of ``vectors``, of the kind their number calls for, tuned for recall."""
    n = len(ids)
    kind = CoarseIndex(size, config)._kind_for(n)
    info = CoarseInfo(kind=kind, tune_k=config.tune_k, built_at_size=n)
    if not kind.startswith("IVF"):
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(size))
        index.add_with_ids(vectors, ids)
        return index, info
    index = faiss.index_factory(size, kind)
    nlist = index.nlist
    rng = np.random.default_rng(config.seed)
    sample = vectors[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    index.cp.seed = config.seed
    index.train(sample)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove and reconstruct by id
    index.add_with_ids(vectors, ids)
    info.nprobe, info.recall = _tune_nprobe(index, ids, vectors, config, rng)
    index.nprobe = info.nprobe
    return index, info


def _tune_nprobe(index, ids, vectors, config: CoarseConfig, rng) -> tuple[int, float]:
    """The smallest power-of-two nprobe reaching the target recall@k on sampled vectors."""
    queries = vectors[rng.choice(len(vectors), size=min(TUNE_QUERIES, len(vectors)), replace=False)]
    k = min(config.tune_k, len(vectors))
    _, truth = faiss.knn(queries, vectors, k)
    truth = ids[truth]  # positions → ids, as the index answers
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        _, found = index.search(queries, k)
        recall = float(
            np.mean([len(np.intersect1d(t, f)) / k for t, f in zip(truth, found, strict=True)])
        )
        if recall >= config.target_recall or nprobe >= index.nlist:
            return nprobe, recall
        nprobe *= 2
