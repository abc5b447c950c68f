"""Keeping a worker's :class:`MarketIndex` in step with the catalog.

The catalog is the truth; the index is a cache of its accepted specs. Every change to the
accepted set appends an entry to the change log (:class:`market.catalog.IndexChange`) in the
same transaction. :meth:`IndexSync.catch_up` reads the entries after the last one applied
(one indexed query) and re-reads the learnwares they name: each is added (or replaced) if it is
accepted now and removed otherwise, so entries can be applied in any order and more than once.

Sequence numbers are handed out when a row is inserted, not when it commits: a long
transaction can commit entry 10 after entry 11 was read. So the position is the highest entry
applied (``high``) and the *gaps* below it, the entries not yet seen; each catch-up reads the
entries after ``high`` and those in the gaps (an indexed range and a short ``IN`` list). A gap
is given up ``gap_timeout_s`` after it was noticed (a rolled-back transaction leaves a hole
forever). ``index.seq`` is the floor below which everything was applied or given up.

A search calls :meth:`IndexSync.catch_up` before it ranks, so a learnware accepted or removed
before the search began is reflected in its result: the delay between acceptance and
searchability is that of the next search's catch-up. The worker also re-checks the ids it is
about to return against the catalog, and the API drops from a stored result any learnware that
stopped being accepted after it ran.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from wharf.market.catalog import Catalog, repo
from wharf.market.store import ObjectStore
from wharf.specification.files import loads_spec

from .config import IndexConfig
from .partition import MarketIndex
from .snapshot import load_snapshot, save_snapshot

log = logging.getLogger("wharf.index")

#: An entry missing this long below one already seen is assumed rolled back.
GAP_TIMEOUT_S = 600.0
#: Learnwares re-read from the catalog per query.
LOAD_BATCH = 2_000


class IndexSync:
    """A :class:`MarketIndex` and its position in the change log.

    Parameters
    ----------
    catalog, store
        Where the truth and the snapshots are.
    config : IndexConfig, optional
        How partitions are indexed.
    snapshot_every : int
        Write a snapshot once this many entries were applied since the last one (0: never).
    """

    def __init__(
        self,
        catalog: Catalog,
        store: ObjectStore,
        config: IndexConfig | None = None,
        *,
        snapshot_every: int = 0,
        gap_timeout_s: float = GAP_TIMEOUT_S,
    ):
        self.catalog = catalog
        self.store = store
        self.config = config or IndexConfig()
        self.snapshot_every = snapshot_every
        self.gap_timeout_s = gap_timeout_s
        self.index: MarketIndex | None = None
        self.high = 0  # the highest change-log entry applied
        self.gaps: dict[int, float] = {}  # entries missing below ``high`` -> when noticed
        self._since_snapshot = 0
        self._lock = threading.Lock()

    # -- start -------------------------------------------------------------------------
    def start(self) -> MarketIndex:
        """Load the newest snapshot (or build from the catalog) and catch up."""
        with self._lock:
            if self.index is None:
                loaded = self._load_snapshot()
                now = time.monotonic()
                if loaded is not None:
                    self.index, self.high, gaps = loaded
                    self.gaps = dict.fromkeys(gaps, now)
                else:
                    self.index = self._build_from_catalog()
                    self._since_snapshot = len(self.index)
        self.catch_up()
        return self.index

    def _build_from_catalog(self) -> MarketIndex:
        index = MarketIndex(self.config)
        with self.catalog.session(read_only=True) as s:
            # Entries logged in the last gap_timeout_s may belong to transactions that are
            # still open. Those already in the log committed before the build reads the
            # catalog, so it holds their changes; the seqs missing among them become gaps,
            # which the catch-ups look for (a build right after a map version's specs were
            # all logged does not read every spec twice).
            since = datetime.now(UTC) - timedelta(seconds=self.gap_timeout_s)
            self.high = repo.index_seq_floor(s, since)
            seen = sorted({q for q, _ in repo.index_changes_after(s, self.high)})
            ids = self._all_ids(s)
        self._apply(index, ids)
        self._advance(index, seen)
        log.info("index built from the catalog: %d learnwares", len(index))
        return index

    # -- catch-up ----------------------------------------------------------------------
    def catch_up(self) -> int:
        """Apply the change-log entries not applied yet; returns how many were read."""
        if self.index is None:
            self.start()
            return 0
        with self._lock:
            index = self.index
            # Reads only: a deferred transaction, which takes no write lock (on SQLite a
            # read-write session holds it from BEGIN IMMEDIATE, so every search would wait for
            # the API's and the other workers' writes and hold up theirs).
            with self.catalog.session(read_only=True) as s:
                entries = repo.index_changes_after(s, self.high)
                if self.gaps:
                    entries += repo.index_changes_in(s, list(self.gaps))
            if entries:
                self._apply(index, sorted({lid for _, lid in entries}))
                self._since_snapshot += len(entries)
            self._advance(index, sorted(q for q, _ in entries))
            due = self.snapshot_every and self._since_snapshot >= self.snapshot_every
        if due:
            self.snapshot()
        return len(entries)

    def _advance(self, index: MarketIndex, seqs: list[int]) -> None:
        now = time.monotonic()
        present = set(seqs)
        for q in present:
            self.gaps.pop(q, None)
        if seqs and seqs[-1] > self.high:
            for q in range(self.high + 1, seqs[-1]):
                if q not in present:
                    self.gaps[q] = now
            self.high = seqs[-1]
        for q, noticed in list(self.gaps.items()):
            if now - noticed > self.gap_timeout_s:
                log.warning("change-log entry %d never appeared; assuming it rolled back", q)
                del self.gaps[q]
        index.seq = min(self.gaps) - 1 if self.gaps else self.high

    #: Learnwares read from the catalog at a time: their spec texts and parsed arrays are
    #: what a build holds beyond the index.
    load_batch = LOAD_BATCH

    def _apply(self, index: MarketIndex, learnware_ids: list[int]) -> None:
        """Make the index hold exactly the accepted specs of these learnwares."""
        for start in range(0, len(learnware_ids), self.load_batch):
            batch = learnware_ids[start : start + self.load_batch]
            with self.catalog.session(read_only=True) as s:
                rows = self._entries(s, batch)
            found = {lid for lid, _ in rows}
            index.remove([lid for lid in batch if lid not in found])
            specs = []
            for lid, text in rows:
                try:
                    specs.append((lid, self._parse(text)))
                except Exception as exc:
                    log.error("learnware %s: stored spec unreadable, not indexed: %s", lid, exc)
                    index.remove([lid])
            if specs:
                index.add([lid for lid, _ in specs], [spec for _, spec in specs])

    # -- what the index holds: overridden by an index of other specs (market.hetero.index) --
    def _all_ids(self, s) -> list[int]:
        """Every learnware the index may hold, for a build from the catalog."""
        return repo.accepted_spec_ids(s)

    def _entries(self, s, learnware_ids: list[int]) -> list[tuple[int, str]]:
        """``(id, spec JSON)`` of those of ``learnware_ids`` the index holds now."""
        return repo.index_entries(s, learnware_ids)

    def _parse(self, text: str):
        return loads_spec(text)

    def _load_snapshot(self):
        return load_snapshot(self.store, self.config)

    # -- snapshots ---------------------------------------------------------------------
    def snapshot(self) -> str:
        """Write a snapshot of the current index and position."""
        with self._lock:
            name = save_snapshot(self.index, self.store, high=self.high, gaps=list(self.gaps))
            self._since_snapshot = 0
        return name
