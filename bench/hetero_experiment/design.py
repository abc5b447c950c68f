"""Who holds what: the developers' and the users' rows and columns of each data set.

Each data set's rows are shuffled once and cut in two: the developers' rows (40 %) and the
users' rows (60 %), never shared. Its columns are cut in two as well: most are the
developers' to choose from; a few (:data:`NEW_COLUMNS`) no learnware has, and each user holds
some of them. A learnware takes an overlapping subset of the developers' columns (its own
draw) and its own bootstrap of the developers' rows. A user takes another subset of the
developers' columns plus the new ones, describes them in the users' wording, in a shuffled
order, and holds all the users' rows: a labelled pool (at most 100 rows) and the test rows.

Everything is drawn from generators seeded by names (crc32), so a run rebuilds exactly the
same learnwares and users.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np

from .datasets import CLASSIFICATION, Dataset, load

DEVELOPER_SHARE = 0.4
MAX_POOL = 100
#: Columns of each data set that no learnware takes (users hold some of them).
NEW_COLUMNS = {"breast_cancer": 4, "wine": 2, "diabetes": 1, "iris": 0}
#: Share of the developers' columns a learnware takes, and a user.
LEARNWARE_SHARE = (0.5, 0.75)
USER_SHARE = (0.45, 0.7)


def seed_of(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Split:
    dev_rows: np.ndarray
    user_rows: np.ndarray
    dev_columns: tuple[int, ...]
    new_columns: tuple[int, ...]
    mean: np.ndarray  # the published schema: developers' rows, every column
    std: np.ndarray


@cache
def split(key: str) -> Split:
    data = load(key)
    rng = np.random.default_rng(seed_of("split", key))
    rows = rng.permutation(len(data.X))
    n_dev = round(DEVELOPER_SHARE * len(rows))
    columns = rng.permutation(data.X.shape[1])
    n_new = NEW_COLUMNS[key]
    dev_rows = np.sort(rows[:n_dev])
    mean = data.X[dev_rows].mean(axis=0)
    std = data.X[dev_rows].std(axis=0)
    return Split(
        dev_rows,
        np.sort(rows[n_dev:]),
        tuple(sorted(columns[n_new:].tolist())),
        tuple(sorted(columns[:n_new].tolist())),
        mean,
        np.where(std > 0, std, 1.0),
    )


def standardised(key: str, rows: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    s, data = split(key), load(key)
    cols = list(columns)
    return (data.X[np.ix_(rows, cols)] - s.mean[cols]) / s.std[cols]


def _subset(rng: np.random.Generator, pool: tuple[int, ...], share: tuple[float, float]) -> list:
    k = max(2, round(rng.uniform(*share) * len(pool)))
    return sorted(rng.choice(pool, size=min(k, len(pool)), replace=False).tolist())


@dataclass(frozen=True)
class LearnwareDef:
    dataset: str
    index: int
    family: str  # "linear" or "mlp"

    @property
    def key(self) -> str:
        return f"{self.dataset}-{self.index}-{self.family}"

    @property
    def columns(self) -> tuple[int, ...]:
        """Its columns, in the data set's order."""
        s = split(self.dataset)
        rng = np.random.default_rng(seed_of("lw-columns", self.key))
        if len(s.dev_columns) <= 4:  # iris: every column but one
            left_out = self.index % len(s.dev_columns)
            return tuple(c for i, c in enumerate(s.dev_columns) if i != left_out)
        return tuple(_subset(rng, s.dev_columns, LEARNWARE_SHARE))

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Its standardised training rows (a bootstrap of the developers' rows) and labels."""
        s = split(self.dataset)
        rng = np.random.default_rng(seed_of("lw-rows", self.key))
        rows = np.sort(rng.choice(s.dev_rows, size=len(s.dev_rows), replace=True))
        return standardised(self.dataset, rows, self.columns), load(self.dataset).y[rows]


@dataclass(frozen=True)
class UserDef:
    dataset: str
    index: int

    @property
    def key(self) -> str:
        return f"U{self.index} {self.dataset}"

    @property
    def task(self) -> str:
        return load(self.dataset).task

    @property
    def columns(self) -> tuple[int, ...]:
        """Its columns in its own (shuffled) order: developers' columns and new ones."""
        s = split(self.dataset)
        rng = np.random.default_rng(seed_of("user-columns", self.key))
        if len(s.dev_columns) <= 4:
            left_out = (self.index + 1) % len(s.dev_columns)
            chosen = [c for i, c in enumerate(s.dev_columns) if i != left_out]
        else:
            chosen = _subset(rng, s.dev_columns, USER_SHARE)
        new = list(s.new_columns)
        if new:
            k = int(rng.integers(1, len(new) + 1))
            chosen += rng.choice(new, size=k, replace=False).tolist()
        return tuple(int(c) for c in rng.permutation(chosen))

    @property
    def new_columns(self) -> tuple[int, ...]:
        return tuple(c for c in self.columns if c in split(self.dataset).new_columns)

    def descriptions(self) -> list[str]:
        data = load(self.dataset)
        return [f"{data.columns[c].user}, standardised" for c in self.columns]


@dataclass
class UserData:
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def X_all(self) -> np.ndarray:
        """What the user holds unlabelled: the pool and the test rows."""
        return np.vstack([self.X_pool, self.X_test])


def user_data(user: UserDef) -> UserData:
    s, data = split(user.dataset), load(user.dataset)
    rng = np.random.default_rng(seed_of("user-rows", user.key))
    rows = rng.permutation(s.user_rows)
    n_pool = min(MAX_POOL, int(0.6 * len(rows)))
    pool, test = rows[:n_pool], rows[n_pool:]
    X = standardised(user.dataset, rows, user.columns)
    return UserData(X[:n_pool], data.y[pool], X[n_pool:], data.y[test])


def developer_descriptions(dataset: Dataset, columns: tuple[int, ...]) -> dict[str, str]:
    return {str(i): f"{dataset.columns[c].developer}, standardised" for i, c in enumerate(columns)}


@dataclass
class Scale:
    quick: bool
    labels: tuple[int, ...]
    seeds: tuple[int, ...]
    align_epochs: int
    learnwares: list[LearnwareDef]
    users: list[UserDef]
    budgets: tuple[int, ...]  # training epochs of the maps compared in process (0: untrained)


def scale(quick: bool) -> Scale:
    if quick:
        keys, per_lw, per_user = ("breast_cancer", "wine", "diabetes"), 2, 1
        return Scale(
            True,
            (10, 50),
            (0,),
            60,
            [LearnwareDef(k, i, ("linear", "mlp")[i % 2]) for k in keys for i in range(per_lw)],
            [UserDef(k, i) for k in keys for i in range(per_user)],
            (0,),
        )
    keys = ("breast_cancer", "wine", "diabetes", "iris")
    return Scale(
        False,
        (10, 50, 100),
        tuple(range(5)),
        300,
        [LearnwareDef(k, i, ("linear", "mlp")[i % 2]) for k in keys for i in range(4)],
        [UserDef(k, i) for k in keys for i in range(3)],
        (0, 2, 10, 50, 200),
    )


def is_classification(dataset: str) -> bool:
    return load(dataset).task == CLASSIFICATION
