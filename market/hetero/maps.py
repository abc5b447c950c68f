"""Maps in the object store, and the work of a version: train it, map every eligible
learnware with it, map each new acceptance. torch is imported here: workers only.

Every function is idempotent, as the tasks that call them: training a version again gives the
same map (same seed, same learnwares, CPU), and mapping skips the learnwares already mapped.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from wharf.market.catalog import Catalog, MapState
from wharf.market.settings import Settings
from wharf.market.store import ObjectStore
from wharf.specification.files import loads_spec
from wharf.specification.hetero import HeteroMapTableSpecification, dumps_hetero_spec
from wharf.specification.hetero.eligibility import check_hetero_input
from wharf.specification.hetero.model import HeteroMap
from wharf.specification.hetero.training import train_hetero_map
from wharf.specification.rkme import RKME
from wharf.specification.semantic import SemanticSpec

from . import versions
from .eligible import (
    Eligible,
    count_eligible_since,
    eligible_among,
    eligible_learnware,
    eligible_learnwares,
)

log = logging.getLogger("wharf.hetero")

#: Learnwares read (and mapped) per transaction when a version is trained or computed.
SPEC_BATCH = 100
#: The most learnwares one training reads (a seeded sample of them beyond this).
MAX_TRAINING_LEARNWARES = 20_000
#: The largest map file read back (the default map is about 17 MB).
MAX_MAP_BYTES = 512 * 1024 * 1024
#: Maps read, by store and version (a version's map never changes within a market; two
#: markets in one process, as in tests, have two stores).
_cache: weakref.WeakKeyDictionary[ObjectStore, dict[int, HeteroMap]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
_torch_threads_lock = threading.Lock()


def save_map(store: ObjectStore, version: int, hmap: HeteroMap) -> str:
    key = versions.MAP_KEY.format(version=version)
    store.put(key, io.BytesIO(hmap.to_bytes()), max_bytes=MAX_MAP_BYTES)
    return key


def load_map(store: ObjectStore, version: int, key: str, *, device: str = "auto") -> HeteroMap:
    """The map of ``version`` (kept in memory: a version's map never changes)."""
    with _cache_lock:
        cached = _cache.setdefault(store, {})
        if version in cached:
            return cached[version]
    with store.open(key) as f:
        data = f.read(MAX_MAP_BYTES + 1)
    hmap = HeteroMap.from_bytes(data, device=device)
    hmap.info["version"] = version  # the catalog's, whatever the file says
    with _cache_lock:
        for old in sorted(cached)[:-1]:  # the current and the next version are enough
            del cached[old]
        cached[version] = hmap
    return hmap


def current_map(catalog: Catalog, store: ObjectStore, settings: Settings) -> HeteroMap:
    """The map searches use now (its ``version`` attribute says which), loaded once per
    version; :class:`~.versions.NoHeteroMap` (409 for the API) before any is ready."""
    with catalog.session(read_only=True) as s:
        row = versions.require_current_version(s)
        version, key = row.version, row.object_key
    return load_map(store, version, key, device=settings.hetero_device)


def version_map(
    catalog: Catalog, store: ObjectStore, settings: Settings, version: int
) -> HeteroMap:
    """The map of a trained ``version``; :class:`~.versions.NoHeteroMap` if it is gone."""
    with catalog.session(read_only=True) as s:
        row = versions.get_version(s, version)
        key = row.object_key if row is not None else None
    if key is None:
        raise versions.NoHeteroMap()
    return load_map(store, version, key, device=settings.hetero_device)


def map_requirement(
    hmap: HeteroMap, semantic: SemanticSpec | Mapping[str, Any], rkme: RKME
) -> HeteroMapTableSpecification:
    """A user's RKME in the shared space, read through their own column descriptions;
    :class:`~wharf.specification.hetero.HeteroInputError` names the field when it cannot."""
    descriptions = check_hetero_input(
        semantic, rkme.spec_type, rkme.n_features_in_, requirement=True
    )
    with _one_torch_thread():
        return hmap.map_spec(rkme, descriptions)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one thread: for a search's small mapping (K rows), where right after a search's
    kernel sums torch's threads met each other's and took 340 ms for what one thread does in 8
    (bench/hetero_search.py), and for training a map on shared cores."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    with _torch_threads_lock:
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def map_learnware(hmap: HeteroMap, eligible: Eligible) -> str:
    """An eligible learnware's hetero spec, as reference JSON."""
    rkme = loads_spec(eligible.stat_spec)
    return dumps_hetero_spec(hmap.map_spec(rkme, eligible.descriptions))


def train_version(
    catalog: Catalog,
    store: ObjectStore,
    settings: Settings,
    version: int,
    progress: Callable[[float], None] | None = None,
) -> bool:
    """Train ``version``'s map on the eligible learnwares and store it (state ``computing``);
    ``False`` when the version is not ``training`` any more, or failed here for want of
    learnwares."""
    with catalog.session() as s:
        row = versions.get_version(s, version)
        if row is None or row.state != MapState.training:
            return row is not None and row.state == MapState.computing
    with catalog.session(read_only=True) as s:
        ids = [e.learnware_id for e in eligible_learnwares(s, with_spec=False)]
    if len(ids) > MAX_TRAINING_LEARNWARES:  # a seeded sample: the same one if run again
        rng = np.random.default_rng(settings.hetero_seed)
        ids = sorted(rng.choice(ids, MAX_TRAINING_LEARNWARES, replace=False).tolist())
    tables = []
    for start in range(0, len(ids), SPEC_BATCH):  # only the points are kept, not the JSON
        with catalog.session(read_only=True) as s:
            batch = eligible_among(s, ids[start : start + SPEC_BATCH])
        for item in batch:
            tables.append((loads_spec(item.stat_spec).z_flat, item.descriptions))
    if not tables:
        with catalog.session() as s:
            versions.mark_failed(
                s,
                version,
                "no accepted learnware can take part (a table RKME and every "
                "input column described): nothing to train on",
            )
        return False
    # One torch thread here too: on cores that the market's other workers share, a second
    # thread mostly waits for the first (1,000 learnwares, 2 epochs: 18 s on one thread, 72–88 s
    # on two, back to back on a busy 2-core machine; bench/README.md).
    with _one_torch_thread():
        hmap = train_hetero_map(
            tables,
            epochs=settings.hetero_epochs,
            seed=settings.hetero_seed,
            device=settings.hetero_device,
            info={"version": version},
            progress=progress,
        )
    key = save_map(store, version, hmap)
    with catalog.session() as s:
        versions.mark_trained(s, version, key, len(tables), hmap.info)
    log.info("hetero map version %d trained on %d learnwares", version, len(tables))
    return True


def compute_specs(
    catalog: Catalog,
    store: ObjectStore,
    settings: Settings,
    version: int,
    budget_s: float | None = None,
) -> str:
    """Map every eligible learnware with ``version`` (those not mapped yet), then make the
    version ready: ``"ready"``. After ``budget_s`` seconds it stops between batches and
    answers ``"more"`` (call it again: a task of its own, so none runs for hours);
    ``"nothing"`` if the version is not ``computing``."""
    started = time.monotonic()
    with catalog.session() as s:
        row = versions.get_version(s, version)
        if row is None or row.state != MapState.computing:
            return "nothing"
        key = row.object_key
        done = versions.mapped_ids(s, version)
    hmap = load_map(store, version, key, device=settings.hetero_device)
    with catalog.session(read_only=True) as s:
        eligible = [e.learnware_id for e in eligible_learnwares(s, with_spec=False)]
    todo = [i for i in eligible if i not in done]
    for start in range(0, len(todo), SPEC_BATCH):
        if start and budget_s is not None and time.monotonic() - started > budget_s:
            return "more"
        with catalog.session(read_only=True) as s:
            batch = eligible_among(s, todo[start : start + SPEC_BATCH])
        specs = [(e, map_learnware(hmap, e)) for e in batch]  # no write lock held meanwhile
        with catalog.session() as s:
            for item, spec in specs:
                # Not logged: searchers build this version's index from the catalog once it
                # is ready, after these commit (and the main index need not re-read them all).
                versions.put_spec(
                    s, item.learnware_id, version, item.content_sha256, spec, log=False
                )
            mapped = len(eligible) - len(todo) + start + SPEC_BATCH
            versions.set_progress(s, version, min(1.0, mapped / max(1, len(eligible))))
    with catalog.session() as s:
        stale = versions.mark_ready(s, version)
    for old_key in stale:
        store.delete(old_key)
    log.info("hetero map version %d ready (%d specs computed)", version, len(todo))
    return "ready"


def after_acceptance(
    catalog: Catalog, store: ObjectStore, settings: Settings, learnware_id: int
) -> int | None:
    """Map a newly accepted (or edited) learnware with the current version and the one being
    computed, or drop its specs if it does not take part; the version to train when enough
    eligible learnwares arrived since the newest map (``hetero_retrain_after``), else
    ``None``."""
    with catalog.session(read_only=True) as s:
        eligible = eligible_learnware(s, learnware_id)
        targets = [
            (row.version, row.object_key)
            for row in (versions.current_version(s), versions.in_the_making(s))
            if row is not None and row.state in (MapState.ready, MapState.computing)
        ]
    if eligible is None:  # not (or no longer, after an edit) taking part
        with catalog.session() as s:
            versions.drop_specs(s, learnware_id)
        return None
    for version, key in targets:
        hmap = load_map(store, version, key, device=settings.hetero_device)
        spec = map_learnware(hmap, eligible)
        with catalog.session() as s:
            versions.put_spec(s, learnware_id, version, eligible.content_sha256, spec)
    return due_training(catalog, settings)


def due_training(catalog: Catalog, settings: Settings) -> int | None:
    """A new version to train, when ``hetero_retrain_after`` eligible learnwares were
    accepted since the newest version was asked for and none is in the making."""
    if settings.hetero_retrain_after <= 0:
        return None
    with catalog.session() as s:
        if versions.in_the_making(s) is not None:
            return None
        newest = versions.list_versions(s, limit=1)
        since = newest[0].created_at if newest else None
        if count_eligible_since(s, since) < settings.hetero_retrain_after:
            return None
        row, created = versions.request_training(s, "auto")
        return row.version if created else None
