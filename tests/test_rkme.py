import numpy as np
import pandas as pd
import pytest
import torch
from wharf.specification import RKME, SpecificationError, effective_n_points
from wharf.specification._fit import _beta_step, _z_step
from wharf.specification.kernel import augment_points, kernel_row_sums

from tests.oracles import gaussian_mixture, mmd2_to_data


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(600, 5, seed=1)


def test_fit_returns_simplex_weights_and_points(data):
    spec = RKME(n_points=30, seed=0, device="cpu").fit(data)
    assert spec.z_.shape == (30, 5)
    assert spec.beta_.shape == (30,)
    assert (spec.beta_ >= 0).all()
    assert spec.beta_.sum() == pytest.approx(1.0, abs=1e-12)
    assert spec.num_points_ == 600
    assert spec.z_.dtype == np.float64


def test_objective_is_the_squared_mmd_to_the_data_minus_its_constant(data):
    spec = RKME(n_points=20, seed=0, device="cpu").fit(data)
    full = mmd2_to_data(spec.z_, spec.beta_, data, 0.1)
    diffs = ((data[:, None] - data[None]) ** 2).sum(-1)
    const = np.exp(-0.1 * diffs).mean()
    assert spec.objective_ + const == pytest.approx(full, rel=1e-10)


def test_beats_a_random_subsample_with_equal_weights(data):
    spec = RKME(n_points=20, seed=0, device="cpu").fit(data)
    ours = mmd2_to_data(spec.z_, spec.beta_, data, 0.1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.choice(len(data), 20, replace=False)
        assert ours < mmd2_to_data(data[idx], np.full(20, 1 / 20), data, 0.1)


def test_more_steps_never_increase_the_objective(data):
    objs = [
        RKME(n_points=20, steps=s, seed=3, device="cpu").fit(data).objective_ for s in (0, 2, 8)
    ]
    assert objs[0] >= objs[1] >= objs[2]


def test_same_seed_same_spec_and_other_seed_differs(data):
    a = RKME(n_points=20, seed=7, device="cpu").fit(data)
    b = RKME(n_points=20, seed=7, device="cpu").fit(data)
    c = RKME(n_points=20, seed=8, device="cpu").fit(data)
    np.testing.assert_array_equal(a.z_, b.z_)
    np.testing.assert_array_equal(a.beta_, b.beta_)
    assert not np.array_equal(a.z_, c.z_)


def test_pandas_torch_and_numpy_inputs_agree(data):
    ref = RKME(n_points=10, seed=0, device="cpu").fit(data)
    for X in (pd.DataFrame(data), torch.from_numpy(data), data.tolist()):
        other = RKME(n_points=10, seed=0, device="cpu").fit(X)
        np.testing.assert_array_equal(other.z_, ref.z_)


def test_nan_and_inf_replaced_by_column_mean(data):
    X = data.copy()
    X[3, 1] = np.nan
    X[10, 2] = np.inf
    X[11, 2] = -np.inf
    filled = X.copy()
    for col in (1, 2):
        finite = np.isfinite(X[:, col])
        filled[~finite, col] = X[finite, col].mean()
    a = RKME(n_points=10, seed=0, device="cpu").fit(X)
    b = RKME(n_points=10, seed=0, device="cpu").fit(filled)
    # The same means up to the order of summation (a column sum vs a 1-D mean: an ulp apart).
    np.testing.assert_allclose(a.z_, b.z_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.beta_, b.beta_, rtol=0, atol=1e-12)


def test_column_without_finite_values_is_named():
    X = pd.DataFrame({"age": [1.0, 2.0, 3.0], "income": [np.nan, np.inf, np.nan]})
    with pytest.raises(SpecificationError, match=r"column 1 \('income'\) has no finite value"):
        RKME(device="cpu").fit(X)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros(5), "shape"),
        (np.zeros((0, 3)), "empty"),
        (np.array([["a", "b"]]), "numeric"),
        (np.ones((3, 2), dtype=complex), "real"),
    ],
)
def test_bad_input_is_refused(X, message):
    with pytest.raises(SpecificationError, match=message):
        RKME(device="cpu").fit(X)


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf")])
def test_bad_gamma_is_refused(gamma, data):
    with pytest.raises(SpecificationError, match="gamma"):
        RKME(gamma=gamma, device="cpu").fit(data)


def test_cuda_refused_when_absent(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(SpecificationError, match="CUDA is not available"):
        RKME(device="cuda").fit(data)


def test_reference_caps_on_k():
    assert effective_n_points(100, 1000, 10) == 100
    assert effective_n_points(100, 50, 10) == 33  # K ≥ n → 2n // 3
    assert effective_n_points(100, 1, 10) == 1
    assert effective_n_points(100, 10**6, 20_000) == 65  # K·d cap: 1310720 // 20000
    assert effective_n_points(100, 10**6, 10**6) == 20  # never below 20
    spec = RKME(n_points=100, device="cpu").fit(np.random.default_rng(0).normal(size=(9, 2)))
    assert spec.z_.shape == (6, 2)


def test_feature_shape_is_kept():
    X = np.random.default_rng(0).normal(size=(200, 2, 3))
    spec = RKME(n_points=10, device="cpu").fit(X)
    assert spec.z_.shape == (10, 2, 3)
    assert spec.feature_shape == (2, 3)


def test_z_step_follows_the_exact_mmd_gradient(data):
    """The step direction is −∇L/(4γβ_i) for the exact L, not the reference's doubled data term."""
    x = torch.from_numpy(data)
    n, gamma = len(x), 0.1
    z = x[:15].clone()
    s, A = kernel_row_sums(z, augment_points(x), gamma)
    beta, _ = _beta_step(z, s / n, gamma, None)
    b = torch.from_numpy(beta)
    zg = z.clone().requires_grad_(True)
    kzz = torch.exp(-gamma * ((zg[:, None] - zg[None]) ** 2).sum(-1))
    kzx = torch.exp(-gamma * ((zg[:, None] - x[None]) ** 2).sum(-1))
    loss = b @ kzz @ b - 2 * (b @ kzx.mean(1))
    loss.backward()
    mass = (s / n) + (kzz.detach() * b).sum(1) - b
    moved = (_z_step(z, beta, s, A, n, gamma, 1.0) - z) * mass[:, None]
    expected = -zg.grad / (4 * gamma * b[:, None])
    keep = b > 1e-8
    torch.testing.assert_close(moved[keep], expected[keep], rtol=1e-8, atol=1e-12)


def test_from_arrays_and_repr():
    spec = RKME.from_arrays(np.zeros((3, 2)), [0.2, 0.3, 0.5], 0.5, 10)
    assert spec.gamma == 0.5 and spec.num_points_ == 10
    assert "K=3" in repr(spec)
    assert "unfitted" in repr(RKME())
