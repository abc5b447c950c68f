"""What every search shares, the exact scan (:mod:`market.search`) and the indexed search
(:mod:`market.index.search`) alike: the answer (:class:`SearchResult`), the partition a spec
belongs to (:class:`PartitionKey`), the name matching of the semantic stage
(:func:`fuzzy_name_matches`), and, on learnwares already ranked by exact MMD²
(:func:`score_ranking`):

1. **Greedy mixture** (:func:`greedy_mixture`, §4.3) over the ``max_search_num²`` best singles,
   at most ``max_search_num`` members, when the best single's MMD² is above 0.
2. **Scores**, two of them:

   - ``reference_score``: the reference's relative score, :func:`convert_dist_to_score` of the
     single distances with the mixture's appended, the mixture dropped when its score equals
     the best single's to two decimals (truncated), singles kept while they score ≥ 0.6 (at
     least one), and a lone single below 0.6 raised to 0.6 with the mixture score scaled alike.
     It depends on the other candidates: a lone candidate scores 1 however far it is. For
     image specs the distances (singles and mixture) are first squashed by
     d ↦ 1 − exp(−d / 5e−5), as the reference does; ``mmd2`` stays the raw MMD².
   - ``similarity``: an absolute score that depends on the user and the one learnware only,

         s(u, l) = 2⟨Φ_u, Φ_l⟩ / (‖Φ_u‖² + ‖Φ_l‖²) = 1 − MMD²(u, l) / (‖Φ_u‖² + ‖Φ_l‖²).

     Since ‖Φ_u − Φ_l‖² ≥ 0 gives 2⟨Φ_u, Φ_l⟩ ≤ ‖Φ_u‖² + ‖Φ_l‖², s ≤ 1, with equality only
     when the embeddings are equal. With non-negative weights β (every RKME Wharf fits) each
     kernel value is positive, so ⟨Φ_u, Φ_l⟩ ≥ 0 and s ≥ 0, near 0 when the two data sets lie
     far apart at the kernel's scale. A spec with negative weights can make the inner product
     negative; Cauchy–Schwarz still bounds |s| ≤ 2‖Φ_u‖‖Φ_l‖ / (‖Φ_u‖² + ‖Φ_l‖²) ≤ 1, so s lies
     in [−1, 1], and −1 means Φ_l = −Φ_u. Rounding is clipped to that range. The mixture
     uses its embedding Σ w_i Φ_i in the same formula: ‖Σ w_i Φ_i‖² = wᵀKw and
     ⟨Φ_u, Σ w_i Φ_i⟩ = Cᵀw. The score depends on γ, like the MMD it is built from.

The Gram matrix of the mixture pool and the user's inner products are computed once per
search, on centred points (no GEMM cancellation), and each QP is warm-started from the previous
round's weights. The greedy search reads only the Gram columns of the members it picks, so
where it can, the matrix is filled a column at a time, for those members alone: for image specs
(an NNGP block costs far more than a Gaussian one), whose user inner products come from the
single distances already computed, and for table and text specs ranked by the index, which
hands over the user's inner products its distances were made of (:func:`_table_pool`: at most
``max_search_num − 1`` columns, where the whole matrix was three quarters of a search's kernel
values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from rapidfuzz import fuzz
from wharf.specification._threads import single_threaded_blas
from wharf.specification.blockwise import BLOCK_ENTRIES, gaussian_sum, self_inner_product
from wharf.specification.errors import SpecificationError
from wharf.specification.image import IMAGE_SPEC_TYPE
from wharf.specification.kernel import kernel_exp_, map_ranges
from wharf.specification.qp import solve_simplex_qp
from wharf.specification.rkme import RKME
from wharf.specification.semantic import MAX_DESCRIPTION_CHARS, MAX_REQUIREMENT_NAME_CHARS

#: Fuzzy name matches need at least this ``partial_ratio`` (0–100), as in the reference.
FUZZY_MIN_SCORE = 75.0
#: The reference truncates fuzzy matches to this many.
FUZZY_MAX_RESULTS = 50_000
#: Greedy mixture: a new member must lower the mixture MMD² to at most this fraction.
DECAY_RATE = 0.95
#: Singles are kept while their reference score is at least this (and at least one is kept).
SINGLE_MIN_SCORE = 0.6
#: Image distances are squashed by d ↦ 1 − exp(−d / this) before scoring (the reference's).
IMAGE_DIST_SCALE = 5e-5


@dataclass(frozen=True)
class SingleMatch:
    """One learnware in the answer; the scores are ``None`` in a semantic-only search."""

    id: str
    mmd2: float | None = None
    reference_score: float | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class MixtureMatch:
    """The greedy mixture: members in the order they were chosen, and their weights."""

    ids: tuple[str, ...]
    weights: tuple[float, ...]
    mmd2: float
    reference_score: float
    similarity: float


@dataclass(frozen=True)
class SearchResult:
    """What a search returns; :meth:`to_dict` is its JSON form.

    ``stats`` holds the counts ``candidates``, ``semantic_matches``, ``dropped_no_spec``,
    ``dropped_type``, ``dropped_shape``, ``dropped_gamma``, ``dropped_language``,
    ``dropped_nonfinite``, ``scored``,
    ``mixture_pool``, ``qp_solves`` and ``timings_ms`` (``semantic``, ``mmd``, ``mixture``,
    ``total``).
    """

    singles: list[SingleMatch]
    mixture: MixtureMatch | None
    semantic_only: bool
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, float, int, bool, None, lists, dicts) for JSON."""
        mixture = None
        if self.mixture is not None:
            m = self.mixture
            mixture = {
                "ids": list(m.ids),
                "weights": [float(w) for w in m.weights],
                "mmd2": m.mmd2,
                "reference_score": m.reference_score,
                "similarity": m.similarity,
            }
        # Field by field: dataclasses.asdict deep-copies each value through a recursive walk,
        # a few times the cost of the search's own bookkeeping.
        singles = [
            {
                "id": s.id,
                "mmd2": s.mmd2,
                "reference_score": s.reference_score,
                "similarity": s.similarity,
            }
            for s in self.singles
        ]
        return {
            "singles": singles,
            "mixture": mixture,
            "semantic_only": self.semantic_only,
            "stats": self.stats,
        }


