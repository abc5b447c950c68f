"""Search over accepted learnwares by an exact scan: the reference the indexed search
(:mod:`market.index.search`) must agree with, used by the tests and the benchmarks. The
scoring both share is :mod:`market.scoring`.

Pipeline (reference §3.3 and §4, with the differences listed at the end):

1. **Semantic stage** (:func:`semantic_matches`, the reference's fuzzy searcher): the tag filter
   :func:`~specification.semantic.tags_match`; then, if the requirement has a non-empty
   ``Name``, the learnwares whose Name or Description contains it (case-insensitive); if none
   does, those whose ``rapidfuzz.fuzz.partial_ratio`` against the lower-cased Name or
   Description is at least 75, best first. The requirement's Description is ignored.
2. Without a user spec the semantic matches are the answer, without scores.
3. **Statistical stage**: candidates whose spec has another spec type, feature shape or γ
   (relative difference above 1e-12) are dropped, and for a text spec those whose languages
   do not include all of the user's; each reason is counted in ``stats``. Exact squared MMD
   to every survivor in one :class:`~specification.mmd.SpecBank` pass (an
   :class:`~specification.nngp.ImageBank` for image specs); non-finite values dropped;
   ascending order (ties keep the candidate order).
4. **Greedy mixture** and 5. **scores**: :func:`~market.scoring.score_ranking`, shared with
   the indexed search (:mod:`market.scoring` describes both).
6. ``top`` truncates the kept singles (after the reference's filtering).

Differences from the reference, all deliberate: γ must match (the reference compares specs
of different γ); ``learnware_id`` filtering is not implemented; the semantic stage compares a
requirement's name on its first 100 characters and learnwares' names and descriptions on their
first 10,000 (the market's bounds on new text); and those of the mixture's computation, listed
in :mod:`market.scoring`.

A caller may keep one :class:`SpecPartition` per (spec type, feature shape, γ) and pass it to
:func:`search`, so learnwares' self inner products and stacked points are computed once, not
per query.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from wharf.specification.errors import SpecificationError
from wharf.specification.image import IMAGE_SPEC_TYPE
from wharf.specification.mmd import SpecBank
from wharf.specification.rkme import RKME, same_gamma
from wharf.specification.semantic import SemanticSpec, tags_match
from wharf.specification.text import TEXT_SPEC_TYPE, languages_cover

from .scoring import (
    FUZZY_MAX_RESULTS,
    MixtureMatch,
    PartitionKey,
    SearchResult,
    SingleMatch,
    fuzzy_name_matches,
    partition_key,
    score_ranking,
    user_self_term,
)


@dataclass(frozen=True)
class Candidate:
    """One accepted learnware as the search sees it."""

    id: str
    semantic: SemanticSpec
    spec: RKME | None


class SpecPartition:
    """The specs of one :class:`PartitionKey` in a :class:`SpecBank`, by learnware id.

    A search worker keeps one per partition across searches and updates it as learnwares are
    accepted or withdrawn. :meth:`add` appends to the bank (an id already present is replaced).
    :meth:`remove` only masks the id's position; once masked positions outnumber live ones the
    bank is rebuilt from the live specs, so memory stays within twice the live size and a
    removal costs amortised O(1) rebuilds. Results equal a fresh bank's up to rounding.

    The partition trusts that the spec it holds under an id is the spec of that learnware.

    Parameters
    ----------
    key : PartitionKey
        The spec type, feature shape and γ every member must have.
    device : str, default="cpu"
        Where the bank keeps its points (see :class:`SpecBank`).
    """

    def __init__(self, key: PartitionKey, *, device: str = "cpu"):
        self.key = PartitionKey(key.spec_type, tuple(key.feature_shape), float(key.gamma))
        self.device = device
        self._bank = self._new_bank()
        self._specs: list[RKME | None] = []  # by bank position; None once removed
        self._pos: dict[str, int] = {}

    @classmethod
    def for_spec(cls, spec: RKME, *, device: str = "cpu") -> SpecPartition:
        """An empty partition for the specs comparable with ``spec``."""
        return cls(partition_key(spec), device=device)

    def _new_bank(self) -> SpecBank:
        if self.key.spec_type == IMAGE_SPEC_TYPE:
            from wharf.specification.nngp import ImageBank

            return ImageBank(self.key.feature_shape, device=self.device)
        return SpecBank(self.key.gamma, math.prod(self.key.feature_shape), device=self.device)

    def accepts(self, spec: RKME | None) -> bool:
        """Whether ``spec`` belongs in this partition."""
        return (
            spec is not None
            and spec.spec_type == self.key.spec_type
            and tuple(spec.feature_shape) == self.key.feature_shape
            and same_gamma(spec.gamma, self.key.gamma)
        )

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, learnware_id: object) -> bool:
        return learnware_id in self._pos

    @property
    def ids(self) -> list[str]:
        """Member ids in bank order."""
        return sorted(self._pos, key=self._pos.__getitem__)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Add (or replace) these learnwares; each must have a spec this partition accepts."""
        batch = list(candidates)
        ids = [c.id for c in batch]
        if len(set(ids)) != len(ids):
            raise ValueError("add: duplicate learnware ids in one batch")
        for c in batch:
            if not self.accepts(c.spec):
                raise SpecificationError(
                    f"learnware {c.id!r}: its spec does not belong in partition {self.key}"
                )
        self._mask(i for i in ids if i in self._pos)
        positions = self._bank.add(c.spec for c in batch)
        self._specs.extend(c.spec for c in batch)
        self._pos.update(zip(ids, positions, strict=True))
        self._compact_if_sparse()

    def remove(self, ids: Iterable[str]) -> None:
        """Remove these learnwares; ids not present are ignored."""
        self._mask(i for i in ids if i in self._pos)
        self._compact_if_sparse()

    def _mask(self, ids: Iterable[str]) -> None:
        for learnware_id in list(ids):
            self._specs[self._pos.pop(learnware_id)] = None

    def _compact_if_sparse(self) -> None:
        dead = len(self._specs) - len(self._pos)
        if dead <= len(self._pos):
            return
        live = self.ids
        specs = [self._specs[self._pos[i]] for i in live]
        self._bank = self._new_bank()
        self._specs = specs
        self._pos = dict(zip(live, self._bank.add(specs), strict=True))

    def _positions(self, ids: Sequence[str]) -> list[int]:
        missing = [i for i in ids if i not in self._pos]
        if missing:
            raise LookupError(
                f"partition {self.key} lacks learnwares {missing[:5]}"
                f"{' …' if len(missing) > 5 else ''}; add them before searching"
            )
        return [self._pos[i] for i in ids]

    def mmd2(self, query: RKME, ids: Sequence[str]) -> np.ndarray:
        """Squared MMD from ``query`` to the learnwares ``ids``, in that order."""
        return self._bank.mmd2(query, self._positions(ids))

    def self_terms(self, ids: Sequence[str]) -> np.ndarray:
        """‖Φ_l‖² of the learnwares ``ids``, in that order."""
        return self._bank.self_terms[self._positions(ids)]


