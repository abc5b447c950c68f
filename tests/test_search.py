"""Tests for market.search and market.scoring: the exact-scan search and the reference's scoring."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from wharf.market.scoring import (
    SearchResult,
    convert_dist_to_score,
    fuzzy_name_matches,
    greedy_mixture,
    inner_product_matrix,
    reference_scores,
)
from wharf.market.search import Candidate, SpecPartition, search, semantic_matches
from wharf.specification import RKME, SpecificationError
from wharf.specification.qp import solve_simplex_qp
from wharf.specification.semantic import (
    MAX_DESCRIPTION_CHARS,
    MAX_REQUIREMENT_NAME_CHARS,
    SemanticSpec,
    generate_semantic_spec,
)


# -- helpers and oracles -------------------------------------------------------------------
def lw_semantic(name="model", description="a model", **kwargs) -> SemanticSpec:
    d = generate_semantic_spec(
        name=name,
        description=description,
        data_type=kwargs.pop("data_type", "Table"),
        task_type=kwargs.pop("task_type", "Classification"),
        library_type="Scikit-learn",
        scenarios=kwargs.pop("scenarios", "Education"),
        license="MIT",
    )
    return SemanticSpec.from_dict(d)


def requirement(**kwargs) -> SemanticSpec:
    return SemanticSpec.from_dict(generate_semantic_spec(**kwargs), requirement=True)


def random_spec(rng, k=5, d=3, gamma=0.1, offset=0.0) -> RKME:
    z = rng.normal(size=(k, d)) + offset
    return RKME.from_arrays(z, rng.dirichlet(np.ones(k)), gamma, 100)


def oracle_inner(a: RKME, b: RKME) -> float:
    total = 0.0
    for i in range(len(a.beta_)):
        for j in range(len(b.beta_)):
            diff = a.z_flat[i] - b.z_flat[j]
            total += a.beta_[i] * b.beta_[j] * np.exp(-a.gamma * float(diff @ diff))
    return total


def oracle_mmd2(a: RKME, b: RKME) -> float:
    return oracle_inner(a, a) - 2 * oracle_inner(a, b) + oracle_inner(b, b)


def candidates_with_specs(specs, prefix="lw") -> list[Candidate]:
    return [Candidate(f"{prefix}{i}", lw_semantic(f"{prefix}{i}"), s) for i, s in enumerate(specs)]


# -- reference score -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dists", "want"),
    [
        ([0.01, 0.5, 0.6, 0.9], [1.0, 0.670, 0.581, 0.0]),
        ([0.3, 0.31, 0.32, 0.9], [0.92, 0.905, 0.889, 0.0]),
        ([0.7], [1.0]),
        ([0.2, 0.2, 0.2], [1.0, 1.0, 1.0]),
        ([], []),
    ],
)
def test_convert_dist_to_score_reproduces_the_reference_examples(dists, want):
    assert [round(s, 3) for s in convert_dist_to_score(dists)] == want


def test_two_close_candidates_get_092_and_0():
    assert [round(s, 6) for s in convert_dist_to_score([0.20, 0.21])] == [0.92, 0.0]


def test_reference_scores_keep_the_mixture_filter_and_raise_a_lone_single():
    # mixture kept; singles kept while ≥ 0.6 (the worst scores 0)
    singles, mix = reference_scores([0.5, 0.9], 0.1)
    assert singles == pytest.approx([(0.4 / 0.85) ** 0.5]) and mix == pytest.approx(0.8 / 0.85)
    # a lone single below 0.6 is raised to 0.6 and the mixture scaled by the same ratio, ≤ 1
    merged = convert_dist_to_score([0.66, 1.0, 0.02])
    assert merged[0] < 0.6
    singles, mix = reference_scores([0.66, 1.0], 0.02)
    assert singles == [0.6] and mix == min(1.0, merged[2] * 0.6 / merged[0]) == 1.0
    # a lone single that scores 0 (it is also the worst): ratio 100
    assert reference_scores([0.9], 0.1) == ([0.6], 1.0)
    # a mixture scoring like the best single (to 2 decimals, truncated) is dropped
    singles, mix = reference_scores([0.1, 0.9], 0.1)
    assert mix is None and len(singles) == 1
    assert reference_scores([0.4, 0.41, 0.9], None)[0] == pytest.approx(
        convert_dist_to_score([0.4, 0.41, 0.9])[:2]
    )


# -- semantic stage ------------------------------------------------------------------------
@pytest.fixture
def semantic_market() -> list[Candidate]:
    rows = [
        ("a", "digits svc", "classifies 8x8 digits", "Classification", ["Education"]),
        ("b", "house prices", "Ridge regression on housing data", "Regression", ["Business"]),
        ("c", "tumour detector", "DIGITS of pathology", "Classification", ["Health", "Nature"]),
        ("d", "segmenter", "image segmentation", "Segmentation", ["Nature"]),
    ]
    return [
        Candidate(i, lw_semantic(n, desc, task_type=t, scenarios=sc), None)
        for i, n, desc, t, sc in rows
    ]


def ids(cands) -> list[str]:
    return [c.id for c in cands]


def test_class_values_are_alternatives(semantic_market):
    req = requirement(task_type=["Classification", "Regression"])
    assert ids(semantic_matches(semantic_market, req)) == ["a", "b", "c"]


def test_tags_must_intersect(semantic_market):
    assert ids(semantic_matches(semantic_market, requirement(scenarios=["Nature"]))) == ["c", "d"]
    req = requirement(scenarios=["Health", "Business"])
    assert ids(semantic_matches(semantic_market, req)) == ["b", "c"]
    req = requirement(scenarios=["Nature"], task_type="Classification")
    assert ids(semantic_matches(semantic_market, req)) == ["c"]


def test_name_is_a_case_insensitive_substring_of_name_or_description(semantic_market):
    assert ids(semantic_matches(semantic_market, requirement(name="Digits"))) == ["a", "c"]
    # the requirement's Description takes no part
    req = requirement(name="house", description="nothing like this")
    assert ids(semantic_matches(semantic_market, req)) == ["b"]
    assert semantic_matches(semantic_market, None) == semantic_market


def test_fuzzy_fallback_for_a_misspelled_name():
    market = [Candidate(f"id{i}", lw_semantic(f"learnware_{i}"), None) for i in range(5)]
    market.append(Candidate("other", lw_semantic("zzzz", "qqqq"), None))
    req = requirement(name="laernwaer")
    assert ids(semantic_matches(market, req)) == [f"id{i}" for i in range(5)]
    result = search(market, semantic=req)
    assert result.semantic_only and result.mixture is None
    assert [s.id for s in result.singles] == [f"id{i}" for i in range(5)]
    assert all(s.mmd2 is None and s.reference_score is None for s in result.singles)


def test_fuzzy_matches_are_sorted_by_score():
    market = [
        Candidate("88.9", lw_semantic("regresion"), None),
        Candidate("none", lw_semantic("classifier"), None),
        Candidate("94.7", lw_semantic("x", "rgression tool"), None),
        Candidate("90.0", lw_semantic("regrassion"), None),
    ]
    # partial_ratio 88.9, below 75, 94.7 (description), 90.0
    assert ids(semantic_matches(market, requirement(name="Regression"))) == ["94.7", "90.0", "88.9"]


def test_names_and_descriptions_are_compared_on_their_bounded_prefixes():
    # Stored before the bounds on text: a description far longer than a new one may be.
    long = "x" * MAX_DESCRIPTION_CHARS + " boston housing"
    market = [
        Candidate("short", lw_semantic("housing prices", "boston housing regression"), None),
        Candidate("long", lw_semantic("model", long), None),
    ]
    # Past the first 10,000 characters nothing is compared: only the short one contains it.
    assert fuzzy_name_matches("boston housing", [("model", long.lower())]) == []
    assert ids(semantic_matches(market, requirement(name="boston housing"))) == ["short"]
    # A name over its bound (a search queued before it existed) counts by its first
    # MAX_REQUIREMENT_NAME_CHARS characters, which this learnware's name contains.
    name = "housing prices" + "!" * 6000
    prefix = name[:MAX_REQUIREMENT_NAME_CHARS]
    assert fuzzy_name_matches(name, [(f"the {prefix} model", "")]) == [0]


# -- statistical stage ---------------------------------------------------------------------
def test_ranking_equals_a_double_loop_oracle():
    rng = np.random.default_rng(0)
    # Many specs near the user and one far away: the far one scores 0 and the near ones
    # score ≥ 0.6, so the reference's filter returns all but the last of the ranking.
    specs = [
        random_spec(rng, k=int(rng.integers(2, 8)), offset=rng.normal(scale=0.5)) for _ in range(15)
    ]
    specs.insert(4, random_spec(rng, k=3, offset=25.0))
    user = random_spec(rng, k=6)
    cands = candidates_with_specs(specs)
    result = search(cands, spec=user)
    want = np.array([oracle_mmd2(user, s) for s in specs])
    order = np.argsort(want, kind="stable")
    got = result.singles
    assert len(got) >= 12
    assert [s.id for s in got] == [cands[i].id for i in order[: len(got)]]
    np.testing.assert_allclose([s.mmd2 for s in got], want[order[: len(got)]], rtol=1e-10)
    assert result.stats["scored"] == 16 and not result.semantic_only


def test_scores_follow_the_reference_filter():
    rng = np.random.default_rng(1)
    specs = [random_spec(rng, offset=o) for o in (0.0, 0.1, 3.0, 6.0)]
    user = RKME.from_arrays(specs[0].z_, specs[0].beta_, 0.1, 100)
    result = search(candidates_with_specs(specs), spec=user)
    dists = [oracle_mmd2(user, s) for s in specs]
    scores = convert_dist_to_score(sorted(dists))  # best is 0 → no mixture
    assert result.mixture is None
    kept = [s for s in scores[1:] if s >= 0.6]
    assert [s.reference_score for s in result.singles] == pytest.approx([scores[0], *kept])
    assert result.singles[0].id == "lw0"
    assert result.singles[0].similarity == pytest.approx(1.0, abs=1e-12)


def test_dropped_candidates_are_counted():
    rng = np.random.default_rng(2)
    user = random_spec(rng, d=3)
    cands = [
        Candidate("ok", lw_semantic(), random_spec(rng, d=3)),
        Candidate("gamma", lw_semantic(), random_spec(rng, d=3, gamma=0.2)),
        Candidate("gamma-close", lw_semantic(), random_spec(rng, d=3, gamma=0.1 * (1 + 1e-14))),
        Candidate("dim", lw_semantic(), random_spec(rng, d=4)),
        Candidate("none", lw_semantic(), None),
    ]
    result = search(cands, spec=user)
    want = min(
        ["ok", "gamma-close"], key=lambda i: oracle_mmd2(user, cands[0 if i == "ok" else 2].spec)
    )
    assert result.singles[0].id == want  # the other one scores 0: filtered by the 0.6 rule
    st = result.stats
    assert (st["candidates"], st["semantic_matches"], st["scored"]) == (5, 5, 2)
    assert (st["dropped_gamma"], st["dropped_shape"], st["dropped_no_spec"]) == (1, 1, 1)
    assert st["dropped_type"] == 0


def test_mismatch_with_every_candidate_is_no_error():
    rng = np.random.default_rng(3)
    cands = candidates_with_specs([random_spec(rng, d=3) for _ in range(3)])
    result = search(cands, spec=random_spec(rng, d=5))
    assert result.singles == [] and result.mixture is None
    assert result.stats["dropped_shape"] == 3
    result = search(cands, spec=random_spec(rng, d=3, gamma=1.0))
    assert result.singles == [] and result.stats["dropped_gamma"] == 3


def test_non_finite_user_spec_is_refused():
    rng = np.random.default_rng(4)
    cands = candidates_with_specs([random_spec(rng)])
    bad = random_spec(rng)
    bad.beta_[0] = np.nan
    with pytest.raises(SpecificationError, match="not finite"):
        search(cands, spec=bad)
    with pytest.raises(SpecificationError, match="not fitted"):
        search(cands, spec=RKME())


def test_top_truncates_after_scoring():
    rng = np.random.default_rng(5)
    specs = [random_spec(rng, offset=0.05 * i) for i in range(6)]
    cands = candidates_with_specs(specs)
    user = random_spec(rng)
    full = search(cands, spec=user)
    assert len(full.singles) >= 3
    cut = search(cands, spec=user, top=2)
    assert cut.singles == full.singles[:2]
    assert cut.mixture == full.mixture
    assert len(search(cands, top=3).singles) == 3
    with pytest.raises(ValueError, match="top"):
        search(cands, spec=user, top=0)


def test_similarity_is_within_bounds_and_one_for_an_identical_spec():
    rng = np.random.default_rng(6)
    specs = [random_spec(rng, offset=o) for o in np.linspace(0, 20, 15)]
    user = RKME.from_arrays(specs[3].z_.copy(), specs[3].beta_.copy(), 0.1, 100)
    result = search(candidates_with_specs(specs), spec=user, top=15)
    sims = {s.id: s.similarity for s in result.singles}
    assert all(0.0 <= s <= 1.0 for s in sims.values())
    assert sims["lw3"] == pytest.approx(1.0, abs=1e-12)
    for s in result.singles:  # the formula, against the oracle
        spec = specs[int(s.id[2:])]
        want = 2 * oracle_inner(user, spec) / (oracle_inner(user, user) + oracle_inner(spec, spec))
        assert s.similarity == pytest.approx(want, abs=1e-12)


def test_to_dict_round_trips_through_json():
    rng = np.random.default_rng(7)
    cands = candidates_with_specs([random_spec(rng, offset=o) for o in (0, 0.5, 1, 4)])
    for result in (search(cands, spec=random_spec(rng)), search(cands)):
        d = result.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert set(d) == {"singles", "mixture", "semantic_only", "stats"}
        assert isinstance(result, SearchResult)


# -- mixture -------------------------------------------------------------------------------
def blob(rng, centre, n) -> np.ndarray:
    return rng.normal(size=(n, 2)) + np.asarray(centre, dtype=np.float64)


@pytest.fixture(scope="module")
def mixture_market():
    """Six learnwares on separated blobs; the user's data is 70 % blob A and 30 % blob B."""
    rng = np.random.default_rng(42)
    centres = {"A": (0, 0), "B": (9, 0), "C": (0, 9), "D": (9, 9), "E": (-9, 0), "F": (4.5, 4.5)}
    cands = [
        Candidate(name, lw_semantic(name), RKME(n_points=30, seed=i).fit(blob(rng, c, 400)))
        for i, (name, c) in enumerate(centres.items())
    ]
    user_x = np.vstack([blob(rng, centres["A"], 700), blob(rng, centres["B"], 300)])
    user = RKME(n_points=30, seed=99).fit(user_x)
    return cands, user


