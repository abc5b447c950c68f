"""The search worker's side: a per-process cache of accepted learnwares, kept in step with the
catalog, and the search itself (:func:`market.search.search`).

The catalog is the truth. Each search first asks it for the (id, updated_at) of every accepted
learnware — one narrow query — then parses only what changed since the last search, so a
worker's cache and its per-partition spec banks follow adds, edits and deletes exactly.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from typing import Any

from market.catalog import Catalog, repo
from market.search import Candidate, PartitionKey, SpecPartition, partition_key, search
from market.store import ObjectStore
from specification.files import loads_spec
from specification.semantic import SemanticSpec


class CandidateCache:
    def __init__(self) -> None:
        self._versions: dict[str, datetime] = {}
        self._candidates: dict[str, Candidate] = {}
        self._partitions: dict[PartitionKey, SpecPartition] = {}
        self._lock = threading.Lock()

    def refresh(self, catalog: Catalog) -> list[Candidate]:
        with self._lock, catalog.session() as s:
            current = {repo.format_id(i): t for i, t in repo.accepted_versions(s)}
            gone = [i for i in self._versions if current.get(i) != self._versions[i]]
            fresh = [i for i, t in current.items() if self._versions.get(i) != t]
            rows = repo.get_learnwares(s, [repo.parse_id(i) for i in fresh]) if fresh else []
            self._drop(gone)
            added = []
            for lw in rows:
                lid = repo.format_id(lw.id)
                spec = loads_spec(lw.stat_spec) if lw.stat_spec else None
                cand = Candidate(lid, SemanticSpec.from_dict(lw.semantic_spec), spec)
                self._candidates[lid] = cand
                self._versions[lid] = current[lid]
                added.append(cand)
            for cand in added:
                if cand.spec is not None:
                    key = partition_key(cand.spec)
                    if key not in self._partitions:
                        self._partitions[key] = SpecPartition.for_spec(cand.spec)
                    self._partitions[key].add([cand])
            return [self._candidates[i] for i in current if i in self._candidates]

    def _drop(self, ids: list[str]) -> None:
        for lid in ids:
            cand = self._candidates.pop(lid, None)
            self._versions.pop(lid, None)
            if cand is not None and cand.spec is not None:
                part = self._partitions.get(partition_key(cand.spec))
                if part is not None and lid in part:
                    part.remove([lid])

    def partition_for(self, spec) -> SpecPartition | None:
        return self._partitions.get(partition_key(spec))


_cache = CandidateCache()


def run_search(catalog: Catalog, store: ObjectStore, request: dict[str, Any]) -> dict[str, Any]:
    semantic = (
        SemanticSpec.from_dict(request["semantic"], requirement=True)
        if request.get("semantic")
        else None
    )
    spec = None
    if request.get("spec_key"):
        buf = io.BytesIO()
        with store.open(request["spec_key"]) as stream:
            while chunk := stream.read(1 << 20):
                buf.write(chunk)
        spec = loads_spec(buf.getvalue())
    candidates = _cache.refresh(catalog)
    result = search(
        candidates,
        semantic=semantic,
        spec=spec,
        max_search_num=int(request.get("max_search_num") or 5),
        top=request.get("top"),
        partition=_cache.partition_for(spec) if spec is not None else None,
    ).to_dict()
    names = {c.id: c.semantic.name for c in candidates}
    for single in result.get("singles", []):
        single["name"] = names.get(single["id"], "")
    if result.get("mixture"):
        result["mixture"]["names"] = [names.get(i, "") for i in result["mixture"]["ids"]]
    return result
