"""Reading and writing RKME spec files in the reference's JSON format.

    {"z": [[...], ...], "beta": [...], "gamma": 0.1, "num_points": 1257,
     "type": "RKMETableSpecification"}

A text spec adds ``"language": ["en", ...]`` (type ``RKMETextSpecification``). An image spec
has no γ and carries the reference's fields instead::

    {"RKME_IMAGE_VERSION": 1, "msg": null, "z": [K × C × 32 × 32], "beta": [...],
     "n_models": 16, "model_config": {"k": 2, "mu": 0, "sigma": null, "net_width": 128,
     "net_depth": 3}, "type": "RKMEImageSpecification", "num_points": 1257}

(``num_points`` is Wharf's addition; the reference reader ignores keys it does not know.)
Floats are written with Python's shortest round-trip repr, so write → read is exact. Files of
the legacy ``RKMEStatSpecification`` type, with no ``type``, or with extra keys (``cuda_idx``,
``device``, …) are read too. Anything that cannot be a spec is refused with a
:class:`SpecificationError` that says what is wrong.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecificationError
from .image import IMAGE_SPEC_TYPE, IMAGE_SPEC_VERSION, RKMEImage
from .jsonio import load_json
from .limits import SpecLimits
from .rkme import RKME, TABLE_SPEC_TYPE
from .text import TEXT_SPEC_TYPE, RKMEText, check_languages

#: Spec types read as a table RKME; the first is the one written.
TABLE_TYPES = (TABLE_SPEC_TYPE, "RKMEStatSpecification")
#: Every spec type a file may hold.
SPEC_TYPES = (*TABLE_TYPES, TEXT_SPEC_TYPE, IMAGE_SPEC_TYPE)
#: The spec type a learnware of each semantic data type carries.
SPEC_TYPE_FOR_DATA = {"Table": TABLE_SPEC_TYPE, "Image": IMAGE_SPEC_TYPE, "Text": TEXT_SPEC_TYPE}
#: Refuse files beyond this size before parsing them (arrays: :class:`SpecLimits`).
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Dimensions of z: K, then the shape of one point (an image's is C × 32 × 32).
MAX_DIMENSIONS = 8
#: The bounds of a reader given none.
NO_LIMITS = SpecLimits()


def spec_to_dict(spec: RKME | RKMEImage) -> dict[str, Any]:
    if spec.spec_type == IMAGE_SPEC_TYPE:
        return {
            "RKME_IMAGE_VERSION": IMAGE_SPEC_VERSION,
            "msg": spec.msg,
            "z": spec.z_.tolist(),
            "beta": spec.beta_.tolist(),
            "n_models": int(spec.n_models),
            "model_config": spec.model_config_,
            "type": IMAGE_SPEC_TYPE,
            "num_points": int(spec.num_points_),
        }
    out = {
        "z": spec.z_.tolist(),
        "beta": spec.beta_.tolist(),
        "gamma": float(spec.gamma),
        "num_points": int(spec.num_points_),
        "type": spec.spec_type if spec.spec_type == TEXT_SPEC_TYPE else TABLE_SPEC_TYPE,
    }
    if spec.spec_type == TEXT_SPEC_TYPE:
        out["language"] = list(spec.language_)
    return out


def dumps_spec(spec: RKME | RKMEImage) -> str:
    return json.dumps(spec_to_dict(spec), separators=(",", ":"), allow_nan=False)


def save_spec(spec: RKME | RKMEImage, path: str | os.PathLike) -> None:
    """Write ``spec`` to ``path`` atomically (a reader never sees a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_spec(spec), encoding="utf-8")
    os.replace(tmp, path)


def load_spec(path: str | os.PathLike) -> RKME | RKMEImage:
    return loads_spec(read_spec_file(path))


def read_spec_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A spec file's bytes, its size checked before it is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SpecificationError(f"spec file {str(path)!r} does not exist") from None
    if size > max_bytes:
        raise SpecificationError(f"spec file is {size} bytes, over the {max_bytes}-byte limit")
    return path.read_bytes()


def _refuse_constant(name: str) -> float:
    raise SpecificationError(f"spec contains {name}; every number must be finite")