def test_greedy_mixture_recovers_the_union(mixture_market):
    cands, user = mixture_market
    result = search(cands, spec=user)
    mix = result.mixture
    assert mix is not None
    assert mix.ids == ("A", "B")
    assert dict(zip(mix.ids, mix.weights, strict=True)) == pytest.approx(
        {"A": 0.7, "B": 0.3}, abs=0.1
    )
    best_single = min(s.mmd2 for s in result.singles)
    assert mix.mmd2 < best_single
    w = np.array(mix.weights)
    a, b = cands[0].spec, cands[1].spec
    k = np.array(
        [[oracle_inner(a, a), oracle_inner(a, b)], [oracle_inner(b, a), oracle_inner(b, b)]]
    )
    c = np.array([oracle_inner(user, a), oracle_inner(user, b)])
    u = oracle_inner(user, user)
    assert mix.mmd2 == pytest.approx(u - 2 * c @ w + w @ k @ w, abs=1e-12)
    assert mix.similarity == pytest.approx(2 * c @ w / (u + w @ k @ w), abs=1e-12)
    assert 0.0 <= mix.similarity <= 1.0 and mix.reference_score is not None


def test_greedy_finds_the_best_pair_of_an_exhaustive_search(mixture_market):
    cands, user = mixture_market
    specs = [c.spec for c in cands]
    gram = inner_product_matrix([user, *specs], user.gamma)
    K, C, u = gram[1:, 1:], gram[0, 1:], gram[0, 0]
    np.testing.assert_allclose(gram[0, 1], oracle_inner(user, specs[0]), rtol=1e-12)

    def pair_mmd2(i, j):
        return u + 2 * solve_simplex_qp(K[np.ix_([i, j], [i, j])], C[[i, j]]).objective

    best = min(itertools.combinations(range(len(specs)), 2), key=lambda p: pair_mmd2(*p))
    greedy = greedy_mixture(K, C, u, max_members=2)
    assert sorted(greedy.members) == sorted(best)
    assert greedy.mmd2 == pytest.approx(pair_mmd2(*best), abs=1e-12)


