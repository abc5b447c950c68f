"""Train each developer's model on its columns and write it as a learnware zip whose semantic
spec describes every input column (what makes it take part in the heterogeneous market).

The model format is the reuse experiment's (dense layers in ``weights.npz``, run in numpy by
the package's ``__init__.py``, no pickles).
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

from bench.reuse_experiment.packages import MODEL_CODE, _layers_of, model_arrays

from .datasets import CLASSIFICATION, load
from .design import LearnwareDef, developer_descriptions, seed_of

#: Kernel width and reduced points of every RKME here (learnwares' and users').
GAMMA = 0.1
RKME_POINTS = 50
TASK_TAG = {CLASSIFICATION: "Classification", "regression": "Regression"}


@dataclass
class BuiltLearnware:
    definition: LearnwareDef
    package: Path
    semantic: dict
    spec: RKME
    descriptions: list[str]


def train(lw: LearnwareDef, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    seed = seed_of("model", lw.key) % (2**31)
    y_shift, y_scale = 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if load(lw.dataset).task == CLASSIFICATION:
            if lw.family == "linear":
                model = LogisticRegression(C=1.0, max_iter=3000).fit(X, y)
            else:
                model = MLPClassifier(
                    hidden_layer_sizes=(32,), alpha=1e-2, max_iter=1000, random_state=seed
                ).fit(X, y)
            classes = model.classes_.astype(np.int64)
            weights, biases = _layers_of(model)
            if len(classes) == 2:  # one logit: write it as two, so the softmax is the sigmoid
                weights[-1] = np.hstack([np.zeros_like(weights[-1]), weights[-1]])
                biases[-1] = np.concatenate([np.zeros(1), np.atleast_1d(biases[-1])])
        else:
            y_shift, y_scale = float(y.mean()), float(y.std())
            target = (y - y_shift) / y_scale
            if lw.family == "linear":
                model = Ridge(alpha=1.0).fit(X, target)
            else:
                model = MLPRegressor(
                    hidden_layer_sizes=(32,),
                    alpha=1e-2,
                    max_iter=2000,
                    random_state=seed,
                    early_stopping=True,
                ).fit(X, target)
            classes = np.zeros(0, dtype=np.int64)
            weights, biases = _layers_of(model)
    return model_arrays(weights, biases, classes, y_shift, y_scale)


def semantic_spec(lw: LearnwareDef, n_train: int) -> dict:
    data = load(lw.dataset)
    kind = "logistic regression" if lw.family == "linear" else "one-hidden-layer MLP"
    if data.task != CLASSIFICATION:
        kind = "ridge regression" if lw.family == "linear" else "one-hidden-layer MLP"
    outputs = (
        {str(c): f"probability of class {c}" for c in range(data.n_classes)}
        if data.task == CLASSIFICATION
        else {"0": "predicted target"}
    )
    return generate_semantic_spec(
        name=f"{lw.dataset} {lw.family} #{lw.index}, {len(lw.columns)} columns",
        description=(
            f"A {kind} trained on {n_train} rows of scikit-learn's {lw.dataset} data set, "
            f"{len(lw.columns)} of its columns, each standardised with the data set's "
            "published mean and standard deviation."
        ),
        data_type="Table",
        task_type=TASK_TAG[data.task],
        library_type="Scikit-learn",
        scenarios=["Health"] if lw.dataset != "wine" else ["Business"],
        license="BSD-3-Clause",
        input_description={
            "Dimension": len(lw.columns),
            "Description": developer_descriptions(data, lw.columns),
        },
        output_description={"Dimension": len(outputs), "Description": outputs},
    )


def build_learnware(lw: LearnwareDef, out_dir: Path) -> BuiltLearnware:
    X, y = lw.data()
    arrays = train(lw, X, y)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    spec = RKME(n_points=RKME_POINTS, gamma=GAMMA, seed=0, device="cpu").fit(X)
    data = load(lw.dataset)
    n_outputs = data.n_classes if data.task == CLASSIFICATION else 1
    package = out_dir / f"{lw.key}.zip"
    write_package(
        package,
        {
            "learnware.yaml": make_manifest(
                "DenseModel", {"task": data.task, "n_outputs": n_outputs}
            ),
            "__init__.py": MODEL_CODE.encode(),
            "weights.npz": buffer.getvalue(),
            "stat_spec.json": dumps_spec(spec).encode(),
            "requirements.txt": b"numpy\n",
        },
        top_folder=lw.key,
    )
    semantic = semantic_spec(lw, len(X))
    descriptions = [semantic["Input"]["Description"][str(i)] for i in range(len(lw.columns))]
    return BuiltLearnware(lw, package, semantic, spec, descriptions)


def build_all(definitions: list[LearnwareDef], out_dir: Path) -> list[BuiltLearnware]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [build_learnware(lw, out_dir) for lw in definitions]
