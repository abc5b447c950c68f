"""The search worker's side: the semantic stage in the catalog, the statistical stage on the
worker's index (:mod:`market.index`), kept in step with the catalog before every search. A
heterogeneous search (``request["hetero"]``) maps the user's RKME with the current map and
ranks it on the index of that map's specs (:mod:`market.hetero.index`).
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from wharf.market.catalog import Catalog, repo
from wharf.market.hetero import maps
from wharf.market.hetero.index import HeteroIndexes
from wharf.market.index.coarse import CoarseConfig
from wharf.market.index.partition import IndexConfig
from wharf.market.index.search import search_index
from wharf.market.index.sync import IndexSync
from wharf.market.scoring import FUZZY_MAX_RESULTS, SearchResult, SingleMatch, fuzzy_name_matches
from wharf.market.settings import Settings
from wharf.market.store import ObjectStore
from wharf.specification.errors import SpecificationError
from wharf.specification.files import loads_spec
from wharf.specification.rkme import RKME
from wharf.specification.semantic import FIELD_TYPES, SemanticSpec

#: The most learnwares a semantic-only search returns when no ``top`` is given.
SEMANTIC_ONLY_MAX = 1000


def index_config(settings: Settings) -> IndexConfig:
    return IndexConfig(
        embedding_size=settings.index_embedding_size,
        exact_max_rows=settings.index_exact_max_rows,
        min_candidates=settings.index_min_candidates,
        image_exact_max_rows=settings.index_image_exact_max_rows,
        image_min_candidates=settings.index_image_min_candidates,
        image_device=settings.index_image_device,
        coarse=CoarseConfig(
            flat_max=settings.index_flat_max,
            memory_budget_bytes=settings.index_memory_budget_bytes,
            target_recall=settings.index_target_recall,
        ),
    )


_sync: IndexSync | None = None
_sync_lock = threading.Lock()


def index_sync(catalog: Catalog, store: ObjectStore, settings: Settings) -> IndexSync:
    """This process's index (one per worker process, loaded on its first search)."""
    global _sync
    with _sync_lock:
        if _sync is None:
            _sync = IndexSync(
                catalog,
                store,
                index_config(settings),
                snapshot_every=settings.index_snapshot_every,
            )
        return _sync


_hetero: HeteroIndexes | None = None


def hetero_indexes(catalog: Catalog, store: ObjectStore, settings: Settings) -> HeteroIndexes:
    """This process's hetero index (of the current map version, built on its first search)."""
    global _hetero
    with _sync_lock:
        if _hetero is None:
            _hetero = HeteroIndexes(catalog, store, index_config(settings))
        return _hetero


def hetero_stage(
    catalog: Catalog,
    store: ObjectStore,
    settings: Settings,
    semantic: SemanticSpec | None,
    spec: RKME,
):
    """The user's RKME mapped with the current map, and the index of that map's version:
    ``(mapped spec, index sync)``. :class:`~wharf.market.hetero.NoHeteroMap` (the job fails
    saying so) before a map is ready."""
    hmap = maps.current_map(catalog, store, settings)
    sync = hetero_indexes(catalog, store, settings).for_version(hmap.version)
    if sync.version != hmap.version:  # a newer version became current meanwhile
        hmap = maps.version_map(catalog, store, settings, sync.version)
    return maps.map_requirement(hmap, semantic or {}, spec), sync


def semantic_stage(
    catalog: Catalog, requirement: SemanticSpec | None
) -> tuple[np.ndarray | None, dict[int, str]]:
    """The ids a requirement allows (``None``: every accepted learnware), in the order of
    :func:`market.search.semantic_matches`, and the names of those it looked up."""
    tagged = requirement is not None and any(
        requirement.values(k) for k, kind in FIELD_TYPES.items() if kind != "String"
    )
    if requirement is None or not (tagged or requirement.name):
        return None, {}
    name = (requirement.name or "").lower()
    with catalog.session(read_only=True) as s:
        rows = repo.semantic_candidates(s, requirement, with_text=bool(name))
    if name:
        keep = fuzzy_name_matches(
            name, [((n or "").lower(), (d or "").lower()) for _, n, d in rows]
        )
        rows = [rows[i] for i in keep[:FUZZY_MAX_RESULTS]]
    return np.asarray([r[0] for r in rows], dtype=np.int64), {r[0]: r[1] or "" for r in rows}


def run_search(
    catalog: Catalog, store: ObjectStore, settings: Settings, request: dict[str, Any]
) -> dict[str, Any]:
    semantic = (
        SemanticSpec.from_dict(request["semantic"], requirement=True)
        if request.get("semantic")
        else None
    )
    spec = None
    if request.get("spec") is not None:  # small specs travel in the request (api.routes.searches)
        text = str(request["spec"]).encode("utf-8")
        if len(text) > settings.max_spec_bytes:
            raise SpecificationError(f"the spec is over {settings.max_spec_bytes} bytes")
        spec = loads_spec(text, settings.spec_limits)
    elif request.get("spec_key"):
        # The API checked the spec; a worker still bounds what it reads and computes with.
        buf = io.BytesIO()
        with store.open(request["spec_key"]) as stream:
            while chunk := stream.read(1 << 20):
                buf.write(chunk)
                if buf.tell() > settings.max_spec_bytes:
                    raise SpecificationError(f"the spec is over {settings.max_spec_bytes} bytes")
        spec = loads_spec(buf.getvalue(), settings.spec_limits)
    top = request.get("top")
    hetero = None  # the map version of a search in the heterogeneous partition
    allowed, _ = semantic_stage(catalog, semantic)
    if spec is None:
        if allowed is None:
            with catalog.session(read_only=True) as s:
                allowed = np.asarray(repo.accepted_spec_ids(s), dtype=np.int64)
        # A semantic-only answer lists matches, not the whole market: at most top, or
        # SEMANTIC_ONLY_MAX; stats.semantic_matches says how many matched.
        ids = [repo.format_id(int(i)) for i in allowed[: top or SEMANTIC_ONLY_MAX]]
        result = SearchResult(
            [SingleMatch(i) for i in ids], None, True, {"semantic_matches": len(allowed)}
        )
    else:
        if request.get("hetero"):
            spec, sync = hetero_stage(catalog, store, settings, semantic, spec)
            hetero = {"map_version": sync.version}
        else:
            sync = index_sync(catalog, store, settings)
            sync.catch_up()
        result = search_index(
            sync.index,
            spec,
            allowed=allowed,
            max_search_num=int(request.get("max_search_num") or 5),
            top=top,
            format_id=repo.format_id,
        )
        if allowed is not None:
            result.stats["semantic_matches"] = len(allowed)
    return _named(catalog, dict(result.to_dict(), hetero=hetero))


def _named(catalog: Catalog, result: dict[str, Any]) -> dict[str, Any]:
    """Drop learnwares no longer accepted (removed while the search ran) and add names."""
    ids = {s["id"] for s in result["singles"]}
    if result.get("mixture"):
        ids.update(result["mixture"]["ids"])
    with catalog.session(read_only=True) as s:
        found = repo.accepted_names(s, [repo.parse_id(i) for i in ids])
    names = {repo.format_id(i): name for i, name in found.items()}
    result["singles"] = [
        dict(x, name=names[x["id"]]) for x in result["singles"] if x["id"] in names
    ]
    mixture = result.get("mixture")
    if mixture and all(i in names for i in mixture["ids"]):
        mixture["names"] = [names[i] for i in mixture["ids"]]
    else:
        result["mixture"] = None
    return result
