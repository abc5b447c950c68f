"""Synthetic bundles (:mod:`market.bundle`) for tests and benchmarks: any number of small,
valid learnwares, made without training or fitting anything.

Learnware ``i`` is a linear regressor with random weights (the examples' model code, so the
package also runs) whose RKME is a random reduced set drawn around a centre of its own: K
points, β from a flat Dirichlet. Distinct centres make each learnware the best match for data
drawn near its centre, so searches over an imported bundle have a known answer. A table
learnware's points have ``dim`` features; ``data_type="Image"`` gives it an image spec
(points of 1 × 32 × 32) and ``"Text"`` a text spec (384-d sentence-embedding points, English).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from wharf.market.bundle import MANIFEST, PACKAGES, package_path
from wharf.specification.files import SPEC_TYPE_FOR_DATA, dumps_spec
from wharf.specification.image import RKMEImage
from wharf.specification.package import make_manifest, write_package
from wharf.specification.rkme import RKME
from wharf.specification.semantic import generate_semantic_spec
from wharf.specification.text import RKMEText

from .learnwares import MODEL_CODE

SCENARIOS = ("Business", "Financial", "Health", "Education")


@dataclass
class SyntheticLearnware:
    name: str
    centre: np.ndarray
    spec: RKME | RKMEImage
    semantic: dict
    package: bytes
    sha256: str

    def manifest_line(self) -> str:
        return json.dumps(
            {
                "semantic_spec": self.semantic,
                "stat_spec": dumps_spec(self.spec),
                "type": self.spec.spec_type,
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
    i: int,
    *,
    dim: int = 10,
    points: int = 50,
    gamma: float = 0.1,
    seed: int = 0,
    data_type: str = "Table",
    broken: bool = False,
) -> SyntheticLearnware:
    """Learnware ``i`` of ``seed``; ``broken``: its weights are two features too wide, so its
    model fails the check (its input shape is not the semantic spec's Input.Dimension)."""
    rng = np.random.default_rng([seed, i])
    shape = {"Table": (dim,), "Image": (1, 32, 32), "Text": (384,)}[data_type]
    centre = rng.normal(scale=3.0 if data_type == "Table" else 1.0, size=shape)
    z = centre + rng.normal(scale=0.5, size=(points, *shape))
    beta = rng.dirichlet(np.ones(points))
    if data_type == "Image":
        spec = RKMEImage.from_arrays(z, beta, num_points=1000)
    elif data_type == "Text":
        spec = RKMEText.from_arrays(z, beta, gamma, num_points=1000, language=["en"])
    else:
        spec = RKME.from_arrays(z, beta, gamma, num_points=1000)
    weights = io.BytesIO()
    width = dim + 2 if broken else dim
    np.savez(weights, coef=rng.normal(size=(1, width)), intercept=rng.normal(size=1))
    name = f"synthetic {seed}-{i}"
    package = io.BytesIO()
    write_package(
        package,
        {
            "learnware.yaml": make_manifest(
                "LinearModel", {"kind": "regressor"}, spec_class=SPEC_TYPE_FOR_DATA[data_type]
            ),
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
        data_type=data_type,
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


def write_packages(
    out_dir: str | Path, n: int, *, seed: int = 0, broken: Iterable[int] = (), **kwargs
) -> list[SyntheticLearnware]:
    """Write ``n`` synthetic learnwares as packages to submit (``wharf bulk-index DIR``):
    ``<name>.zip`` with its semantic spec beside it as ``<name>.json``; those numbered in
    ``broken`` fail their check. Returns them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bad = set(broken)
    made = [synthetic_learnware(i, seed=seed, broken=i in bad, **kwargs) for i in range(n)]
    for lw in made:
        stem = lw.name.replace(" ", "-")
        (out / f"{stem}.zip").write_bytes(lw.package)
        (out / f"{stem}.json").write_text(json.dumps(lw.semantic), encoding="utf-8")
    return made