def test_table_pool_columns_give_the_mixture_of_the_full_gram_matrix():
    """With the user's inner products from the ranking, a table pool computes only the Gram
    columns of the members the greedy search picks: the same mixture, a fraction of the
    kernel values."""
    from wharf.market.scoring import _table_pool, score_ranking

    rng = np.random.default_rng(12)
    specs = [random_spec(rng, k=int(rng.integers(3, 9)), offset=o) for o in rng.normal(size=25)]
    user = random_spec(rng, k=6, offset=0.1)
    full = inner_product_matrix([user, *specs], user.gamma)
    selfs = np.diag(full)[1:]
    gram, cross, column = _table_pool(specs, full[0, 1:], selfs, user.gamma)
    assert np.isnan(gram[0, 1]) and np.array_equal(np.diag(gram), selfs)
    np.testing.assert_allclose(column(3), full[1:, 4], rtol=1e-13, atol=1e-16)

    want = greedy_mixture(full[1:, 1:].copy(), full[0, 1:], full[0, 0], 5, decay_rate=1.0)
    called = []
    got = greedy_mixture(
        gram, cross, full[0, 0], 5, decay_rate=1.0, column=lambda j: called.append(j) or column(j)
    )
    assert got.members == want.members and len(got.members) >= 3
    np.testing.assert_allclose(got.weights, want.weights, atol=1e-10)
    assert got.mmd2 == pytest.approx(want.mmd2, abs=1e-14)
    assert called == got.members[: len(called)] and len(called) < len(got.members) + 1

    dists = full[0, 0] + selfs - 2 * full[0, 1:]
    order = np.argsort(dists)
    ids = [f"lw{i}" for i in order]

    def ranked(cross):
        stats: dict = {}
        return score_ranking(
            user,
            ids,
            dists[order],
            selfs[order],
            lambda pool: [specs[int(i[2:])] for i in pool],
            max_search_num=5,
            stats=stats,
            cross=cross,
        )

    (a, mix_a), (b, mix_b) = ranked(None), ranked(full[0, 1:][order])
    # the same ranking; scores that read the mixture's MMD² may differ in the last bit
    assert [m.id for m in a] == [m.id for m in b] and mix_a.ids == mix_b.ids
    for x, y in zip(a, b, strict=True):
        assert x.mmd2 == y.mmd2
        assert x.reference_score == pytest.approx(y.reference_score, rel=1e-12)
        assert x.similarity == pytest.approx(y.similarity, rel=1e-12)
    np.testing.assert_allclose(mix_a.weights, mix_b.weights, atol=1e-10)
    assert mix_a.mmd2 == pytest.approx(mix_b.mmd2, abs=1e-14)
    assert mix_a.similarity == pytest.approx(mix_b.similarity, abs=1e-14)


