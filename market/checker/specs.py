"""Checking a package's statistical specification against its semantic specification.

Each data type needs its spec type: Table an ``RKMETableSpecification``, Image an
``RKMEImageSpecification``, Text an ``RKMETextSpecification``; the package must declare that
one and no other. The spec file must parse as that type and have a finite, positive self
inner product ⟨Φ, Φ⟩ (under the NNGP kernel for images). A table spec must also describe as
many features as the semantic ``Input.Dimension`` (the rule of the reference market's upload
check); image and text specs live in a space of their own (32×32 standardised images, 384-d
sentence embeddings), so their shape says nothing of the model's input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from wharf.sandbox.log import CheckLog
from wharf.specification.errors import PackageError, SpecificationError
from wharf.specification.files import SPEC_TYPE_FOR_DATA, loads_spec
from wharf.specification.image import IMAGE_SPEC_TYPE, RKMEImage
from wharf.specification.limits import SpecLimits, check_self_inner_product
from wharf.specification.mmd import inner_product
from wharf.specification.package import LearnwarePackage
from wharf.specification.rkme import RKME, TABLE_SPEC_TYPE
from wharf.specification.semantic import SemanticSpec
from wharf.specification.text import TEXT_SPEC_TYPE


def check_stat_specs(
    package: LearnwarePackage,
    semantic: SemanticSpec,
    log: CheckLog,
    limits: SpecLimits,
    max_bytes: int | None = None,
) -> RKME | RKMEImage | None:
    """The spec if every rule holds (``limits`` among them); otherwise ``None``, with the
    reason logged. A spec file over ``max_bytes`` is refused unread: parsed, JSON takes
    some 16 times its size in memory, and a package may hold a file of 256 MiB."""
    data_type = semantic.data_type
    wanted = SPEC_TYPE_FOR_DATA.get(data_type)
    if wanted is None:
        log.fail(f"Data is {data_type}: no statistical specification type is known for it")
        return None
    others = [entry for entry in package.stat_specs if entry.type != wanted]
    if others:
        names = ", ".join(f"{e.type} ({e.file_name})" for e in others)
        log.fail(
            f"the package declares {names}, but {data_type} learnwares carry one {wanted} "
            "and nothing else; remove the other specifications from learnware.yaml"
        )
        return None
    entries = [entry for entry in package.stat_specs if entry.type == wanted]
    if not entries:
        log.fail(f"Data is {data_type} but the package declares no {wanted}")
        return None
    entry = entries[0]
    size = next(f.size for f in package.files if f.name == entry.file_name)
    if max_bytes is not None and size > max_bytes:
        log.fail(
            f"statistical specification {entry.file_name}: the file is {size} bytes, over "
            f"this market's limit of {max_bytes} bytes for a specification"
        )
        return None
    try:
        spec = loads_spec(package.read_member(entry.file_name), limits)
        if spec.spec_type != wanted:
            raise SpecificationError(
                f"the file holds an {spec.spec_type}, but learnware.yaml declares an {wanted}"
            )
        self_product = inner_product(spec, spec)  # NNGP kernel for images
        check_self_inner_product(self_product, spec.beta_, gaussian=wanted != IMAGE_SPEC_TYPE)
    except (SpecificationError, PackageError) as exc:
        log.fail(f"statistical specification {entry.file_name}: {exc}")
        return None
    features = int(np.prod(spec.feature_shape))
    if wanted == TABLE_SPEC_TYPE and features != semantic.input_dim:
        log.fail(
            f"statistical specification {entry.file_name} describes {features} features "
            f"(shape {spec.feature_shape}) but the semantic Input.Dimension is "
            f"{semantic.input_dim}; they must be equal"
        )
        return None
    log.ok(f"statistical specification {entry.file_name}: {_describe(spec)}")
    return spec


def _describe(spec: RKME | RKMEImage) -> str:
    k = spec.z_.shape[0]
    if spec.spec_type == IMAGE_SPEC_TYPE:
        return (
            f"{IMAGE_SPEC_TYPE}, {k} points of shape {spec.feature_shape}, "
            f"fitted on {spec.num_points_} images"
        )
    text = (
        f"{spec.spec_type}, {k} points of {int(np.prod(spec.feature_shape))} features, "
        f"gamma {spec.gamma:g}, fitted on {spec.num_points_} rows"
    )
    if spec.spec_type == TEXT_SPEC_TYPE:
        text += f", languages {spec.language_ or 'unknown'}"
    return text


def spec_meta(spec: RKME | RKMEImage) -> dict[str, Any]:
    """What the catalog records about an accepted learnware's spec."""
    return {
        "spec_type": spec.spec_type,
        "spec_shape": list(spec.feature_shape),
        "spec_gamma": float(spec.gamma),
        "spec_points": int(spec.z_.shape[0]),
        "num_points": int(spec.num_points_),
    }
