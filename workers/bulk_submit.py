"""Bulk-submission tasks, on the index queue: one per batch of the uploaded bundle.

The API stages the bundle (:func:`market.bulk.stage_upload`), creates the bulk job and sends
one ``wharf.bulk.submit`` task per batch. Each makes its valid entries pending learnwares with
check jobs (:func:`market.bulk_submit.stage_batch`), then sends those checks to the check
queue; the checks settle the bulk job as they end (:mod:`workers.tasks`). A batch task that
runs again after its worker died stages nothing twice and sends its queued checks again.
"""

from __future__ import annotations

import logging

from celery import Task
from wharf.market.bulk import drop_members_index, forget_bundle, release_staged
from wharf.market.bulk_submit import stage_batch
from wharf.market.catalog import repo
from wharf.market.settings import get_settings

from .app import BULK_SUBMIT_TASK, CHECK_QUEUE, CHECK_TASK, app
from .retry import RETRY

log = logging.getLogger("wharf.worker")

#: A batch of 100 takes well under a second; these only stop a task that hangs.
SOFT_TIME_LIMIT_S = 600
TIME_LIMIT_S = 660


def _catalog():
    from .tasks import catalog  # the worker's one engine (workers.tasks imports this module)

    return catalog()


def _store():
    from .tasks import store

    return store()


def release(prefix: str | None) -> None:
    """After a bulk submission ended (committed): drop its staged bundle's members index, and
    the tar unless learnwares keep their packages in it."""
    if prefix:
        with _catalog().session(read_only=True) as s:
            release_staged(s, _store(), prefix)
        forget_bundle()


class SubmitTask(Task):
    """Fails the bulk job when a batch task gives up; the checks already sent go on."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id, index = args[0], args[1]
        message = (
            f"batch {index + 1} could not be staged: {type(exc).__name__}: {exc}. The checks "
            "of the entries staged before go on; submit the others again."
        )
        with _catalog().session() as s:
            repo.fail_job(s, job_id, message)
            job = repo.get_job(s, job_id)
            prefix = (job.request or {}).get("prefix") if job is not None else None
        release(prefix)


@app.task(
    name=BULK_SUBMIT_TASK,
    base=SubmitTask,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    time_limit=TIME_LIMIT_S,
    **RETRY,
)
def submit_batch(job_id: str, index: int) -> str:
    """Stage batch ``index`` of a bulk submission and send its checks."""
    max_bytes = get_settings().max_upload_bytes
    outcome = stage_batch(_catalog(), _store(), job_id, index, max_package_bytes=max_bytes)
    for check_id, learnware_id in outcome.checks:
        app.send_task(
            CHECK_TASK,
            args=[check_id, learnware_id],
            queue=CHECK_QUEUE,
            task_id=check_id,
            ignore_result=True,
        )
    if outcome.finished:
        release(outcome.prefix)
    elif outcome.staged and outcome.prefix:
        drop_members_index(_store(), outcome.prefix)
        forget_bundle()
    log.info(
        "bulk submission %s batch %d: %d checks queued",
        job_id,
        index,
        len(outcome.checks),
        extra={"job_id": job_id, "batch": index},
    )
    return f"{len(outcome.checks)} checks"
