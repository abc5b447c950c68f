"""Reading and removing a learnware's package, wherever its bytes are.

A package is usually an object of its own (``packages/<hex>.zip``, written by the API). A
trusted bulk import instead keeps its packages inside the bundle it uploaded (one object, a
*pack*: :mod:`market.bulk`), and each learnware records where its bytes start
(``package_offset``) and how many there are (``package_size``). Everything that reads or
removes a package goes through here, so both kinds behave the same.

A pack is removed when no learnware uses it any more and no unfinished import can still add
one (:func:`market.catalog.repo.package_in_use`). Until then, the bytes of a deleted
learnware stay in its pack, unreachable: no row points at them.

What a download serves is the *served* package: the same files in the layout the reference
loads (:mod:`specification.reference_layout`), with the learnware's id and its semantic spec.
It is made on the first download and kept under ``served/<id>/``, named by what it is made of
(the package's sha256 and the semantic spec), so an edit or a new package makes a new one and
the older copies are removed. The uploaded bytes are never changed and stay downloadable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.orm import Session
from wharf.market.catalog import Learnware, repo
from wharf.market.store import ObjectNotFound, ObjectStore, StoreError, copy_to_file
from wharf.specification.package import DEFAULT_LIMITS, PackageLimits
from wharf.specification.reference_layout import write_reference_layout

log = logging.getLogger("wharf.store")


def new_package_key() -> str:
    """A fresh key for a package of its own: ``packages/<32 hex>.zip``."""
    return f"packages/{uuid.uuid4().hex}.zip"


@dataclass(frozen=True, slots=True)
class PackageRef:
    """A learnware's three package columns, to use after its session has closed."""

    package_key: str
    package_size: int
    package_offset: int | None = None

    @classmethod
    def of(cls, lw: Learnware) -> PackageRef:
        return cls(lw.package_key, lw.package_size, lw.package_offset)


def open_package(store: ObjectStore, lw: Learnware | PackageRef) -> BinaryIO:
    """A readable stream of the package's bytes (raises :class:`ObjectNotFound`)."""
    if lw.package_offset is None:
        return store.open(lw.package_key)
    return store.open_range(lw.package_key, lw.package_offset, lw.package_size)


def download_package(
    store: ObjectStore, lw: Learnware | PackageRef, path: str | os.PathLike[str]
) -> None:
    """Copy the package to a local file (written whole or not at all)."""
    if lw.package_offset is None:
        store.download_to(lw.package_key, path)
        return
    with open_package(store, lw) as src:
        copy_to_file(src, path)


def package_url(store: ObjectStore, lw: Learnware | PackageRef, expires_s: int) -> str | None:
    """A presigned URL of the package, or ``None`` (stream it with :func:`open_package`).

    A packed package has none: a URL would give the whole pack."""
    if lw.package_offset is not None:
        return None
    return store.presigned_url(lw.package_key, expires_s)


def release_package(s: Session, store: ObjectStore, key: str, offset: int | None) -> None:
    """Remove the object of a package no learnware points at any more.

    Call it after the commit that removed or replaced the learnware. A whole object goes at
    once; a pack only when nothing else uses it. A store error leaves an orphan object, which
    wastes space but misleads nobody.
    """
    if offset is None:
        _delete(store, key)
    else:
        release_pack(s, store, key)


def release_pack(s: Session, store: ObjectStore, key: str) -> None:
    """Remove the pack ``key`` unless a learnware or an unfinished import still uses it."""
    if not repo.package_in_use(s, key):
        _delete(store, key)


def _delete(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StoreError as exc:
        log.warning("could not remove the object %s: %s", key, exc)


SERVED_PREFIX = "served/"


@dataclass(frozen=True, slots=True)
class ServedRef:
    """What the served package of a learnware is made of, to use after its session closed."""

    learnware_id: int
    content_sha256: str
    semantic_spec: dict
    package: PackageRef

    @classmethod
    def of(cls, lw: Learnware) -> ServedRef:
        return cls(lw.id, lw.content_sha256, dict(lw.semantic_spec), PackageRef.of(lw))

    @property
    def key(self) -> str:
        spec = json.dumps(self.semantic_spec, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(f"{self.content_sha256}\n{spec}".encode()).hexdigest()[:32]
        return f"{_served_folder(self.learnware_id)}{digest}.zip"


def open_served_package(
    store: ObjectStore, ref: ServedRef, *, limits: PackageLimits = DEFAULT_LIMITS
) -> tuple[BinaryIO, int]:
    """A readable stream of the learnware's served package and its size, made if missing.

    Raises :class:`ObjectNotFound` when the uploaded package is missing, and
    :class:`PackageError` when it cannot be read as a package (a rejected one may not be).
    """
    key = ref.key
    try:
        return store.open(key), store.size(key)
    except ObjectNotFound:
        pass
    with tempfile.TemporaryFile() as original, tempfile.TemporaryFile() as served:
        with open_package(store, ref.package) as src:
            while chunk := src.read(1 << 20):
                original.write(chunk)
        write_reference_layout(
            original,
            served,
            semantic_spec=ref.semantic_spec,
            learnware_id=repo.format_id(ref.learnware_id),
            limits=limits,
        )
        served.seek(0)
        store.put(key, served)
    for old in store.list(_served_folder(ref.learnware_id)):
        if old != key:
            _delete(store, old)
    return store.open(key), store.size(key)


def release_served(store: ObjectStore, learnware_id: int) -> None:
    """Remove the served copies of a deleted learnware."""
    try:
        keys = store.list(_served_folder(learnware_id))
    except StoreError as exc:
        log.warning("could not list the served packages of %s: %s", learnware_id, exc)
        return
    for key in keys:
        _delete(store, key)


def _served_folder(learnware_id: int) -> str:
    return f"{SERVED_PREFIX}{repo.format_id(learnware_id)}/"
