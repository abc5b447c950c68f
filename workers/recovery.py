"""Putting interrupted checks back in the queue when a market starts.

A check that was running when its worker died is re-delivered by Redis (``acks_late``), but
the embedded broker forgets a message once a worker took it. So at start-up every learnware
left ``checking`` goes back to ``pending``, its interrupted job is marked failed, and a new
check job is queued; checks still waiting in the broker are left alone. The staging tasks of
the bulk submissions that have not ended are sent again (:func:`requeue_bulk_submissions`):
a batch staged before stages nothing twice and sends again its checks still queued, whose
messages the embedded broker may have lost with it.
"""

from __future__ import annotations

from celery import Celery
from wharf.market.catalog import Catalog, Job, JobKind, JobState, LearnwareStatus, repo

from .app import BULK_SUBMIT_TASK, CHECK_QUEUE, CHECK_TASK, INDEX_QUEUE


def requeue_interrupted_checks(catalog: Catalog, celery: Celery) -> list[str]:
    """Returns the ids of the learnwares queued again."""
    todo: list[tuple[str, int]] = []
    with catalog.session() as s:
        for status in (LearnwareStatus.checking, LearnwareStatus.pending):
            offset = 0
            while True:
                items, _ = repo.list_learnwares(s, status=status, limit=500, offset=offset)
                if not items:
                    break
                offset += len(items)
                for lw in items:
                    job = repo.latest_job_for(s, lw.id, JobKind.check)
                    if job is not None and job.state == JobState.queued:
                        continue  # its message is still in the broker
                    if job is not None and job.state == JobState.running:
                        repo.fail_job(s, job.id, "interrupted: the market stopped during the check")
                    repo.reset_to_pending(s, lw.id)
                    # A check of a bulk submission stays one: the new job takes the old one's
                    # place in it.
                    new = repo.create_job(
                        s,
                        JobKind.check,
                        owner_id=lw.owner_id,
                        learnware_id=lw.id,
                        parent_id=job.parent_id if job is not None else None,
                        request=job.request if job is not None else None,
                    )
                    todo.append((new.id, lw.id))
    for job_id, learnware_id in todo:
        celery.send_task(CHECK_TASK, args=[job_id, learnware_id], queue=CHECK_QUEUE, task_id=job_id)
    requeue_bulk_submissions(catalog, celery)
    return [repo.format_id(lid) for _, lid in todo]


def requeue_bulk_submissions(catalog: Catalog, celery: Celery) -> list[str]:
    """Send again every staging task of the bulk submissions that have not ended (each is
    idempotent); returns their job ids."""
    from wharf.market.bulk_submit import REQUEST_KEY

    with catalog.session(read_only=True) as s:
        jobs = [
            (job.id, len((job.request or {}).get("batches", [])))
            for job in s.query(Job).filter(
                Job.kind == JobKind.index, Job.state.in_((JobState.queued, JobState.running))
            )
            if (job.request or {}).get(REQUEST_KEY)
        ]
    for job_id, batches in jobs:
        for index in range(batches):
            celery.send_task(
                BULK_SUBMIT_TASK, args=[job_id, index], queue=INDEX_QUEUE, ignore_result=True
            )
    return [job_id for job_id, _ in jobs]
