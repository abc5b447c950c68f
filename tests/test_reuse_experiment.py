"""The reuse experiment (``bench/reuse_experiment``) at its quick scale: ten learnwares in a
real embedded market, four users searching it, sandboxed runs of what they found."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.reuse_experiment.experiment import (
    CURVE_METHODS,
    TABLE_METHODS,
    OutputCache,
    run_experiment,
    score,
)
from bench.reuse_experiment.report import PLOT_FILE, by_task, markdown, plot_curves
from bench.reuse_experiment.tasks import (
    CLASSIFICATION,
    REGRESSION,
    apply_style,
    learnware_data,
    scale,
    user_data,
)

pytestmark = pytest.mark.services  # a real embedded market, sandboxed runs

QUICK = scale(quick=True)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_experiment(QUICK, work_dir=tmp_path_factory.mktemp("reuse"), log=lambda _: None)


@pytest.fixture(scope="module")
def outcomes(result):
    return {o.user.key: o for o in result.outcomes}


def test_every_learnware_is_accepted_and_every_user_scored(result):
    assert len(result.learnwares) == len(QUICK.learnwares) == 10
    assert set(result.statuses.values()) == {"accepted"}
    assert [o.user.key for o in result.outcomes] == [u.key for u in QUICK.users]
    # each learnware ran once in the sandbox, on every user row of its task
    assert result.sandboxed and result.sandbox_runs == len(result.learnwares)
    for o in result.outcomes:
        assert set(o.errors) == set(TABLE_METHODS)
        assert all(math.isfinite(v) and v >= 0 for v in o.errors.values())
        if o.user.task == CLASSIFICATION:
            assert all(v <= 100 for v in o.errors.values())
        assert o.errors["Best in market"] <= o.errors["Mean in market"]
        assert o.errors["Best in market"] <= o.errors["Top-1 reuse"]
        assert o.data_free_keys and set(o.data_free_keys) <= set(o.label_keys)


def test_a_user_with_one_learnwares_writer_finds_it_and_reuses_it(outcomes):
    for key in ("U1 digits 0-4 faint", "U3 sales store 2"):
        o = outcomes[key]
        assert o.top1_key in o.user.exact
        assert o.errors["Top-1 reuse"] <= o.errors["Mean in market"]
    u1 = outcomes["U1 digits 0-4 faint"]
    assert u1.errors["Top-1 reuse"] < 10.0 < 40.0 < u1.errors["Mean in market"]


def test_a_user_spanning_two_learnwares_gets_both_and_combining_helps(outcomes):
    for key in ("U2 digits 0-9 faint", "U4 sales stores 0+1"):
        o = outcomes[key]
        assert o.mixture is not None and set(o.user.spans) <= set(o.mixture["keys"])
    u2 = outcomes["U2 digits 0-9 faint"]
    # the top-1 knows five of the ten digits; routing or averaging the pair knows all ten
    assert min(u2.errors["JobSelector"], u2.errors["Averaging"]) < u2.errors["Top-1 reuse"] - 10


def test_label_curves(result, outcomes):
    for o in result.outcomes:
        assert set(o.curves) == set(CURVE_METHODS)
        for method in CURVE_METHODS:
            assert sorted(o.curves[method]) == [n for n in QUICK.labels if n <= o.n_pool]
            assert all(len(v) == len(QUICK.seeds) for v in o.curves[method].values())
    u1 = outcomes["U1 digits 0-4 faint"].curves
    assert np.mean(u1["EnsemblePruning"][10]) < np.mean(u1["From scratch"][10])


def test_report_and_plots(result, tmp_path):
    for task in (CLASSIFICATION, REGRESSION):
        plot_curves(by_task(result, task), task, tmp_path / PLOT_FILE[task])
        assert (tmp_path / PLOT_FILE[task]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown(result, command="cmd", date="today", machine="here", total=1.0)
    assert "| user | " + " | ".join(TABLE_METHODS) + " |" in text
    assert "## Discussion" in text and "U2 digits 0-9 faint" in text


def test_data_is_deterministic_and_scaled():
    for u in QUICK.users:
        a, b = user_data(u), user_data(u)
        assert np.array_equal(a.X_test, b.X_test) and np.array_equal(a.y_pool, b.y_pool)
        assert len(a.X_test) == u.n_test and len(a.X_pool) == u.n_pool
    lw = QUICK.learnwares[0]
    assert np.array_equal(learnware_data(lw).X, learnware_data(lw).X)
    x = np.random.default_rng(0).random((5, 64))
    for style in ("clean", "faint", "heavy", "blurred", "shifted", "dropout", "inverted"):
        out = apply_style(style, x, 1)
        assert out.shape == (5, 64) and out.min() >= 0 and out.max() <= 1


def test_scores_and_cache():
    y = np.array([0, 1, 2, 1])
    probs = np.eye(3)[[0, 1, 1, 1]]
    assert score(CLASSIFICATION, probs, y) == 25.0
    assert score(REGRESSION, np.array([[1.0], [3.0]]), np.array([1.0, 1.0])) == pytest.approx(
        math.sqrt(2)
    )

    class Doubler:
        id = "x"

        def predict(self, X):
            return 2 * X[:, :1]

    universe = np.arange(12.0).reshape(6, 2)
    cache = OutputCache({REGRESSION: universe})
    cache.fill(Doubler(), REGRESSION)
    assert cache.lookup("x", universe[[4, 1]]).ravel().tolist() == [16.0, 4.0]
    with pytest.raises(KeyError):
        cache.lookup("x", np.zeros((1, 2)))
