"""The reuse estimators: JobSelector, Averaging, EnsemblePruning, FeatureAugment.

Most tests use small in-memory learnwares (anything with ``predict``, plus an RKME in ``spec``
for the job selector); the last ones run the real example packages through the sandbox.
"""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from wharf.reuse import (
    Averaging,
    EnsemblePruning,
    FeatureAugment,
    JobSelector,
    Learnware,
    reuse,
)
from wharf.specification import RKME

from tests.test_runner import example

D = 5
N_CLASSES = 3
W_TRUE = np.random.default_rng(42).normal(size=(D, N_CLASSES))
B_TRUE = np.random.default_rng(43).normal(size=D)


class Double:
    """An in-memory learnware: ``predict(X) = fn(X)``, an optional RKME and input width."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], spec: RKME | None = None):
        self.fn = fn
        self.spec = spec
        self.input_shape = None if spec is None else spec.feature_shape

    def predict(self, X):
        return self.fn(np.asarray(X))


def softmax(S: np.ndarray) -> np.ndarray:
    e = np.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def constant(row) -> Double:
    row = np.asarray(row, dtype=float)
    return Double(lambda X: np.tile(row, (len(X), 1)))


def classification_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, D))
    return X, np.argmax(X @ W_TRUE, axis=1)


def regression_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    return X, X @ B_TRUE + 0.1 * rng.normal(size=n)


def good_classifier(seed: int, noise: float = 0.3) -> Double:
    W = W_TRUE + noise * np.random.default_rng(seed).normal(size=W_TRUE.shape)
    return Double(lambda X: softmax(3 * X @ W))


def bad_classifier(seed: int) -> Double:
    """Confidently wrong: a good classifier's scores moved to the next class."""
    W = W_TRUE + 0.3 * np.random.default_rng(seed).normal(size=W_TRUE.shape)
    return Double(lambda X: np.roll(softmax(3 * X @ W), 1, axis=1))


def good_regressor(seed: int, noise: float = 0.1) -> Double:
    b = B_TRUE + noise * np.random.default_rng(seed).normal(size=D)
    return Double(lambda X: (X @ b)[:, None])


def bad_regressor(seed: int) -> Double:
    b = 3 * np.random.default_rng(seed).normal(size=D)
    return Double(lambda X: (X @ b)[:, None])


# --- Averaging ------------------------------------------------------------------------------------


def test_mean_keeps_every_output_column() -> None:
    X = np.random.default_rng(0).normal(size=(7, 2))
    a = Double(lambda X: np.c_[X[:, 0], 2 * X[:, 1]])
    b = Double(lambda X: np.c_[3 * X[:, 0], np.zeros(len(X))])
    avg = Averaging([a, b], mode="mean").fit()
    np.testing.assert_allclose(avg.predict(X), np.c_[2 * X[:, 0], X[:, 1]])
    one_column = Averaging([good_regressor(1), good_regressor(2)], mode="mean").fit()
    assert one_column.predict(np.ones((4, D))).shape == (4,)


def test_probabilities_are_averaged_without_a_softmax() -> None:
    X = np.zeros((2, 3))
    avg = Averaging([constant([0.9, 0.1]), constant([0.4, 0.6])], mode="vote_by_prob").fit()
    np.testing.assert_allclose(avg.predict_proba(X), [[0.65, 0.35]] * 2)
    # Only rows that are not distributions are normalised: by their sum, else a softmax.
    scores = Averaging([constant([3.0, 1.0]), constant([-np.log(3.0), 0.0])], mode="vote_by_prob")
    np.testing.assert_allclose(scores.fit().predict_proba(X), [[0.5, 0.5]] * 2)
    logits = Averaging([constant([-1.0, 1.0])], mode="vote_by_prob").fit()
    np.testing.assert_allclose(logits.predict_proba(X)[0], softmax(np.array([[-1.0, 1.0]]))[0])
    assert avg.predict(X).tolist() == [0, 0]


