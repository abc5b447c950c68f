"""The experiment's data: digits "writers", a seeded store-sales generator, and the
definitions of the market's learnwares and of the users.

Everything is deterministic: every random draw comes from a ``numpy`` generator seeded from
fixed integers, so a run rebuilds exactly the same learnwares and users.

Scaling (kernel γ = 0.1 throughout): digits pixels are divided by 16 (then styled, values
stay in [0, 1]); store features are standardised with the published schema constants of
:func:`sales_scaling`, computed once from the market's stores and shared by every learnware
and every user.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

GAMMA = 0.1
N_CLASSES = 10
CLASSIFICATION = "classification"
REGRESSION = "regression"

# -- digits and their writers ----------------------------------------------------------------

CLASS_SETS: dict[str, tuple[int, ...]] = {
    "0-4": (0, 1, 2, 3, 4),
    "5-9": (5, 6, 7, 8, 9),
    "3-7": (3, 4, 5, 6, 7),
    "even": (0, 2, 4, 6, 8),
    "odd": (1, 3, 5, 7, 9),
    "0-9": tuple(range(10)),
}


def _seed(*parts: object) -> int:
    """A stable 32-bit seed from a few names and numbers (crc32, not Python's hash)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur of (n, 8, 8) images, zero outside the frame."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    rows = (p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]) / 4
    return (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4


def _shift(img: np.ndarray, down: int, right: int) -> np.ndarray:
    """Move (n, 8, 8) images by whole pixels, filling with blank paper."""
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    src_r = slice(max(0, -down), h - max(0, down))
    dst_r = slice(max(0, down), h - max(0, -down))
    src_c = slice(max(0, -right), w - max(0, right))
    dst_c = slice(max(0, right), w - max(0, -right))
    out[:, dst_r, dst_c] = img[:, src_r, src_c]
    return out


def _dropout(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img * (rng.random(img.shape) >= 0.3)


#: A writer turns (n, 8, 8) images in [0, 1] into that writer's images (also in [0, 1]).
STYLES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "clean": lambda x, rng: x,
    "faint": lambda x, rng: 0.55 * x,
    "heavy": lambda x, rng: np.clip(1.6 * x, 0.0, 1.0),
    "blurred": lambda x, rng: _blur(x),
    "shifted": lambda x, rng: _shift(x, 1, 1),
    "dropout": _dropout,
    "inverted": lambda x, rng: 1.0 - x,
    # only users write like these two: no learnware was trained on them
    "faint-blurred": lambda x, rng: 0.75 * _blur(x),
    "shifted-left": lambda x, rng: _shift(x, 0, -1),
}

STYLE_WORDS = {
    "clean": "clean scans",
    "faint": "a faint pen (ink × 0.55)",
    "heavy": "a heavy pen (ink × 1.6, saturated)",
    "blurred": "blurred scans (3×3 blur)",
    "shifted": "images shifted one pixel down and right",
    "dropout": "30 % of the pixels dropped",
    "inverted": "inverted images (1 − ink)",
    "faint-blurred": "a faint pen on blurred scans (ink × 0.75, blur)",
    "shifted-left": "images shifted one pixel left",
}


def apply_style(style: str, X: np.ndarray, seed: int) -> np.ndarray:
    """Rows of 64 pixels in [0, 1] as written by ``style`` (seeded where it is random)."""
    rng = np.random.default_rng(seed)
    out = STYLES[style](X.reshape(-1, 8, 8), rng)
    return np.ascontiguousarray(out.reshape(len(X), 64), dtype=np.float64)


@cache
def digits_halves() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits (pixels / 16) split per class in two halves: the developers'
    half (the market's training data) and the users' half."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data / 16.0, d.target.astype(np.int64)
    rng = np.random.default_rng(20240611)
    market, users = [], []
    for c in range(N_CLASSES):
        rows = np.flatnonzero(y == c)
        rng.shuffle(rows)
        half = len(rows) // 2
        market.append(rows[:half])
        users.append(rows[half:])
    m, u = np.sort(np.concatenate(market)), np.sort(np.concatenate(users))
    return (X[m], y[m]), (X[u], y[u])


# -- store sales -------------------------------------------------------------------------------

SALES_FEATURES = (
    "price",
    "promotion",
    "temperature",
    "weekday_sin",
    "weekday_cos",
    "holiday",
    "footfall",
    "store_size",
    "competitor_km",
    "ad_spend",
)
SALES_WORDS = {
    "price": "average shelf price (currency units)",
    "promotion": "1 on promotion days, else 0",
    "temperature": "outside temperature (°C)",
    "weekday_sin": "sin(2π · weekday / 7)",
    "weekday_cos": "cos(2π · weekday / 7)",
    "holiday": "1 on public holidays, else 0",
    "footfall": "visitors that day",
    "store_size": "sales floor (1000 m²)",
    "competitor_km": "distance to the nearest competitor (km)",
    "ad_spend": "local advertising that day (1000 currency units)",
}


@dataclass(frozen=True)
class Store:
    """A store's profile: where its days' features lie."""

    name: str
    price: float
    temperature: float
    size: float
    footfall: float
    promo_rate: float
    competitor_km: float
    ad_spend: float

    def between(self, other: Store, name: str, t: float = 0.5) -> Store:
        """A new store whose profile lies between this one and ``other`` (log scale for
        the positive quantities)."""

        def mix(a: float, b: float, log: bool = True) -> float:
            if log:
                return float(np.exp((1 - t) * np.log(a) + t * np.log(b)))
            return (1 - t) * a + t * b

        return Store(
            name,
            mix(self.price, other.price),
            mix(self.temperature, other.temperature, log=False),
            mix(self.size, other.size),
            mix(self.footfall, other.footfall),
            mix(self.promo_rate, other.promo_rate, log=False),
            mix(self.competitor_km, other.competitor_km),
            mix(self.ad_spend, other.ad_spend),
        )


@cache
def market_stores(n: int = 10) -> tuple[Store, ...]:
    """The stores whose developers shared a model; profiles drawn once from fixed ranges."""
    rng = np.random.default_rng(7)
    return tuple(
        Store(
            f"store {i}",
            price=float(rng.uniform(6, 18)),
            temperature=float(rng.uniform(2, 28)),
            size=float(rng.uniform(0.5, 3.0)),
            footfall=float(rng.uniform(300, 1500)),
            promo_rate=float(rng.uniform(0.05, 0.4)),
            competitor_km=float(rng.uniform(0.3, 6.0)),
            ad_spend=float(rng.uniform(0.5, 5.0)),
        )
        for i in range(n)
    )


#: A store unlike any in the market: dear, cold, big, crowded, with a competitor next door.
FAR_STORE = Store("new store, unlike any", 26.0, -4.0, 4.0, 2600.0, 0.5, 0.12, 9.0)


def sample_store(store: Store, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` days of ``store``: raw features (columns :data:`SALES_FEATURES`) and units sold.

    Sales follow one nonlinear law everywhere (price elasticity that grows as competitors get
    closer, a promotion uplift, a preference for mild weather, weekends and holidays); stores
    differ in where their days lie, so a model of one store is good near it and
    extrapolates elsewhere.
    """
    rng = np.random.default_rng(seed)
    promo = (rng.random(n) < store.promo_rate).astype(np.float64)
    price = store.price * np.exp(rng.normal(0, 0.08, n)) * (1 - 0.15 * promo)
    weekday = rng.integers(0, 7, n)
    season = rng.uniform(0, 2 * np.pi, n)
    temperature = store.temperature + 7 * np.sin(season) + rng.normal(0, 2, n)
    holiday = (rng.random(n) < 0.06).astype(np.float64)
    weekend = (weekday >= 5).astype(np.float64)
    footfall = (
        store.footfall * np.exp(rng.normal(0, 0.15, n)) * (1 + 0.25 * weekend + 0.3 * holiday)
    )
    size = store.size + rng.normal(0, 0.05, n)
    competitor = store.competitor_km * np.exp(rng.normal(0, 0.1, n))
    ads = store.ad_spend * np.exp(rng.normal(0, 0.3, n))
    elasticity = 0.8 + 1.5 * np.exp(-competitor / 1.5)
    conversion = 0.1 * np.exp(-elasticity * (price - 10) / 10) * (1 + 0.5 * promo)
    weather = 25 * np.exp(-(((temperature - 20) / 10) ** 2))
    sales = (
        footfall * conversion * (1 + 0.2 * size)
        + weather
        + 15 * np.log1p(ads)
        + 20 * holiday
        + rng.normal(0, 8, n)
    )
    X = np.column_stack(
        [
            price,
            promo,
            temperature,
            np.sin(2 * np.pi * weekday / 7),
            np.cos(2 * np.pi * weekday / 7),
            holiday,
            footfall,
            size,
            competitor,
            ads,
        ]
    )
    return X, sales


@cache
def sales_scaling() -> tuple[np.ndarray, np.ndarray]:
    """The schema's published feature means and standard deviations (over the market's
    stores, 2,000 days each, fixed seed): every learnware and user standardises with them."""
    X = np.vstack([sample_store(s, 2000, _seed("scaling", s.name))[0] for s in market_stores()])
    return X.mean(axis=0), X.std(axis=0)


def standardise_sales(X: np.ndarray) -> np.ndarray:
    mean, std = sales_scaling()
    return np.ascontiguousarray((X - mean) / std, dtype=np.float64)


# -- who is in the market, and who comes to it -----------------------------------------------


@dataclass(frozen=True)
class LearnwareDef:
    """One learnware a developer trains and submits."""

    key: str  # unique short name, e.g. "digits 0-4 faint (linear)"
    task: str  # CLASSIFICATION or REGRESSION
    family: str  # "linear" (logistic regression / ridge) or "mlp"
    classes: str = ""  # a CLASS_SETS key (digits)
    style: str = ""  # a STYLES key (digits)
    store: int = -1  # index into market_stores() (sales)


@dataclass(frozen=True)
class UserDef:
    """One user: a task, and how it relates to the market (for the report and the tests)."""

    key: str
    task: str
    story: str  # what the user's data is, in words
    classes: str = ""
    style: str = ""
    stores: tuple[Store, ...] = ()
    #: the learnware keys that were trained on exactly this user's distribution, if any
    exact: tuple[str, ...] = ()
    #: learnware keys whose data together make up the user's (a mixture is expected)
    spans: tuple[str, ...] = ()
    n_test: int = 0
    n_pool: int = 0


def _lw_digits(classes: str, style: str, family: str) -> LearnwareDef:
    name = "logistic" if family == "linear" else "MLP"
    return LearnwareDef(
        f"digits {classes} {style} ({name})", CLASSIFICATION, family, classes, style
    )


def _lw_store(i: int, family: str) -> LearnwareDef:
    name = "ridge" if family == "linear" else "MLP"
    return LearnwareDef(f"sales store {i} ({name})", REGRESSION, family, store=i)


def market_definitions(quick: bool = False) -> list[LearnwareDef]:
    if quick:
        return [
            _lw_digits("0-4", "clean", "linear"),
            _lw_digits("5-9", "clean", "mlp"),
            _lw_digits("0-4", "faint", "linear"),
            _lw_digits("5-9", "faint", "linear"),
            _lw_digits("0-9", "blurred", "linear"),
            _lw_digits("0-9", "shifted", "mlp"),
            *(_lw_store(i, "linear") for i in range(4)),
        ]
    digits = [
        ("0-4", "clean", "linear"),
        ("5-9", "clean", "mlp"),
        ("even", "clean", "linear"),
        ("odd", "clean", "mlp"),
        ("0-9", "clean", "linear"),
        ("0-9", "clean", "mlp"),
        ("0-4", "faint", "linear"),
        ("0-4", "faint", "mlp"),
        ("5-9", "faint", "linear"),
        ("0-9", "faint", "mlp"),
        ("0-4", "heavy", "mlp"),
        ("5-9", "heavy", "linear"),
        ("0-4", "blurred", "linear"),
        ("5-9", "blurred", "mlp"),
        ("odd", "blurred", "linear"),
        ("0-9", "blurred", "linear"),
        ("0-4", "shifted", "mlp"),
        ("5-9", "shifted", "linear"),
        ("0-9", "shifted", "mlp"),
        ("0-4", "dropout", "linear"),
        ("5-9", "dropout", "mlp"),
        ("even", "dropout", "linear"),
        ("0-9", "inverted", "linear"),
        ("0-4", "inverted", "mlp"),
    ]
    sales = [(i, "linear") for i in range(10)] + [(2, "mlp"), (7, "mlp")]
    return [_lw_digits(*d) for d in digits] + [_lw_store(*s) for s in sales]


def user_definitions(quick: bool = False) -> list[UserDef]:
    stores = market_stores()
    k = _lw_digits
    if quick:
        return [
            UserDef(
                "U1 digits 0-4 faint",
                CLASSIFICATION,
                "digits 0-4 with a faint pen (one learnware's own writer)",
                "0-4",
                "faint",
                exact=(k("0-4", "faint", "linear").key,),
                n_test=200,
                n_pool=100,
            ),
            UserDef(
                "U2 digits 0-9 faint",
                CLASSIFICATION,
                "digits 0-9 with a faint pen (two learnwares: 0-4 and 5-9)",
                "0-9",
                "faint",
                spans=(k("0-4", "faint", "linear").key, k("5-9", "faint", "linear").key),
                n_test=300,
                n_pool=100,
            ),
            UserDef(
                "U3 sales store 2",
                REGRESSION,
                "more days of store 2",
                stores=(stores[2],),
                exact=(_lw_store(2, "linear").key,),
                n_test=300,
                n_pool=100,
            ),
            UserDef(
                "U4 sales stores 0+1",
                REGRESSION,
                "a chain owning stores 0 and 1",
                stores=(stores[0], stores[1]),
                spans=(_lw_store(0, "linear").key, _lw_store(1, "linear").key),
                n_test=300,
                n_pool=100,
            ),
        ]
    return [
        UserDef(
            "C1 0-4 faint",
            CLASSIFICATION,
            "digits 0-4, faint pen: the writer of two learnwares (logistic, MLP)",
            "0-4",
            "faint",
            exact=(k("0-4", "faint", "linear").key, k("0-4", "faint", "mlp").key),
        ),
        UserDef(
            "C2 5-9 blurred",
            CLASSIFICATION,
            "digits 5-9, blurred scans: one learnware's writer",
            "5-9",
            "blurred",
            exact=(k("5-9", "blurred", "mlp").key,),
        ),
        UserDef(
            "C3 0-9 shifted",
            CLASSIFICATION,
            "all digits, shifted one pixel: one learnware's writer",
            "0-9",
            "shifted",
            exact=(k("0-9", "shifted", "mlp").key,),
        ),
        UserDef(
            "C4 0-9 dropout",
            CLASSIFICATION,
            "all digits, 30 % pixel dropout: spans the 0-4 and 5-9 dropout learnwares",
            "0-9",
            "dropout",
            spans=(k("0-4", "dropout", "linear").key, k("5-9", "dropout", "mlp").key),
        ),
        UserDef(
            "C5 3-7 clean",
            CLASSIFICATION,
            "digits 3-7, clean: straddles the 0-4 and 5-9 learnwares (0-9 ones exist too)",
            "3-7",
            "clean",
        ),
        UserDef(
            "C6 even heavy",
            CLASSIFICATION,
            "even digits, heavy pen: spans the 0-4 and 5-9 heavy learnwares",
            "even",
            "heavy",
            spans=(k("0-4", "heavy", "mlp").key, k("5-9", "heavy", "linear").key),
        ),
        UserDef(
            "C7 0-9 faint-blurred",
            CLASSIFICATION,
            "all digits, a faint pen on blurred scans: no learnware's writer",
            "0-9",
            "faint-blurred",
        ),
        UserDef(
            "C8 5-9 shifted-left",
            CLASSIFICATION,
            "digits 5-9 shifted one pixel left: no learnware's writer",
            "5-9",
            "shifted-left",
        ),
        UserDef(
            "C9 0-9 inverted",
            CLASSIFICATION,
            "all digits, inverted: one learnware's writer",
            "0-9",
            "inverted",
            exact=(k("0-9", "inverted", "linear").key,),
        ),
        UserDef(
            "R1 store 2",
            REGRESSION,
            "more days of store 2 (a ridge and an MLP learnware)",
            stores=(stores[2],),
            exact=(_lw_store(2, "linear").key, _lw_store(2, "mlp").key),
        ),
        UserDef(
            "R2 store 5",
            REGRESSION,
            "more days of store 5 (one ridge learnware)",
            stores=(stores[5],),
            exact=(_lw_store(5, "linear").key,),
        ),
        UserDef(
            "R3 stores 4+8",
            REGRESSION,
            "a chain owning stores 4 and 8 (half the days each)",
            stores=(stores[4], stores[8]),
            spans=(_lw_store(4, "linear").key, _lw_store(8, "linear").key),
        ),
        UserDef(
            "R4 new store 0~1",
            REGRESSION,
            "a new store whose profile lies between stores 0 and 1",
            stores=(stores[0].between(stores[1], "new store between 0 and 1"),),
        ),
        UserDef(
            "R5 new store far",
            REGRESSION,
            "a new store unlike any in the market (dearer, colder, bigger)",
            stores=(FAR_STORE,),
        ),
    ]


# -- data --------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    X: np.ndarray
    y: np.ndarray


def learnware_data(lw: LearnwareDef) -> TrainingData:
    """The developer's own training data (never leaves the developer)."""
    seed = _seed("learnware", lw.key)
    if lw.task == CLASSIFICATION:
        (X, y), _ = digits_halves()
        rows = np.flatnonzero(np.isin(y, CLASS_SETS[lw.classes]))
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=int(0.85 * len(rows)), replace=False))
        return TrainingData(apply_style(lw.style, X[rows], seed), y[rows])
    store = market_stores()[lw.store]
    # the ridge and the MLP of one store share the store's data (seed from the store)
    X, y = sample_store(store, 1500, _seed("developer", store.name))
    return TrainingData(standardise_sales(X), y)


@dataclass
class UserData:
    """What a user holds: a test set to predict and a labelled pool to draw labels from."""

    X_test: np.ndarray
    y_test: np.ndarray
    X_pool: np.ndarray
    y_pool: np.ndarray

    @property
    def X_all(self) -> np.ndarray:
        return np.vstack([self.X_test, self.X_pool])


def user_data(user: UserDef) -> UserData:
    seed = _seed("user", user.key)
    rng = np.random.default_rng(seed)
    if user.task == CLASSIFICATION:
        _, (X, y) = digits_halves()
        rows = np.flatnonzero(np.isin(y, CLASS_SETS[user.classes]))
        rows = rng.permutation(rows)
        X, y = apply_style(user.style, X[rows], seed), y[rows]
        n = len(rows)
        # all ten classes (~900 rows): 500 to label, the rest to test; five classes: halves
        pool_size = 500 if n - 500 >= 300 else n // 2
        n_test = user.n_test or n - pool_size
        n_pool = min(user.n_pool or pool_size, n - n_test)
    else:
        per_store = 1100 // len(user.stores)
        parts = [sample_store(s, per_store, _seed(seed, i)) for i, s in enumerate(user.stores)]
        X = standardise_sales(np.vstack([p[0] for p in parts]))
        y = np.concatenate([p[1] for p in parts])
        order = rng.permutation(len(X))
        X, y = X[order], y[order]
        n_test = user.n_test or 500
        n_pool = user.n_pool or len(X) - n_test
    test, pool = slice(0, n_test), slice(n_test, n_test + n_pool)
    return UserData(X[test], y[test], X[pool], y[pool])


@dataclass(frozen=True)
class Scale:
    """The full or the quick experiment."""

    quick: bool
    labels: tuple[int, ...]
    seeds: tuple[int, ...]
    herding_num: int  # JobSelector's pseudo-samples (its default is 1000)
    learnwares: list[LearnwareDef] = field(default_factory=list)
    users: list[UserDef] = field(default_factory=list)


def scale(quick: bool) -> Scale:
    if quick:
        return Scale(True, (10, 50), (0,), 300, market_definitions(True), user_definitions(True))
    return Scale(
        False,
        (10, 20, 50, 100, 200, 500),
        tuple(range(10)),
        1000,
        market_definitions(False),
        user_definitions(False),
    )
