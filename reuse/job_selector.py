"""Job selection: send each input to the one learnware whose data it most resembles, with no
labelled data (reference §6.1; scikit-learn's gradient boosting instead of LightGBM)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _combine
from ._base import Reuser, check_task
from ._checks import check_learnwares, check_X, collect_outputs, expected_width, name

#: Every learnware gets at least this many herded samples, however small its weight.
MIN_SAMPLES_PER_LEARNWARE = 5
#: User rows used for the mixture weights at most (a random subset beyond that).
MAX_USER_ROWS = 5000


class JobSelector(Reuser):
    """Route each input to one learnware, chosen by a classifier of the learnwares' RKMEs.

    ``fit`` draws pseudo-samples from every learnware's RKME by kernel herding
    (:func:`specification.herd`) and trains a ``HistGradientBoostingClassifier`` to tell
    which learnware each came from. Given unlabelled user data ``X``, the learnwares'
    shares of the ``herding_num`` samples follow the mixture weights that best rebuild the
    user's kernel mean embedding (the simplex QP on the learnwares' Gram matrix, as in the
    market's mixture search), so the selector's prior matches the user's data; without
    ``X`` the shares are equal. Each learnware gets at least 5 samples. With one learnware
    everything goes to it and no selector is trained.

    Parameters
    ----------
    learnwares : list
        Objects with ``predict(X)`` and an RKME in ``spec`` (``z_``, ``beta_``, ``gamma``),
        all of the same width and kernel γ, e.g. :class:`reuse.runner.Learnware`.
    herding_num : int, default=1000
        Pseudo-samples drawn in all.
    random_state : int, RandomState or None, default=0
        Seeds the herding, the choice of user rows and the selector.
    task : {"auto", "classification", "regression"}, default="auto"
        ``"classification"``: per-class scores become probabilities (``predict_proba``)
        and ``predict`` returns class indices (a single output column is taken as the
        class index). ``"regression"``: ``predict`` returns the routed outputs as they are
        (shape (n_samples,) for one column). ``"auto"``: classification when every routed
        output row is a probability distribution, else regression, decided per call.

    Attributes
    ----------
    learnwares_ : list
        The learnwares, checked.
    weights_ : ndarray of shape (n_learnwares,)
        The mixture weights used (equal without user data).
    n_samples_ : ndarray of shape (n_learnwares,)
        Herded samples per learnware.
    selector_ : HistGradientBoostingClassifier or None
        The router (``None`` with one learnware).
    n_features_in_ : int
        Input width (that of the RKMEs).

    Examples
    --------
    >>> import numpy as np
    >>> from wharf.specification import RKME
    >>> rng = np.random.default_rng(0)
    >>> class Constant:
    ...     def __init__(self, value, data):
    ...         self.value, self.spec = value, RKME(n_points=10, device="cpu").fit(data)
    ...     def predict(self, X):
    ...         return np.full((len(X), 1), self.value)
    >>> left, right = rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))
    >>> selector = JobSelector([Constant(0.0, left), Constant(1.0, right)], herding_num=100)
    >>> selector.fit().predict(np.array([[-3.0, -3.0], [3.0, 3.0]])).tolist()
    [0.0, 1.0]
    """

    def __init__(
        self,
        learnwares: Any,
        herding_num: int = 1000,
        random_state: Any = 0,
        task: str = "auto",
    ):
        self.learnwares = learnwares
        self.herding_num = herding_num
        self.random_state = random_state
        self.task = task

    def _task(self) -> str | None:
        return self.task if self.task in ("classification", "regression") else None

    def fit(self, X: Any = None, y: Any = None) -> JobSelector:
        """Herd from the RKMEs (weighted by the user's data ``X`` if given) and train the
        selector. ``y`` is ignored."""
        check_task(self.task, allow_auto=True)
        if not isinstance(self.herding_num, numbers.Integral) or self.herding_num < 1:
            raise ValueError(f"herding_num must be an integer ≥ 1; got {self.herding_num!r}")
        learnwares = check_learnwares(self.learnwares, need_spec=True)
        specs = [lw.spec for lw in learnwares]
        width = expected_width(learnwares)
        _check_same_kernel(learnwares)
        rng = check_random_state(self.random_state)
        m = len(learnwares)
        if X is not None:
            X = check_X(X, n_features=width)
            self.weights_ = _mixture_weights(specs, X, rng) if m > 1 else np.ones(1)
        else:
            self.weights_ = np.full(m, 1.0 / m)
        self.learnwares_ = learnwares
        self.n_features_in_ = width
        self.n_samples_ = np.maximum(
            MIN_SAMPLES_PER_LEARNWARE, np.round(self.herding_num * self.weights_).astype(int)
        )
        if m == 1:
            self.selector_ = None
            return self
        from wharf.specification import herd  # torch is imported only when a selector is trained

        seeds = rng.randint(0, 2**31 - 1, size=m + 1)
        samples = [
            herd(spec, int(n), seed=int(seed), device="cpu").reshape(int(n), -1)
            for spec, n, seed in zip(specs, self.n_samples_, seeds, strict=False)
        ]
        labels = np.repeat(np.arange(m), self.n_samples_)
        self.selector_ = HistGradientBoostingClassifier(random_state=int(seeds[-1]))
        self.selector_.fit(np.vstack(samples), labels)
        return self

    def route(self, X: Any) -> np.ndarray:
        """The index of the learnware each row of ``X`` is sent to."""
        check_is_fitted(self, "learnwares_")
        return self._route(check_X(X, n_features=self.n_features_in_))

    def predict(self, X: Any) -> np.ndarray:
        """Each row's prediction by its learnware (class indices for a classification)."""
        return self._predict_task(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each row's class probabilities from its learnware, of shape (n_samples, C)."""
        task, outputs = self._routed_outputs(X)
        if task != "classification" or outputs.shape[1] < 2:
            raise ValueError(
                "predict_proba needs learnwares that return per-class scores; these return "
                + ("class indices" if task == "classification" else "regression outputs")
            )
        return _combine.to_distributions(outputs)

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        task, outputs = self._routed_outputs(X)
        if task == "classification":
            if outputs.shape[1] > 1:
                return task, _combine.winners(outputs)
            return task, _combine.as_labels(outputs, "a learnware")
        return task, outputs[:, 0] if outputs.shape[1] == 1 else outputs

    def _route(self, X: np.ndarray) -> np.ndarray:
        if self.selector_ is None:
            return np.zeros(len(X), dtype=np.int64)
        return self.selector_.predict(X).astype(np.int64)

    def _routed_outputs(self, X: Any) -> tuple[str, np.ndarray]:
        check_is_fitted(self, "learnwares_")
        X = check_X(X, n_features=self.n_features_in_)
        routes = self._route(X)
        result: np.ndarray | None = None
        width_of: dict[int, int] = {}
        for i in np.unique(routes):
            rows = np.flatnonzero(routes == i)
            (out,) = collect_outputs([self.learnwares_[i]], X[rows])
            width_of[int(i)] = out.shape[1]
            if result is None:
                result = np.zeros((len(X), out.shape[1]))
            if out.shape[1] != result.shape[1]:
                shown = ", ".join(
                    f"{name(self.learnwares_[j], j)}: {w}" for j, w in width_of.items()
                )
                raise ValueError(f"learnwares return outputs of different widths ({shown})")
            result[rows] = out
        task = self.task
        if task == "auto":
            probabilities = result.shape[1] > 1 and _combine.distribution_rows(result).all()
            task = "classification" if probabilities else "regression"
        return task, result


def _check_same_kernel(learnwares: list[Any]) -> None:
    gammas = [float(lw.spec.gamma) for lw in learnwares]
    if not all(math.isclose(g, gammas[0], rel_tol=1e-12) for g in gammas):
        shown = ", ".join(
            f"{name(lw, i)}: {g:g}"
            for i, (lw, g) in enumerate(zip(learnwares, gammas, strict=True))
        )
        raise ValueError(
            f"the learnwares' RKMEs use different kernels (gamma {shown}); JobSelector compares "
            "them in one kernel space and needs one gamma"
        )


def _mixture_weights(specs: list[Any], X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Simplex weights w minimising ‖Σ_i w_i Φ_i − Φ_user‖² (Φ_user: uniform weights on the
    user's rows)."""
    from wharf.specification import RKME, inner_product, solve_simplex_qp

    if len(X) > MAX_USER_ROWS:
        X = X[rng.choice(len(X), MAX_USER_ROWS, replace=False)]
    shape = tuple(np.shape(specs[0].z_)[1:])
    user = RKME.from_arrays(
        X.reshape((len(X), *shape)), np.full(len(X), 1.0 / len(X)), specs[0].gamma, len(X)
    )
    m = len(specs)
    gram = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            gram[i, j] = gram[j, i] = inner_product(specs[i], specs[j])
    cross = np.array([inner_product(spec, user) for spec in specs])
    w = np.clip(solve_simplex_qp(gram, cross).w, 0.0, None)
    return w / w.sum()
