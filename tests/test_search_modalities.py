"""Image and text learnwares in the search: the exact scan and the worker's index agree,
image distances are squashed for scoring, text searches keep to the user's languages, and
snapshots keep both kinds."""

from __future__ import annotations

import numpy as np
import pytest
from wharf.market.index.partition import IndexConfig, MarketIndex
from wharf.market.index.search import search_index
from wharf.market.index.snapshot import load_snapshot, save_snapshot
from wharf.market.scoring import (
    convert_dist_to_score,
    greedy_mixture,
    inner_product_matrix,
    squash_image_distance,
)
from wharf.market.search import Candidate, search
from wharf.specification import mmd2
from wharf.specification.image import RKMEImage
from wharf.specification.text import RKMEText

from .test_index import assert_same
from .test_search import lw_semantic


def image_spec(rng, family: int, k=4, spread=0.05) -> RKMEImage:
    base = np.random.default_rng(100 + family).normal(size=(1, 1, 32, 32))
    z = base + spread * rng.normal(size=(k, 1, 32, 32))
    return RKMEImage.from_arrays(z, rng.dirichlet(np.ones(k)), 50)


def text_spec(rng, family: int, langs, k=5) -> RKMEText:
    center = np.random.default_rng(200 + family).normal(size=8)
    z = center + 0.5 * rng.normal(size=(k, 8))
    return RKMEText.from_arrays(z, rng.dirichlet(np.ones(k)), 0.1, 40, langs)


def candidates(specs) -> list[Candidate]:
    return [Candidate(f"{i + 1:08d}", lw_semantic(f"m{i}"), s) for i, s in enumerate(specs)]


@pytest.fixture(scope="module")
def image_market():
    rng = np.random.default_rng(0)
    specs = [image_spec(rng, i % 3, spread=0.05 + 0.02 * i) for i in range(9)]
    users = [image_spec(rng, 1, k=3), image_spec(rng, 2, k=3, spread=0.3)]
    return specs, users


def test_indexed_image_search_equals_the_exact_scan(image_market):
    specs, users = image_market
    index = MarketIndex(IndexConfig(image_min_candidates=100))  # scanned exactly
    index.add(list(range(1, 10)), specs)
    for user in users:
        exact = search(candidates(specs), spec=user, max_search_num=3)
        got = search_index(index, user, max_search_num=3, format_id=lambda i: f"{i:08d}")
        assert_same(got, exact, mmd2_atol=1e-14)
        assert got.stats["method"] == "exact" and got.stats["partition"]["kernel"] == "nngp"
        np.testing.assert_allclose(
            [s.mmd2 for s in exact.singles],
            [mmd2(user, specs[int(s.id) - 1]) for s in exact.singles],
            rtol=1e-10,
        )
    top = search(candidates(specs), spec=users[0]).singles[0]
    assert (int(top.id) - 1) % 3 == 1  # a learnware of the user's family comes first


def test_image_scores_use_the_squashed_distances(image_market):
    specs, users = image_market
    exact = search(candidates(specs), spec=users[1], max_search_num=1)  # no mixture
    raw = sorted(mmd2(users[1], s) for s in specs)
    want = convert_dist_to_score([squash_image_distance(d) for d in raw])
    got = [s.reference_score for s in exact.singles]
    np.testing.assert_allclose(got, want[: len(got)], atol=1e-12)
    assert squash_image_distance(5e-5) == pytest.approx(1 - np.exp(-1))


def test_lazy_image_gram_gives_the_mixture_of_the_full_one(image_market):
    specs, users = image_market
    user = users[1]
    full = inner_product_matrix([user, *specs], 0.0)
    want = greedy_mixture(full[1:, 1:], full[0, 1:], full[0, 0], 4, decay_rate=1.0)
    lazy = np.full((9, 9), np.nan)
    np.fill_diagonal(lazy, np.diag(full)[1:])
    calls = []

    def column(j):
        calls.append(j)
        return full[1:, 1 + j]

    got = greedy_mixture(lazy, full[0, 1:], full[0, 0], 4, decay_rate=1.0, column=column)
    assert got.members == want.members and len(got.members) >= 2
    np.testing.assert_allclose(got.weights, want.weights, atol=1e-12)
    assert calls == got.members[: len(calls)] and len(calls) < len(got.members) + 1


