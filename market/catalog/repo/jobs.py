"""Jobs: creation, the race-free state changes of the workers that run them, liveness,
progress."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from ..models import (
    Job,
    JobKind,
    JobState,
    utcnow,
)

#: A job in one of these states may still run; one in :data:`ENDED` never will.
UNFINISHED = (JobState.queued, JobState.running)
ENDED = (JobState.succeeded, JobState.failed, JobState.cancelled)
#: Where a queued job's request counts the times the reconciler found its broker message gone
#: and sent it again (``workers.reconcile``).
LOST_MESSAGES = "lost_messages"


def create_job(
    s: Session,
    kind: JobKind | str,
    *,
    owner_id: int | None = None,
    learnware_id: int | None = None,
    request: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
) -> Job:
    """A queued job; ``parent_id``: the bulk submission a check job belongs to."""
    job = Job(
        kind=JobKind(kind),
        state=JobState.queued,
        owner_id=owner_id,
        learnware_id=learnware_id,
        parent_id=parent_id,
        request=dict(request or {}),
        progress=0.0,
        attempts=0,
    )
    s.add(job)
    s.flush()
    return job


def get_job(s: Session, job_id: str) -> Job | None:
    return s.get(Job, job_id)


def lock_job(s: Session, job_id: str) -> Job | None:
    """Load a job for change, locking its row on PostgreSQL until the commit (on SQLite a
    read-write session holds the database's write lock already)."""
    return s.get(Job, job_id, with_for_update=True, populate_existing=True)


def unfinished_checks(s: Session, owner_id: int) -> int:
    """How many check jobs of ``owner_id`` are queued or running."""
    stmt = select(func.count()).where(
        Job.owner_id == owner_id, Job.kind == JobKind.check, Job.state.in_(UNFINISHED)
    )
    return s.scalar(stmt) or 0


def unfinished_jobs(s: Session, owner_id: int, kind: JobKind | str) -> list[Job]:
    """The queued or running jobs of ``owner_id`` of one kind."""
    stmt = select(Job).where(
        Job.owner_id == owner_id, Job.kind == JobKind(kind), Job.state.in_(UNFINISHED)
    )
    return list(s.scalars(stmt))


def child_jobs(s: Session, parent_id: str) -> list[Job]:
    """The jobs of a bulk submission (their ``parent_id``), oldest first."""
    stmt = select(Job).where(Job.parent_id == parent_id).order_by(Job.created_at, Job.id)
    return list(s.scalars(stmt))


def child_job_counts(s: Session, parent_id: str) -> dict[JobState, int]:
    """How many jobs of a bulk submission are in each state."""
    stmt = select(Job.state, func.count()).where(Job.parent_id == parent_id).group_by(Job.state)
    return {JobState(state): int(n) for state, n in s.execute(stmt)}


def _job_update(s: Session, job_id: str, states: Iterable[JobState], **values: Any) -> bool:
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(list(states)))
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def start_job(s: Session, job_id: str, worker: str | None = None) -> Job | None:
    """``queued`` → ``running``, held by ``worker`` (``"host:pid"``); ``None`` unless queued.
    One ``UPDATE … RETURNING``: a search's start is on its round trip.

    A job already running is held by a live worker, or by a lost one: only
    :func:`take_over_job` starts it again.
    """
    params = {"job_id": job_id, "worker": worker, "now": utcnow()}
    options = {"populate_existing": True, "synchronize_session": False}
    return s.scalars(_START, params, execution_options=options).one_or_none()


#: Statements on every search's round trip, built once: building one costs about as much as
#: SQLite takes to run it.
_START = (
    update(Job)
    .where(Job.id == bindparam("job_id"), Job.state == JobState.queued)
    .values(
        state=JobState.running,
        attempts=Job.attempts + 1,
        started_at=bindparam("now"),
        worker=bindparam("worker"),
        heartbeat_at=bindparam("now"),
    )
    .returning(Job)
)
_FINISH = (
    update(Job)
    .where(Job.id == bindparam("job_id"), Job.state.in_(UNFINISHED))
    .values(
        state=JobState.succeeded,
        progress=1.0,
        result=bindparam("result"),
        error=None,
        finished_at=bindparam("now"),
    )
    .execution_options(synchronize_session="fetch")
)


def take_over_job(s: Session, job_id: str, worker: str, *, holder: str | None) -> Job | None:
    """Start a running job again under ``worker``, its last ``holder`` having died: one more
    worker loss. ``None`` if the job is no longer running under ``holder`` (someone else took
    it over, or it ended)."""
    now = utcnow()
    held = Job.worker.is_(None) if holder is None else Job.worker == holder
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, held)
        .values(
            attempts=Job.attempts + 1,
            worker_losses=Job.worker_losses + 1,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    return s.get(Job, job_id, populate_existing=True) if result.rowcount == 1 else None


def beat(s: Session, job_id: str, worker: str) -> bool:
    """A running job's sign of life from the worker holding it."""
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, Job.worker == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def silent_jobs(s: Session, before: datetime, kinds: Iterable[JobKind]) -> list[Job]:
    """Running jobs of ``kinds`` with no sign of life since ``before``."""
    stmt = select(Job).where(
        Job.state == JobState.running,
        Job.kind.in_(list(kinds)),
        func.coalesce(Job.heartbeat_at, Job.started_at) < before,
    )
    return list(s.scalars(stmt))


def requeue_job(
    s: Session,
    job_id: str,
    *,
    holder: str | None,
    lost: bool,
    due: datetime | None = None,
) -> bool:
    """``running`` → ``queued`` (sent again): after a retry, or after its ``holder`` was lost
    (``lost``: counted). ``due``: when the message sent with it is to be delivered (a retry's
    countdown; default now), so that the reconciler does not take it for lost before then.
    ``False`` if it is no longer running under ``holder``."""
    held = Job.worker.is_(None) if holder is None else Job.worker == holder
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, held)
        .values(
            state=JobState.queued,
            worker=None,
            heartbeat_at=due or utcnow(),
            worker_losses=Job.worker_losses + (1 if lost else 0),
        )
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def _sent_at() -> Any:
    """When a queued job's message was last sent (or is due)."""
    return func.coalesce(Job.heartbeat_at, Job.created_at)


