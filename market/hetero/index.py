"""A search worker's index of the heterogeneous specs of one map version.

:class:`HeteroIndexSync` is an :class:`~wharf.market.index.sync.IndexSync` whose index holds
the specs of one version (:func:`.versions.specs_of_version`), kept in step through the same
change log: storing or dropping a learnware's hetero spec logs it (:func:`.versions.put_spec`,
:func:`.versions.drop_specs`), and so does the catalog when a learnware stops being accepted.
It writes no snapshot: a version's index is built from the catalog when the version becomes the
current one.

:class:`HeteroIndexes` holds a process's index of the newest version it was asked for; a newer
version replaces it (the old one is dropped: at 10,000 learnwares an index holds about 250 MB
of mapped points, kept as float32). A search uses one :class:`HeteroIndexSync` and maps its
requirement with that index's version, so it never mixes two maps.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from sqlalchemy.orm import Session
from wharf.market.catalog import Catalog
from wharf.market.index.config import IndexConfig
from wharf.market.index.sync import IndexSync
from wharf.market.store import ObjectStore
from wharf.specification.hetero import HeteroMapTableSpecification, loads_hetero_spec

from . import versions


class HeteroIndexSync(IndexSync):
    """The accepted learnwares' specs under map ``version``, in step with the catalog."""

    #: A hetero spec's JSON is about 130 kB (50 points × 128 floats), 13 times a table spec
    #: of 10 columns: fewer at a time keep a build's texts and parsed arrays to tens of MB.
    load_batch = 200

    def __init__(
        self,
        catalog: Catalog,
        store: ObjectStore,
        version: int,
        config: IndexConfig | None = None,
    ):
        super().__init__(catalog, store, config, snapshot_every=0)
        self.version = version

    def _all_ids(self, s: Session) -> list[int]:
        return sorted(versions.mapped_ids(s, self.version))  # _entries keeps the accepted

    def _entries(self, s: Session, learnware_ids: list[int]) -> list[tuple[int, str]]:
        return versions.version_entries(s, self.version, learnware_ids)

    def _parse(self, text: str) -> HeteroMapTableSpecification:
        return loads_hetero_spec(text)

    def _load_snapshot(self) -> None:
        return None

    def snapshot(self) -> str:
        raise NotImplementedError("a hetero index is rebuilt from the catalog, not snapshotted")


#: The dimensions of the points the index's ``exact_max_rows`` was measured with (the tables of
#: ``bench/search_scale.py``); a hetero point has the map's 128.
MEASURED_DIMS = 10


def hetero_config(config: IndexConfig | None, dims: int = 128) -> IndexConfig:
    """``config`` with its exact scan bounded by work, not rows: an exact scan's cost grows
    with a point's dimensions, so a 128-dim partition scans exactly up to the points that cost
    what ``exact_max_rows`` table points do, and asks FAISS beyond (bench/hetero_search.py:
    1,000 learnwares scanned exactly took 118 ms, through FAISS 17 ms). The points are kept
    as float32: the map computes them in float32, so that loses nothing and halves the
    index."""
    config = config or IndexConfig()
    return replace(
        config,
        exact_max_rows=config.exact_max_rows * MEASURED_DIMS // dims,
        point_dtype="float32",
    )


class HeteroIndexes:
    """A process's hetero index: that of the newest version asked for."""

    def __init__(self, catalog: Catalog, store: ObjectStore, config: IndexConfig | None = None):
        self.catalog, self.store, self.config = catalog, store, hetero_config(config)
        self.held: HeteroIndexSync | None = None
        self._lock = threading.Lock()

    def for_version(self, version: int) -> HeteroIndexSync:
        """The index of ``version``, or of the newer one already held (a search that read
        the current version just before another made a newer one current: it maps with the
        returned index's ``version``), caught up with the change log."""
        with self._lock:
            if self.held is None or self.held.version < version:
                self.held = None  # the old index's memory goes before the new one is built
                self.held = HeteroIndexSync(self.catalog, self.store, version, self.config)
            sync = self.held
        sync.catch_up()
        return sync
