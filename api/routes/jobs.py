"""``/v1/jobs/{id}``: the state, progress and result of a check or search; ``DELETE``
cancels it.

``?wait=S`` asks the market to answer when the job ends, or after ``S`` seconds (at most
``WHARF_JOB_WAIT_MAX_S``) with the job as it is then (:mod:`api.waiting`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from wharf.market.cancel import JobEnded, cancel
from wharf.market.catalog import Job, JobKind, Role, User, repo

from ..deps import CurrentUser, IdentityFirstRoute, Reader, Services, ServicesDep
from ..problems import Problem
from ..schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=IdentityFirstRoute)

ENDED = repo.ENDED

#: The ``wait`` query parameter of the routes that can wait for a job.
Wait = Annotated[
    float,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="seconds to wait for the job to end before answering (at most the "
        "market's WHARF_JOB_WAIT_MAX_S, 30 by default); the answer comes as soon as it ends, "
        "or with the job still queued or running when the time is up",
    ),
]


@router.get("/{job_id}", response_model=JobOut)
async def get_job(services: ServicesDep, user: Reader, job_id: str, wait: Wait = 0) -> JobOut:
    job = await run_in_threadpool(read_job, services, job_id, user)
    if job.state not in ENDED and wait > 0:
        job = await wait_for_job(services, job_id, user, wait)
    return job


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(services: ServicesDep, user: CurrentUser, job_id: str) -> JobOut:
    """Cancel a queued or running job: its owner's, or any job for an admin. A check's
    learnware becomes ``rejected`` with a log saying the check was cancelled (send it again
    to have it checked, or delete it); a worker running the job stops within
    ``WHARF_JOB_HEARTBEAT_S``, killing the model's sandbox. ``409`` if the job has ended."""
    with services.catalog.session() as session:
        job = _owned_job(session, job_id, user)
        own = job.owner_id is not None and job.owner_id == user.id
        if not own and user.role != Role.admin:  # a job sent without a token: anyone sees it
            raise Problem(403, f"job {job_id} was sent without a token: only admins cancel it")
        try:
            done = cancel(session, job.id, by=user.name if own else f"{user.name} (an admin)")
        except JobEnded as exc:
            raise Problem(
                409, f"job {job_id} has already {exc.state}: there is nothing to cancel"
            ) from None
    done.clean_up(services.catalog, services.store)
    return read_job(services, job_id, user)


def _owned_job(session, job_id: str, user: User | None) -> Job:
    """The job if ``user`` may see it (its owner, an admin; anyone for a job sent without a
    token); 404 otherwise, as for no job."""
    job = repo.get_job(session, job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None:
        raise Problem(404, f"no job {job_id!r}")
    if job.owner_id is not None and not (
        user is not None and (user.id == job.owner_id or user.role == Role.admin)
    ):
        raise Problem(404, f"no job {job_id!r}")  # other users' jobs are private
    return job


def read_job(services: Services, job_id: str, user: User | None) -> JobOut:
    """The job as its owner (or an admin) sees it; 404 for anyone else, as for no job."""
    with services.catalog.session(read_only=True) as session:
        job = _owned_job(session, job_id, user)
        out = to_out(job)
        if job.kind == JobKind.search and job.result:
            out.result = without_withdrawn(session, job.result)
        return out


async def wait_for_job(
    services: Services, job_id: str, user: User | None, seconds: float
) -> JobOut:
    """The job once it has ended, or after ``seconds`` (cut to the market's longest wait)."""
    return await services.job_waiter.wait(
        job_id,
        lambda: run_in_threadpool(read_job, services, job_id, user),
        lambda job: job.state in ENDED,
        min(seconds, services.settings.job_wait_max_s),
    )


def without_withdrawn(session, result: dict) -> dict:
    """A stored search result less the learnwares no longer accepted (deleted, or sent back
    for checking with a new package) since it ran: once a removal returns, no result shows
    it. A mixture loses its place when any member is gone; ``withdrawn`` lists the ids."""
    singles = result.get("singles") or []
    mixture = result.get("mixture")
    ids = {s["id"] for s in singles} | set((mixture or {}).get("ids", []))
    if not ids:
        return result
    current = {repo.format_id(i) for i in repo.accepted_ids(session, map(repo.parse_id, ids))}
    gone = sorted(ids - current)
    if not gone:
        return result
    out = dict(result, singles=[s for s in singles if s["id"] in current], withdrawn=gone)
    if mixture and not set(mixture["ids"]) <= current:
        out["mixture"] = None
    return out


def to_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        stage=job.stage,
        progress=job.progress,
        learnware_id=repo.format_id(job.learnware_id) if job.learnware_id else None,
        result=job.result,
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