def quiet_queued_jobs(s: Session, before: datetime, kinds: Iterable[JobKind]) -> list[Job]:
    """Queued jobs of ``kinds`` whose message was last sent (or was due) before ``before``:
    those a worker should have started by now, unless the broker lost their message."""
    stmt = select(Job).where(
        Job.state == JobState.queued, Job.kind.in_(list(kinds)), _sent_at() < before
    )
    return list(s.scalars(stmt.order_by(Job.created_at)))


def mark_sent(
    s: Session,
    job_id: str,
    *,
    before: datetime | None = None,
    request: Mapping[str, Any] | None = None,
    states: Iterable[JobState] = (JobState.queued,),
) -> bool:
    """Record that a job's message was sent again now (and its new ``request``, if given).
    With ``before``, only if it was last sent before then: of two reconcilers that found the
    same message gone, one wins. ``False`` if the job is not in ``states`` (any more)."""
    stmt = update(Job).where(Job.id == job_id, Job.state.in_(list(states)))
    if before is not None:
        stmt = stmt.where(_sent_at() < before)
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if request is not None:
        values["request"] = dict(request)
    result = s.execute(stmt.values(**values).execution_options(synchronize_session="fetch"))
    return result.rowcount == 1


def unfinished(s: Session, kinds: Iterable[JobKind] | None = None) -> list[Job]:
    """Every queued or running job (of ``kinds``), oldest first."""
    stmt = select(Job).where(Job.state.in_(UNFINISHED))
    if kinds is not None:
        stmt = stmt.where(Job.kind.in_(list(kinds)))
    return list(s.scalars(stmt.order_by(Job.created_at, Job.id)))


def set_progress(s: Session, job_id: str, progress: float, stage: str | None = None) -> bool:
    """Report progress (0 … 1) and the current stage of a running job."""
    if not (isinstance(progress, int | float) and 0.0 <= progress <= 1.0):
        raise ValueError(f"progress must be between 0 and 1, got {progress!r}")
    values: dict[str, Any] = {"progress": float(progress)}
    if stage is not None:
        values["stage"] = stage[:200]
    return _job_update(s, job_id, (JobState.running,), **values)


def advance_progress(s: Session, job_id: str, delta: float, *, cap: float = 0.99) -> bool:
    """Add ``delta`` to a running job's progress (at most ``cap``) in one ``UPDATE``, so
    tasks working on parts of one job in parallel each report theirs without a race."""
    if not (isinstance(delta, int | float) and 0.0 <= delta <= 1.0 and 0.0 <= cap <= 1.0):
        raise ValueError(f"delta and cap must be between 0 and 1, got {delta!r}, {cap!r}")
    value = case((Job.progress + delta > cap, cap), else_=Job.progress + delta)
    return _job_update(s, job_id, (JobState.running,), progress=value)


def finish_job(s: Session, job_id: str, result: Mapping[str, Any] | None = None) -> bool:
    """Mark a job succeeded with its (small, JSON) result; ``False`` if already finished."""
    params = {
        "job_id": job_id,
        "result": None if result is None else dict(result),
        "now": utcnow(),
    }
    return _job_ended(s, job_id, s.execute(_FINISH, params).rowcount == 1)


def fail_job(s: Session, job_id: str, error: str) -> bool:
    """Mark a job failed with a message a person can act on; ``False`` if already finished."""
    return _job_ended(
        s,
        job_id,
        _job_update(
            s, job_id, UNFINISHED, state=JobState.failed, error=error, finished_at=utcnow()
        ),
    )


def cancel_job(s: Session, job_id: str, reason: str) -> bool:
    """``queued`` or ``running`` → ``cancelled``, saying who cancelled it (``reason``, in
    ``error``); ``False`` if it had ended. A worker running it stops at its next heartbeat
    (``workers.liveness``), and a delivery of it runs nothing."""
    return _job_ended(
        s,
        job_id,
        _job_update(
            s, job_id, UNFINISHED, state=JobState.cancelled, error=reason, finished_at=utcnow()
        ),
    )


#: Where a session keeps the ids of the jobs it ended, announced once it commits
#: (:attr:`Catalog.on_jobs_ended`).
ENDED_JOBS = "wharf_ended_jobs"


def _job_ended(s: Session, job_id: str, ended: bool) -> bool:
    if ended:
        s.info.setdefault(ENDED_JOBS, set()).add(job_id)
    return ended


def latest_job_for(s: Session, learnware_id: int, kind: JobKind | str) -> Job | None:
    stmt = (
        select(Job)
        .where(Job.learnware_id == learnware_id, Job.kind == JobKind(kind))
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    return s.scalar(stmt)