class PartitionKey(NamedTuple):
    """What two specs must share to be compared: spec type, feature shape and γ."""

    spec_type: str
    feature_shape: tuple[int, ...]
    gamma: float


def partition_key(spec: RKME) -> PartitionKey:
    return PartitionKey(spec.spec_type, tuple(spec.feature_shape), float(spec.gamma))


# -- semantic stage: names ------------------------------------------------------------------
def fuzzy_name_matches(name: str, texts: Sequence[tuple[str, str]]) -> list[int]:
    """Positions in ``texts`` (lower-cased name and description pairs) that a lower-cased
    requirement ``name`` selects: those containing it, else the fuzzy matches, best first.

    Only the first ``MAX_REQUIREMENT_NAME_CHARS`` of the name and ``MAX_DESCRIPTION_CHARS``
    of each text take part: ``partial_ratio`` costs more than the product of the lengths (a
    6,000-character name against one 6,000-character description took 10 s), and stored
    learnwares may predate those bounds. Within them the answer is the reference's.
    """
    name = name[:MAX_REQUIREMENT_NAME_CHARS]
    texts = [(n[:MAX_DESCRIPTION_CHARS], d[:MAX_DESCRIPTION_CHARS]) for n, d in texts]
    exact = [i for i, (n, d) in enumerate(texts) if name in n or name in d]
    if exact:
        return exact
    scored = []
    for i, (n, d) in enumerate(texts):
        # Below the cutoff rapidfuzz gives up early and answers 0; above it, the exact score.
        score = max(
            fuzz.partial_ratio(name, n, score_cutoff=FUZZY_MIN_SCORE),
            fuzz.partial_ratio(name, d, score_cutoff=FUZZY_MIN_SCORE),
        )
        if score >= FUZZY_MIN_SCORE:
            scored.append((score, i))
    scored.sort(key=lambda sc: sc[0], reverse=True)  # stable: ties keep the given order
    return [i for _, i in scored]


# -- scores --------------------------------------------------------------------------------
def convert_dist_to_score(
    dists: Sequence[float] | np.ndarray,
    dist_ratio: float = 0.1,
    min_score: float = 0.92,
    improve_score: float = 0.7,
) -> list[float]:
    """The reference's relative score of each distance (reference §4.2).

    The largest distance scores 0 and the smallest 1 (when it is below ``dist_ratio`` times
    the mean) or ``min_score`` at least; scores below ``improve_score`` are lifted to their
    square root, capped at ``improve_score``. Equal distances all score 1.

    >>> [round(s, 3) for s in convert_dist_to_score([0.01, 0.5, 0.6, 0.9])]
    [1.0, 0.67, 0.581, 0.0]
    """
    return _score_array(
        np.asarray(dists, dtype=np.float64), dist_ratio, min_score, improve_score
    ).tolist()