# -- semantic stage ------------------------------------------------------------------------
def semantic_matches(
    candidates: Sequence[Candidate], requirement: SemanticSpec | None
) -> list[Candidate]:
    """The candidates a requirement's semantic spec selects (module docstring, step 1)."""
    if requirement is None:
        return list(candidates)
    tagged = [c for c in candidates if tags_match(requirement, c.semantic)]
    name = (requirement.name or "").lower()
    if not name:
        return tagged
    texts = [
        ((c.semantic.name or "").lower(), (c.semantic.description or "").lower()) for c in tagged
    ]
    return [tagged[i] for i in fuzzy_name_matches(name, texts)[:FUZZY_MAX_RESULTS]]


# -- search --------------------------------------------------------------------------------
def search(
    candidates: Sequence[Candidate],
    *,
    semantic: SemanticSpec | None = None,
    spec: RKME | None = None,
    max_search_num: int = 5,
    top: int | None = None,
    partition: SpecPartition | None = None,
) -> SearchResult:
    """Search ``candidates`` (the accepted learnwares) for a user's requirement.

    Parameters
    ----------
    candidates : sequence of Candidate
        The learnwares to search, with unique ids.
    semantic : SemanticSpec, optional
        The user's semantic requirement (``SemanticSpec.from_dict(d, requirement=True)``);
        ``None`` selects every candidate.
    spec : RKME, optional
        The user's statistical spec; ``None`` gives a semantic-only answer.
    max_search_num : int, default=5
        At most this many mixture members, chosen among the ``max_search_num²`` best singles.
    top : int, optional
        Return at most this many singles (after the reference's ≥ 0.6 filter).
    partition : SpecPartition, optional
        A cached bank for ``spec``'s partition holding every candidate that passes the
        filters; without it a bank of the survivors is built for this search.

    Raises
    ------
    SpecificationError
        If ``spec`` is unfitted or its self inner product is not finite.
    LookupError
        If ``partition`` lacks a surviving candidate.
    """
    t0 = time.perf_counter()
    if not isinstance(max_search_num, int) or max_search_num < 1:
        raise ValueError(f"max_search_num must be an int ≥ 1, got {max_search_num!r}")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be None or an int ≥ 1, got {top!r}")
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("candidates must have unique ids")

    stats: dict[str, Any] = dict.fromkeys(
        (
            "candidates",
            "semantic_matches",
            "dropped_no_spec",
            "dropped_type",
            "dropped_shape",
            "dropped_gamma",
            "dropped_language",
            "dropped_nonfinite",
            "scored",
            "mixture_pool",
            "qp_solves",
        ),
        0,
    )
    timings = {"semantic": 0.0, "mmd": 0.0, "mixture": 0.0, "total": 0.0}
    stats["timings_ms"] = timings
    stats["candidates"] = len(candidates)

    matches = semantic_matches(candidates, semantic)
    stats["semantic_matches"] = len(matches)
    t1 = time.perf_counter()
    timings["semantic"] = 1e3 * (t1 - t0)

    def done(singles: list[SingleMatch], mixture: MixtureMatch | None) -> SearchResult:
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        return SearchResult(singles[:top], mixture, spec is None, stats)

    if spec is None:
        return done([SingleMatch(c.id) for c in matches], None)

    user_self = user_self_term(spec)
    key = partition_key(spec)
    survivors = []
    for c in matches:
        if c.spec is None:
            stats["dropped_no_spec"] += 1
        elif c.spec.spec_type != key.spec_type:
            stats["dropped_type"] += 1
        elif tuple(c.spec.feature_shape) != key.feature_shape:
            stats["dropped_shape"] += 1
        elif not same_gamma(c.spec.gamma, key.gamma):
            stats["dropped_gamma"] += 1
        elif key.spec_type == TEXT_SPEC_TYPE and not languages_cover(c.spec, spec):
            stats["dropped_language"] += 1
        else:
            survivors.append(c)
    if not survivors:
        return done([], None)

    if partition is None:
        partition = SpecPartition(key)
        partition.add(survivors)
    elif not (
        partition.key.spec_type == key.spec_type
        and partition.key.feature_shape == key.feature_shape
        and same_gamma(partition.key.gamma, key.gamma)
    ):
        raise ValueError(f"partition {partition.key} does not match the user spec's {key}")
    survivor_ids = [c.id for c in survivors]
    dist = partition.mmd2(spec, survivor_ids)
    self_terms = partition.self_terms(survivor_ids)
    finite = np.flatnonzero(np.isfinite(dist))
    stats["dropped_nonfinite"] = len(survivors) - len(finite)
    stats["scored"] = len(finite)
    order = finite[np.argsort(dist[finite], kind="stable")]
    t2 = time.perf_counter()
    timings["mmd"] = 1e3 * (t2 - t1)
    if len(order) == 0:
        return done([], None)

    ranked = [survivors[i] for i in order]
    specs = {c.id: c.spec for c in ranked[: max_search_num**2]}
    singles, mixture = score_ranking(
        spec,
        [c.id for c in ranked],
        dist[order],
        self_terms[order],
        lambda ids: [specs[i] for i in ids],
        max_search_num=max_search_num,
        stats=stats,
        user_self=user_self,
        device=partition.device,
    )
    timings["mixture"] = 1e3 * (time.perf_counter() - t2)
    return done(singles, mixture)
