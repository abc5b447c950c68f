"""Run the experiment through a real market: submit, search, download, reuse, score.

The market is :class:`cli.serve.LocalMarket` (API + Celery workers on the embedded default) in
a temporary folder. Each learnware is submitted and checked in the sandbox; each user fits an
RKME of their own data locally and searches with it; what the search finds is downloaded and
loaded with :func:`reuse.from_search` (sandboxed by default).

A sandboxed run costs a few tenths of a second whatever the batch size, so every learnware is
run **once** on all the user rows of its task (every user's test set and labelled pool,
stacked) and :class:`OutputCache` serves its outputs from then on: the reuse estimators get
:class:`CachedLearnware` objects whose ``predict`` looks rows up in that cache. The outputs are
exactly what the sandboxed package returned.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from wharf.reuse.feature_augment import default_model

from .packages import RKME_POINTS, BuiltLearnware, build_all
from .tasks import (
    CLASSIFICATION,
    GAMMA,
    REGRESSION,
    Scale,
    UserData,
    UserDef,
    _seed,
    user_data,
)

TASK_TAG = {CLASSIFICATION: "Classification", REGRESSION: "Regression"}
#: Singles asked of each search; the data-free methods use the mixture, else the top 3.
SEARCH_TOP = 5
DATA_FREE_TOP = 3
#: Regularisation grids of the from-scratch baselines (the same as FeatureAugment's defaults).


# -- scoring ---------------------------------------------------------------------------------


def score(task: str, prediction: np.ndarray, y: np.ndarray) -> float:
    """Error rate in % (classification) or RMSE (regression)."""
    prediction = np.asarray(prediction)
    if task == CLASSIFICATION:
        labels = prediction.argmax(axis=1) if prediction.ndim == 2 else prediction
        return float(100.0 * np.mean(labels != y))
    values = prediction.reshape(len(y), -1)[:, 0]
    return float(np.sqrt(np.mean((values - y) ** 2)))


def scratch_model(task: str, y: np.ndarray) -> Any:
    """The user's own model on the same labels: FeatureAugment's final model without the
    learnwares' outputs (a constant guess when the labels hold one class)."""
    from sklearn.dummy import DummyClassifier

    if task != REGRESSION and len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent")
    return default_model(task, y)


# -- running each learnware once ---------------------------------------------------------------


class OutputCache:
    """Each learnware's outputs on every user row of its task, from one run of the package."""

    def __init__(self, universes: dict[str, np.ndarray]):
        self.universes = {
            t: np.ascontiguousarray(U, dtype=np.float64) for t, U in universes.items()
        }
        self.rows = {
            t: {row.tobytes(): i for i, row in enumerate(U)} for t, U in self.universes.items()
        }
        self.outputs: dict[str, np.ndarray] = {}
        self.task_of: dict[str, str] = {}
        self.runs = 0
        self.run_seconds = 0.0

    def fill(self, learnware: Any, task: str) -> None:
        """Run ``learnware`` on the whole universe of ``task`` unless it already ran."""
        if learnware.id in self.outputs:
            return
        t0 = time.perf_counter()
        out = np.asarray(learnware.predict(self.universes[task]), dtype=np.float64)
        self.run_seconds += time.perf_counter() - t0
        self.runs += 1
        self.outputs[learnware.id] = out.reshape(len(out), -1)
        self.task_of[learnware.id] = task

    def lookup(self, learnware_id: str, X: np.ndarray) -> np.ndarray:
        rows = self.rows[self.task_of[learnware_id]]
        index = [rows[row.tobytes()] for row in np.ascontiguousarray(X, dtype=np.float64)]
        return self.outputs[learnware_id][index]


class CachedLearnware:
    """A loaded learnware whose ``predict`` answers from :class:`OutputCache` (rows it never
    saw go to the package itself)."""

    def __init__(self, learnware: Any, cache: OutputCache):
        self.learnware = learnware
        self.cache = cache
        self.id = learnware.id
        self.spec = learnware.spec
        self.input_shape = learnware.input_shape

    def predict(self, X: Any) -> np.ndarray:
        try:
            return self.cache.lookup(self.id, np.asarray(X))
        except KeyError:
            return np.asarray(self.learnware.predict(X))