def test_text_search_keeps_to_the_users_languages():
    rng = np.random.default_rng(1)
    specs = [
        text_spec(rng, 0, ["en"]),
        text_spec(rng, 0, ["fr"]),
        text_spec(rng, 0, ["en", "fr"]),
        text_spec(rng, 1, ["en"]),
        text_spec(rng, 1, []),
    ]
    index = MarketIndex()
    index.add(list(range(1, 6)), specs)
    for langs, allowed in (
        (["fr"], {2, 3}),
        (["en"], {1, 3, 4}),
        (["en", "fr"], {3}),
        ([], {1, 2, 3, 4, 5}),
    ):
        user = text_spec(rng, 0, langs, k=3)
        exact = search(candidates(specs), spec=user)
        got = search_index(index, user, format_id=lambda i: f"{i:08d}")
        assert_same(got, exact, mmd2_atol=1e-14)
        assert {int(s.id) for s in exact.singles} <= allowed
        assert exact.stats["dropped_language"] == 5 - len(allowed)
        assert got.stats["dropped_language"] == 5 - len(allowed)
        assert got.stats["in_scope"] == len(allowed)


def test_partitions_by_kind_and_snapshots_keep_images_and_languages(local_store, image_market):
    specs, users = image_market
    rng = np.random.default_rng(2)
    texts = [text_spec(rng, i % 2, ["en"] if i % 2 else ["de"]) for i in range(4)]
    index = MarketIndex()
    index.add(list(range(1, 10)), specs)
    index.add(list(range(20, 24)), texts)
    index.add([30], [RKMEImage.from_arrays(rng.normal(size=(2, 3, 32, 32)), [0.5, 0.5])])
    assert len(index.partitions) == 3  # gray images, colour images, texts
    save_snapshot(index, local_store)
    loaded, _, _ = load_snapshot(local_store, IndexConfig())
    assert len(loaded) == len(index) == 14
    for user in (users[0], text_spec(rng, 1, ["en"], k=2)):
        a = search_index(index, user, format_id=int)
        b = search_index(loaded, user, format_id=int)
        assert [s.id for s in a.singles] == [s.id for s in b.singles]
        assert [s.mmd2 for s in a.singles] == [s.mmd2 for s in b.singles]
    german = text_spec(rng, 0, ["de"], k=2)
    assert {s.id for s in search_index(loaded, german, format_id=int).singles} <= {20, 22}
    index.remove([1, 20])
    assert 1 not in index and 20 not in index and len(index) == 12


def test_large_image_partitions_rank_faiss_candidates_exactly(local_store):
    rng = np.random.default_rng(7)
    specs = [image_spec(rng, i % 6, k=3, spread=0.3) for i in range(36)]
    config = IndexConfig(image_exact_max_rows=0, image_min_candidates=8)
    index = MarketIndex(config)
    index.add(list(range(1, 37)), specs)
    part = index.partition_for(specs[0])
    assert part.describe()["embedding"].startswith("cnngp-rf")
    for family in range(6):
        user = image_spec(rng, family, k=3, spread=0.3)
        got = search_index(index, user, max_search_num=2, top=4, format_id=int)
        exact = search(candidates(specs), spec=user, max_search_num=2)
        assert got.stats["method"] == "coarse" and got.stats["scored"] == 8
        # FAISS proposes the user's family (6 learnwares); their exact MMD² ranks them first.
        assert [s.id for s in got.singles] == [int(s.id) for s in exact.singles[:4]]
        assert {s.id % 6 for s in got.singles} == {(family + 1) % 6}
    save_snapshot(index, local_store)
    loaded, _, _ = load_snapshot(local_store, config)
    user = image_spec(rng, 2, k=3, spread=0.3)
    a = search_index(index, user, top=5, format_id=int)
    b = search_index(loaded, user, top=5, format_id=int)
    assert b.stats["method"] == "coarse" and [s.id for s in a.singles] == [s.id for s in b.singles]
    index.remove([3, 9])
    c = search_index(index, image_spec(rng, 2, k=3, spread=0.3), top=5, format_id=int)
    assert {3, 9}.isdisjoint(s.id for s in c.singles)
