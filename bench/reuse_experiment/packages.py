"""Train each developer's model and write it as a learnware zip Wharf accepts.

No pickles: a model is a stack of dense layers whose weights go into ``weights.npz``
(``W0, b0, W1, b1, …``, ReLU between layers). Logistic regression and ridge are one layer, the
MLPs two. The package's ``__init__.py`` runs the layers in numpy. A classifier returns
probabilities for all ten digits, zero for the digits it never saw; a regressor returns one
column, un-standardised with the ``y_shift`` and ``y_scale`` it stores.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from wharf.specification import RKME, dumps_spec
from wharf.specification.package import make_manifest, write_package
from wharf.specification.semantic import generate_semantic_spec

from .tasks import (
    CLASS_SETS,
    CLASSIFICATION,
    GAMMA,
    N_CLASSES,
    SALES_FEATURES,
    SALES_WORDS,
    STYLE_WORDS,
    LearnwareDef,
    _seed,
    learnware_data,
    market_stores,
)

#: Points of every RKME in the experiment (learnwares' and users').
RKME_POINTS = 100

MODEL_CODE = '''\
"""A dense network (or a linear model) whose weights are in weights.npz; numpy only."""

import os

import numpy as np
from learnware.model import BaseModel


class DenseModel(BaseModel):
    def __init__(self, task="classification", n_outputs=10):
        here = os.path.dirname(os.path.abspath(__file__))
        with np.load(os.path.join(here, "weights.npz")) as w:
            n_layers = int(w["n_layers"])
            self.layers = [(w[f"W{i}"], w[f"b{i}"]) for i in range(n_layers)]
            self.classes = w["classes"].astype(np.int64)
            self.y_shift = float(w["y_shift"])
            self.y_scale = float(w["y_scale"])
        self.task = task
        self.n_outputs = int(n_outputs)
        width = self.layers[0][0].shape[0]
        super().__init__(input_shape=(width,), output_shape=(self.n_outputs,))

    def fit(self, X, y):
        pass

    def predict(self, X):
        h = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        for i, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        if self.task == "regression":
            return (h * self.y_scale + self.y_shift).reshape(-1, 1)
        h = h - h.max(axis=1, keepdims=True)
        p = np.exp(h)
        p /= p.sum(axis=1, keepdims=True)
        out = np.zeros((len(h), self.n_outputs))
        out[:, self.classes] = p
        return out
'''


@dataclass
class BuiltLearnware:
    definition: LearnwareDef
    package: Path
    semantic: dict
    n_train: int


def model_arrays(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    classes: np.ndarray,
    y_shift: float,
    y_scale: float,
) -> dict[str, np.ndarray]:
    """A trained network as the arrays ``MODEL_CODE`` reads from the package."""
    arrays: dict[str, np.ndarray] = {
        "n_layers": np.array(len(weights)),
        "classes": classes,
        "y_shift": np.array(y_shift),
        "y_scale": np.array(y_scale),
    }
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"W{i}"] = np.asarray(W, dtype=np.float64)
        arrays[f"b{i}"] = np.asarray(b, dtype=np.float64)
    return arrays


def _layers_of(model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from sklearn.linear_model import LogisticRegression, Ridge

    if isinstance(model, LogisticRegression):
        return [model.coef_.T], [model.intercept_]
    if isinstance(model, Ridge):
        return [model.coef_.reshape(-1, 1)], [np.atleast_1d(model.intercept_)]
    return list(model.coefs_), list(model.intercepts_)  # MLPClassifier / MLPRegressor


def train(lw: LearnwareDef, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Fit the developer's model and return the arrays of ``weights.npz``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    seed = _seed("model", lw.key) % (2**31)
    y_shift, y_scale = 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if lw.task == CLASSIFICATION:
            if lw.family == "linear":
                model = LogisticRegression(C=1.0, max_iter=3000).fit(X, y)
            else:
                model = MLPClassifier(
                    hidden_layer_sizes=(64,), alpha=1e-3, max_iter=500, random_state=seed
                ).fit(X, y)
            classes = model.classes_.astype(np.int64)
        else:
            y_shift, y_scale = float(y.mean()), float(y.std())
            target = (y - y_shift) / y_scale
            if lw.family == "linear":
                model = Ridge(alpha=1.0).fit(X, target)
            else:
                model = MLPRegressor(
                    hidden_layer_sizes=(64,),
                    alpha=1e-3,
                    max_iter=800,
                    random_state=seed,
                    early_stopping=True,
                ).fit(X, target)
            classes = np.zeros(0, dtype=np.int64)
    weights, biases = _layers_of(model)
    return model_arrays(weights, biases, classes, y_shift, y_scale)


def semantic_spec(lw: LearnwareDef, n_train: int) -> dict:
    mlp = "one-hidden-layer MLP (64 ReLU units)"
    if lw.task == CLASSIFICATION:
        digits = ", ".join(map(str, CLASS_SETS[lw.classes]))
        kind = "multinomial logistic regression" if lw.family == "linear" else mlp
        short = "logistic" if lw.family == "linear" else "MLP"
        return generate_semantic_spec(
            name=f"Handwritten digits {lw.classes}, {lw.style} writer ({short})",
            description=(
                f"A {kind} recognising the digits {digits} written with "
                f"{STYLE_WORDS[lw.style]}; trained on {n_train} 8×8 images from scikit-learn's "
                "digits, pixels scaled to [0, 1] (value / 16). Returns the probability of each "
                "digit 0-9; digits it never saw get 0."
            ),
            data_type="Table",
            task_type="Classification",
            library_type="Scikit-learn",
            scenarios=["Education"],
            license="BSD-3-Clause",
            input_description={
                "Dimension": 64,
                "Description": {
                    str(i): f"ink at row {i // 8}, column {i % 8} (0 = blank, 1 = full)"
                    for i in range(64)
                },
            },
            output_description={
                "Dimension": N_CLASSES,
                "Description": {str(c): f"probability that the digit is {c}" for c in range(10)},
            },
        )
    store = market_stores()[lw.store]
    kind = "ridge regression" if lw.family == "linear" else mlp
    short = "ridge" if lw.family == "linear" else "MLP"
    return generate_semantic_spec(
        name=f"Daily unit sales, {store.name} ({short})",
        description=(
            f"A {kind} of one store's daily unit sales from {n_train} days of its history. "
            "Inputs are the ten sales-schema features standardised with the schema's "
            "published means and standard deviations."
        ),
        data_type="Table",
        task_type="Regression",
        library_type="Scikit-learn",
        scenarios=["Business"],
        license="Apache-2.0",
        input_description={
            "Dimension": len(SALES_FEATURES),
            "Description": {
                str(i): f"{f}: {SALES_WORDS[f]}, standardised" for i, f in enumerate(SALES_FEATURES)
            },
        },
        output_description={"Dimension": 1, "Description": {"0": "units sold that day"}},
    )


def build_learnware(lw: LearnwareDef, out_dir: Path) -> BuiltLearnware:
    """Train, fit the RKME and write ``out_dir/<slug>.zip``."""
    data = learnware_data(lw)
    arrays = train(lw, data.X, data.y)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    spec = RKME(n_points=RKME_POINTS, gamma=GAMMA, seed=0, device="cpu").fit(data.X)
    slug = "".join(ch if ch.isalnum() else "-" for ch in lw.key).strip("-")
    n_outputs = N_CLASSES if lw.task == CLASSIFICATION else 1
    package = out_dir / f"{slug}.zip"
    write_package(
        package,
        {
            "learnware.yaml": make_manifest(
                "DenseModel", {"task": lw.task, "n_outputs": n_outputs}
            ),
            "__init__.py": MODEL_CODE.encode(),
            "weights.npz": buffer.getvalue(),
            "stat_spec.json": dumps_spec(spec).encode(),
            "requirements.txt": b"numpy\n",
        },
        top_folder=slug,
    )
    return BuiltLearnware(lw, package, semantic_spec(lw, len(data.X)), len(data.X))


def build_all(definitions: list[LearnwareDef], out_dir: Path) -> list[BuiltLearnware]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [build_learnware(lw, out_dir) for lw in definitions]