# -- results -----------------------------------------------------------------------------------


@dataclass
class UserOutcome:
    user: UserDef
    n_test: int
    n_pool: int
    search_seconds: float
    singles: list[dict]  # the search's singles, with the learnware's key added
    mixture: dict | None  # the search's mixture, with keys added
    data_free_keys: list[str]  # what JobSelector and Averaging combined
    label_keys: list[str]  # what EnsemblePruning and FeatureAugment got
    errors: dict[str, float]  # Mean/Best in market, Top-1, JobSelector, Averaging
    best_key: str
    #: method -> number of labels -> error of each seed
    curves: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    @property
    def top1_key(self) -> str:
        return self.singles[0]["key"]


@dataclass
class ExperimentResult:
    scale: Scale
    learnwares: dict[str, BuiltLearnware]  # market id -> what was built
    statuses: dict[str, str]
    outcomes: list[UserOutcome]
    timings: dict[str, float]
    sandboxed: bool
    sandbox_runs: int = 0
    sandbox_seconds: float = 0.0
    search_seconds: float = 0.0


CURVE_METHODS = ("EnsemblePruning", "FeatureAugment", "From scratch")
TABLE_METHODS = ("Mean in market", "Best in market", "Top-1 reuse", "JobSelector", "Averaging")


# -- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and BLAS on one thread while the experiment runs.

    On this 2-core machine, shared with the market's own processes, two torch threads made
    kernel herding (JobSelector) about 7× slower than one (2.4 s against 17 s for 500
    samples, measured here); the results do not change.
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def submit_all(client: Any, built: list[BuiltLearnware], log: Callable[[str], None]):
    """Submit every package, wait for every check; returns id → built and id → status."""
    submissions = [(b, client.submit(b.package, b.semantic)) for b in built]
    by_id: dict[str, BuiltLearnware] = {}
    statuses: dict[str, str] = {}
    for b, sub in submissions:
        client.wait(sub["job_id"], timeout=600)
        lw_id = sub["learnware_id"]
        statuses[lw_id] = client.learnware(lw_id)["status"]
        by_id[lw_id] = b
        if statuses[lw_id] != "accepted":
            raise RuntimeError(
                f"{b.definition.key} was {statuses[lw_id]}:\n{client.log(lw_id)[-2000:]}"
            )
    log(f"  {len(by_id)} learnwares submitted, all accepted")
    return by_id, statuses


def market_ids(client: Any, task: str) -> list[str]:
    """Every accepted learnware of a task, as the market lists it."""
    ids: list[str] = []
    while True:
        page = client.learnwares(
            status="accepted", task_type=TASK_TAG[task], limit=500, offset=len(ids)
        )
        ids += [item["id"] for item in page["items"]]
        if not page["items"] or len(ids) >= page["total"]:
            return ids


def requirement(task: str) -> dict:
    from wharf.specification.semantic import generate_semantic_spec

    return generate_semantic_spec(data_type="Table", task_type=TASK_TAG[task])


