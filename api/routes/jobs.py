"""``/v1/jobs/{id}``: the state, progress and result of a check or search."""

from __future__ import annotations

from fastapi import APIRouter

from market.catalog import Job, Role, repo

from ..deps import Reader, SessionDep
from ..problems import Problem
from ..schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
def get_job(session: SessionDep, user: Reader, job_id: str) -> JobOut:
    job = repo.get_job(session, job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None:
        raise Problem(404, f"no job {job_id!r}")
    if job.owner_id is not None and not (
        user is not None and (user.id == job.owner_id or user.role == Role.admin)
    ):
        raise Problem(404, f"no job {job_id!r}")  # other users' jobs are private
    return to_out(job)


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