def _score_array(
    d: np.ndarray, dist_ratio: float = 0.1, min_score: float = 0.92, improve_score: float = 0.7
) -> np.ndarray:
    """:func:`convert_dist_to_score` on an array, in the same floating-point operations (the
    mean is the sum taken left to right, as Python's ``sum``), so the scores are the same to
    the last bit; a whole ranking of thousands costs tens of microseconds, not milliseconds."""
    if len(d) == 0:
        return np.empty(0)
    lo, hi = float(d.min()), float(d.max())
    if lo == hi:
        return np.ones(len(d))
    eps = dist_ratio * (sum(d.tolist()) / len(d))
    best = (hi - lo) / (hi - eps)
    if lo < eps:
        eps = lo
    elif best < min_score:
        eps = hi - (hi - lo) / min_score
    s = (hi - d) / (hi - eps)
    return np.where(s < improve_score, np.minimum(np.sqrt(np.maximum(s, 0.0)), improve_score), s)


def reference_scores(
    dists: Sequence[float] | np.ndarray, mixture_dist: float | None
) -> tuple[list[float], float | None]:
    """Scores of the kept singles and of the mixture (``None`` when dropped), §4.1 steps 7–9."""
    d = np.asarray(dists, dtype=np.float64)
    if mixture_dist is None:
        scores, mixture = _score_array(d), None
    else:
        merged = _score_array(np.append(d, mixture_dist))
        scores, mixture = merged[:-1], float(merged[-1])
        if int(100 * mixture) == int(100 * float(scores[0])):
            mixture = None
    below = np.flatnonzero(~(scores[1:] >= SINGLE_MIN_SCORE))
    kept = len(scores) if len(below) == 0 else int(below[0]) + 1
    scores = scores[:kept].tolist()
    if kept == 1 and scores[0] < SINGLE_MIN_SCORE:
        ratio = 100.0 if abs(scores[0]) < 1e-5 else SINGLE_MIN_SCORE / scores[0]
        scores[0] = SINGLE_MIN_SCORE
        if mixture is not None:
            mixture = min(1.0, mixture * ratio)
    return scores, mixture


def _similarity(mmd2: Any, user_self: float, other_self: Any) -> np.ndarray:
    """1 − MMD² / (‖Φ_u‖² + ‖Φ_l‖²), clipped to [−1, 1]; 0 for two zero embeddings."""
    denom = user_self + np.asarray(other_self, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 0, 1.0 - np.asarray(mmd2, dtype=np.float64) / denom, 0.0)
    return np.clip(s, -1.0, 1.0)


# -- mixture -------------------------------------------------------------------------------
def inner_product_matrix(specs: Sequence[RKME], gamma: float) -> np.ndarray:
    """G_ij = ⟨Φ_i, Φ_j⟩ for every pair (image specs: under the NNGP kernel).

    Each spec against the stacked points of itself and the specs after it (the lower triangle
    is the mirror of the upper), in blocks of at most ``BLOCK_ENTRIES`` kernel values spread
    over the kernel thread pool. The exponents −γ‖x − y‖² come from one matrix product of
    augmented rows, ``[2γx, −γ‖x‖², −γ] · [y, 1, ‖y‖²]``, on points centred at their mean,
    which agrees with direct differences to about 1e-16 here and is several times faster.
    """
    if specs and getattr(specs[0], "spec_type", None) == IMAGE_SPEC_TYPE:
        from wharf.specification.nngp import gram_matrix

        return gram_matrix(specs)
    z = [np.asarray(s.z_, dtype=np.float64).reshape(len(s.beta_), -1) for s in specs]
    beta = [np.asarray(s.beta_, dtype=np.float64).reshape(-1) for s in specs]
    stacked = np.concatenate(z)
    stacked -= stacked.mean(0)
    norms = (stacked * stacked).sum(1, keepdims=True)
    left = np.concatenate([(2.0 * gamma) * stacked, -gamma * norms, np.full_like(norms, -gamma)], 1)
    right = np.concatenate([stacked, np.ones_like(norms), norms], 1)
    stacked_beta = np.concatenate(beta)
    offsets = np.cumsum([0] + [len(b) for b in beta])

    def block(a: int, b: int, c: int, d: int) -> np.ndarray:
        """β-weighted kernel values between rows a:b and c:d, summed over a:b."""
        e = left[a:b] @ right[c:d].T
        kernel_exp_(e)
        return (stacked_beta[a:b] @ e) * stacked_beta[c:d]

    def row(i: int, _: int) -> np.ndarray:
        a, b = offsets[i], offsets[i + 1]
        out = np.empty(m - i)
        j = i
        while j < m:
            end = j + 1  # specs j..end-1 share one block with spec i
            while end < m and (offsets[end + 1] - offsets[j]) * (b - a) <= BLOCK_ENTRIES:
                end += 1
            c, d = offsets[j], offsets[end]
            if (d - c) * (b - a) > BLOCK_ENTRIES:  # one pair alone is over a block
                out[j - i] = gaussian_sum(stacked[a:b], beta[i], stacked[c:d], beta[j], gamma)
            else:
                out[j - i : end - i] = np.add.reduceat(block(a, b, c, d), offsets[j:end] - c)
            j = end
        return out

    m = len(specs)
    gram = np.empty((m, m))
    for i, values in enumerate(map_ranges(row, [(i, i + 1) for i in range(m)])):
        gram[i, i:] = gram[i:, i] = values
    return gram


