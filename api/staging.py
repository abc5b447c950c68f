"""Staging an uploaded bundle (a tar of packages and their manifest) in the object store, for
the bulk routes: its size is checked first, and no catalog transaction is open while it
streams."""

from __future__ import annotations

from fastapi import UploadFile
from sqlalchemy.orm import Session
from wharf.market.bulk import StagedBundle, new_prefix, stage_upload
from wharf.market.bundle import BundleError

from .deps import Services
from .problems import Problem


def stage_bundle(
    bundle: UploadFile, services: Services, session: Session, *, batch_size: int
) -> StagedBundle:
    """The staged bundle: 413 past ``WHARF_BULK_MAX_BYTES``, 422 if the archive is unsafe."""
    settings = services.settings
    if bundle.size is not None and bundle.size > settings.bulk_max_bytes:
        raise Problem(
            413,
            f"the bundle is {bundle.size} bytes, over the limit of {settings.bulk_max_bytes} "
            "(WHARF_BULK_MAX_BYTES): split it into smaller bundles",
        )
    session.commit()  # no catalog transaction while the bundle streams to the store
    try:
        return stage_upload(
            bundle.file,
            services.store,
            new_prefix(),
            max_bytes=settings.bulk_max_bytes,
            max_package_bytes=settings.max_upload_bytes,
            max_line_bytes=settings.max_spec_bytes + 1024 * 1024,
            batch_size=batch_size,
        )
    except BundleError as exc:
        raise Problem(422, f"bundle: {exc}", field="bundle") from None
