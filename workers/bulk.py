"""Bulk-import tasks, on the index queue: a chord of batch imports and a callback.

The API stages the bundle (:func:`market.bulk.stage_upload`), creates an ``index`` job whose
request lists the batches, and sends ``chord([batch(job, 0), batch(job, 1), …], finish(job))``.
Each batch task imports its batch in one catalog transaction and adds its share to the job's
progress; ``finish`` adds the batch reports up into the job's result and releases the staged
bundle (its tar stays as the pack of the imported packages). Batch tasks are idempotent
(:func:`market.bulk.import_staged_batch`): one that runs again after its worker died reports
the same outcome and imports nothing twice.
"""

from __future__ import annotations

import logging

from celery import Task
from wharf.market.bulk import StagedBatch, forget_bundle, import_staged_batch, release_staged
from wharf.market.catalog import JobState, User, repo
from wharf.market.settings import get_settings
from wharf.market.transfer import ImportReport, trusted_log

from .app import BULK_BATCH_TASK, BULK_FINISH_TASK, app
from .retry import RETRY

log = logging.getLogger("wharf.worker")

#: A batch of 1,000 takes about a second; these only stop a task that hangs.
BATCH_SOFT_TIME_LIMIT_S = 600
BATCH_TIME_LIMIT_S = 660
_FINISHED = (JobState.succeeded, JobState.failed)


def _catalog():
    from .tasks import catalog  # the worker's one engine (workers.tasks imports this module)

    return catalog()


def _store():
    from .tasks import store

    return store()


def _release(prefix: str) -> None:
    """Release the job's staged bundle once the job has ended (its end committed)."""
    with _catalog().session(read_only=True) as s:
        release_staged(s, _store(), prefix)


class _JobEnded(Exception):
    """The job ended while a batch was being imported."""


class BulkTask(Task):
    """Fails the whole job, and drops its staged bundle, when a task gives up."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = args[0] if self.name == BULK_BATCH_TASK else args[1]
        where = f"batch {args[1] + 1}" if self.name == BULK_BATCH_TASK else "the summary"
        message = (
            f"{where} failed: {type(exc).__name__}: {exc}. The batches that had finished are "
            "imported; import the bundle again to add the rest (what is here is skipped)."
        )
        with _catalog().session() as s:
            repo.fail_job(s, job_id, message)
            job = repo.get_job(s, job_id)
            prefix = (job.request or {}).get("prefix") if job is not None else None
        if prefix:
            _release(prefix)


@app.task(
    name=BULK_BATCH_TASK,
    base=BulkTask,
    soft_time_limit=BATCH_SOFT_TIME_LIMIT_S,
    time_limit=BATCH_TIME_LIMIT_S,
    **RETRY,
)
def import_batch(job_id: str, index: int) -> dict:
    """Import batch ``index`` of a bulk-import job; returns its report (JSON)."""
    # A read-only look first: on SQLite a write transaction would wait for the write lock,
    # which the other batches take in turns to insert their rows.
    with _catalog().session(read_only=True) as s:
        job = repo.get_job(s, job_id)
        if job is None or job.state in _FINISHED:
            forget_bundle()
            return ImportReport().to_dict()  # failed meanwhile: nothing more to do
        request, state = dict(job.request or {}), job.state
        owner = s.get(User, job.owner_id) if job.owner_id is not None else None
        owner_id, owner_name = (owner.id, owner.name) if owner is not None else (None, "")
    if owner_id is None or state == JobState.queued:
        with _catalog().session() as s:
            if owner_id is None:
                repo.fail_job(s, job_id, "the user who started the import no longer exists")
                return ImportReport().to_dict()
            # Another batch may have started the job a moment ago; otherwise it has ended.
            started = repo.start_job(s, job_id) or repo.get_job(s, job_id)
            if started is None or started.state != JobState.running:
                forget_bundle()
                return ImportReport().to_dict()
            entries, batches = request["entries"], len(request["batches"])
            repo.set_progress(s, job_id, 0.0, f"importing {entries} learnwares, {batches} batches")
    batch = StagedBatch(**request["batches"][index])
    share = batch.entries / request["entries"]

    def record_progress(s) -> None:
        # The job's row is updated in the batch's transaction: once the job has ended (failed
        # in another task), the batch is rolled back, so no row lands in a pack that the end
        # of the job may have removed.
        if not repo.advance_progress(s, job_id, share):
            raise _JobEnded

    settings = get_settings()
    try:
        report = import_staged_batch(
            _catalog(),
            _store(),
            request["prefix"],
            batch,
            owner_id=owner_id,
            check_log=trusted_log(owner_name, f"bulk import job {job_id}"),
            max_package_bytes=settings.max_upload_bytes,
            spec_limits=settings.spec_limits,
            in_transaction=record_progress,
        )
    except _JobEnded:
        forget_bundle()
        return ImportReport().to_dict()
    log.info(
        "bulk import %s batch %d: %d imported, %d duplicates, %d rejected",
        job_id,
        index,
        report.imported,
        report.duplicate_count,
        report.rejected_count,
        extra={"job_id": job_id, "batch": index},
    )
    return report.to_dict()


@app.task(name=BULK_FINISH_TASK, base=BulkTask, **RETRY)
def finish(results: list[dict], job_id: str) -> str:
    """The chord's callback: the job's result is the sum of the batch reports."""
    total = ImportReport()
    for result in results:
        total.add(result)
    summary = total.to_dict()
    with _catalog().session() as s:
        job = repo.get_job(s, job_id)
        prefix = (job.request or {}).get("prefix") if job is not None else None
        done = repo.finish_job(s, job_id, summary)
    if prefix:
        _release(prefix)
    forget_bundle()
    log.info(
        "bulk import %s: %d imported, %d duplicates, %d rejected",
        job_id,
        total.imported,
        total.duplicate_count,
        total.rejected_count,
        extra={"job_id": job_id},
    )
    return "done" if done else "already finished"