@dataclass(frozen=True)
class GreedyMixture:
    """The outcome of :func:`greedy_mixture`."""

    members: list[int]  # positions in the pool, in the order chosen
    weights: np.ndarray
    mmd2: float
    qp_solves: int


def greedy_mixture(
    gram: np.ndarray,
    cross: np.ndarray,
    user_self: float,
    max_members: int,
    decay_rate: float = DECAY_RATE,
    *,
    column: Callable[[int], np.ndarray] | None = None,
) -> GreedyMixture:
    """Greedy mixture search of the reference (§4.3) on a precomputed pool.

    ``gram`` is ⟨Φ_i, Φ_j⟩ over the pool, ``cross`` ⟨Φ_u, Φ_i⟩, ``user_self`` ‖Φ_u‖². Each
    round tries every unused pool member next to the chosen ones, solving the simplex QP
    min ½wᵀKw − Cᵀw (warm-started from the chosen weights), and keeps the one whose mixture
    MMD² = ‖Φ_u‖² + 2·obj* is least; a round that does not reach ``decay_rate`` times the
    previous MMD² ends the search (the first round always succeeds).

    With ``column``, ``gram`` need only hold its diagonal: a round reads the columns of the
    chosen members alone, and ``column(j)`` (⟨Φ_i, Φ_j⟩ for every i) fills column and row j
    of ``gram`` (in place) when j has been chosen and another round follows.
    """
    with single_threaded_blas():  # one limit for every small solve below
        return _greedy_mixture(gram, cross, user_self, max_members, decay_rate, column)


def _greedy_mixture(gram, cross, user_self, max_members, decay_rate, column) -> GreedyMixture:
    chosen: list[int] = []
    weights = np.empty(0)
    current = math.inf
    solves = 0
    scale = max(float(np.abs(np.diag(gram)).max()), float(np.abs(cross).max()), 1e-300)
    for _ in range(min(max_members, len(cross))):
        best: tuple[float, int, np.ndarray] | None = None
        if column is not None and chosen:
            j = chosen[-1]
            values = np.array(column(j), dtype=np.float64)
            values[j] = gram[j, j]
            gram[:, j] = gram[j, :] = values
        w0 = np.append(weights, 0.0) if chosen else None
        tried = [j for j in range(len(cross)) if j not in chosen]
        if chosen:
            # Adding j can lower the objective only if moving weight towards j descends:
            # its gradient entry below the weighted mean of the chosen ones. Any other j
            # would give back the current mixture, so its QP is skipped.
            grad = gram[:, chosen] @ weights - cross
            slope = grad - float(weights @ grad[chosen])
            tried = [j for j in tried if slope[j] < -1e-12 * scale]
            if not tried:
                break
        for j, d, w in _round(gram, cross, chosen, tried, w0, scale):
            solves += 1
            d = user_self + 2.0 * d
            if best is None or d < best[0]:
                best = (d, j, w)
        assert best is not None
        if chosen and not best[0] <= decay_rate * current:
            break
        current, j, weights = best
        chosen.append(j)
    return GreedyMixture(chosen, weights, current, solves)