def test_majority_vote_breaks_ties_towards_the_smallest_class() -> None:
    X = np.zeros((1, 3))
    votes = [constant([2]), constant([1]), constant([0.1, 0.2, 0.7]), constant([1])]
    assert Averaging(votes[:3], mode="vote_by_label").fit().predict(X).tolist() == [2]
    assert Averaging(votes, mode="vote_by_label").fit().predict(X).tolist() == [1]
    two_pairs = [constant([2]), constant([0.1, 0.2, 0.7, 0.0]), constant([1]), constant([3])]
    two_pairs.append(constant([0.0, 0.9, 0.1, 0.0]))
    tie = Averaging(two_pairs, mode="vote_by_label").fit()
    assert tie.predict(X).tolist() == [1]
    np.testing.assert_allclose(tie.predict_proba(X), [[0, 0.4, 0.4, 0.2]])


def test_auto_mode_follows_the_outputs() -> None:
    X, _ = classification_data(30, 0)
    probs = Averaging([good_classifier(1), good_classifier(2)]).fit(X)
    assert probs.mode_ == "vote_by_prob" and probs.classes_.tolist() == [0, 1, 2]
    assert probs.predict_proba(X).shape == (30, 3)
    values = Averaging([good_regressor(1), good_regressor(2)]).fit(X)
    assert values.mode_ == "mean" and values.predict(X).shape == (30,)
    with pytest.raises(ValueError, match="mode 'mean'"):
        values.predict_proba(X)
    decided_later = Averaging([good_classifier(1), good_classifier(2)]).fit()
    assert decided_later.mode_ == "auto"
    np.testing.assert_array_equal(decided_later.predict(X), probs.predict(X))


def test_averaging_refuses_mismatched_learnwares_and_inputs() -> None:
    X = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"different widths \(learnware 0: 2, learnware 1: 3\)"):
        Averaging([constant([0.5, 0.5]), constant([0.2, 0.3, 0.5])], mode="mean").fit(X)
    spec = RKME(n_points=5, device="cpu").fit(np.random.default_rng(0).normal(size=(30, D)))
    declared = Double(lambda X: X[:, :1], spec=spec)
    with pytest.raises(ValueError, match=r"X has 3 features, but the learnwares expect 5"):
        Averaging([declared], mode="mean").fit(X)
    fitted = Averaging([declared], mode="mean").fit()
    assert fitted.n_features_in_ == D
    with pytest.raises(ValueError, match=r"shape \(n_samples, 5\)"):
        fitted.predict(X)
    with pytest.raises(ValueError, match=r"2-D array of shape \(n_samples, n_features\)"):
        fitted.predict(np.zeros(D))
    with pytest.raises(ValueError, match="mode must be one of"):
        Averaging([declared], mode="median").fit()
    with pytest.raises(ValueError, match="learnwares is empty"):
        Averaging([]).fit()
    with pytest.raises(TypeError, match=r"learnwares\[0\] \(str\) has no predict"):
        Averaging(["model.zip"]).fit()
    with pytest.raises(ValueError, match="vote_by_prob' needs per-class scores"):
        Averaging([constant([1.0])], mode="vote_by_prob").fit().predict(X)


# --- EnsemblePruning ------------------------------------------------------------------------------


def test_pruning_drops_a_bad_classifier() -> None:
    X, y = classification_data(150, 1)
    pool = [good_classifier(1), bad_classifier(7), good_classifier(2), good_classifier(3)]
    pruner = EnsemblePruning(pool, task="classification").fit(X, y)
    assert pruner.search_ == "exact" and pruner.combine_ == "probabilities"
    assert 1 not in pruner.selected_
    assert pruner.objective_ <= min((np.argmax(lw.predict(X), axis=1) != y).mean() for lw in pool)
    X_test, y_test = classification_data(300, 2)
    assert pruner.score(X_test, y_test) > 0.85
    assert pruner.predict_proba(X_test).shape == (300, N_CLASSES)


def test_pruning_regression_and_the_size_limit() -> None:
    X, y = regression_data(100, 3)
    pool = [bad_regressor(5), good_regressor(1), good_regressor(2), bad_regressor(6)]
    pruner = EnsemblePruning(pool, task="regression").fit(X, y)
    assert set(pruner.selected_) <= {1, 2} and pruner.weights_.sum() == pytest.approx(1.0)
    assert pruner.predict(X).shape == (100,)
    single = EnsemblePruning(pool, task="regression", max_size=1).fit(X, y)
    assert len(single.selected_) == 1 and single.selected_[0] in (1, 2)


