"""Knowing whether a running job's worker is still alive, and acting when it is not.

A broker hands a task to another worker only when it learns the first one is gone: at once
when a pool process dies under a live worker (``reject_on_worker_lost``), but only after its
visibility timeout (tens of minutes on Redis) when the whole worker is killed, and never on the
embedded broker. So the catalog keeps its own record: the job row names the process running it
(``host:pid``) and that process refreshes ``heartbeat_at`` every ``job_heartbeat_s``
(:func:`heartbeat`). Then

- a delivery of a job that is already running (:func:`begin`) takes it over only if its holder
  is gone (a dead pid on this host, or silent for ``job_lost_after_s``), and each takeover
  counts one *worker loss*; while the holder lives, the delivery is put off
  (:class:`HeldElsewhere`) and looks again later, so a redelivered duplicate of live work runs
  nothing, and a retry that arrives before its job was set back to queued is not lost;
- a reaper thread in every worker (:func:`start_reaper`) sends again the jobs whose holder is
  gone, so a check interrupted by a killed worker resumes within a minute;
- a job whose workers died ``job_max_worker_losses`` times is a poison message: it fails
  with that reason (:func:`over_loss_limit`) instead of killing workers for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

from celery import Celery
from wharf.market.catalog import Catalog, Job, JobKind, JobState, repo
from wharf.market.catalog.models import utcnow
from wharf.market.settings import Settings

from .app import CHECK_QUEUE, CHECK_TASK, SEARCH_QUEUE, SEARCH_TASK

log = logging.getLogger("wharf.worker")
HOST = socket.gethostname()
#: What the reaper sends again (bulk-import batches are resumed by their chord's broker).
RESENT = {
    JobKind.check: (CHECK_TASK, CHECK_QUEUE),
    JobKind.search: (SEARCH_TASK, SEARCH_QUEUE),
}


def this_worker() -> str:
    """``host:pid`` of the calling process (a pool process, not its parent)."""
    return f"{HOST}:{os.getpid()}"


def holder_gone(job: Job, settings: Settings) -> bool:
    """Whether the process last running ``job`` is gone: a pid that no longer exists on this
    host, or no heartbeat for ``job_lost_after_s``."""
    host, _, pid = (job.worker or "").rpartition(":")
    if host == HOST and pid.isdigit() and not _alive(int(pid)):
        return True
    last = job.heartbeat_at or job.started_at
    return last is None or utcnow() - last > timedelta(seconds=settings.job_lost_after_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HeldElsewhere(RuntimeError):
    """A live worker runs the job: look again in :func:`recheck_s` seconds."""


def recheck_s(settings: Settings) -> float:
    return max(settings.job_heartbeat_s, settings.job_lost_after_s / 3)


def begin(catalog: Catalog, job_id: str, settings: Settings) -> Job | None:
    """Start ``job_id`` in this process; ``None`` if it has ended. Raises
    :class:`HeldElsewhere` while a live worker holds it. The returned job is for reading."""
    worker = this_worker()
    with catalog.session() as s:
        job = repo.get_job(s, job_id)
        if job is None or job.state not in (JobState.queued, JobState.running):
            return None
        if job.state == JobState.queued:
            started = repo.start_job(s, job_id, worker)
        elif holder_gone(job, settings):
            started = repo.take_over_job(s, job_id, worker, holder=job.worker)
            if started is not None:
                log.warning(
                    "job %s: its worker %s was lost; running it again (%d loss(es))",
                    job_id,
                    job.worker,
                    started.worker_losses,
                    extra={"job_id": job_id},
                )
        else:
            raise HeldElsewhere(f"job {job_id} is running in {job.worker}")
        if started is not None:
            s.expunge(started)
        return started


def over_loss_limit(job: Job, settings: Settings) -> str | None:
    """The reason to give up on ``job``, if its workers died too often running it."""
    if job.worker_losses < settings.job_max_worker_losses:
        return None
    return (
        f"the worker running this job was lost {job.worker_losses} times (killed, for example "
        "out of memory, or its machine stopped); it is not run again"
    )


@contextlib.contextmanager
def heartbeat(catalog: Catalog, job_id: str, settings: Settings) -> Iterator[None]:
    """Refresh the job's heartbeat from a thread while the block runs."""
    stop = threading.Event()
    worker = this_worker()

    def run() -> None:
        while not stop.wait(settings.job_heartbeat_s):
            try:
                with catalog.session() as s:
                    repo.beat(s, job_id, worker)
            except Exception:  # a catalog hiccup must not end the task; the next beat retries
                log.warning("job %s: heartbeat failed", job_id, exc_info=True)

    thread = threading.Thread(target=run, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def reap(catalog: Catalog, celery: Celery, settings: Settings) -> list[str]:
    """Send again every check and search whose worker is gone; returns their job ids."""
    before = utcnow() - timedelta(seconds=settings.job_heartbeat_s)
    lost: list[tuple[str, JobKind, int | None, str | None]] = []
    with catalog.session() as s:
        for job in repo.silent_jobs(s, before, RESENT):
            found = (job.id, JobKind(job.kind), job.learnware_id, job.worker)
            if holder_gone(job, settings) and repo.requeue_job(
                s, job.id, holder=job.worker, lost=True
            ):
                lost.append(found)
    for job_id, kind, learnware_id, holder in lost:
        task, queue = RESENT[kind]
        args = [job_id, learnware_id] if kind == JobKind.check else [job_id]
        celery.send_task(task, args=args, queue=queue, task_id=job_id)
        log.warning("job %s: its worker %s is gone; sent again", job_id, holder)
    return [job_id for job_id, *_ in lost]


def start_reaper(
    catalog: Catalog, celery: Celery, settings: Settings, *, every_s: float | None = None
) -> Callable[[], None]:
    """Run :func:`reap` now and then every ``every_s`` (default: a third of
    ``job_lost_after_s``) in a daemon thread; returns a function that stops it."""
    interval = every_s if every_s is not None else max(1.0, settings.job_lost_after_s / 3)
    stop = threading.Event()

    def run() -> None:
        while True:
            try:
                reap(catalog, celery, settings)
            except Exception:
                log.warning("the reaper could not look for lost jobs", exc_info=True)
            if stop.wait(interval):
                return

    threading.Thread(target=run, name="wharf-reaper", daemon=True).start()
    return stop.set