def test_no_mixture_of_one_when_nothing_helps():
    rng = np.random.default_rng(8)
    specs = [random_spec(rng, offset=o) for o in (0.0, 30.0, 60.0)]
    user = random_spec(rng, offset=0.2)
    result = search(candidates_with_specs(specs), spec=user)
    assert result.mixture is None  # far-away specs cannot lower the MMD² by 5 %
    assert result.stats["qp_solves"] > 0


# -- cached partition ----------------------------------------------------------------------
def assert_same_result(a: SearchResult, b: SearchResult):
    assert [s.id for s in a.singles] == [s.id for s in b.singles]
    for x, y in zip(a.singles, b.singles, strict=True):
        assert x.mmd2 == pytest.approx(y.mmd2, rel=1e-10, abs=1e-13)
        assert x.reference_score == pytest.approx(y.reference_score, abs=1e-9)
        assert x.similarity == pytest.approx(y.similarity, abs=1e-12)
    assert (a.mixture is None) == (b.mixture is None)
    if a.mixture is not None:
        assert a.mixture.ids == b.mixture.ids
        np.testing.assert_allclose(a.mixture.weights, b.mixture.weights, atol=1e-8)
        assert a.mixture.mmd2 == pytest.approx(b.mixture.mmd2, abs=1e-12)


