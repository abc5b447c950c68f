"""``HeteroMapTableSpecification``: an RKME's reduced set seen through the market's map.

The file format is the reference's, compact JSON with its keys in this order::

    {"z":[[...],...],"beta":[...],"embedding":null,"weight":null,"gamma":0.1,
     "type":"HeteroMapTableSpecification"}

``z`` holds the K mapped points (K × 128 for the default map), ``beta`` the RKME's weights,
unchanged. ``embedding`` and ``weight`` are always ``null`` in files the reference writes; any
other JSON value there is kept as read, so a file loads and saves to the same bytes. Floats are
written with Python's shortest round-trip repr.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecificationError
from ..files import parse_spec_json, read_spec_file
from ..limits import SpecLimits
from ..rkme import RKME

HETERO_SPEC_TYPE = "HeteroMapTableSpecification"
#: The kernel parameter of every hetero spec (the reference's, fixed: the shared space is the
#: map's, not the data's, so no per-learnware γ makes sense there).
HETERO_GAMMA = 0.1
#: The largest spec file read, before parsing (K × 128 floats of ~20 characters each).
MAX_FILE_BYTES = 64 * 1024 * 1024
_NO_LIMITS = SpecLimits()


class HeteroMapTableSpecification(RKME):
    """An RKME in the map's shared space: mapped reduced points ``z_`` with the weights
    ``beta_`` of the RKME they came from, under the Gaussian kernel with ``gamma``.

    It is an :class:`~wharf.specification.rkme.RKME` for every computation (MMD, inner
    products, scoring), with its own spec type so it never meets a table spec of the data's
    own space. It is not fitted to data: a map makes it (``model.HeteroMap.map_spec``), or a
    file holds it (:func:`loads_hetero_spec`).

    Attributes
    ----------
    z_ : ndarray of shape (K, dim)
        The mapped points.
    beta_ : ndarray of shape (K,)
        Their weights.
    embedding, weight : JSON values
        The reference's two unused fields, kept as read (``None`` when made here).
    """

    spec_type = HETERO_SPEC_TYPE

    def fit(self, X: Any, y: Any = None) -> HeteroMapTableSpecification:
        raise SpecificationError(
            "a HeteroMapTableSpecification is not fitted to data: map an RKME with the "
            "market's map (HeteroMap.map_spec), or load a spec file"
        )

    @classmethod
    def from_arrays(  # type: ignore[override]
        cls,
        z: Any,
        beta: Any,
        gamma: float = HETERO_GAMMA,
        num_points: int = 0,
        *,
        embedding: Any = None,
        weight: Any = None,
    ) -> HeteroMapTableSpecification:
        spec = super().from_arrays(z, beta, gamma, num_points)
        spec.embedding, spec.weight = embedding, weight
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The reference's dict, keys in its order."""
        return {
            "z": self.z_.tolist(),
            "beta": self.beta_.tolist(),
            "embedding": getattr(self, "embedding", None),
            "weight": getattr(self, "weight", None),
            "gamma": self.gamma,
            "type": HETERO_SPEC_TYPE,
        }

    def __repr__(self) -> str:
        if hasattr(self, "z_"):
            return f"HeteroMapTableSpecification(K={self.z_.shape[0]}, dim={self.z_.shape[1]})"
        return "HeteroMapTableSpecification(empty)"


def dumps_hetero_spec(spec: HeteroMapTableSpecification) -> str:
    return json.dumps(spec.to_dict(), separators=(",", ":"), allow_nan=False)


def save_hetero_spec(spec: HeteroMapTableSpecification, path: str | os.PathLike) -> None:
    """Write ``spec`` to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_hetero_spec(spec), encoding="utf-8")
    os.replace(tmp, path)


def load_hetero_spec(path: str | os.PathLike) -> HeteroMapTableSpecification:
    return loads_hetero_spec(read_spec_file(path, MAX_FILE_BYTES))


def loads_hetero_spec(
    text: str | bytes, limits: SpecLimits = _NO_LIMITS
) -> HeteroMapTableSpecification:
    """Parse a hetero spec file; anything over ``limits`` is refused before numpy reads it."""
    return hetero_spec_from_dict(parse_spec_json(text, MAX_FILE_BYTES), limits)


def hetero_spec_from_dict(
    data: Any, limits: SpecLimits = _NO_LIMITS
) -> HeteroMapTableSpecification:
    if not isinstance(data, dict):
        raise SpecificationError(f"spec must be a JSON object, got {type(data).__name__}")
    if data.get("type") != HETERO_SPEC_TYPE:
        raise SpecificationError(f"type: expected {HETERO_SPEC_TYPE!r}, got {data.get('type')!r}")
    missing = [k for k in ("z", "beta") if k not in data]
    if missing:
        raise SpecificationError(f"spec is missing required key(s): {', '.join(missing)}")
    gamma = data.get("gamma", HETERO_GAMMA)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not math.isfinite(gamma):
        raise SpecificationError(f"gamma must be a finite number, got {gamma!r}")
    if gamma <= 0:
        raise SpecificationError(f"gamma must be > 0, got {gamma!r}")
    z = _array(data["z"], "z", limits)
    if z.ndim != 2:
        raise SpecificationError(f"z must be K rows of mapped points, got shape {z.shape}")
    beta = _array(data["beta"], "beta", limits)
    if beta.ndim != 1 or beta.shape[0] != z.shape[0]:
        raise SpecificationError(
            f"beta must be a flat list of K = {z.shape[0]} weights, got shape {beta.shape}"
        )
    limits.check_arrays(z, beta)
    return HeteroMapTableSpecification.from_arrays(
        z, beta, gamma, embedding=data.get("embedding"), weight=data.get("weight")
    )


def _array(value: Any, name: str, limits: SpecLimits) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise SpecificationError(f"{name} must be a non-empty JSON list")
    limits.check_outer_shape(value, name)
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecificationError(
            f"{name} is ragged or holds non-numbers: it must be lists of numbers of one shape"
        ) from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise SpecificationError(f"{name} must hold finite numbers")
    return arr
