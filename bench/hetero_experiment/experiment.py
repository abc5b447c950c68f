"""Run the experiment through a real market: submit, train the map, search, download, reuse.

The market is :class:`cli.serve.LocalMarket` (API + Celery workers on the embedded default:
SQLite, file broker, local store) in a temporary folder. Each learnware is submitted and
checked in the sandbox; an admin asks for a map (``POST /v1/hetero/maps``) and waits for it to
become current; each user fits an RKME of their own rows, describes their columns in their own
words and searches with ``hetero=True``; the top result is downloaded and reused with
:class:`reuse.HeteroMapAlign` and the map the result names (``download_hetero_map``).

Then, in this process, the same users against maps of other training budgets (the untrained
map, with its seeded initial weights, and longer trainings on the same specs): which one the
market should train by default is decided by these numbers (:func:`compare_budgets`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.reuse_experiment.experiment import one_thread, submit_all

from .design import Scale, UserData, UserDef, user_data
from .packages import GAMMA, RKME_POINTS, TASK_TAG, BuiltLearnware, build_all
from .reuse_eval import align, labelled_errors, true_columns

SEARCH_TOP = 5
#: The search's top-1 given the user's rows through the true column correspondence.
TRUE_COLUMNS = "Top-1, true columns"
MAP_WAIT_S = 600.0
#: Kernel widths of the diagnostic ranking in the shared space (the market's is 0.1).
GAMMAS = (0.1, 0.01, 0.001)


@dataclass
class UserOutcome:
    user: UserDef
    n_pool: int
    n_test: int
    search_seconds: float
    hetero: dict | None  # the result's "hetero" entry
    singles: list[dict]  # id, score and key of the search's singles
    top1_of_task: bool
    #: "Hetero reuse" (top-1, aligned), "From scratch", :data:`TRUE_COLUMNS`: labels -> error
    #: of each seed
    curves: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    zero_label: dict[str, float] = field(default_factory=dict)  # top-1, mean/best of task
    task_errors: dict[str, float] = field(default_factory=dict)  # each task learnware, 0 labels

    @property
    def top1_key(self) -> str:
        return self.singles[0]["key"] if self.singles else "-"


@dataclass
class BudgetOutcome:
    epochs: int
    steps: int
    train_seconds: float
    final_loss: float | None
    top1_task: list[bool]  # per user, ranked among the learnwares of the user's Task tag
    top1_task_untagged: list[bool]  # per user, ranked among every learnware
    zero_label: list[float]  # per user, the top-1's error aligned with this map
    fifty: list[float | None]  # per user, mean error with 50 labels (None: pool too small)
    #: per user, rank (1 = first) of the best learnware of the user's data set (Task tag)
    task_rank: list[int] = field(default_factory=list)
    #: kernel width -> users whose top-1 (Task tag) is of their data set, same mapped specs
    top1_by_gamma: dict[float, int] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    scale: Scale
    learnwares: dict[str, BuiltLearnware]  # market id -> what was built
    map_info: dict
    map_epochs: int
    outcomes: list[UserOutcome]
    budgets: list[BudgetOutcome]
    timings: dict[str, float]
    sandboxed: bool
    map_difference: float = float("nan")  # the market's map against one trained here
    #: smallest and largest norm of the learnwares' points mapped with the market's map
    mapped_norms: tuple[float, float] = (float("nan"), float("nan"))
    #: learnware key -> ⟨Φ, Φ⟩ of its spec mapped with the market's map (γ of the market)
    self_terms: dict[str, float] = field(default_factory=dict)
    map_config: Any = None  # the market's map's HeteroMapConfig


def requirement(user: UserDef) -> dict:
    from wharf.specification.semantic import generate_semantic_spec

    descriptions = user.descriptions()
    return generate_semantic_spec(
        data_type="Table",
        task_type=TASK_TAG[user.task],
        input_description={
            "Dimension": len(descriptions),
            "Description": {str(i): t for i, t in enumerate(descriptions)},
        },
    )


def user_rkme(data: UserData):
    from wharf.specification import RKME

    return RKME(n_points=RKME_POINTS, gamma=GAMMA, seed=0, device="cpu").fit(data.X_all)


def train_map(client: Any, log: Callable[[str], None]) -> dict:
    """Ask for a map as the admin and wait until a version is current; its view."""
    r = client.http.post("/v1/hetero/maps")
    if r.status_code not in (200, 202):
        raise RuntimeError(f"POST /v1/hetero/maps answered {r.status_code}: {r.text[:500]}")
    deadline = time.monotonic() + MAP_WAIT_S
    while time.monotonic() < deadline:
        maps = client.hetero_maps()
        if maps["current"] is not None:
            return maps["current"]
        failed = [v for v in maps["versions"] if v.get("state") == "failed"]
        if failed:
            raise RuntimeError(f"the map's training failed: {failed[0]}")
        time.sleep(0.5)
    raise RuntimeError(f"no map became current within {MAP_WAIT_S:.0f} s")


def run_experiment(
    scale: Scale,
    *,
    work_dir: str | Path | None = None,
    workers: int = 2,
    sandbox: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentResult:
    """The whole experiment at ``scale``; the market lives in ``work_dir`` (a temporary folder
    by default) and is stopped before the in-process budget comparison."""
    import os

    from wharf.cli.serve import LocalMarket
    from wharf.client import WharfClient
    from wharf.market.settings import Settings
    from wharf.specification.hetero.model import HeteroMap

    os.environ.setdefault("WHARF_HETERO_DEVICE", "cpu")
    timings: dict[str, float] = {}
    with one_thread(), tempfile.TemporaryDirectory(prefix="wharf-hetero-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        t0 = time.perf_counter()
        log(f"Training {len(scale.learnwares)} learnwares and fitting their RKMEs…")
        built = build_all(scale.learnwares, root / "packages")
        users = [(u, user_data(u)) for u in scale.users]
        timings["build learnwares and users"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with LocalMarket(root / "market", workers=workers) as market:
            settings = Settings(data_dir=root / "market")
            timings["start the market"] = time.perf_counter() - t0
            log(f"Market up at {market.url}; submitting…")
            with WharfClient(market.url, market.token) as client:
                t0 = time.perf_counter()
                by_id, _ = submit_all(client, built, log)
                timings["submit and check"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                current = train_map(client, log)
                version = int(current["version"])
                map_path = client.download_hetero_map(version, root / f"map-v{version}.pt")
                hmap = HeteroMap.from_bytes(map_path.read_bytes(), device="cpu")
                timings["train the map, map the specs, download it"] = time.perf_counter() - t0
                log(f"  map version {version} current: {hmap.info}")
                result = ExperimentResult(
                    scale, by_id, dict(hmap.info), settings.hetero_epochs, [], [], timings, sandbox
                )
                _evaluate(client, result, users, hmap, root / "downloads", sandbox, log)
                _describe_space(result, built, hmap)
            t0 = time.perf_counter()
        timings["stop the market"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        result.budgets, result.map_difference = compare_budgets(
            scale, built, users, hmap, settings, log
        )
        timings["training budgets, in process"] = time.perf_counter() - t0
    return result


def _evaluate(
    client: Any,
    result: ExperimentResult,
    users: list[tuple[UserDef, UserData]],
    hmap: Any,
    downloads: Path,
    sandbox: bool,
    log: Callable[[str], None],
) -> None:
    from wharf.reuse import Learnware, from_search

    scale = result.scale
    key_of = {i: b.definition.key for i, b in result.learnwares.items()}
    dataset_of = {i: b.definition.dataset for i, b in result.learnwares.items()}
    loaded: dict[str, Any] = {}

    def learnware(lw_id: str) -> Any:
        if lw_id not in loaded:
            path = client.download(lw_id, downloads / f"{lw_id}.zip")
            semantic = client.learnware(lw_id).get("semantic_spec")
            loaded[lw_id] = Learnware.load(
                path, learnware_id=lw_id, semantic=semantic, sandbox=sandbox
            )
        return loaded[lw_id]

    try:
        t0 = time.perf_counter()
        searched = []
        for user, data in users:
            spec = user_rkme(data)
            s0 = time.perf_counter()
            res = client.search(spec=spec, semantic=requirement(user), top=SEARCH_TOP, hetero=True)
            took = time.perf_counter() - s0
            singles = [dict(s, key=key_of[s["id"]]) for s in res.get("singles") or []]
            hetero = res.get("hetero")
            if singles and hetero:  # what a user does: the top result, aligned with the map
                (aligner,) = from_search(
                    client,
                    res,
                    downloads,
                    mixture=False,
                    top=1,
                    user_descriptions=user.descriptions(),
                    hetero_map=hmap,
                    sandbox=sandbox,
                )
                loaded.setdefault(singles[0]["id"], aligner.learnware)
            top1_ok = bool(singles) and dataset_of[singles[0]["id"]] == user.dataset
            searched.append((user, data, res, singles))
            result.outcomes.append(
                UserOutcome(
                    user, len(data.X_pool), len(data.X_test), took, hetero, singles, top1_ok
                )
            )
            names = ", ".join(s["key"] for s in singles[:3]) or "nothing"
            log(f"  {user.key}: {names} (hetero: {hetero})")
        result.timings["RKMEs, hetero searches, downloads"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for (user, data, _, singles), outcome in zip(searched, result.outcomes, strict=True):
            same_task = [i for i, d in dataset_of.items() if d == user.dataset]
            aligned = {}
            for lw_id in same_task:
                aligned[lw_id], outcome.task_errors[key_of[lw_id]] = align(
                    learnware(lw_id), hmap, user, data, scale.align_epochs
                )
            errors = list(outcome.task_errors.values())
            outcome.zero_label["Mean learnware of the task"] = float(np.mean(errors))
            outcome.zero_label["Best learnware of the task"] = float(np.min(errors))
            if not singles:
                continue
            top = singles[0]["id"]
            if top in aligned:
                top_aligned, err = aligned[top], outcome.task_errors[key_of[top]]
            else:
                top_aligned, err = align(learnware(top), hmap, user, data, scale.align_epochs)
            outcome.zero_label["Hetero reuse (top-1)"] = err
            outcome.curves["Hetero reuse (top-1)"] = labelled_errors(
                user, data, top_aligned, scale.labels, scale.seeds
            )
            outcome.curves["From scratch"] = labelled_errors(
                user, data, None, scale.labels, scale.seeds
            )
            exact, outcome.zero_label[TRUE_COLUMNS] = true_columns(
                learnware(top), result.learnwares[top].definition, user, data
            )
            outcome.curves[TRUE_COLUMNS] = labelled_errors(
                user, data, exact, scale.labels, scale.seeds
            )
            log(f"  {user.key}: aligned {len(aligned)} learnwares, top-1 {err:.2f}")
        result.timings["alignments and label curves"] = time.perf_counter() - t0
    finally:
        for lw in loaded.values():
            lw.close()


def compare_budgets(
    scale: Scale,
    built: list[BuiltLearnware],
    users: list[tuple[UserDef, UserData]],
    market_map: Any,
    settings: Any,
    log: Callable[[str], None],
) -> tuple[list[BudgetOutcome], float]:
    """The users against maps of each training budget in ``scale.budgets`` (0: the untrained
    map) and the market's, on the same accepted specs, in this process: the top-1 of a scan
    by MMD² in the shared space (what the market's search ranks by), and the reuse of that
    top-1 (learnwares run in process: the packages are numpy only); the market's own map
    first (``epochs`` −1), which checks the scan against the market's search. Also how far a
    map trained here with the market's settings is from the market's (largest weight
    difference: the worker trains on more threads, so not to the last bit)."""
    from wharf.reuse import Learnware
    from wharf.specification.hetero.model import HeteroMap
    from wharf.specification.hetero.training import train_hetero_map
    from wharf.specification.mmd import mmd2

    tables = [(b.spec.z_flat, b.descriptions) for b in built]
    runnable = {
        b.definition.key: Learnware.load(
            b.package, sandbox=False, allow_unsandboxed=True, semantic=b.semantic
        )
        for b in built
    }
    epochs_list = [-1, *sorted({*scale.budgets, settings.hetero_epochs})]
    out: list[BudgetOutcome] = []
    difference = float("nan")
    try:
        for epochs in epochs_list:
            t0 = time.perf_counter()
            if epochs < 0:
                info = market_map.info
                hmap, steps, loss = market_map, int(info["steps"]), float(info["final_loss"])
            elif epochs == 0:
                hmap = HeteroMap.initial(seed=settings.hetero_seed, device="cpu")
                steps, loss = 0, None
            else:
                hmap = train_hetero_map(
                    tables, epochs=epochs, seed=settings.hetero_seed, device="cpu"
                )
                steps, loss = int(hmap.info["steps"]), float(hmap.info["final_loss"])
            seconds = float(market_map.info["seconds"]) if epochs < 0 else time.perf_counter() - t0
            if epochs == settings.hetero_epochs:
                difference = _weight_difference(hmap, market_map)
            specs = {b.definition.key: hmap.map_spec(b.spec, b.descriptions) for b in built}
            budget = BudgetOutcome(epochs, steps, seconds, loss, [], [], [], [])
            task_of = {b.definition.key: b.definition for b in built}
            for user, data in users:
                mapped = hmap.map_spec(user_rkme(data), user.descriptions())
                tagged = [k for k in specs if _task(task_of[k]) == user.task]
                for gamma in GAMMAS:
                    ranked = _ranked(mapped, {k: specs[k] for k in tagged}, gamma)
                    hit = task_of[ranked[0]].dataset == user.dataset
                    budget.top1_by_gamma[gamma] = budget.top1_by_gamma.get(gamma, 0) + hit
                dist = {k: mmd2(mapped, s) for k, s in specs.items()}
                ranked = sorted(tagged, key=dist.__getitem__)
                top = ranked[0]
                budget.task_rank.append(
                    1 + next(i for i, k in enumerate(ranked) if task_of[k].dataset == user.dataset)
                )
                budget.top1_task.append(task_of[top].dataset == user.dataset)
                budget.top1_task_untagged.append(
                    task_of[min(dist, key=dist.__getitem__)].dataset == user.dataset
                )
                aligned, err = align(runnable[top], hmap, user, data, scale.align_epochs)
                budget.zero_label.append(err)
                fifty = labelled_errors(user, data, aligned, (50,), scale.seeds).get(50)
                budget.fifty.append(float(np.mean(fifty)) if fifty else None)
            out.append(budget)
            log(
                f"  map of {epochs} epochs ({steps} steps, {seconds:.1f} s): top-1 of the task "
                f"{sum(budget.top1_task)}/{len(users)}"
            )
    finally:
        for lw in runnable.values():
            lw.close()
    return out, difference


def _describe_space(result: ExperimentResult, built: list[BuiltLearnware], hmap: Any) -> None:
    from wharf.specification.mmd import inner_product

    result.map_config = hmap.config
    norms = []
    for b in built:
        spec = hmap.map_spec(b.spec, b.descriptions)
        norms.append(np.linalg.norm(spec.z_flat, axis=1))
        result.self_terms[b.definition.key] = float(inner_product(spec, spec))
    every = np.concatenate(norms)
    result.mapped_norms = (float(every.min()), float(every.max()))


def _ranked(user: Any, specs: dict[str, Any], gamma: float) -> list[str]:
    """Keys of ``specs`` by MMD² to ``user`` under an RBF kernel of width ``gamma``."""
    from wharf.specification.hetero import HeteroMapTableSpecification
    from wharf.specification.mmd import mmd2

    def at(spec: Any) -> Any:
        return HeteroMapTableSpecification.from_arrays(spec.z_flat, spec.beta_, gamma)

    u = at(user)
    dist = {k: mmd2(u, at(s)) for k, s in specs.items()}
    return sorted(dist, key=dist.__getitem__)


def _task(definition: Any) -> str:
    from .datasets import load

    return load(definition.dataset).task


def _weight_difference(a: Any, b: Any) -> float:
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
