"""Tests for market.index: packed specs, the FAISS coarse stage, indexed search equal to the
exact scan, and the change-log sync (adds, deletes, gaps, snapshots, two workers)."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from wharf.market.catalog import IndexChange, repo
from wharf.market.index.coarse import CoarseConfig, CoarseIndex
from wharf.market.index.packed import PackedSpecs
from wharf.market.index.partition import IndexConfig, MarketIndex
from wharf.market.index.search import search_index
from wharf.market.index.snapshot import LATEST, load_snapshot, save_snapshot
from wharf.market.index.sync import IndexSync
from wharf.market.search import Candidate, search
from wharf.specification import RKME
from wharf.specification.files import dumps_spec
from wharf.specification.mmd import mmd2
from wharf.specification.semantic import SemanticSpec, generate_semantic_spec

from .test_search import lw_semantic, random_spec


def family_spec(rng, family: int, k=8, d=4, gamma=0.2) -> RKME:
    """Specs of one family lie near one another, families apart: a market of distinct tasks."""
    center = np.random.default_rng(family).normal(scale=3.0, size=d)
    z = center + rng.normal(size=(k, d))
    return RKME.from_arrays(z, rng.dirichlet(np.ones(k)), gamma, 100)


# -- packed specs --------------------------------------------------------------------------
def test_packed_mmd2_matches_direct_computation_through_removal_and_compaction():
    rng = np.random.default_rng(0)
    specs = [random_spec(rng, k=int(rng.integers(2, 12)), d=3, offset=4.0) for _ in range(60)]
    packed = PackedSpecs(0.1, 3, chunk_rows=40)
    packed.add(list(range(1, 61)), specs)
    query = random_spec(rng, k=7, d=3, offset=4.0)
    ids = [5, 60, 1, 33]
    expected = [mmd2(query, specs[i - 1]) for i in ids]
    np.testing.assert_allclose(packed.mmd2(query, ids), expected, rtol=0, atol=1e-13)

    packed.remove(range(1, 41))
    assert len(packed) == 20 and 5 not in packed and 41 in packed
    with pytest.raises(LookupError, match="5"):
        packed.mmd2(query, [5])
    live = packed.ids.tolist()
    before = packed.mmd2(query, live)
    packed.compact()
    np.testing.assert_allclose(packed.mmd2(query, live), before, rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        before, [mmd2(query, specs[i - 1]) for i in live], rtol=0, atol=1e-13
    )
    np.testing.assert_array_equal(packed.spec(41).z_, specs[40].z_)

    restored = PackedSpecs.from_state(0.1, 3, packed.state(), chunk_rows=40)
    np.testing.assert_array_equal(restored.mmd2(query, live), packed.mmd2(query, live))
    restored.add([100], [specs[0]])  # the restored storage keeps growing
    assert restored.mmd2(query, [100])[0] == pytest.approx(mmd2(query, specs[0]), abs=1e-13)


def test_float32_points_give_the_float64_stores_results_in_half_the_memory():
    """Points computed in float32 (as the heterogeneous map's are) kept as float32: every
    distance, inner product and self-term is bit for bit the float64 store's, through
    removal, compaction, several chunks and a snapshot, which loads as a float64 store."""
    rng = np.random.default_rng(5)

    def float32_spec(k: int):
        z = (4.0 + rng.normal(size=(k, 3))).astype(np.float32).astype(np.float64)
        return RKME.from_arrays(z, rng.dirichlet(np.ones(k)), 0.1, 100)

    specs = [float32_spec(int(rng.integers(2, 12))) for _ in range(60)]
    wide, narrow = (
        PackedSpecs(0.1, 3, chunk_rows=40),
        PackedSpecs(0.1, 3, chunk_rows=40, points="float32"),
    )
    for packed in (wide, narrow):
        packed.add(list(range(1, 61)), specs)
    assert narrow.nbytes < 0.7 * wide.nbytes
    query = random_spec(rng, k=7, d=3, offset=4.0)
    ids = list(range(1, 61))
    for a, b in zip(wide.distances(query, ids), narrow.distances(query, ids), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(narrow.mmd2(query, [3]), wide.mmd2(query, [3]))  # one chunk
    np.testing.assert_array_equal(narrow.spec(9).z_, specs[8].z_)

    for packed in (wide, narrow):
        packed.remove(range(1, 41))
        packed.compact()
    live = narrow.ids.tolist()
    assert live == wide.ids.tolist()
    np.testing.assert_array_equal(narrow.mmd2(query, live), wide.mmd2(query, live))
    np.testing.assert_array_equal(narrow.spec(41).z_, specs[40].z_)
    restored = PackedSpecs.from_state(0.1, 3, narrow.state(), chunk_rows=40)
    assert restored.points == "float64"
    np.testing.assert_array_equal(restored.mmd2(query, live), wide.mmd2(query, live))
    with pytest.raises(ValueError, match="float32"):
        PackedSpecs(0.1, 3, points="float16")


def test_packed_add_replaces_an_id_and_rejects_other_partitions():
    rng = np.random.default_rng(1)
    a, b = random_spec(rng), random_spec(rng)
    packed = PackedSpecs(0.1, 3)
    packed.add([7], [a])
    packed.add([7], [b])
    assert len(packed) == 1
    assert packed.mmd2(b, [7])[0] == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(Exception, match="gamma"):
        packed.add([8], [random_spec(rng, gamma=0.5)])
    with pytest.raises(Exception, match="features"):
        packed.add([8], [random_spec(rng, d=4)])


# -- coarse index --------------------------------------------------------------------------
def test_coarse_index_moves_from_flat_to_ivf_and_keeps_ids_removals_and_filters():
    rng = np.random.default_rng(2)
    centers = rng.normal(scale=4, size=(20, 16))
    vectors = (centers[rng.integers(0, 20, 6000)] + rng.normal(size=(6000, 16))).astype(np.float32)
    ids = np.arange(1000, 7000)
    coarse = CoarseIndex(16, CoarseConfig(flat_max=2000, tune_k=10, target_recall=0.95))
    coarse.add(ids[:1500], vectors[:1500])
    assert coarse.info.kind == "IDMap2,Flat"
    coarse.add(ids[1500:], vectors[1500:])
    assert coarse.info.kind.startswith("IVF") and coarse.info.built_at_size == 6000
    assert coarse.info.recall >= 0.95 and coarse.info.nprobe >= 1
    assert coarse.search(vectors[10], 1)[0] == 1010

    coarse.remove(np.array([1010]))
    assert 1010 not in coarse.search(vectors[10], 20)
    allowed = np.array([1011, 1012, 5000])
    assert set(coarse.search(vectors[10], 10, allowed)) <= set(allowed)

    restored = CoarseIndex.deserialize(coarse.serialize(), 16, coarse.info.to_dict())
    assert restored.info == coarse.info and len(restored) == 5999
    restored.remove(np.array([1011]))  # removal by id works after a restore
    assert 1011 not in restored.search(vectors[11], 20)
    got_ids, got = restored.vectors()
    order = np.argsort(got_ids)
    keep = ~np.isin(ids, [1010, 1011])
    np.testing.assert_array_equal(got_ids[order], ids[keep])
    np.testing.assert_allclose(got[order], vectors[keep])


# -- indexed search equals the exact scan ---------------------------------------------------
def _market(n=120, families=6, seed=3):
    rng = np.random.default_rng(seed)
    specs = [family_spec(rng, i % families) for i in range(n)]
    cands = [Candidate(f"{i + 1:08d}", lw_semantic(f"m{i}"), s) for i, s in enumerate(specs)]
    return rng, specs, cands


def assert_same(got, exact, *, mmd2_atol: float = 0.0):
    """An indexed search's result equals the exact scan's: ids, MMD², scores and mixture."""
    assert [s.id for s in got.singles] == [s.id for s in exact.singles]
    np.testing.assert_allclose(
        [s.mmd2 for s in got.singles], [s.mmd2 for s in exact.singles], rtol=1e-10, atol=mmd2_atol
    )
    np.testing.assert_allclose(
        [s.reference_score for s in got.singles],
        [s.reference_score for s in exact.singles],
        atol=1e-9,
    )
    assert (got.mixture is None) == (exact.mixture is None)
    if exact.mixture is not None:
        assert got.mixture.ids == exact.mixture.ids
        np.testing.assert_allclose(got.mixture.weights, exact.mixture.weights, atol=1e-8)


@pytest.mark.parametrize(
    "config",
    [
        IndexConfig(),  # small: an exact scan
        IndexConfig(exact_max_rows=0, min_candidates=1000),  # as many candidates as specs
    ],
    ids=["exact", "coarse-all"],
)
def test_indexed_search_equals_the_exact_scan(config):
    rng, specs, cands = _market()
    index = MarketIndex(config)
    index.add(list(range(1, len(specs) + 1)), specs)
    for family in range(3):
        user = family_spec(rng, family, k=10)
        exact = search(cands, spec=user, max_search_num=3)
        got = search_index(index, user, max_search_num=3, format_id=lambda i: f"{i:08d}")
        assert_same(got, exact)
        coarse = config.exact_max_rows == 0 and config.min_candidates < len(specs)
        assert got.stats["method"] == ("coarse" if coarse else "exact")


def test_faiss_candidates_hold_the_exact_top_10():
    """With 40 of 120 proposed, the top 10 and their MMD² are those of the full scan. (The
    reference's relative score is computed among the ranked candidates, so the singles kept
    by its ≥ 0.6 filter can differ; the ranking cannot.)"""
    rng, specs, cands = _market()
    index = MarketIndex(IndexConfig(exact_max_rows=0, min_candidates=40))
    index.add(list(range(1, len(specs) + 1)), specs)
    for family in range(6):
        user = family_spec(rng, family, k=10)
        exact = np.array([mmd2(user, s) for s in specs])
        ranked = index.partition_for(user).rank(user, candidates=40)
        assert ranked.method == "coarse" and len(ranked.ids) == 40
        np.testing.assert_array_equal(ranked.ids[:10], np.argsort(exact, kind="stable")[:10] + 1)
        np.testing.assert_allclose(ranked.mmd2[:10], np.sort(exact)[:10], rtol=1e-10)
        got = search_index(index, user, format_id=lambda i: f"{i:08d}")
        full = search(cands, spec=user)
        assert [s.id for s in got.singles][:3] == [s.id for s in full.singles][:3]


def test_indexed_search_respects_the_allowed_ids_and_other_partitions():
    rng, specs, _ = _market(n=60)
    index = MarketIndex(IndexConfig(exact_max_rows=0, min_candidates=10))
    index.add(list(range(1, 61)), specs)
    index.add([500], [random_spec(rng, d=4, gamma=0.9)])  # another γ: another partition
    assert len(index.partitions) == 2
    user = family_spec(rng, 0)
    allowed = np.array([2, 3, 4, 5, 500])
    got = search_index(index, user, allowed=allowed, format_id=str)
    assert {s.id for s in got.singles} <= {"2", "3", "4", "5"}
    none = search_index(index, random_spec(rng, d=7), format_id=str)
    assert none.singles == [] and none.stats["partition"] is None


# -- catalog sync ---------------------------------------------------------------------------
def _accept(s, owner_id: int, spec: RKME, name: str) -> int:
    text = dumps_spec(spec)
    sha = hashlib.sha256(text.encode() + name.encode()).hexdigest()
    semantic = generate_semantic_spec(
        name=name,
        description="test",
        data_type="Table",
        task_type="Classification",
        library_type="Scikit-learn",
        scenarios="Education",
        license="MIT",
        input_description={"Dimension": spec.z_.shape[1], "Description": {}},
        output_description={"Dimension": 2, "Description": {}},
    )
    lw = repo.create_learnware(s, owner_id, semantic, sha, f"packages/{sha}.zip", 10)
    assert repo.claim_for_check(s, lw.id)
    meta = {
        "type": spec.spec_type,
        "shape": list(spec.z_.shape[1:]),
        "gamma": spec.gamma,
        "points": len(spec.beta_),
        "num_points": 100,
    }
    assert repo.finish_check(s, lw.id, accepted=True, log="ok", spec_meta=meta, stat_spec_json=text)
    return lw.id


@pytest.fixture
def owner(catalog):
    with catalog.session() as s:
        return repo.create_user(s, "dev").id


def test_sync_follows_accepts_deletes_and_new_packages(catalog, local_store, owner):
    rng = np.random.default_rng(4)
    with catalog.session() as s:
        ids = [_accept(s, owner, family_spec(rng, i % 3), f"m{i}") for i in range(12)]
    sync = IndexSync(catalog, local_store)
    index = sync.start()
    assert len(index) == 12 and all(i in index for i in ids)

    with catalog.session() as s:
        repo.delete_learnware(s, ids[0])
        repo.replace_package(s, ids[1], "f" * 64, "packages/new.zip", 5)
        new = _accept(s, owner, family_spec(rng, 1), "late")
    assert sync.catch_up() == 3
    assert ids[0] not in index and ids[1] not in index and new in index
    assert len(index) == 11
    assert sync.catch_up() == 0  # nothing new: nothing applied again

    user = family_spec(rng, 1)
    got = search_index(index, user, format_id=int)
    assert ids[0] not in [s.id for s in got.singles] and new in [s.id for s in got.singles]


def test_a_search_job_reads_its_spec_from_the_request_or_the_store(catalog, local_store, owner):
    """workers.searching.run_search: a small requirement spec travels in the job's request
    (``spec``), a larger one in the object store (``spec_key``); the answer is the same."""
    import io

    from wharf.market.settings import Settings
    from wharf.workers import searching

    rng = np.random.default_rng(11)
    with catalog.session() as s:
        for i in range(6):
            _accept(s, owner, family_spec(rng, i % 2), f"m{i}")
    settings = Settings()
    text = dumps_spec(family_spec(rng, 1))
    local_store.put("searches/u.json", io.BytesIO(text.encode()), durable=False)
    searching._sync = None  # this test's catalog
    try:
        inline = searching.run_search(catalog, local_store, settings, {"spec": text, "top": 3})
        stored = searching.run_search(
            catalog, local_store, settings, {"spec_key": "searches/u.json", "top": 3}
        )
    finally:
        searching._sync = None
    for result in (inline, stored):
        result["stats"].pop("timings_ms")
    assert inline == stored and len(inline["singles"]) == 3


def test_two_workers_converge_and_a_snapshot_restores_with_the_tail(catalog, local_store, owner):
    rng = np.random.default_rng(5)
    with catalog.session() as s:
        ids = [_accept(s, owner, family_spec(rng, i % 4), f"m{i}") for i in range(20)]
    first = IndexSync(catalog, local_store)
    first.start()
    name = first.snapshot()
    assert local_store.exists(LATEST) and name.startswith(f"{first.index.seq:012d}")

    with catalog.session() as s:
        repo.delete_learnware(s, ids[3])
        extra = [_accept(s, owner, family_spec(rng, 2), f"x{i}") for i in range(3)]
    second = IndexSync(catalog, local_store)  # starts from the snapshot, then the tail
    second.start()
    first.catch_up()
    user = family_spec(rng, 2)
    a = search_index(first.index, user, format_id=int)
    b = search_index(second.index, user, format_id=int)
    assert [s.id for s in a.singles] == [s.id for s in b.singles]
    assert [s.mmd2 for s in a.singles] == [s.mmd2 for s in b.singles]
    assert ids[3] not in second.index and all(i in second.index for i in extra)
    assert first.index.seq == second.index.seq

    loaded, _, _ = load_snapshot(local_store, IndexConfig())
    assert len(loaded) == 20 and ids[3] in loaded  # the snapshot itself is unchanged
    assert load_snapshot(local_store, IndexConfig(embedding_size=64)) is None  # other config


def test_snapshots_are_pruned(local_store):
    index = MarketIndex()
    index.add([1], [random_spec(np.random.default_rng(0))])
    for seq in range(1, 5):
        index.seq = seq
        save_snapshot(index, local_store, keep=2)
    manifests = [k for k in local_store.list("index/snapshots/") if k.endswith("manifest.json")]
    assert len(manifests) == 2 and "000000000004" in manifests[-1]


def test_a_late_committing_change_is_not_missed(catalog, local_store, owner):
    """An entry that commits below one already read (a slow transaction) is still applied."""
    rng = np.random.default_rng(6)
    with catalog.session() as s:
        first = _accept(s, owner, family_spec(rng, 0), "a")
    sync = IndexSync(catalog, local_store)
    sync.start()
    base = sync.index.seq
    with catalog.session() as s:
        late = _accept(s, owner, family_spec(rng, 0), "b")  # logs entry base + 1
        s.query(IndexChange).filter(IndexChange.seq > base).delete()  # not yet visible
        s.add(IndexChange(seq=base + 2, learnware_id=first, op="add"))
    sync.catch_up()
    assert late not in sync.index and sync.index.seq == base  # held back at the gap
    with catalog.session() as s:
        s.add(IndexChange(seq=base + 1, learnware_id=late, op="add"))  # the slow commit
    sync.catch_up()
    assert late in sync.index and sync.index.seq == base + 2 and not sync.gaps


def test_a_build_reads_each_spec_once_and_still_waits_for_open_entries(catalog, local_store, owner):
    """Entries logged just before a build are in what it read: its first catch-up does not
    read those specs again. A seq missing among them (a transaction still open) is looked
    for, and applied when it commits."""
    rng = np.random.default_rng(9)
    with catalog.session() as s:
        ids = [_accept(s, owner, family_spec(rng, i % 3), f"m{i}") for i in range(12)]
        top = max(q for q, _ in repo.index_changes_after(s, 0))
        s.add(IndexChange(seq=top + 2, learnware_id=ids[0], op="add"))  # top + 1: still open

    parsed: list[str] = []

    class Counting(IndexSync):
        def _parse(self, text):
            parsed.append(text)
            return super()._parse(text)

    sync = Counting(catalog, local_store)
    sync.start()
    assert len(parsed) == 12  # once each, the entry at top + 2 included
    assert sync.high == top + 2 and set(sync.gaps) == {top + 1} and sync.index.seq == top

    with catalog.session() as s:
        late = _accept(s, owner, family_spec(rng, 0), "late")
        s.query(IndexChange).filter(IndexChange.learnware_id == late).delete()
        s.add(IndexChange(seq=top + 1, learnware_id=late, op="add"))  # the open one commits
    assert sync.catch_up() == 1
    assert late in sync.index and not sync.gaps and sync.index.seq == top + 2


def test_a_gap_that_never_fills_is_given_up_after_the_timeout(catalog, local_store, owner):
    rng = np.random.default_rng(7)
    with catalog.session() as s:
        lw = _accept(s, owner, family_spec(rng, 0), "a")
    sync = IndexSync(catalog, local_store, gap_timeout_s=0.0)
    sync.start()
    base = sync.index.seq
    with catalog.session() as s:
        s.add(IndexChange(seq=base + 3, learnware_id=lw, op="add"))  # base+1, +2 rolled back
    sync.catch_up()
    sync.catch_up()
    assert sync.index.seq == base + 3


def test_deletes_are_never_returned_after_catch_up_under_concurrent_searches(
    catalog, local_store, owner
):
    rng = np.random.default_rng(8)
    with catalog.session() as s:
        ids = [_accept(s, owner, family_spec(rng, 0), f"m{i}") for i in range(30)]
    sync = IndexSync(catalog, local_store)
    sync.start()
    user = family_spec(rng, 0)
    deleted: set[int] = set()
    errors: list[str] = []
    stop = threading.Event()

    def searcher():
        while not stop.is_set():
            gone = set(deleted)  # deleted (and committed) before this search began
            sync.catch_up()
            found = {m.id for m in search_index(sync.index, user, format_id=int).singles}
            if found & gone:
                errors.append(f"deleted learnwares {found & gone} returned")

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for lid in ids[:20]:
            with catalog.session() as s:
                repo.delete_learnware(s, lid)
            deleted.add(lid)
            with catalog.session() as s:
                _accept(s, owner, family_spec(rng, 0), f"new{lid}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    sync.catch_up()
    with catalog.session() as s:
        accepted = set(repo.accepted_spec_ids(s))
    assert set(sync.index.partitions[next(iter(sync.index.partitions))].specs.ids) == accepted


def test_semantic_candidates_filter_tags_in_sql(catalog, owner):
    rng = np.random.default_rng(9)
    with catalog.session() as s:
        a = _accept(s, owner, family_spec(rng, 0), "alpha model")
        _accept(s, owner, family_spec(rng, 0), "beta model")
        req = SemanticSpec.from_dict(
            generate_semantic_spec(scenarios=["Education", "Health"], task_type="Classification"),
            requirement=True,
        )
        assert len(repo.semantic_candidates(s, req, with_text=False)) == 2
        req = SemanticSpec.from_dict(
            generate_semantic_spec(task_type="Regression"), requirement=True
        )
        assert repo.semantic_candidates(s, req, with_text=False) == []
        rows = repo.semantic_candidates(s, req.model_copy(), with_text=True)
        assert rows == []
        req = SemanticSpec.from_dict(generate_semantic_spec(name="alpha"), requirement=True)
        rows = repo.semantic_candidates(s, req, with_text=True)
        assert [r[0] for r in rows if "alpha" in r[1]] == [a]
        # Model, the reference's 0.4 key: a learnware stored without it is Others.
        others = generate_semantic_spec(model_type="Others")
        req = SemanticSpec.from_dict(others, requirement=True)
        assert len(repo.semantic_candidates(s, req, with_text=False)) == 2
        base = generate_semantic_spec(model_type=["Base Model", "PEFT Model"])
        req = SemanticSpec.from_dict(base, requirement=True)
        assert repo.semantic_candidates(s, req, with_text=False) == []