def test_pruning_votes_with_label_outputs_and_prefers_smaller_ties() -> None:
    X, y = classification_data(60, 4)
    perfect = Double(lambda X: np.argmax(X @ W_TRUE, axis=1)[:, None])
    twin = Double(lambda X: np.argmax(X @ W_TRUE, axis=1))
    pruner = EnsemblePruning([bad_classifier(3), perfect, twin]).fit(X, y)
    assert pruner.combine_ == "vote" and pruner.objective_ == 0.0
    assert pruner.selected_.tolist() == [1]  # {1}, {2} and {1, 2} tie: the first smallest
    with pytest.raises(ValueError, match="integer class indices"):
        EnsemblePruning([perfect]).fit(X, y + 0.5)


def test_greedy_search_for_large_pools_is_deterministic() -> None:
    X, y = classification_data(120, 5)
    pool = [bad_classifier(100 + i) for i in range(11)]
    pool[3], pool[8], pool[10] = good_classifier(1), good_classifier(2), good_classifier(3)
    pool += [bad_classifier(200), bad_classifier(201), bad_classifier(202)]
    first = EnsemblePruning(pool, random_state=7).fit(X, y)
    again = EnsemblePruning(pool, random_state=7).fit(X, y)
    assert first.search_ == "greedy"
    np.testing.assert_array_equal(first.counts_, again.counts_)
    assert set(first.selected_) <= {3, 8, 10}


# --- FeatureAugment -------------------------------------------------------------------------------


