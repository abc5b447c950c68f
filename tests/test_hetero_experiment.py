"""The heterogeneous experiment (``bench/hetero_experiment``) at its quick scale: six
learnwares on three of scikit-learn's tables in a real embedded market, a map trained by the
admin's request, three users whose columns differ searching it with ``hetero=True`` and
reusing what they found. Checks the report's structure and sanity, not the targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.hetero_experiment.datasets import CLASSIFICATION, KEYS, load
from bench.hetero_experiment.design import scale, split, user_data
from bench.hetero_experiment.experiment import TRUE_COLUMNS, run_experiment
from bench.hetero_experiment.report import (
    BEST_TASK,
    BUDGET_PLOT,
    CURVES_PLOT,
    HETERO,
    MEAN_TASK,
    SCRATCH,
)
from bench.hetero_experiment.reuse_eval import true_columns
from bench.hetero_experiment.run import write_report

pytestmark = [pytest.mark.services, pytest.mark.slow]

QUICK = scale(quick=True)


def test_every_column_is_described_and_users_hold_other_columns():
    for key in KEYS:
        data = load(key)
        assert len(data.columns) == data.X.shape[1]
        for column in data.columns:
            assert column.developer.strip() and column.user.strip()
            assert column.developer != column.user
    for user in scale(quick=False).users:
        s = split(user.dataset)
        assert set(user.new_columns) <= set(s.new_columns)
        assert bool(user.new_columns) == bool(s.new_columns)
        data = user_data(user)
        assert data.X_pool.shape[1] == len(user.columns) == len(user.descriptions())
        assert not set(s.user_rows) & set(s.dev_rows)


def test_true_columns_copies_the_shared_columns_and_leaves_the_rest_at_the_mean():
    user = next(u for u in QUICK.users if u.dataset == "breast_cancer")
    definition = next(lw for lw in QUICK.learnwares if lw.dataset == "breast_cancer")
    shared = set(definition.columns) & set(user.columns)
    assert shared and set(definition.columns) - shared

    class Echo:  # a learnware that returns its inputs
        def predict(self, X):
            return X

    data = user_data(user)
    cached, _ = true_columns(Echo(), definition, user, data)
    for j, column in enumerate(definition.columns):
        expected = data.X_all[:, user.columns.index(column)] if column in shared else 0.0
        np.testing.assert_array_equal(cached.outputs[:, j], expected)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hetero")
    result = run_experiment(QUICK, work_dir=root / "work", log=lambda _: None)
    text = write_report(result, root, "python -m bench.hetero_experiment --quick", 1.0)
    return result, text, root


def test_the_users_searched_the_heterogeneous_market(run):
    result, _, _ = run
    assert len(result.learnwares) == len(QUICK.learnwares)
    version = result.map_info["version"]
    assert version >= 1 and result.map_info["tables"] == len(QUICK.learnwares)
    assert [o.user.key for o in result.outcomes] == [u.key for u in QUICK.users]
    for o in result.outcomes:
        assert o.hetero == {"map_version": version}
        assert o.singles and o.singles[0]["key"] in {
            b.definition.key for b in result.learnwares.values()
        }
    # the in-process scan with the market's own map ranks as the market's search did
    market = result.budgets[0]
    assert market.epochs == -1
    assert market.top1_task == [o.top1_of_task for o in result.outcomes]
    assert result.map_difference < 1e-2


def test_errors_are_sane(run):
    result, _, _ = run
    for o in result.outcomes:
        bound = 100.0 if load(o.user.dataset).task == CLASSIFICATION else np.inf
        assert set(o.zero_label) == {HETERO, MEAN_TASK, BEST_TASK, TRUE_COLUMNS}
        assert o.zero_label[BEST_TASK] <= o.zero_label[MEAN_TASK]
        assert set(o.curves) == {HETERO, SCRATCH, TRUE_COLUMNS}
        for method, curve in o.curves.items():
            assert sorted(curve) == [n for n in QUICK.labels if n <= o.n_pool], method
            for errors in curve.values():
                assert len(errors) == len(QUICK.seeds)
                assert all(math.isfinite(e) and 0 <= e <= bound for e in errors)
    epochs = [b.epochs for b in result.budgets]
    assert epochs == [-1, *sorted({*QUICK.budgets, result.map_epochs})]
    for b in result.budgets:
        assert len(b.top1_task) == len(b.zero_label) == len(result.outcomes)


def test_the_report_and_its_plots(run):
    _, text, root = run
    for heading in (
        "## Targets",
        "## Where it does not help",
        "## Search",
        "## Errors per user",
        "## Per data set",
        "## Training budget of the map",
        "## Set-up",
    ):
        assert heading in text
    assert "- machine: " in text and "the market's map (downloaded)" in text
    assert "true column correspondence" in text
    assert (root / "results.md").read_text() == text
    for name in (CURVES_PLOT, BUDGET_PLOT):
        assert (root / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