def _round(gram, cross, chosen, tried, w0, scale):
    """``(j, objective, w)`` of the simplex QP on ``chosen + [j]`` for every ``j`` in ``tried``.

    Every problem of a round has the same shape, so the equality-constrained optimum on the
    whole face (all weights free) is found for all of them by one batched solve; where it is
    strictly positive it is the QP's optimum (no bound is active, and the face is the
    simplex), which is the common case. The others go to :func:`solve_simplex_qp`.
    """
    idx = np.array([[*chosen, j] for j in tried])
    n = idx.shape[1]
    K = gram[idx[:, :, None], idx[:, None, :]]
    c = cross[idx]
    if n == 1:
        return [(j, 0.5 * K[i, 0, 0] - c[i, 0], np.ones(1)) for i, j in enumerate(tried)]
    ridge = 1e-13 * scale
    rhs = np.stack([c, np.ones_like(c)], axis=2)
    try:
        sol = np.linalg.solve(K + ridge * np.eye(n), rhs)
        a, b = sol[..., 0], sol[..., 1]
        w = a + ((1.0 - a.sum(1)) / b.sum(1))[:, None] * b
    except np.linalg.LinAlgError:
        w = np.full(c.shape, -1.0)
    interior = np.isfinite(w).all(1) & (w > 0).all(1)
    with np.errstate(all="ignore"):  # the rows of non-finite weights are not read
        objective = 0.5 * np.einsum("bi,bij,bj->b", w, K, w) - np.einsum("bi,bi->b", c, w)
    out = []
    for i, j in enumerate(tried):
        if interior[i]:
            out.append((j, float(objective[i]), w[i]))
        else:
            qp = solve_simplex_qp(K[i], c[i], w0=w0)
            out.append((j, qp.objective, qp.w))
    return out


# -- ranked learnwares ------------------------------------------------------------------------
def score_ranking(
    spec: RKME,
    ids: Sequence[str],
    dists: np.ndarray,
    self_terms: np.ndarray,
    pool_specs: Callable[[list[str]], list[Any]],
    *,
    max_search_num: int,
    stats: dict[str, Any],
    user_self: float | None = None,
    device: str = "cpu",
    cross: np.ndarray | None = None,
    limit: int | None = None,
) -> tuple[list[SingleMatch], MixtureMatch | None]:
    """Steps 4–5 of the module docstring on learnwares already ranked by exact MMD².

    ``ids``, ``dists`` and ``self_terms`` are in ascending order of ``dists``;
    ``pool_specs(ids)`` returns the specs (``z_``, ``beta_``) of the first
    ``max_search_num²`` of them, for the mixture. ``stats`` gets ``mixture_pool`` and
    ``qp_solves``. ``device`` computes the image pool's kernel columns (tables stay on the
    CPU: their Gram matrix is small and float64). ``cross``, when the ranking kept them, are
    the user's inner products ⟨Φ_u, Φ_i⟩ in the same order: a table pool then computes only
    the Gram columns of the members the greedy search picks (:func:`_table_pool`), not the
    whole matrix. ``limit`` makes at most that many singles (a search's ``top``); ``ids`` then
    needs only that many, and the first ``max_search_num²``.
    """
    if user_self is None:
        user_self = user_self_term(spec)
    gamma = float(spec.gamma)
    image = spec.spec_type == IMAGE_SPEC_TYPE
    dists = np.asarray(dists, dtype=np.float64)
    mix: GreedyMixture | None = None
    mix_similarity = 0.0
    pool: list[str] = []
    if len(dists) and dists[0] > 0:
        pool = list(ids[: max_search_num**2])
        stats["mixture_pool"] = len(pool)
        members = pool_specs(pool)
        column = None
        if image:
            gram, pool_cross, column = _image_pool(members, dists, self_terms, user_self, device)
        elif cross is not None:
            gram, pool_cross, column = _table_pool(members, cross, self_terms, gamma)
        else:
            full = inner_product_matrix([spec, *members], gamma)
            gram, pool_cross = full[1:, 1:], full[0, 1:]
        mix = greedy_mixture(gram, pool_cross, user_self, max_search_num, column=column)
        stats["qp_solves"] = mix.qp_solves
        if len(mix.members) < 2:
            mix = None
        else:
            k = gram[np.ix_(mix.members, mix.members)]
            mix_similarity = float(_similarity(mix.mmd2, user_self, mix.weights @ k @ mix.weights))
    if not len(dists):
        return [], None
    mix_dist = None if mix is None else mix.mmd2
    if image:  # the reference squashes image distances before scoring them
        dists_scored = [squash_image_distance(d) for d in dists.tolist()]
        mix_dist = None if mix_dist is None else squash_image_distance(mix_dist)
    scores, mix_score = reference_scores(dists_scored if image else dists, mix_dist)
    n = len(scores) if limit is None else min(len(scores), limit)
    similarity = _similarity(dists[:n], user_self, np.asarray(self_terms[:n])).tolist()
    singles = [
        SingleMatch(i, d, s, sim)
        for i, d, s, sim in zip(ids[:n], dists[:n].tolist(), scores[:n], similarity, strict=True)
    ]
    mixture = None
    if mix is not None and mix_score is not None:
        mixture = MixtureMatch(
            ids=tuple(pool[j] for j in mix.members),
            weights=tuple(float(w) for w in mix.weights),
            mmd2=float(mix.mmd2),
            reference_score=float(mix_score),
            similarity=mix_similarity,
        )
    return singles, mixture


