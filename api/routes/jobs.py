"""``/v1/jobs/{id}``: the state, progress and result of a check or search."""

from __future__ import annotations

from fastapi import APIRouter
from wharf.market.catalog import Job, JobKind, Role, repo

from ..deps import IdentityFirstRoute, Reader, SessionDep
from ..problems import Problem
from ..schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=IdentityFirstRoute)


@router.get("/{job_id}", response_model=JobOut)
def get_job(session: SessionDep, user: Reader, job_id: str) -> JobOut:
    job = repo.get_job(session, job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None:
        raise Problem(404, f"no job {job_id!r}")
    if job.owner_id is not None and not (
        user is not None and (user.id == job.owner_id or user.role == Role.admin)
    ):
        raise Problem(404, f"no job {job_id!r}")  # other users' jobs are private
    out = to_out(job)
    if job.kind == JobKind.search and job.result:
        out.result = without_withdrawn(session, job.result)
    return out


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
