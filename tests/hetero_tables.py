"""Tables for heterogeneous search tests: learnwares of a few tasks, each with its own columns,
and a user whose table shares most columns with one of them (the *planted* one), but in another
order, some renamed and one new."""

from __future__ import annotations

import hashlib

import numpy as np
from wharf.market.catalog import Catalog, repo
from wharf.specification.files import dumps_spec
from wharf.specification.rkme import RKME
from wharf.specification.semantic import generate_semantic_spec

#: Each task: its columns' descriptions and the mean and spread of each (scaled) column.
TASKS = {
    "customers": (
        [
            "age of the customer in years",
            "yearly income in thousands of dollars",
            "number of purchases last year",
            "months since the account was opened",
            "credit score",
            "region code",
        ],
        [0.4, 0.55, 1.2, 0.3, 0.65, 0.4],
        [0.12, 0.2, 0.6, 0.18, 0.07, 0.2],
    ),
    "weather": (
        ["rainfall in millimetres", "air temperature in celsius", "wind speed", "humidity"],
        [0.3, 1.5, 2.0, 0.7],
        [0.4, 0.8, 1.0, 0.15],
    ),
    "engines": (
        [
            "engine rotation speed rpm",
            "oil pressure",
            "coolant temperature",
            "vibration level",
            "fuel flow",
        ],
        [2.5, 0.3, 0.9, 0.5, 1.2],
        [0.6, 0.05, 0.08, 0.2, 0.3],
    ),
    "houses": (
        [
            "floor area in square metres",
            "number of rooms",
            "year built",
            "distance to centre km",
            "lot size",
            "number of floors",
            "garage spaces",
        ],
        [1.2, 0.4, 1.98, 0.8, 0.5, 0.2, 0.1],
        [0.4, 0.15, 0.25, 0.5, 0.2, 0.07, 0.08],
    ),
}
PLANTED = "customers"


def table(task: str, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    descriptions, means, spreads = TASKS[task]
    rng = np.random.default_rng(seed)
    return rng.normal(means, spreads, size=(n, len(means))), list(descriptions)


def user_table(n: int = 300, seed: int = 99) -> tuple[np.ndarray, list[str]]:
    """The planted task's table with its columns in another order, one renamed and a new one
    (as another person would have recorded the same customers)."""
    X, names = table(PLANTED, n, seed)
    order = [4, 0, 2, 5, 1, 3]
    X, names = X[:, order], [names[i] for i in order]
    names[1] = "customer age in years"
    rng = np.random.default_rng(seed + 1)
    X = np.column_stack([X, rng.integers(0, 2, size=n).astype(float)])
    return X, [*names, "has a loyalty card"]


def spec_of(X: np.ndarray, k: int = 10, seed: int = 0) -> RKME:
    return RKME(n_points=k, gamma=0.1, seed=seed, device="cpu").fit(X)


def accept(catalog: Catalog, owner: int, name: str, spec: dict, stat: RKME) -> int:
    with catalog.session() as s:
        sha = hashlib.sha256(name.encode()).hexdigest()
        lw = repo.create_learnware(s, owner, spec, sha, f"p/{name}", 10)
        repo.claim_for_check(s, lw.id)
        meta = {
            "type": stat.spec_type,
            "shape": list(stat.z_.shape[1:]),
            "gamma": 0.1,
            "points": stat.z_.shape[0],
            "num_points": 100,
        }
        repo.finish_check(
            s, lw.id, accepted=True, log="ok", spec_meta=meta, stat_spec_json=dumps_spec(stat)
        )
        return lw.id


def semantic_of(descriptions: list[str], name: str = "m", **extra) -> dict:
    width = len(descriptions)
    return generate_semantic_spec(
        name=name,
        data_type="Table",
        task_type="Classification",
        library_type="Scikit-learn",
        scenarios=["Business"],
        license="MIT",
        input_description={
            "Dimension": width,
            "Description": {str(i): d for i, d in enumerate(descriptions)},
        },
        output_description={"Dimension": 2, "Description": {}},
        **extra,
    )
