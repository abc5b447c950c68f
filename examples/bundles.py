"""Synthetic bundles (:mod:`market.bundle`) for tests and benchmarks: any number of small,
valid table learnwares, made without training or fitting anything.

Learnware ``i`` is a linear regressor with random weights (the examples' model code, so the
package also runs) whose RKME is a random reduced set drawn around a centre of its own: K
points, d features, β from a flat Dirichlet. Distinct centres make each learnware the best
match for data drawn near its centre, so searches over an imported bundle have a known answer.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from market.bundle import MANIFEST, PACKAGES, package_path
from specification.files import dumps_spec
from specification.package import make_manifest, write_package
from specification.rkme import RKME, TABLE_SPEC_TYPE
from specification.semantic import generate_semantic_spec

from .learnwares import MODEL_CODE

SCENARIOS = ("Business", "Financial", "Health", "Education")


@dataclass
class SyntheticLearnware:
    name: str
    centre: np.ndarray
    spec: RKME
    semantic: dict
    package: bytes
    sha256: str

    def manifest_line(self) -> str:
        return json.dumps(
            {
                "semantic_spec": self.semantic,
                "stat_spec": dumps_spec(self.spec),
                "type": TABLE_SPEC_TYPE,
                "shape": list(self.spec.feature_shape),
                "gamma": float(self.spec.gamma),
                "points": int(self.spec.z_.shape[0]),
                "num_points": int(self.spec.num_points_),
                "sha256": self.sha256,
                "size": len(self.package),
                "package": package_path(self.sha256),
            },
            separators=(",", ":"),
        )


def synthetic_learnware(
    i: int, *, dim: int = 10, points: int = 50, gamma: float = 0.1, seed: int = 0
) -> SyntheticLearnware:
    rng = np.random.default_rng([seed, i])
    centre = rng.normal(scale=3.0, size=dim)
    z = centre + rng.normal(scale=0.5, size=(points, dim))
    beta = rng.dirichlet(np.ones(points))
    spec = RKME.from_arrays(z, beta, gamma, num_points=1000)
    weights = io.BytesIO()
    np.savez(weights, coef=rng.normal(size=(1, dim)), intercept=rng.normal(size=1))
    name = f"synthetic {seed}-{i}"
    package = io.BytesIO()
    write_package(
        package,
        {
            "learnware.yaml": make_manifest("LinearModel", {"kind": "regressor"}),
            "__init__.py": MODEL_CODE.encode(),
            "weights.npz": weights.getvalue(),
            "stat_spec.json": dumps_spec(spec).encode(),
            "requirements.txt": b"numpy\n",
        },
        top_folder=f"synthetic-{seed}-{i}",
    )
    semantic = generate_semantic_spec(
        name=name,
        description=f"A linear regressor with random weights, synthetic learnware {i}.",
        data_type="Table",
        task_type="Regression",
        library_type="Scikit-learn",
        scenarios=[SCENARIOS[i % len(SCENARIOS)]],
        license="MIT",
        input_description={
            "Dimension": dim,
            "Description": {str(k): f"feature {k}" for k in range(dim)},
        },
        output_description={"Dimension": 1, "Description": {"0": "prediction"}},
    )
    data = package.getvalue()
    return SyntheticLearnware(name, centre, spec, semantic, data, hashlib.sha256(data).hexdigest())


def write_bundle(
    out_dir: str | Path, n: int, *, seed: int = 0, **kwargs
) -> list[SyntheticLearnware]:
    """Write ``n`` synthetic learnwares as a bundle in ``out_dir``; returns them."""
    out = Path(out_dir)
    (out / PACKAGES).mkdir(parents=True, exist_ok=True)
    made = [synthetic_learnware(i, seed=seed, **kwargs) for i in range(n)]
    with (out / MANIFEST).open("w", encoding="utf-8") as manifest:
        for lw in made:
            (out / package_path(lw.sha256)).write_bytes(lw.package)
            manifest.write(lw.manifest_line() + "\n")
    return made
