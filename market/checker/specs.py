"""Checking a package's statistical specifications against its semantic specification.

Only table learnwares (``Data`` = Table with an ``RKMETableSpecification``) can be checked so
far; image and text specifications are refused with a message saying so. A table spec must
parse, have a finite, positive self inner product ⟨Φ, Φ⟩, and describe as many features as the
semantic ``Input.Dimension`` (the rule of the reference market's upload check).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from specification.errors import PackageError, SpecificationError
from specification.files import loads_spec
from specification.mmd import inner_product
from specification.package import LearnwarePackage
from specification.rkme import RKME, TABLE_SPEC_TYPE
from specification.semantic import SemanticSpec

from .log import CheckLog

#: The spec type each data type needs; only the first is supported by this checker yet.
SPEC_TYPE_FOR_DATA = {
    "Table": TABLE_SPEC_TYPE,
    "Image": "RKMEImageSpecification",
    "Text": "RKMETextSpecification",
}


def check_stat_specs(
    package: LearnwarePackage, semantic: SemanticSpec, log: CheckLog
) -> RKME | None:
    """The table spec if every rule holds; otherwise ``None``, with the reason logged."""
    data_type = semantic.data_type
    if data_type != "Table":
        log.fail(
            f"Data is {data_type}: only Table learnwares (with an {TABLE_SPEC_TYPE}) can be "
            f"checked so far; {SPEC_TYPE_FOR_DATA.get(data_type, 'this')} learnwares are not "
            "supported yet"
        )
        return None
    unsupported = [entry for entry in package.stat_specs if entry.type != TABLE_SPEC_TYPE]
    if unsupported:
        names = ", ".join(f"{e.type} ({e.file_name})" for e in unsupported)
        log.fail(
            f"the package declares {names}: only {TABLE_SPEC_TYPE} is supported yet; "
            "remove the other specifications from learnware.yaml"
        )
        return None
    entries = [entry for entry in package.stat_specs if entry.type == TABLE_SPEC_TYPE]
    if not entries:
        log.fail(f"Data is Table but the package declares no {TABLE_SPEC_TYPE}")
        return None
    entry = entries[0]
    try:
        spec = loads_spec(package.read_member(entry.file_name))
        self_product = inner_product(spec, spec)
    except (SpecificationError, PackageError) as exc:
        log.fail(f"statistical specification {entry.file_name}: {exc}")
        return None
    if not (math.isfinite(self_product) and self_product > 0):
        log.fail(
            f"statistical specification {entry.file_name}: its self inner product is "
            f"{self_product}, not a finite positive number (check beta and gamma)"
        )
        return None
    features = int(np.prod(spec.feature_shape))
    if features != semantic.input_dim:
        log.fail(
            f"statistical specification {entry.file_name} describes {features} features "
            f"(shape {spec.feature_shape}) but the semantic Input.Dimension is "
            f"{semantic.input_dim}; they must be equal"
        )
        return None
    log.ok(
        f"statistical specification {entry.file_name}: {TABLE_SPEC_TYPE}, "
        f"{spec.z_.shape[0]} points of {features} features, gamma {spec.gamma:g}, "
        f"fitted on {spec.num_points_} rows"
    )
    return spec


def spec_meta(spec: RKME) -> dict[str, Any]:
    """What the catalog records about an accepted learnware's spec."""
    return {
        "spec_type": TABLE_SPEC_TYPE,
        "spec_shape": list(spec.feature_shape),
        "spec_gamma": float(spec.gamma),
        "spec_points": int(spec.z_.shape[0]),
        "num_points": int(spec.num_points_),
    }