def test_feature_augment_beats_its_base_model_with_an_informative_learnware() -> None:
    rng = np.random.default_rng(6)
    X = rng.uniform(-2, 2, size=(240, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=240)
    informative = Double(lambda X: (np.sin(2 * X[:, 0]) + X[:, 1] ** 2)[:, None])
    train, test = slice(0, 60), slice(60, None)
    augmented = FeatureAugment([informative], task="regression").fit(X[train], y[train])
    base = make_pipeline(StandardScaler(), RidgeCV()).fit(X[train], y[train])
    assert augmented.n_augmented_features_ == 4
    assert augmented.score(X[test], y[test]) > r2_score(y[test], base.predict(X[test])) + 0.5

    labels = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like: no linear model separates it
    hint = Double(lambda X: softmax(np.c_[-X[:, 0] * X[:, 1], X[:, 0] * X[:, 1]]))
    clf = FeatureAugment([hint], task="classification").fit(X[train], labels[train])
    base_clf = LogisticRegression().fit(X[train], labels[train])
    assert (
        clf.score(X[test], labels[test])
        > accuracy_score(labels[test], base_clf.predict(X[test])) + 0.25
    )
    assert clf.predict_proba(X[test]).shape == (180, 2)


def test_feature_augment_fills_non_finite_values_with_training_means() -> None:
    X, y = regression_data(40, 7)
    X_holes = X.copy()
    X_holes[0, 1], X_holes[3, 2], X_holes[5, 1] = np.nan, np.inf, -np.inf
    seen = []
    spy = Double(lambda X: (seen.append(X.copy()), X[:, :1])[1])
    model = FeatureAugment([spy], task="regression").fit(X_holes, y)
    means = [np.mean(np.delete(X[:, j], {1: [0, 5], 2: [3]}.get(j, []))) for j in range(D)]
    np.testing.assert_allclose(model.fill_values_, means)
    assert np.isfinite(seen[0]).all() and seen[0][0, 1] == pytest.approx(means[1])
    assert np.isfinite(model.predict(np.full((2, D), np.nan))).all()
    with pytest.raises(ValueError, match="y is required"):
        FeatureAugment([spy], task="regression").fit(X, None)
    with pytest.raises(ValueError, match="task must be one of"):
        FeatureAugment([spy], task="ranking").fit(X, y)


def test_feature_augment_takes_a_custom_estimator() -> None:
    X, y = classification_data(90, 8)
    model = FeatureAugment([good_classifier(1)], estimator=LogisticRegression(C=0.5)).fit(X, y)
    assert isinstance(model.estimator_, LogisticRegression) and model.estimator_.C == 0.5
    assert model.classes_.tolist() == [0, 1, 2]


# --- JobSelector ----------------------------------------------------------------------------------


def blob(center: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(center, 1.0, size=(n, 2))


@pytest.fixture(scope="module")
def blob_learnwares() -> list[Double]:
    """Two learnwares, each fitted on one blob; they answer with their own one-hot class."""
    out = []
    for i, center in enumerate((-3.0, 3.0)):
        spec = RKME(n_points=20, seed=i, device="cpu").fit(blob(center, 300, i))
        one_hot = np.eye(2)[i]
        out.append(Double(lambda X, p=one_hot: np.tile(p, (len(X), 1)), spec=spec))
    return out


def test_job_selector_routes_each_blob_to_its_learnware(blob_learnwares) -> None:
    X = np.vstack([blob(-3.0, 100, 10), blob(3.0, 100, 11)])
    truth = np.repeat([0, 1], 100)
    selector = JobSelector(blob_learnwares, herding_num=200).fit()
    assert selector.weights_.tolist() == [0.5, 0.5]
    assert (selector.route(X) == truth).mean() > 0.95
    assert (selector.predict(X) == truth).mean() > 0.95  # one-hot outputs: a classification
    np.testing.assert_allclose(selector.predict_proba(X).sum(axis=1), 1.0)


def test_job_selector_weights_follow_the_users_data(blob_learnwares) -> None:
    user = blob(-3.0, 200, 12)
    selector = JobSelector(blob_learnwares, herding_num=200, random_state=3).fit(user)
    assert selector.weights_[0] > 0.9
    assert selector.n_samples_[1] >= 5 and selector.n_samples_.sum() >= 200
    again = JobSelector(blob_learnwares, herding_num=200, random_state=3).fit(user)
    probe = np.random.default_rng(0).uniform(-6, 6, size=(200, 2))
    np.testing.assert_array_equal(selector.route(probe), again.route(probe))


def test_job_selector_with_one_learnware_and_regression_outputs() -> None:
    spec = RKME(n_points=10, device="cpu").fit(blob(0.0, 100, 1))
    only = Double(lambda X: X.sum(axis=1, keepdims=True), spec=spec)
    selector = JobSelector([only], task="regression").fit(blob(0.0, 20, 2))
    assert selector.selector_ is None
    X = blob(0.0, 5, 3)
    np.testing.assert_allclose(selector.predict(X), X.sum(axis=1))


def test_job_selector_needs_comparable_rkmes(blob_learnwares) -> None:
    with pytest.raises(ValueError, match=r"has no RKME in \.spec"):
        JobSelector([blob_learnwares[0], constant([1.0])]).fit()
    other = RKME(n_points=10, gamma=0.5, device="cpu").fit(blob(0.0, 50, 1))
    with pytest.raises(ValueError, match="different kernels"):
        JobSelector([blob_learnwares[0], Double(lambda X: X, spec=other)]).fit()
    wide = RKME(n_points=10, device="cpu").fit(np.zeros((50, 3)) + blob(0.0, 50, 1)[:, :1])
    with pytest.raises(ValueError, match="different widths"):
        JobSelector([blob_learnwares[0], Double(lambda X: X, spec=wide)]).fit()
    with pytest.raises(ValueError, match=r"X has 3 features, but the learnwares expect 2"):
        JobSelector(blob_learnwares, herding_num=50).fit().predict(np.zeros((2, 3)))


# --- the scikit-learn contract --------------------------------------------------------------------


def estimators() -> dict[str, tuple]:
    Xc, yc = classification_data(90, 9)
    Xr, yr = regression_data(90, 9)
    classifiers = [good_classifier(1), good_classifier(2), bad_classifier(3)]
    regressors = [good_regressor(1), bad_regressor(2)]
    return {
        "averaging": (Averaging(classifiers, mode="vote_by_prob"), Xc, yc, 0.7),
        "pruning": (EnsemblePruning(regressors, task="regression"), Xr, yr, 0.9),
        "augment": (FeatureAugment(classifiers), Xc, yc, 0.7),
    }


@pytest.mark.parametrize("name", ["averaging", "pruning", "augment"])
def test_estimators_work_in_pipelines_and_cross_validation(name: str) -> None:
    estimator, X, y, floor = estimators()[name]
    pipeline = Pipeline([("same", FunctionTransformer()), ("reuse", estimator)])
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > floor
    params = estimator.get_params()
    assert params["learnwares"] is estimator.learnwares
    assert clone(estimator).get_params()["learnwares"] is not None
    assert not hasattr(estimator, "learnwares_")  # cross-validation fitted clones only


def test_job_selector_in_cross_validation(blob_learnwares) -> None:
    X = np.vstack([blob(-3.0, 45, 20), blob(3.0, 45, 21)])
    y = np.repeat([0, 1], 45)
    selector = JobSelector(blob_learnwares, herding_num=100, task="classification")
    assert cross_val_score(make_pipeline(FunctionTransformer(), selector), X, y, cv=3).min() > 0.9


def test_reuse_fits_a_method_by_name() -> None:
    X, y = regression_data(50, 10)
    pool = [good_regressor(1), good_regressor(2)]
    assert isinstance(reuse("EnsemblePruning", pool, X, y, task="regression"), EnsemblePruning)
    model = reuse("feature-augment", pool, X, y, task="regression")
    assert model.predict(X).shape == (50,)
    assert reuse(Averaging, pool, mode="mean").predict(X).shape == (50,)
    with pytest.raises(ValueError, match="unknown reuse method 'stacking'"):
        reuse("stacking", pool)


@pytest.mark.parametrize(
    "module",
    [
        "wharf.reuse.averaging",
        "wharf.reuse.ensemble_pruning",
        "wharf.reuse.feature_augment",
        "wharf.reuse.job_selector",
        "wharf.reuse.helpers",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# --- with the real example learnwares, sandboxed -------------------------------------------------


def test_reusing_sandboxed_digit_classifiers(bwrap: str) -> None:
    low, high, even = (example(n) for n in ("digits 0-4", "digits 5-9", "digits even"))
    X = np.vstack([low.X_test, high.X_test])
    y = np.concatenate([low.y_test, high.y_test])
    with (
        Learnware.load(low.package, time_limit_s=30) as a,
        Learnware.load(high.package, time_limit_s=30) as b,
        Learnware.load(even.package, time_limit_s=30) as c,
    ):
        averaging = Averaging([a, b]).fit(X[:20])
        assert averaging.mode_ == "vote_by_prob"
        assert averaging.score(X, y) > 0.85

        selector = JobSelector([a, b], herding_num=300).fit(X)
        routes = selector.route(X)
        assert (routes == (y >= 5)).mean() > 0.8
        assert selector.score(X, y) > 0.75

        pruner = EnsemblePruning([c, a, b]).fit(X[::2], y[::2])
        assert pruner.selected_.tolist() == [1, 2]
        assert pruner.score(X[1::2], y[1::2]) > 0.85


def test_averaging_weights_follow_the_mixture():
    class Constant:
        def __init__(self, p):
            self.p = np.asarray(p, dtype=float)

        def predict(self, X):
            return np.tile(self.p, (len(X), 1))

    X = np.zeros((4, 2))
    lws = [Constant([0.9, 0.1]), Constant([0.2, 0.8]), Constant([0.3, 0.7])]
    assert Averaging(lws).fit(X).predict(X).tolist() == [1] * 4
    weighted = Averaging(lws, weights=[0.9, 0.05, 0.05]).fit(X)
    assert weighted.predict(X).tolist() == [0] * 4
    np.testing.assert_allclose(weighted.predict_proba(X)[0], [0.835, 0.165])
    votes = Averaging(lws, mode="vote_by_label", weights=[3, 1, 1]).fit(X)
    assert votes.predict(X).tolist() == [0] * 4
    means = Averaging([Constant([1.0]), Constant([3.0])], mode="mean", weights=[1, 3]).fit(X)
    np.testing.assert_allclose(means.predict(X), 2.5)
    with pytest.raises(ValueError, match="weights must be 3"):
        Averaging(lws, weights=[1, -1, 1]).fit(X)
