"""Packages in the layout the reference loads, which is what Wharf serves.

The reference's loader (``LearnwareClient.load_learnware``) unzips a package, reads
``learnware.yaml`` at the zip's root with ``yaml.safe_load``, and reads the semantic spec from
the file named by the manifest's ``semantic_specification.file_name``. Its
``get_learnware_from_dirpath`` then looks up ``Data``, ``Task`` and, for text generation,
``Model`` in that spec. A submitted package may keep its files in one top folder, may write
tuples as ``!!python/tuple`` (which ``safe_load`` refuses) and carries no semantic spec of its
own. :func:`write_reference_layout` therefore writes a copy that has:

- every file at the zip's root;
- a plain-data ``learnware.yaml`` with ``id`` and ``semantic_specification`` added;
- the semantic spec in :data:`SEMANTIC_SPEC_FILE`, with the keys 0.4 requires (``Model``).

Every other file is copied unchanged. The copy is reproducible: the same package, spec and id
always give the same bytes.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import yaml

from .package import DEFAULT_LIMITS, MANIFEST, PackageLimits, _load_yaml, read_package
from .semantic import SemanticSpec

#: Where a served package keeps its semantic spec (the deployed market's name for it).
SEMANTIC_SPEC_FILE = "semantic_specification.json"
_WRITTEN = frozenset({MANIFEST, SEMANTIC_SPEC_FILE})


def reference_semantic_spec(semantic_spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored semantic spec as the reference reads it: every key 0.4 requires filled in."""
    return SemanticSpec.from_dict(semantic_spec).to_dict()


def write_reference_layout(
    source: str | os.PathLike[str] | BinaryIO,
    target: str | os.PathLike[str] | BinaryIO,
    *,
    semantic_spec: Mapping[str, Any],
    learnware_id: str | None = None,
    limits: PackageLimits = DEFAULT_LIMITS,
) -> None:
    """Write the package ``source`` to ``target`` in the reference's layout.

    ``source`` is read as :func:`~specification.package.read_package` reads a submission
    (raising :class:`PackageError` for what it refuses), under ``limits``. ``learnware_id``
    goes into the manifest's ``id`` when given (a package not yet in a market has none).
    """
    package = read_package(source, limits=limits)
    manifest = _load_yaml(package.read_member(MANIFEST), MANIFEST)
    manifest = dict(manifest) if isinstance(manifest, dict) else {}
    if learnware_id is not None:
        manifest["id"] = learnware_id
    manifest["semantic_specification"] = {"file_name": SEMANTIC_SPEC_FILE}
    spec = reference_semantic_spec(semantic_spec)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for member, chunks in package.iter_members():
            if member.name in _WRITTEN:
                for _ in chunks:  # read through: the copy is checked like the rest
                    pass
                continue
            with out.open(_entry(member.name), "w", force_zip64=member.size >= 1 << 31) as dst:
                for chunk in chunks:
                    dst.write(chunk)
        out.writestr(_entry(MANIFEST), yaml.safe_dump(manifest, sort_keys=False).encode())
        text = json.dumps(spec, ensure_ascii=False, indent=2) + "\n"
        out.writestr(_entry(SEMANTIC_SPEC_FILE), text.encode())


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info
