"""Object storage for learnware packages: one interface, two backends.

- :class:`LocalStore`: files under a directory (the embedded market);
- :class:`S3Store`: a bucket on any S3-compatible service (MinIO, AWS, Ceph).

Both behave the same way for every caller:

- ``put`` streams: it reads the source in chunks, hashes what it reads, and stops with
  :class:`ObjectTooLarge` as soon as more than ``max_bytes`` have arrived. An object becomes
  visible whole or not at all (a renamed temporary file; a single PUT or a multipart upload
  that is completed, or aborted on any error), so a reader never sees a partial package.
- ``open`` returns a readable binary stream (``read(n)``, ``close()``, a context manager);
  the caller reads it in chunks and closes it.
- Keys are ``/``-separated names of ``[A-Za-z0-9._-]`` characters, checked by
  :func:`validate_key` on both backends, so a key that works on one works on the other and a
  key can never leave the local store's root.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .base import (
    CHUNK_BYTES,
    MAX_KEY_LENGTH,
    InvalidKey,
    MiB,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    Readable,
    StoredObject,
    StoreError,
    StoreUnavailable,
    copy_to_file,
    validate_key,
)
from .local import LocalStore
from .s3 import S3Store

if TYPE_CHECKING:
    from wharf.market.settings import Settings

__all__ = [
    "CHUNK_BYTES",
    "MAX_KEY_LENGTH",
    "InvalidKey",
    "LocalStore",
    "MiB",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectTooLarge",
    "Readable",
    "S3Store",
    "StoreError",
    "StoreUnavailable",
    "StoredObject",
    "copy_to_file",
    "make_store",
    "sweep_partial_uploads",
    "validate_key",
]


def make_store(settings: Settings, *, create_bucket: bool = False) -> ObjectStore:
    """The store the settings name: ``WHARF_STORE=local`` (default) or ``s3``."""
    if settings.store == "local":
        return LocalStore(settings.objects_dir)

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return S3Store(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=secret(settings.s3_access_key_id),
        secret_access_key=secret(settings.s3_secret_access_key),
        create_bucket=create_bucket,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )


def sweep_partial_uploads(store: ObjectStore, settings: Settings) -> int:
    """Remove what unfinished writes left in the store (:meth:`ObjectStore.sweep_partial`,
    ``WHARF_STORE_PARTIAL_MAX_AGE_S``), saying so in the log; a store that fails is logged
    too, and the next sweep tries again. Run when the API and the workers start, and
    periodically by the workers."""
    log = logging.getLogger("wharf.store")
    try:
        removed = store.sweep_partial(settings.store_partial_max_age_s)
    except StoreError as exc:
        log.warning("could not sweep the object store's partial uploads: %s", exc)
        return 0
    if removed:
        log.warning("removed %d partial upload(s) left in the object store", removed)
    return removed
