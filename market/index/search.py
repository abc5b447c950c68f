"""The indexed search: the statistical stage of :func:`market.search.search` on a
:class:`~market.index.partition.MarketIndex` instead of a scan of every candidate.

The semantic stage runs before, in the catalog (tags) and on the names it returns (fuzzy), and
hands over the ids it allows. The partition ranks them (exactly, or FAISS candidates re-ranked
exactly), and :func:`market.scoring.score_ranking` computes the same scores and mixture as the
exact scan. A partition scanned exactly gives what :func:`market.search.search` gives, for
table, text (with the language filter) and image specs alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from wharf.market.scoring import SearchResult, score_ranking, user_self_term
from wharf.specification._threads import single_threaded_blas
from wharf.specification.rkme import RKME

from .partition import MarketIndex


def search_index(
    index: MarketIndex,
    spec: RKME,
    *,
    allowed: np.ndarray | None = None,
    max_search_num: int = 5,
    top: int | None = None,
    candidates: int | None = None,
    format_id: Callable[[int], str] = str,
) -> SearchResult:
    """Rank the learnwares of ``spec``'s partition (those in ``allowed``, if given).

    ``candidates`` is how many FAISS proposes for exact re-ranking in a large partition
    (default: the larger of the configured minimum, twice ``top`` and ``max_search_num²``).
    ``stats`` reports the partition, whether it was scanned exactly or through FAISS (and that
    index's kind and measured recall), and timings.
    """
    t0 = time.perf_counter()
    if not isinstance(max_search_num, int) or max_search_num < 1:
        raise ValueError(f"max_search_num must be an int ≥ 1, got {max_search_num!r}")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be None or an int ≥ 1, got {top!r}")
    user_self = user_self_term(spec)
    stats: dict[str, Any] = {"candidates": len(index), "scored": 0, "mixture_pool": 0}
    timings = stats["timings_ms"] = {"rank": 0.0, "mixture": 0.0, "total": 0.0}
    part = index.partition_for(spec)
    if part is None:
        stats["partition"] = None
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        return SearchResult([], None, False, stats)
    c = max(part.min_candidates, 2 * (top or 0), max_search_num**2, candidates or 0)
    # The kernel sums spread over the kernel thread pool themselves; a multi-threaded BLAS
    # call among them leaves its threads spinning after it, on the cores the next search
    # (of this process, or of another worker on the same machine) needs.
    with single_threaded_blas():
        ranked = part.rank(spec, allowed=allowed, candidates=c, pool=max_search_num**2)
    t1 = time.perf_counter()
    stats.update(partition=part.describe(), method=ranked.method, in_scope=ranked.in_scope)
    stats["dropped_language"] = ranked.dropped_language
    stats["scored"] = len(ranked.ids)
    # Public ids of those a result can name only: the singles up to ``top`` and the mixture's
    # pool (formatting every ranked id cost milliseconds at 5,000).
    named = len(ranked.ids) if top is None else max(top, max_search_num**2)
    names = [format_id(i) for i in ranked.ids[:named].tolist()]
    with single_threaded_blas():
        singles, mixture = score_ranking(
            spec,
            names,
            ranked.mmd2,
            ranked.self_terms,
            lambda pool: ranked.pool[: len(pool)],
            max_search_num=max_search_num,
            stats=stats,
            user_self=user_self,
            device=part.config.image_device,
            cross=ranked.cross,
            limit=top,
        )
    t2 = time.perf_counter()
    timings.update(rank=1e3 * (t1 - t0), mixture=1e3 * (t2 - t1), total=1e3 * (t2 - t0))
    return SearchResult(singles[:top], mixture, False, stats)
