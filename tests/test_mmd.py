import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from wharf.specification import RKME, SpecBank, SpecificationError, inner_product, mmd2

from tests import oracles


def random_spec(rng, k, d, gamma=0.1, offset=0.0):
    z = rng.normal(size=(k, d)) + offset
    return RKME.from_arrays(z, rng.dirichlet(np.ones(k)), gamma, 100)


def test_bank_matches_double_loop_with_mixed_k():
    rng = np.random.default_rng(0)
    specs = [random_spec(rng, k, 4, offset=rng.normal()) for k in (1, 3, 7, 7, 12, 5, 7)]
    query = random_spec(rng, 6, 4)
    bank = SpecBank(0.1, 4, block_entries=16)  # tiny blocks: many of them, on the thread pool
    bank.add(specs[:3])
    bank.add(specs[3:])
    got = bank.mmd2(query)
    want = np.array([oracles.mmd2(query, s) for s in specs])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    self_terms = [oracles.inner(s.z_, s.beta_, s.z_, s.beta_, 0.1) for s in specs]
    np.testing.assert_allclose(bank.self_terms, self_terms, rtol=1e-12)


def test_block_size_does_not_change_results():
    rng = np.random.default_rng(1)
    specs = [random_spec(rng, 10, 3) for _ in range(40)]
    query = random_spec(rng, 8, 3)
    results = []
    for block in (8, 200, 1 << 19):
        bank = SpecBank(0.1, 3, block_entries=block)
        bank.add(specs)
        results.append(bank.mmd2(query))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13)
    np.testing.assert_allclose(results[0], results[2], rtol=1e-13)


def test_subset_positions_in_the_given_order():
    rng = np.random.default_rng(2)
    specs = [random_spec(rng, k, 3) for k in (4, 9, 2, 6, 5)]
    bank = SpecBank(0.1, 3)
    bank.add(specs)
    query = random_spec(rng, 5, 3)
    full = bank.mmd2(query)
    np.testing.assert_array_equal(bank.mmd2(query, [4, 1, 1, 0]), full[[4, 1, 1, 0]])
    assert bank.mmd2(query, []).shape == (0,)
    with pytest.raises(SpecificationError, match="subset"):
        bank.mmd2(query, [5])


def test_precision_kept_far_from_the_origin():
    rng = np.random.default_rng(3)
    specs = [random_spec(rng, 6, 3, offset=1e4) for _ in range(5)]
    query = random_spec(rng, 6, 3, offset=1e4)
    bank = SpecBank(0.1, 3)
    bank.add(specs)
    want = np.array([oracles.mmd2(query, s) for s in specs])
    np.testing.assert_allclose(bank.mmd2(query), want, rtol=1e-11)
    assert mmd2(query, specs[0]) == pytest.approx(want[0], rel=1e-11)


def test_pairwise_mmd2_and_inner_product_match_oracle():
    rng = np.random.default_rng(4)
    a, b = random_spec(rng, 5, 2), random_spec(rng, 8, 2)
    assert inner_product(a, b) == pytest.approx(
        oracles.inner(a.z_, a.beta_, b.z_, b.beta_, 0.1), rel=1e-12
    )
    assert mmd2(a, b) == pytest.approx(oracles.mmd2(a, b), rel=1e-12)


def test_incomparable_specs_are_refused():
    rng = np.random.default_rng(5)
    a = random_spec(rng, 4, 3)
    with pytest.raises(SpecificationError, match="gamma"):
        mmd2(a, random_spec(rng, 4, 3, gamma=0.5))
    with pytest.raises(SpecificationError, match="feature shapes"):
        mmd2(a, random_spec(rng, 4, 2))
    bank = SpecBank(0.1, 3)
    with pytest.raises(SpecificationError, match="features"):
        bank.add([random_spec(rng, 4, 2)])
    with pytest.raises(SpecificationError, match="gamma"):
        bank.add([random_spec(rng, 4, 3, gamma=1.0)])
    bank.add([a])
    with pytest.raises(SpecificationError, match="gamma"):
        bank.mmd2(random_spec(rng, 4, 3, gamma=1.0))


def test_empty_bank():
    bank = SpecBank(0.1, 2)
    assert len(bank) == 0
    assert bank.mmd2(RKME.from_arrays(np.zeros((1, 2)), [1.0], 0.1, 1)).shape == (0,)


spec_strategy = st.integers(1, 6).flatmap(
    lambda k: st.tuples(
        arrays(np.float64, (k, 3), elements=st.floats(-5, 5)),
        arrays(np.float64, (k,), elements=st.floats(0.01, 1)),
    )
)


def _spec(pair):
    z, w = pair
    return RKME.from_arrays(z, w / w.sum(), 0.3, 10)


@settings(max_examples=60, deadline=None)
@given(spec_strategy, spec_strategy)
def test_mmd2_symmetric_nonnegative_and_zero_on_itself(pa, pb):
    a, b = _spec(pa), _spec(pb)
    ab, ba = mmd2(a, b), mmd2(b, a)
    scale = inner_product(a, a) + inner_product(b, b)
    assert ab == pytest.approx(ba, abs=1e-12 * scale)
    assert ab >= -1e-12 * scale
    assert abs(mmd2(a, a)) <= 1e-12 * scale
    bank = SpecBank(0.3, 3)
    bank.add([a, b])
    np.testing.assert_allclose(bank.mmd2(a), [mmd2(a, a), ab], atol=1e-12 * scale)


@pytest.mark.parametrize("numpy_exp", [True, False])
def test_kernel_exp_is_exp_of_the_clamped_exponents_on_the_calling_thread(monkeypatch, numpy_exp):
    """Both ways of kernel_exp_ (numpy's vectorised exp, or torch's in chunks it keeps on
    the calling thread) give exp(min(e, 0)) within an ulp, in place."""
    from wharf.specification import kernel

    monkeypatch.setattr(kernel, "NUMPY_SIMD_EXP", numpy_exp)
    rng = np.random.default_rng(0)
    e = -rng.exponential(3.0, size=(300, 37))  # not a multiple of the torch chunk
    e[0, :3] = [1e-17, 0.0, -800.0]  # rounding above 0; an underflow
    want = np.exp(np.minimum(e, 0.0))
    got = e.copy()
    assert kernel.kernel_exp_(got) is got
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=0)
    assert got[0, 0] == 1.0 and got[0, 2] == 0.0
    strided = e.T  # not contiguous: numpy's exp
    assert np.allclose(kernel.kernel_exp_(strided.copy(order="F")), want.T, rtol=4e-16, atol=0)
