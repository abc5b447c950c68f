import numpy as np
import pytest
from wharf.specification import RKME, IndexEmbedding, SpecBank, SpecificationError, herd, mmd2

from tests.oracles import gaussian_mixture


@pytest.fixture(scope="module")
def spec():
    return RKME(n_points=40, seed=0, device="cpu").fit(gaussian_mixture(800, 3, seed=2))


def test_herding_shape_determinism_and_location(spec):
    a = herd(spec, 50, seed=1, device="cpu")
    assert a.shape == (50, 3)
    np.testing.assert_array_equal(a, herd(spec, 50, seed=1, device="cpu"))
    assert not np.array_equal(a, herd(spec, 50, seed=2, device="cpu"))
    nearest = np.sqrt(((a[:, None] - spec.z_[None]) ** 2).sum(-1)).min(1)
    assert nearest.max() < 2.0  # candidates are reduced-set points plus N(0, 0.25²) noise


def test_herded_samples_track_the_spec_better_than_random_draws(spec):
    t = 40
    herded = RKME.from_arrays(herd(spec, t, seed=0, device="cpu"), np.full(t, 1 / t), 0.1, t)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.choice(len(spec.beta_), t, p=spec.beta_)
        drawn = spec.z_[idx] + 0.25 * rng.normal(size=(t, 3))
        random = RKME.from_arrays(drawn, np.full(t, 1 / t), 0.1, t)
        assert mmd2(herded, spec) < mmd2(random, spec)


def test_herding_refuses_bad_requests(spec):
    with pytest.raises(SpecificationError):
        herd(spec, 0)
    empty = RKME.from_arrays(spec.z_, np.zeros(len(spec.beta_)), 0.1, 1)
    with pytest.raises(SpecificationError, match="positive weight"):
        herd(empty, 3)


def test_embedding_is_deterministic_and_keyed():
    a = IndexEmbedding(5, 0.1, 64, seed=3)
    b = IndexEmbedding(5, 0.1, 64, seed=3)
    np.testing.assert_array_equal(a.frequencies, b.frequencies)
    assert a.key == b.key
    c = IndexEmbedding(5, 0.1, 64, seed=4)
    assert c.key != a.key and not np.array_equal(a.frequencies, c.frequencies)
    # frequencies are N(0, 2γI) marginally
    big = IndexEmbedding(8, 0.1, 20000, seed=0).frequencies
    assert big.var() == pytest.approx(0.2, rel=0.05)


def test_embedding_distance_approximates_mmd2():
    rng = np.random.default_rng(0)
    specs = [
        RKME.from_arrays(rng.normal(size=(20, 4)) + shift, rng.dirichlet(np.ones(20)), 0.1, 50)
        for shift in np.linspace(0, 3, 8)[:, None] * np.ones(4)
    ]
    emb = IndexEmbedding(4, 0.1, 8192, seed=0)
    e = emb.embed_many(specs)
    np.testing.assert_allclose(e[3], emb.embed(specs[3]), rtol=1e-6)
    bank = SpecBank(0.1, 4)
    bank.add(specs)
    exact = bank.mmd2(specs[0])
    approx = ((e - e[0]) ** 2).sum(1)
    np.testing.assert_allclose(approx[1:], exact[1:], rtol=0.15)
    assert list(np.argsort(approx)) == list(np.argsort(exact))


def test_embedding_blocks_do_not_change_results():
    rng = np.random.default_rng(1)
    specs = [
        RKME.from_arrays(rng.normal(size=(k, 3)), rng.dirichlet(np.ones(k)), 0.1, 9)
        for k in (3, 8, 5, 1)
    ]
    emb = IndexEmbedding(3, 0.1, 32)
    np.testing.assert_allclose(
        emb.embed_many(specs, block_rows=4), emb.embed_many(specs), rtol=1e-6
    )


def test_embedding_refuses_other_partitions():
    emb = IndexEmbedding(3, 0.1, 32)
    with pytest.raises(SpecificationError, match="features"):
        emb.embed(RKME.from_arrays(np.zeros((2, 4)), [0.5, 0.5], 0.1, 1))
    with pytest.raises(SpecificationError, match="gamma"):
        emb.embed(RKME.from_arrays(np.zeros((2, 3)), [0.5, 0.5], 0.2, 1))
    with pytest.raises(SpecificationError, match="even"):
        IndexEmbedding(3, 0.1, 33)