def test_partition_after_adds_and_removes_equals_a_fresh_scan():
    rng = np.random.default_rng(9)
    specs = [
        random_spec(rng, k=int(rng.integers(3, 9)), offset=rng.normal(scale=1.5)) for _ in range(20)
    ]
    cands = candidates_with_specs(specs)
    user = random_spec(rng, k=7)
    part = SpecPartition.for_spec(user)
    part.add(cands[:8])
    part.add(cands[8:])
    live = list(cands)
    assert_same_result(search(live, spec=user, partition=part), search(live, spec=user))

    part.remove(["lw1", "lw5", "missing"])
    live = [c for c in live if c.id not in ("lw1", "lw5")]
    assert_same_result(search(live, spec=user, partition=part), search(live, spec=user))

    # replacing a spec under the same id, then enough removals to rebuild the bank
    new = Candidate("lw2", cands[2].semantic, random_spec(rng, k=4))
    part.add([new])
    live = [new if c.id == "lw2" else c for c in live]
    gone = [c.id for c in live[3:14]]
    part.remove(gone)
    live = [c for c in live if c.id not in gone]
    assert len(part) == len(live) and set(part.ids) == {c.id for c in live}
    assert_same_result(search(live, spec=user, partition=part), search(live, spec=user))

    with pytest.raises(LookupError, match="lw5"):
        search(cands, spec=user, partition=part)
    with pytest.raises(SpecificationError, match="partition"):
        part.add([Candidate("x", lw_semantic(), random_spec(rng, d=4))])
