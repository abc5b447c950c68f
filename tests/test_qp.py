import numpy as np
import pytest
import torch
from wharf.specification import SpecificationError, solve_simplex_qp
from wharf.specification.kernel import gaussian_kernel
from wharf.specification.qp import _clarabel, _projected_gradient, objective, project_to_simplex


def rbf_problem(rng, m, d=4, duplicates=0):
    z = rng.normal(size=(m, d)) * rng.uniform(0.2, 3)
    if duplicates:
        z[-duplicates:] = z[:duplicates]  # singular K
    x = rng.normal(size=(300, d))
    zt = torch.from_numpy(z)
    K = gaussian_kernel(zt, zt, 0.2).numpy()
    c = gaussian_kernel(zt, torch.from_numpy(x), 0.2).numpy().mean(1)
    return K, c


def high_accuracy(K, c):
    w = _clarabel(K, c)
    assert w is not None
    return objective(K, c, w)


@pytest.mark.parametrize("seed", range(25))
def test_matches_a_high_accuracy_solver(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 90))
    K, c = rbf_problem(rng, m, duplicates=2 if seed % 5 == 0 else 0)
    if seed % 3 == 0:
        c = rng.normal(size=m)  # an arbitrary linear term: sparse solutions
    res = solve_simplex_qp(K, c)
    assert (res.w >= 0).all()
    assert res.w.sum() == pytest.approx(1.0, abs=1e-12)
    ref = high_accuracy(K, c)
    assert res.objective <= ref + 1e-9 * abs(ref)
    assert res.objective == pytest.approx(objective(K, c, res.w), rel=1e-15)


def test_kkt_conditions_hold_at_the_solution():
    rng = np.random.default_rng(1)
    K, c = rbf_problem(rng, 40)
    c = c + rng.normal(scale=0.05, size=40)
    w = solve_simplex_qp(K, c).w
    g = K @ w - c
    lam = g[w > 0].mean()
    np.testing.assert_allclose(g[w > 0], lam, atol=1e-9)
    assert (g[w == 0] >= lam - 1e-9).all()


def test_warm_start_gives_the_same_answer():
    rng = np.random.default_rng(2)
    K, c = rbf_problem(rng, 60)
    cold = solve_simplex_qp(K, c)
    warm = solve_simplex_qp(K, c, w0=cold.w)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-12)
    bad = solve_simplex_qp(K, c, w0=np.full(60, np.nan))
    assert bad.objective == pytest.approx(cold.objective, rel=1e-12)


def test_single_variable_and_vertex_solutions():
    assert solve_simplex_qp([[2.0]], [5.0]).w.tolist() == [1.0]
    K = np.eye(3)
    res = solve_simplex_qp(K, [10.0, 0.0, 0.0])
    np.testing.assert_allclose(res.w, [1, 0, 0], atol=1e-12)


def test_fallbacks_reach_the_optimum_too():
    rng = np.random.default_rng(3)
    K, c = rbf_problem(rng, 30)
    best = solve_simplex_qp(K, c).objective
    assert objective(K, c, _clarabel(K, c)) == pytest.approx(best, rel=1e-7)
    w = _projected_gradient(K, c, None)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert objective(K, c, w) == pytest.approx(best, rel=1e-5)


def test_projection_onto_the_simplex():
    rng = np.random.default_rng(4)
    for _ in range(20):
        v = rng.normal(size=7) * 3
        p = project_to_simplex(v)
        assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
        # optimality: no feasible vertex direction decreases ‖p − v‖²
        for j in range(7):
            e = np.eye(7)[j]
            assert np.sum((p - v) ** 2) <= np.sum((0.99 * p + 0.01 * e - v) ** 2) + 1e-12


@pytest.mark.parametrize(
    ("K", "c", "message"),
    [
        (np.eye(2), [1.0, 2.0, 3.0], "match"),
        (np.zeros((0, 0)), [], "no variables"),
        ([[np.nan, 0], [0, 1]], [0.0, 0.0], "finite"),
    ],
)
def test_bad_problems_are_refused(K, c, message):
    with pytest.raises(SpecificationError, match=message):
        solve_simplex_qp(K, c)
