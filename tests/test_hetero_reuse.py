"""Reusing a learnware whose columns are not the user's: FeatureAlign and HeteroMapAlign
(tiny maps and networks, a few hundred steps at most)."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from sklearn.base import clone
from wharf.reuse import FeatureAlign, FeatureAugment, HeteroMapAlign, from_search
from wharf.specification.hetero.model import HeteroMap
from wharf.specification.hetero.network import HeteroMapConfig
from wharf.specification.rkme import RKME

COLUMNS = ["age in years", "income in dollars", "height in cm", "blood pressure"]
WEIGHTS = np.array([1.0, -1.0, 0.5, 0.0])
PERMUTATION = [2, 0, 3, 1]
TINY = HeteroMapConfig(hidden_dim=32, num_heads=4, ffn_dim=32, projection_dim=8, num_layers=1)


class Linear:
    """A learnware on four described columns, with the RKME of its data."""

    def __init__(self, X: np.ndarray):
        self.spec = RKME.from_arrays(X[:40], np.full(40, 1 / 40), 0.1, len(X))
        self.semantic = {
            "Task": {"Type": "Class", "Values": ["Classification"]},
            "Input": {"Dimension": 4, "Description": {str(i): c for i, c in enumerate(COLUMNS)}},
        }

    def predict(self, X):
        return (X @ WEIGHTS > 0).astype(int)


@pytest.fixture(scope="module")
def data():
    X = np.random.default_rng(0).normal(size=(120, 4))
    return X, X[:, PERMUTATION], [COLUMNS[i] for i in PERMUTATION], Linear(X)


@pytest.fixture(scope="module")
def hmap():
    return HeteroMap.initial(TINY, seed=0, device="cpu")


def test_feature_align_matches_the_learnwares_distribution(data):
    _, X_user, _, learnware = data
    short = FeatureAlign(learnware, epochs=1, hidden_dims=(16,)).fit(X_user)
    long = FeatureAlign(learnware, epochs=80, hidden_dims=(16,)).fit(X_user)
    assert long.loss_ < short.loss_
    assert long.predict(X_user).shape == (120,) and long.transform(X_user).shape == (120, 4)
    again = FeatureAlign(learnware, epochs=80, hidden_dims=(16,)).fit(X_user)
    np.testing.assert_array_equal(again.transform(X_user), long.transform(X_user))


def test_the_map_ties_columns_by_what_they_are(data, hmap):
    """The user's columns are the learnware's in another order: the distributions alone
    cannot tell which is which, the descriptions read through the map can."""
    X, X_user, user_columns, learnware = data

    def error(weight: float) -> float:
        align = HeteroMapAlign(
            learnware, hmap, user_columns, semantic_weight=weight, epochs=150, hidden_dims=(32,)
        ).fit(X_user)
        return float(np.mean((align.transform(X_user) - X) ** 2))

    assert error(5.0) < 0.5 * error(0.0)


def test_a_few_labels_add_feature_augment_and_estimators_combine(data, hmap):
    X, X_user, user_columns, learnware = data
    y = learnware.predict(X)
    align = HeteroMapAlign(learnware, hmap, user_columns, epochs=20, hidden_dims=(16,))
    fitted = clone(align).fit(X_user[:40], y[:40])
    assert isinstance(fitted.reuser_, FeatureAugment)
    assert set(np.unique(fitted.predict(X_user))) <= {0, 1} and 0 <= fitted.score(X_user, y) <= 1
    unlabelled = clone(align).fit(X_user)
    assert unlabelled.reuser_ is None and unlabelled.aligned_ is unlabelled
    both = FeatureAugment([unlabelled, fitted]).fit(X_user[:40], y[:40])
    assert both.predict(X_user).shape == (120,)


def test_bad_descriptions_are_refused(data, hmap):
    _, X_user, user_columns, learnware = data
    with pytest.raises(ValueError, match="user_descriptions has 2 entries"):
        HeteroMapAlign(learnware, hmap, user_columns[:2]).fit(X_user)
    learnware = Linear(data[0])
    learnware.semantic = {"Input": {"Dimension": 4, "Description": {"0": "age"}}}
    with pytest.raises(ValueError, match="does not describe its input columns"):
        HeteroMapAlign(learnware, hmap, user_columns, epochs=1).fit(X_user)


def test_from_search_needs_the_users_descriptions_for_a_hetero_result(tmp_path):
    result = {"singles": [{"id": "00000001"}], "mixture": None, "hetero": {"map_version": 2}}
    with pytest.raises(ValueError, match="give user_descriptions"):
        from_search(object(), result, tmp_path)
    with pytest.raises(ValueError, match="no map version"):
        from_search(object(), {**result, "hetero": {"map_version": "x"}}, tmp_path)


@pytest.mark.parametrize(
    "module", ["wharf.reuse.feature_align", "wharf.specification.hetero.model"]
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
