"""Build example learnware packages from scikit-learn's bundled datasets.

Each learnware is a linear model trained on one slice of a dataset; its weights are stored as
``.npz`` (no pickle) and its ``__init__.py`` follows the reference's ``BaseModel`` interface, so
the same zip works in the ``learnware`` package and in Wharf: its files are at the zip's root
and it holds its semantic spec (``semantic_specification.json``, named in ``learnware.yaml``),
as ``LearnwareClient.load_learnware`` reads a package. Inputs are the dataset's features
scaled to roughly unit range (digits: pixels / 16; tabular sets: standardised), which suits the
default kernel γ = 0.1.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from wharf.specification import RKME, dumps_spec
from wharf.specification.package import make_manifest, write_package
from wharf.specification.reference_layout import write_reference_layout
from wharf.specification.semantic import generate_semantic_spec

MODEL_CODE = '''\
import os

import numpy as np
from learnware.model import BaseModel


class LinearModel(BaseModel):
    """A linear classifier (softmax scores) or regressor with weights in weights.npz."""

    def __init__(self, kind="classifier"):
        here = os.path.dirname(os.path.abspath(__file__))
        weights = np.load(os.path.join(here, "weights.npz"))
        self.coef = weights["coef"]
        self.intercept = weights["intercept"]
        self.kind = kind
        outputs = self.coef.shape[0] if kind == "classifier" else 1
        super().__init__(input_shape=(self.coef.shape[1],), output_shape=(outputs,))

    def fit(self, X, y):
        pass

    def predict(self, X):
        scores = np.asarray(X, dtype=np.float64) @ self.coef.T + self.intercept
        if self.kind == "regressor":
            return scores.reshape(-1, 1)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)
'''


@dataclass
class Example:
    name: str
    package: Path
    semantic: dict
    X_test: np.ndarray
    y_test: np.ndarray


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data / 16.0, d.target, 10


def _diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    X = (d.data - d.data.mean(0)) / d.data.std(0)
    return X, d.target, 1


def _slices() -> list[tuple[str, str, Callable, Callable[[np.ndarray, np.ndarray], np.ndarray]]]:
    return [
        ("digits 0-4", "Classification", _digits, lambda X, y: y < 5),
        ("digits 5-9", "Classification", _digits, lambda X, y: y >= 5),
        ("digits even", "Classification", _digits, lambda X, y: y % 2 == 0),
        ("diabetes female", "Regression", _diabetes, lambda X, y: X[:, 1] > 0),
        ("diabetes male", "Regression", _diabetes, lambda X, y: X[:, 1] <= 0),
    ]


def build_examples(out_dir: str | Path, *, seed: int = 0) -> list[Example]:
    """Write one zip per example learnware into ``out_dir``; returns them with held-out data."""
    from sklearn.linear_model import LogisticRegression, Ridge

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = []
    for name, task, load, select in _slices():
        X, y, n_out = load()
        rows = np.flatnonzero(select(X, y))
        rng.shuffle(rows)
        cut = int(0.7 * len(rows))
        train, test = rows[:cut], rows[cut:]
        if task == "Classification":
            model = LogisticRegression(max_iter=2000).fit(X[train], y[train])
            coef = np.zeros((n_out, X.shape[1]))
            intercept = np.full(n_out, -1e3)  # classes never seen get no probability
            coef[model.classes_] = model.coef_
            intercept[model.classes_] = model.intercept_
            kind = "classifier"
        else:
            model = Ridge(alpha=1.0).fit(X[train], y[train])
            coef, intercept, kind = (
                model.coef_[None, :],
                np.atleast_1d(model.intercept_),
                "regressor",
            )
        weights = io.BytesIO()
        np.savez(weights, coef=coef, intercept=intercept)
        spec = RKME(n_points=50, seed=seed, device="cpu").fit(X[train])
        slug = name.replace(" ", "-")
        package = out_dir / f"{slug}.zip"
        files = io.BytesIO()
        write_package(
            files,
            {
                "learnware.yaml": make_manifest("LinearModel", {"kind": kind}),
                "__init__.py": MODEL_CODE.encode(),
                "weights.npz": weights.getvalue(),
                "stat_spec.json": dumps_spec(spec).encode(),
                "requirements.txt": b"numpy\n",
            },
        )
        semantic = generate_semantic_spec(
            name=f"Linear model: {name}",
            description=f"{kind.capitalize()} trained on the '{name}' slice of scikit-learn's "
            f"{'digits (pixels / 16)' if n_out == 10 else 'diabetes (standardised features)'}.",
            data_type="Table",
            task_type=task,
            library_type="Scikit-learn",
            scenarios=["Education"] if n_out == 10 else ["Health"],
            license="BSD-3-Clause",
            input_description={
                "Dimension": X.shape[1],
                "Description": {str(i): f"feature {i}" for i in range(X.shape[1])},
            },
            output_description={
                "Dimension": n_out,
                "Description": {str(i): f"output {i}" for i in range(n_out)},
            },
            model_type="Others",
        )
        # The layout the reference loads: its semantic spec inside, named in learnware.yaml.
        write_reference_layout(files, package, semantic_spec=semantic)
        examples.append(Example(name, package, semantic, X[test], y[test]))
    return examples
