"""``/v1/bulk-submissions``: any user submits many packages in one upload, each one checked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from sqlalchemy.orm import Session
from wharf.market.bulk import delete_staged, release_staged
from wharf.market.bulk_submit import BATCH_SIZE, QUOTA_RETRY_S, REQUEST_KEY, checks_waiting
from wharf.market.catalog import JobKind, User, repo
from wharf.market.settings import Settings

from ..deps import CurrentUser, FormFields, IdentityFirstRoute, ServicesDep, SessionDep
from ..enqueue import enqueue_bulk_submission, job_url
from ..problems import Problem
from ..schemas import BulkImportAccepted
from ..staging import stage_bundle

PATH = "/v1/bulk-submissions"
router = APIRouter(prefix=PATH, tags=["bulk submissions"], route_class=IdentityFirstRoute)


@router.post("", status_code=202, response_model=BulkImportAccepted, dependencies=[FormFields])
def create_bulk_submission(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    user: CurrentUser,
    bundle: Annotated[
        UploadFile,
        File(
            description="a .tar or .tar.gz holding manifest.jsonl (one line per package: "
            "'package', its path in the tar, and 'semantic_spec') and the packages"
        ),
    ],
) -> BulkImportAccepted:
    """Stage the bundle and queue a check of every package in it; poll the returned job.

    The archive is checked before anything is queued (422 if it is unsafe or has no
    manifest; 413 past the size limits or ``WHARF_BULK_SUBMIT_MAX_ENTRIES`` entries; 429 if
    it would take the caller past ``WHARF_MAX_PENDING_CHECKS`` checks waiting). Entries
    with problems of their own (a bad semantic spec, a package missing or already in the
    market) are refused one by one in the job's result; each of the others becomes a
    pending learnware with its own check job. The job ends when the last check has.
    """
    settings = services.settings
    _refuse_over_quota(session, user, settings, entries=0)
    staged = stage_bundle(bundle, services, session, batch_size=BATCH_SIZE)
    prefix = staged.prefix
    try:
        if staged.entries > settings.bulk_submit_max_entries:
            raise Problem(
                413,
                f"the bundle lists {staged.entries} packages, more than the "
                f"{settings.bulk_submit_max_entries} a bulk submission may hold "
                "(WHARF_BULK_SUBMIT_MAX_ENTRIES): split it into smaller bundles",
                entries=staged.entries,
                max_entries=settings.bulk_submit_max_entries,
            )
        # The user's row is locked while their checks are counted and the job is added, so
        # two uploads at once cannot both pass the quota.
        session.get(User, user.id, with_for_update=True)
        _refuse_over_quota(session, user, settings, entries=staged.entries)
        job = repo.create_job(
            session,
            JobKind.index,
            owner_id=user.id,
            request={
                REQUEST_KEY: bundle.filename or "bundle",
                "trusted": False,
                **staged.to_dict(),
                "staged_batches": [],
            },
        )
        session.commit()
    except Problem:
        session.rollback()
        delete_staged(services.store, prefix)
        raise
    try:
        enqueue_bulk_submission(services, session, job, len(staged.batches))
    except Problem:
        with services.catalog.session(read_only=True) as s:
            release_staged(s, services.store, prefix)  # unless a batch has staged learnwares
        raise
    return BulkImportAccepted(
        job_id=job.id,
        status_url=job_url(request, job.id),
        entries=staged.entries,
        batches=len(staged.batches),
    )


def _refuse_over_quota(session: Session, user: User, settings: Settings, *, entries: int) -> None:
    """429 if ``entries`` more checks would take the user past their quota of checks waiting
    (413 if they could never fit)."""
    limit = settings.max_pending_checks
    if entries > limit:
        raise Problem(
            413,
            f"the bundle lists {entries} packages, more than the {limit} checks a user may "
            "have waiting (WHARF_MAX_PENDING_CHECKS): split it into smaller bundles",
            entries=entries,
            max_pending_checks=limit,
        )
    waiting = checks_waiting(session, user.id)
    if waiting + max(entries, 1) > limit:
        room = max(0, limit - waiting)
        if entries:
            detail = (
                f"this bundle's {entries} packages would take you to {waiting + entries} "
                f"checks waiting, past the {limit} a user may have (WHARF_MAX_PENDING_CHECKS): "
                f"send at most {room} now, or retry when some of your checks have ended"
            )
        else:
            detail = (
                f"you have {waiting} checks waiting, the most a user may have "
                f"(WHARF_MAX_PENDING_CHECKS = {limit}): retry when some of them have ended"
            )
        raise Problem(
            429,
            detail,
            headers={"Retry-After": str(QUOTA_RETRY_S)},
            pending_checks=waiting,
            max_pending_checks=limit,
            entries=entries,
        )
