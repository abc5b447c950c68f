"""Handing work to the Celery workers; a broker that is down becomes a clear 503."""

from __future__ import annotations

import logging
from contextlib import contextmanager, suppress

from celery import chord
from fastapi import Request
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session
from wharf.market.catalog import Job, repo
from wharf.market.store import ObjectStore, StoreError
from wharf.workers.app import (
    BULK_BATCH_TASK,
    BULK_FINISH_TASK,
    BULK_SUBMIT_TASK,
    CHECK_QUEUE,
    CHECK_TASK,
    INDEX_QUEUE,
    SEARCH_QUEUE,
    SEARCH_TASK,
)

from .deps import Services
from .problems import Problem

log = logging.getLogger("wharf.api")


@contextmanager
def _broker_or_503(
    session: Session, job: Job, again: str, lost: str, store: ObjectStore | None = None
):
    """A broker that cannot be reached fails the job and answers 503, saying what to redo.
    What the job alone would have used goes (a search's uploaded spec, from ``store``); a
    check's learnware stays pending, and sending its package again resumes it."""
    try:
        yield
    except OperationalError:
        repo.fail_job(session, job.id, f"the job queue was unreachable; {again}")
        session.commit()
        spec_key = (job.request or {}).get("spec_key")
        if store is not None and spec_key:
            with suppress(StoreError):
                store.delete(spec_key)
        raise Problem(
            503,
            f"the job queue (broker) is unreachable right now; {lost} — retry in a little while",
            headers={"Retry-After": "5"},
        ) from None


def job_url(request: Request, job_id: str) -> str:
    """Where to poll a job (``GET /v1/jobs/{id}``). Built directly: ``request.url_for`` walks
    every route of the app to find one, a good share of an enqueue's CPU time."""
    return f"{str(request.base_url).rstrip('/')}/v1/jobs/{job_id}"


def _send(services: Services, session: Session, job: Job, name: str, queue: str, args: list):
    with _broker_or_503(session, job, "submit again", "nothing was lost", services.store):
        services.celery.send_task(
            name,
            args=args,
            queue=queue,
            task_id=job.id,
            # Jobs report through the catalog: without this, each send would also subscribe
            # the API to the task's result in the result backend.
            ignore_result=True,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    lid = repo.format_id(job.learnware_id) if job.learnware_id else None
    log.info(
        "queued %s job %s",
        job.kind,
        job.id,
        extra={"job_id": job.id, "kind": str(job.kind), "learnware_id": lid},
    )


def enqueue_check(services: Services, session: Session, job: Job, learnware_id: int) -> None:
    _send(services, session, job, CHECK_TASK, CHECK_QUEUE, [job.id, learnware_id])


def enqueue_search(services: Services, session: Session, job: Job) -> None:
    _send(services, session, job, SEARCH_TASK, SEARCH_QUEUE, [job.id])


def enqueue_bulk_import(services: Services, session: Session, job: Job, batches: int) -> None:
    """Send a bulk import as a chord: one index task per batch, then one that finishes the
    job (a 503, with the job failed, if the broker is unreachable)."""
    celery = services.celery
    header = [
        celery.signature(BULK_BATCH_TASK, args=[job.id, i], queue=INDEX_QUEUE)
        for i in range(batches)
    ]
    body = celery.signature(BULK_FINISH_TASK, args=[job.id], queue=INDEX_QUEUE)
    with _broker_or_503(session, job, "upload the bundle again", "nothing was imported"):
        chord(header, body).apply_async(task_id=job.id)
    log.info(
        "queued bulk import %s (%d batches)",
        job.id,
        batches,
        extra={"job_id": job.id, "kind": str(job.kind)},
    )


def enqueue_bulk_submission(services: Services, session: Session, job: Job, batches: int) -> None:
    """Send a bulk submission's staging tasks, one per batch (each sends its entries' checks;
    a 503, with the job failed, if the broker is unreachable)."""
    with _broker_or_503(session, job, "upload the bundle again", "nothing was submitted"):
        for index in range(batches):
            services.celery.send_task(
                BULK_SUBMIT_TASK,
                args=[job.id, index],
                queue=INDEX_QUEUE,
                ignore_result=True,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
            )
    log.info(
        "queued bulk submission %s (%d batches)",
        job.id,
        batches,
        extra={"job_id": job.id, "kind": str(job.kind)},
    )
