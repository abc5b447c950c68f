"""The bundle format: accepted learnwares moved between markets without running anything.

A bundle is a directory::

    manifest.jsonl          one JSON object per line, one line per learnware
    packages/<sha256>.zip   the package bytes, as the market stored them
    reference/<id>.zip      (an export's) the package as Wharf serves it, which the
                            reference's loader reads; importers ignore it

and a manifest line holds what the catalog knows of an accepted learnware::

    {"semantic_spec": {...}, "stat_spec": "<the RKME JSON text>",
     "type": "RKMETableSpecification", "shape": [10], "gamma": 0.1, "points": 50,
     "num_points": 1000, "sha256": "<64 hex>", "size": 1234,
     "package": "packages/<sha256>.zip", "source_id": "00000042"}

(``source_id``, the id in the exporting market, is for people; importers ignore it.)

A trusted import runs no model code, so what it accepts must be as sound as what a check
accepts, statically: :func:`check_entry` applies the submission rules to the semantic spec,
parses the RKME with the market's own reader, requires the spec type of the data type (table,
image or text, as the checker does), and holds it against the spec columns and, for tables,
the semantic ``Input.Dimension``; the importer then holds the package bytes against ``sha256``
and ``size``. Every refusal is an :class:`EntryRejected` whose message says what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from wharf.market.catalog import Learnware, repo
from wharf.specification.blockwise import self_inner_product
from wharf.specification.errors import SpecificationError
from wharf.specification.files import SPEC_TYPE_FOR_DATA, loads_spec
from wharf.specification.image import IMAGE_SPEC_TYPE
from wharf.specification.jsonio import load_json
from wharf.specification.limits import SpecLimits, check_self_inner_product
from wharf.specification.rkme import TABLE_SPEC_TYPE
from wharf.specification.semantic import check_semantic_spec

MANIFEST = "manifest.jsonl"
PACKAGES = "packages"
#: The spec columns of a manifest line, with the keys of ``repo.finish_check``'s spec_meta.
SPEC_KEYS = ("type", "shape", "gamma", "points", "num_points")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("semantic_spec", "stat_spec", *SPEC_KEYS, "sha256", "size", "package")
_MAX_PATH = 1024
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\\]")


class BundleError(ValueError):
    """The bundle as a whole cannot be used (no manifest, an unsafe archive …)."""


class EntryRejected(ValueError):
    """One manifest line cannot be imported; the message is the reason, for people."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A manifest line whose fields have the right types (not yet checked: :func:`check_entry`).

    ``line`` is its 1-based line number in the manifest, for reports.
    """

    line: int
    semantic_spec: dict[str, Any]
    stat_spec: str
    spec_meta: dict[str, Any]
    sha256: str
    size: int
    package: str


def package_path(sha256: str) -> str:
    """Where an exported package lives in its bundle."""
    return f"{PACKAGES}/{sha256}.zip"


def manifest_line(lw: Learnware) -> str:
    """The manifest line of an accepted learnware (``stat_spec`` loaded)."""
    record = {
        "source_id": repo.format_id(lw.id),
        "semantic_spec": lw.semantic_spec,
        "stat_spec": lw.stat_spec,
        "type": lw.spec_type,
        "shape": list(lw.spec_shape or []),
        "gamma": lw.spec_gamma,
        "points": lw.spec_points,
        "num_points": lw.num_points,
        "sha256": lw.content_sha256,
        "size": lw.package_size,
        "package": package_path(lw.content_sha256),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def clean_path(path: Any) -> str:
    """A bundle-relative path as ``a/b`` (``./`` prefixes dropped), or :class:`ValueError`.

    Refused: absolute paths, drive letters, ``..``, empty parts, backslashes, NULs and
    control characters, so a path can never leave the bundle.
    """
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH:
        raise ValueError(f"a path is 1 to {_MAX_PATH} characters, got {path!r:.80}")
    if _UNSAFE_CHARS.search(path):
        raise ValueError(f"{path!r:.80} holds a backslash or a control character")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"{path!r:.80} is absolute: paths are relative to the bundle")
    body = path[:-1] if path.endswith("/") else path  # a folder, in a tar
    parts = [p for p in body.split("/") if p != "."]
    if not parts or any(p in ("", "..") for p in parts):
        raise ValueError(f"{path!r:.80} leaves the bundle or has empty parts")
    return "/".join(parts)


def read_entry(line: int, text: str | bytes, *, max_package_bytes: int) -> Entry:
    """Parse one manifest line; :class:`EntryRejected` if a field is missing or mistyped."""
    try:
        record = load_json(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EntryRejected(f"not a JSON object: {exc}") from None
    if not isinstance(record, dict):
        raise EntryRejected(f"a manifest line is a JSON object, got {type(record).__name__}")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise EntryRejected(f"missing field(s): {', '.join(missing)}")
    semantic, stat_spec = record["semantic_spec"], record["stat_spec"]
    if not isinstance(semantic, dict):
        raise EntryRejected("semantic_spec must be a JSON object")
    if not isinstance(stat_spec, str):
        raise EntryRejected("stat_spec must be the RKME JSON as a string")
    sha256, size = record["sha256"], record["size"]
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise EntryRejected(f"sha256 must be 64 lower-case hex digits, got {sha256!r:.80}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= max_package_bytes:
        raise EntryRejected(
            f"size must be a byte count from 1 to {max_package_bytes}, got {size!r}"
        )
    try:
        package = clean_path(record["package"])
    except ValueError as exc:
        raise EntryRejected(f"package: {exc}") from None
    return Entry(
        line=line,
        semantic_spec=semantic,
        stat_spec=stat_spec,
        spec_meta={k: record[k] for k in SPEC_KEYS},
        sha256=sha256,
        size=size,
        package=package,
    )


def check_entry(entry: Entry, limits: SpecLimits) -> dict[str, Any]:
    """Check an entry's specs; returns the catalog's semantic columns for it.

    The semantic spec must pass the submission rules; the RKME must parse, be of the data
    type's spec type, have a finite, positive self inner product (under the NNGP kernel for
    images), agree with the line's spec columns (the search index partitions on them) and, for
    a table, describe ``Input.Dimension`` features.
    """
    try:
        semantic = check_semantic_spec(entry.semantic_spec)
        columns = repo.semantic_columns(entry.semantic_spec, semantic)
    except SpecificationError as exc:
        raise EntryRejected(f"semantic_spec.{exc}") from None
    except ValueError as exc:
        raise EntryRejected(str(exc)) from None
    wanted = SPEC_TYPE_FOR_DATA.get(semantic.data_type)
    if wanted is None:
        raise EntryRejected(f"Data is {semantic.data_type}: no spec type is known for it")
    try:
        spec = loads_spec(entry.stat_spec, limits)
    except SpecificationError as exc:
        raise EntryRejected(f"stat_spec: {exc}") from None
    if spec.spec_type != wanted:
        raise EntryRejected(
            f"Data is {semantic.data_type}, so the stat_spec must be an {wanted}, "
            f"not an {spec.spec_type}"
        )
    meta = entry.spec_meta
    found = {
        "type": spec.spec_type,
        "shape": list(spec.feature_shape),
        "gamma": float(spec.gamma),
        "points": int(spec.z_.shape[0]),
        "num_points": int(spec.num_points_),
    }
    for key in SPEC_KEYS:
        if meta[key] != found[key] or isinstance(meta[key], bool):
            raise EntryRejected(
                f"{key} is {meta[key]!r} but the stat_spec has {found[key]!r}; they must agree"
            )
    features = math.prod(spec.feature_shape)
    if wanted == TABLE_SPEC_TYPE and features != semantic.input_dim:
        raise EntryRejected(
            f"the stat_spec describes {features} features but the semantic Input.Dimension is "
            f"{semantic.input_dim}; they must be equal"
        )
    try:
        check_self_inner_product(
            _self_inner_product(spec), spec.beta_, gaussian=spec.spec_type != IMAGE_SPEC_TYPE
        )
    except SpecificationError as exc:
        raise EntryRejected(f"the stat_spec: {exc}") from None
    return columns


def _self_inner_product(spec) -> float:
    """βᵀ K(z, z) β: under the Gaussian kernel in numpy; under the NNGP kernel (torch, loaded
    only here, in the import worker) for an image spec."""
    if spec.spec_type == IMAGE_SPEC_TYPE:
        from wharf.specification.nngp import inner_product

        return inner_product(spec, spec)
    return self_inner_product(spec.z_flat, spec.beta_, spec.gamma)