def run_experiment(
    scale: Scale,
    *,
    work_dir: str | Path | None = None,
    workers: int = 2,
    sandbox: bool = True,
    with_curves: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentResult:
    """The whole experiment at ``scale``; the market lives in ``work_dir`` (a temporary
    folder by default) and is stopped before returning."""
    from wharf.cli.serve import LocalMarket
    from wharf.client import WharfClient

    timings: dict[str, float] = {}
    with one_thread(), tempfile.TemporaryDirectory(prefix="wharf-reuse-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        t0 = time.perf_counter()
        log(f"Training {len(scale.learnwares)} learnwares and fitting their RKMEs…")
        built = build_all(scale.learnwares, root / "packages")
        users = [(u, user_data(u)) for u in scale.users]
        timings["build learnwares and users"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with LocalMarket(root / "market", workers=workers) as market:
            timings["start the market"] = time.perf_counter() - t0
            log(f"Market up at {market.url}; submitting…")
            with WharfClient(market.url, market.token) as client:
                t0 = time.perf_counter()
                by_id, statuses = submit_all(client, built, log)
                timings["submit and check"] = time.perf_counter() - t0
                result = ExperimentResult(scale, by_id, statuses, [], timings, sandbox)
                _evaluate(
                    client,
                    result,
                    users,
                    root / "downloads",
                    sandbox=sandbox,
                    with_curves=with_curves,
                    log=log,
                )
                t0 = time.perf_counter()
        timings["stop the market"] = time.perf_counter() - t0
    return result


def _evaluate(
    client: Any,
    result: ExperimentResult,
    users: list[tuple[UserDef, UserData]],
    downloads: Path,
    *,
    sandbox: bool,
    with_curves: bool,
    log: Callable[[str], None],
) -> None:
    from wharf.reuse import Learnware, from_search
    from wharf.specification import RKME

    scale = result.scale
    herding_num = scale.herding_num
    key_of = {lw_id: b.definition.key for lw_id, b in result.learnwares.items()}
    tasks = sorted({u.task for u, _ in users})
    cache = OutputCache({t: np.vstack([d.X_all for u, d in users if u.task == t]) for t in tasks})
    opened: list[Any] = []

    def load_found(res: dict, *, mixture: bool, top: int, task: str) -> list[CachedLearnware]:
        found = from_search(client, res, downloads, mixture=mixture, top=top, sandbox=sandbox)
        opened.extend(found)
        for lw in found:
            cache.fill(lw, task)
        return [CachedLearnware(lw, cache) for lw in found]

    try:
        # 1. search as every user, load what was found
        t0 = time.perf_counter()
        searched: list[Found] = []
        for user, data in users:
            spec = RKME(n_points=RKME_POINTS, gamma=GAMMA, seed=0, device="cpu").fit(data.X_all)
            s0 = time.perf_counter()
            res = client.search(spec=spec, semantic=requirement(user.task), top=SEARCH_TOP)
            took = time.perf_counter() - s0
            data_free = load_found(res, mixture=True, top=DATA_FREE_TOP, task=user.task)
            singles = load_found(res, mixture=False, top=SEARCH_TOP, task=user.task)
            searched.append(Found(user, data, res, took, data_free, singles))
            names = ", ".join(key_of[s["id"]] for s in res["singles"][:3])
            mix = res.get("mixture")
            mix_text = " + ".join(key_of[i] for i in mix["ids"]) if mix else "none"
            log(f"  {user.key}: top {names}; mixture {mix_text}")
        timings = result.timings
        result.search_seconds = sum(f.took for f in searched)
        timings["RKMEs, searches, downloads, sandboxed runs of what was found"] = (
            time.perf_counter() - t0
        )

        # 2. run the rest of the market once, for Mean/Best in market
        t0 = time.perf_counter()
        everyone: dict[str, list[str]] = {t: market_ids(client, t) for t in tasks}
        for task, ids in everyone.items():
            for lw_id in ids:
                if lw_id in cache.outputs:
                    continue
                path = client.download(lw_id, downloads / f"{lw_id}.zip")
                with Learnware.load(path, learnware_id=lw_id, sandbox=sandbox) as lw:
                    cache.fill(lw, task)
        timings["download and run the rest of the market"] = time.perf_counter() - t0
        result.sandbox_runs = cache.runs
        result.sandbox_seconds = cache.run_seconds

        # 3. the data-free methods
        t0 = time.perf_counter()
        for found in searched:
            outcome = _score_user(found, everyone[found.user.task], cache, herding_num)
            for single in outcome.singles:
                single["key"] = key_of[single["id"]]
            if outcome.mixture:
                outcome.mixture["keys"] = [key_of[i] for i in outcome.mixture["ids"]]
            outcome.data_free_keys = [key_of[lw.id] for lw in found.data_free]
            outcome.label_keys = [key_of[lw.id] for lw in found.label_set]
            outcome.best_key = key_of[outcome.best_key]
            result.outcomes.append(outcome)
        timings["data-free reuse (JobSelector, Averaging)"] = time.perf_counter() - t0

        # 4. the label curves
        if with_curves:
            t0 = time.perf_counter()
            for found, outcome in zip(searched, result.outcomes, strict=True):
                s0 = time.perf_counter()
                outcome.curves = label_curves(
                    found.user, found.data, found.label_set, scale.labels, scale.seeds
                )
                log(f"  curves for {found.user.key}: {time.perf_counter() - s0:.1f} s")
            timings["label curves"] = time.perf_counter() - t0
    finally:
        for lw in opened:
            lw.close()


@dataclass
class Found:
    """One user's search and the learnwares it loaded."""

    user: UserDef
    data: UserData
    result: dict
    took: float
    data_free: list[CachedLearnware]  # the mixture's members, else the top 3 singles
    singles: list[CachedLearnware]  # the top 5 singles

    @property
    def label_set(self) -> list[CachedLearnware]:
        """What the labelled methods get: the data-free set, then the other singles."""
        by_id = {lw.id: lw for lw in [*self.data_free, *self.singles]}
        return list(by_id.values())


def _score_user(
    found: Found, market: list[str], cache: OutputCache, herding_num: int
) -> UserOutcome:
    from wharf.reuse import Averaging, JobSelector

    user, data = found.user, found.data
    task = user.task
    errors_of = {i: score(task, cache.lookup(i, data.X_test), data.y_test) for i in market}
    best = min(errors_of, key=errors_of.__getitem__)
    errors = {
        "Mean in market": float(np.mean(list(errors_of.values()))),
        "Best in market": errors_of[best],
        "Top-1 reuse": score(task, found.singles[0].predict(data.X_test), data.y_test),
    }
    selector = JobSelector(found.data_free, herding_num=herding_num, task=task, random_state=0)
    selector.fit(data.X_test)
    errors["JobSelector"] = score(task, selector.predict(data.X_test), data.y_test)
    averaging = Averaging(found.data_free, mode="auto").fit(data.X_test)
    errors["Averaging"] = score(task, averaging.predict(data.X_test), data.y_test)
    return UserOutcome(
        user=user,
        n_test=len(data.X_test),
        n_pool=len(data.X_pool),
        search_seconds=found.took,
        singles=[dict(s) for s in found.result["singles"]],
        mixture=dict(found.result["mixture"]) if found.result.get("mixture") else None,
        data_free_keys=[],
        label_keys=[],
        errors=errors,
        best_key=best,
    )


def draw_labels(user: UserDef, data: UserData, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` pool rows to label (at least two classes for a classification)."""
    rng = np.random.default_rng(_seed("labels", user.key, n, seed))
    for _ in range(100):
        idx = rng.choice(len(data.X_pool), size=n, replace=False)
        if user.task == REGRESSION or len(np.unique(data.y_pool[idx])) >= 2:
            return idx
    raise RuntimeError(f"{user.key}: no sample of {n} labels holds two classes")


def label_curves(
    user: UserDef,
    data: UserData,
    learnwares: list[CachedLearnware],
    labels: tuple[int, ...],
    seeds: tuple[int, ...],
) -> dict[str, dict[int, list[float]]]:
    """Error of EnsemblePruning, FeatureAugment and a model trained from scratch on ``n``
    labels from the pool, for every ``n`` the pool allows and every seed."""
    from sklearn.exceptions import ConvergenceWarning
    from wharf.reuse import EnsemblePruning, FeatureAugment

    task = user.task
    curves: dict[str, dict[int, list[float]]] = {m: {} for m in CURVE_METHODS}
    for n in labels:
        if n > len(data.X_pool):
            continue
        for seed in seeds:
            idx = draw_labels(user, data, n, seed)
            X, y = data.X_pool[idx], data.y_pool[idx]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)
                pruned = EnsemblePruning(learnwares, task=task, random_state=seed).fit(X, y)
                augmented = FeatureAugment(learnwares, task=task).fit(X, y)
                scratch = scratch_model(task, y).fit(X, y)
            for method, model in zip(CURVE_METHODS, (pruned, augmented, scratch), strict=True):
                err = score(task, model.predict(data.X_test), data.y_test)
                curves[method].setdefault(n, []).append(err)
    return curves