def squash_image_distance(d: float) -> float:
    """The reference's map of an image MMD² into [0, 1): 1 − exp(−d / 5e−5)."""
    return -math.expm1(-d / IMAGE_DIST_SCALE)


def _image_pool(members, dists, self_terms, user_self, device):
    """The mixture pool of image specs: a Gram matrix knowing only its diagonal (the specs'
    self-terms), the user's inner products from the distances (⟨Φ_u, Φ_i⟩ =
    (‖Φ_u‖² + ‖Φ_i‖² − MMD²) / 2) and the column callback that fills the rest on demand."""
    from wharf.specification.nngp import inner_products

    n = len(members)
    selfs = np.asarray(self_terms[:n], dtype=np.float64)
    gram = np.full((n, n), np.nan)
    np.fill_diagonal(gram, selfs)
    cross = (user_self + selfs - np.asarray(dists[:n], dtype=np.float64)) / 2.0
    return gram, cross, lambda j: inner_products(members[j], members, device=device)


#: Kernel values per tile of a table pool's Gram column (512 KiB of float64, in cache).
COLUMN_TILE_ENTRIES = 1 << 16


def _table_pool(members, cross, self_terms, gamma: float):
    """The mixture pool of table (or text) specs whose inner products with the user the
    ranking already computed: a Gram matrix knowing only its diagonal (the specs' self-terms,
    from direct differences), those inner products, and the column callback that fills the
    rest on demand. The greedy search reads the columns of the members it picks alone, at
    most ``max_search_num − 1`` of the pool's: a few percent of the kernel values of the
    whole matrix. Each column is one kernel block between a member's points and the pool's,
    in the augmented GEMM form of :func:`inner_product_matrix` on points centred at their
    mean, a cache-sized tile at a time."""
    n = len(members)
    z = [np.asarray(s.z_, dtype=np.float64).reshape(len(s.beta_), -1) for s in members]
    beta = np.concatenate([np.asarray(s.beta_, dtype=np.float64).reshape(-1) for s in members])
    sizes = np.array([len(x) for x in z], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    stacked = np.concatenate(z)
    stacked -= stacked.mean(0)
    d = stacked.shape[1]
    right = np.empty((len(stacked), d + 2))
    right[:, :d] = stacked
    right[:, d] = 1.0
    np.einsum("ij,ij->i", stacked, stacked, out=right[:, d + 1])
    left = np.concatenate(
        [(2.0 * gamma) * stacked, -gamma * right[:, d + 1 :], np.full((len(stacked), 1), -gamma)],
        1,
    )

    def column(j: int) -> np.ndarray:
        a, b = starts[j], starts[j] + sizes[j]
        member = left[a:b].T
        v = np.empty(len(right))
        tile = max(1, COLUMN_TILE_ENTRIES // (b - a))
        for s in range(0, len(right), tile):
            e = right[s : s + tile] @ member
            kernel_exp_(e)
            np.dot(e, beta[a:b], out=v[s : s + tile])
        v *= beta
        return np.add.reduceat(v, starts)

    gram = np.full((n, n), np.nan)
    np.fill_diagonal(gram, np.asarray(self_terms[:n], dtype=np.float64))
    return gram, np.asarray(cross[:n], dtype=np.float64), column


def user_self_term(spec: RKME) -> float:
    if not hasattr(spec, "z_") or not hasattr(spec, "beta_"):
        raise SpecificationError("the user spec is not fitted (no z_/beta_)")
    if getattr(spec, "spec_type", None) == IMAGE_SPEC_TYPE:
        value = float(inner_product_matrix([spec], float(spec.gamma))[0, 0])
    else:
        value = self_inner_product(spec.z_, spec.beta_, float(spec.gamma))
    if not math.isfinite(value):
        raise SpecificationError(
            f"the user spec's self inner product is not finite ({value}); check its z_ and beta_"
        )
    return value