def parse_spec_json(text: str | bytes, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """A spec file's JSON, with a :class:`SpecificationError` a person can act on for text that
    is too long, not JSON, not UTF-8 or nested too deeply; NaN and infinities refused."""
    if len(text) > max_bytes:
        raise SpecificationError(f"spec is over the {max_bytes}-byte limit")
    try:
        return load_json(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise SpecificationError(
            f"spec is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise SpecificationError("spec is not UTF-8 text") from None
    except RecursionError:
        raise SpecificationError("spec is nested too deeply to be a spec file") from None


def loads_spec(text: str | bytes, limits: SpecLimits = NO_LIMITS) -> RKME | RKMEImage:
    """Parse a spec file's content; anything over ``limits`` is refused before numpy sees it."""
    return spec_from_dict(parse_spec_json(text), limits)


def spec_from_dict(data: Any, limits: SpecLimits = NO_LIMITS) -> RKME | RKMEImage:
    if not isinstance(data, dict):
        raise SpecificationError(f"spec must be a JSON object, got {type(data).__name__}")
    spec_type = data.get("type", TABLE_SPEC_TYPE)
    if spec_type not in SPEC_TYPES:
        raise SpecificationError(
            f"type: unsupported spec type {spec_type!r}; supported: {', '.join(SPEC_TYPES)}"
        )
    if spec_type == IMAGE_SPEC_TYPE:
        return _image_from_dict(data, limits.for_images())
    missing = [k for k in ("z", "beta", "gamma") if k not in data]
    if missing:
        raise SpecificationError(f"spec is missing required key(s): {', '.join(missing)}")
    gamma = data["gamma"]
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not math.isfinite(gamma):
        raise SpecificationError(f"gamma must be a finite number, got {gamma!r}")
    if gamma <= 0:
        raise SpecificationError(f"gamma must be > 0, got {gamma!r}")
    limits.check_gamma(gamma)
    z = _array(data["z"], "z", limits)
    if z.ndim < 2:
        raise SpecificationError(
            f"z must be a list of points (K rows of features), got shape {z.shape}"
        )
    beta = _array(data["beta"], "beta", limits)
    if beta.ndim != 1:
        raise SpecificationError(f"beta must be a flat list of K numbers, got shape {beta.shape}")
    if beta.shape[0] != z.shape[0]:
        raise SpecificationError(
            f"beta has {beta.shape[0]} weights but z has {z.shape[0]} points; they must match"
        )
    limits.check_arrays(z, beta)
    num_points = _num_points(data)
    if spec_type == TEXT_SPEC_TYPE:
        language = check_languages(data.get("language", []))
        return RKMEText.from_arrays(z, beta, float(gamma), num_points, language)
    return RKME.from_arrays(z, beta, float(gamma), num_points)


def _num_points(data: dict) -> int:
    num_points = data.get("num_points", 0)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 0:
        raise SpecificationError(f"num_points must be a non-negative integer, got {num_points!r}")
    return num_points


def _image_from_dict(data: dict, limits: SpecLimits) -> RKMEImage:
    missing = [k for k in ("z", "beta") if k not in data]
    if missing:
        raise SpecificationError(f"image spec is missing required key(s): {', '.join(missing)}")
    version = data.get("RKME_IMAGE_VERSION", IMAGE_SPEC_VERSION)
    if version != IMAGE_SPEC_VERSION:
        raise SpecificationError(
            f"RKME_IMAGE_VERSION {version!r} is not supported (only {IMAGE_SPEC_VERSION})"
        )
    z = _array(data["z"], "z", limits)
    if z.ndim != 4 or z.shape[2:] != (32, 32):
        raise SpecificationError(
            f"z of an image spec must be K images of shape (C, 32, 32), got shape {z.shape}"
        )
    beta = _array(data["beta"], "beta", limits)
    if beta.ndim != 1 or beta.shape[0] != z.shape[0]:
        raise SpecificationError(
            f"beta must be a flat list of K = {z.shape[0]} weights, got shape {beta.shape}"
        )
    limits.check_arrays(z, beta)
    n_models = data.get("n_models", 16)
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise SpecificationError(f"n_models must be a positive integer, got {n_models!r}")
    msg = data.get("msg")
    if msg is not None and not isinstance(msg, str):
        raise SpecificationError(f"msg must be a string or null, got {type(msg).__name__}")
    return RKMEImage.from_arrays(
        z,
        beta,
        _num_points(data),
        n_models=n_models,
        model_config=data.get("model_config"),
        msg=msg,
    )


def _array(value: Any, name: str, limits: SpecLimits) -> np.ndarray:
    if not isinstance(value, list):
        raise SpecificationError(f"{name} must be a JSON list, got {type(value).__name__}")
    if not value:
        raise SpecificationError(f"{name} is empty")
    limits.check_outer_shape(value, name)
    try:
        arr = np.array(value, dtype=np.float64)
    except ValueError:
        raise SpecificationError(
            f"{name} is ragged or holds non-numbers: every point must be a list of "
            "numbers of the same shape"
        ) from None
    except TypeError:
        raise SpecificationError(f"{name} must hold only numbers") from None
    if arr.size == 0:
        raise SpecificationError(f"{name} has no numbers (shape {arr.shape})")
    if arr.ndim > MAX_DIMENSIONS:
        raise SpecificationError(f"{name} has {arr.ndim} dimensions, over {MAX_DIMENSIONS}")
    if not np.isfinite(arr).all():
        raise SpecificationError(f"{name} contains NaN or infinite values")
    return arr
