"""``/v1/bulk-imports``: admins import a trusted bundle of accepted learnwares in one upload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from wharf.market.bulk import delete_staged
from wharf.market.catalog import JobKind, repo

from ..deps import AdminUser, FormFields, IdentityFirstRoute, ServicesDep, SessionDep
from ..enqueue import enqueue_bulk_import, job_url
from ..problems import Problem
from ..schemas import BulkImportAccepted
from ..staging import stage_bundle

PATH = "/v1/bulk-imports"
router = APIRouter(prefix=PATH, tags=["bulk imports"], route_class=IdentityFirstRoute)

UNTRUSTED = (
    "only trusted bundles are imported here (send trusted=true): their learnwares are "
    "accepted without a check, so use it for bundles from a market you trust (wharf admin "
    "export). To submit many learnwares for checking, upload them to POST "
    "/v1/bulk-submissions, or run 'wharf bulk-index PATH' without --trusted, which does."
)


@router.post("", status_code=202, response_model=BulkImportAccepted, dependencies=[FormFields])
def create_bulk_import(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    user: AdminUser,
    bundle: Annotated[
        UploadFile,
        File(description="the bundle directory (wharf admin export) as a .tar or .tar.gz"),
    ],
    trusted: Annotated[
        bool, Form(description="must be true: the learnwares are accepted without a check")
    ] = False,
) -> BulkImportAccepted:
    """Stage the bundle in the object store and queue its import; poll the returned job.

    The archive is checked before anything is queued (422 if it is unsafe or has no
    manifest); entries with problems of their own are reported in the job's result.
    """
    if not trusted:
        raise Problem(422, UNTRUSTED, field="trusted")
    settings = services.settings
    staged = stage_bundle(bundle, services, session, batch_size=settings.bulk_batch_size)
    prefix = staged.prefix
    job = repo.create_job(
        session,
        JobKind.index,
        owner_id=user.id,
        request={"bulk_import": bundle.filename or "bundle", "trusted": True, **staged.to_dict()},
    )
    session.commit()
    try:
        enqueue_bulk_import(services, session, job, len(staged.batches))
    except Problem:
        delete_staged(services.store, prefix)
        raise
    return BulkImportAccepted(
        job_id=job.id,
        status_url=job_url(request, job.id),
        entries=staged.entries,
        batches=len(staged.batches),
    )
