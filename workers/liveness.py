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
- a reaper in every worker (:func:`reap`, run by :func:`workers.reconcile.start`) sends again
  the jobs whose holder is gone, so a check interrupted by a killed worker resumes within a
  minute;
- a job whose workers died ``job_max_worker_losses`` times is a poison message: it fails
  with that reason (:func:`over_loss_limit`) instead of killing workers for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

from celery import Celery
from wharf.market.catalog import Catalog, Job, JobKind, JobState, repo
from wharf.market.catalog.models import utcnow
from wharf.market.settings import Settings

from .app import CHECK_QUEUE, CHECK_TASK, SEARCH_QUEUE, SEARCH_TASK

log = logging.getLogger("wharf.worker")
HOST = socket.gethostname()
#: What the reaper and the reconciler send again, by kind: the task and its queue (bulk-import
#: batches are resumed by their chord's broker).
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
    if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
        return True
    last = job.heartbeat_at or job.started_at
    return last is None or utcnow() - last > timedelta(seconds=settings.job_lost_after_s)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
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
        started = repo.start_job(s, job_id, worker)  # the common case: queued, one statement
        if started is not None:
            s.expunge(started)
            return started
        job = repo.get_job(s, job_id)
        if job is None or job.state != JobState.running:
            return None
        if holder_gone(job, settings):
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


class JobCancelled(Exception):
    """The job was cancelled while this process ran it (``DELETE /v1/jobs/{id}``): stop, and
    record nothing."""


#: The pool process's main thread gets this signal when the job it runs is cancelled; its
#: handler raises :class:`JobCancelled` there (a blocking wait, a sandbox's included, is cut
#: short). Celery's pool processes use SIGUSR1 (soft time limits), not this one.
CANCEL_SIGNAL = signal.SIGUSR2
_cancelled: dict[str, str | None] = {"armed": None}  # the job the main thread may be stopped for


def _on_cancel_signal(signum, frame) -> None:
    job_id = _cancelled["armed"]
    if job_id is not None:  # once: the clean-up that follows runs undisturbed
        _cancelled["armed"] = None
        raise JobCancelled(f"job {job_id} was cancelled")


def _can_interrupt() -> bool:
    """Whether the main thread can be stopped by :data:`CANCEL_SIGNAL` (installing its
    handler now if needed): only when called from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(CANCEL_SIGNAL) is not _on_cancel_signal:
        signal.signal(CANCEL_SIGNAL, _on_cancel_signal)
    return True


@contextlib.contextmanager
def heartbeat(catalog: Catalog, job_id: str, settings: Settings) -> Iterator[None]:
    """Refresh the job's heartbeat from a thread while the block runs. If the job is cancelled
    meanwhile, the block is interrupted with :class:`JobCancelled` at the next beat (when it
    runs in the main thread; elsewhere it runs on, and its outcome is not recorded)."""
    stop = threading.Event()
    worker = this_worker()
    interrupt = _can_interrupt()
    main = threading.main_thread().ident

    def run() -> None:
        while not stop.wait(settings.job_heartbeat_s):
            try:
                with catalog.session() as s:
                    if repo.beat(s, job_id, worker):
                        continue
                    job = repo.get_job(s, job_id)
                    cancelled = job is not None and job.state == JobState.cancelled
            except Exception:  # a catalog hiccup must not end the task; the next beat retries
                log.warning("job %s: heartbeat failed", job_id, exc_info=True)
                continue
            if cancelled:
                log.warning("job %s: cancelled; stopping it", job_id, extra={"job_id": job_id})
                if interrupt and not stop.is_set():
                    signal.pthread_kill(main, CANCEL_SIGNAL)
                return

    if interrupt:
        _cancelled["armed"] = job_id
    thread = threading.Thread(target=run, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        _cancelled["armed"] = None
        thread.join(timeout=5)


def reap(catalog: Catalog, celery: Celery, settings: Settings) -> list[str]:
    """Send again every check and search whose worker is gone; returns their job ids. The
    look is read-only: on SQLite an idle worker takes no write lock."""
    before = utcnow() - timedelta(seconds=settings.job_heartbeat_s)
    with catalog.session(read_only=True) as s:
        gone = [
            (job.id, JobKind(job.kind), job.learnware_id, job.worker)
            for job in repo.silent_jobs(s, before, RESENT)
            if holder_gone(job, settings)
        ]
    if not gone:
        return []
    with catalog.session() as s:  # each one only if still held by the lost worker
        lost = [
            found for found in gone if repo.requeue_job(s, found[0], holder=found[3], lost=True)
        ]
    for job_id, kind, learnware_id, holder in lost:
        send(celery, kind, job_id, learnware_id)
        log.warning("job %s: its worker %s is gone; sent again", job_id, holder)
    return [job_id for job_id, *_ in lost]


def send(celery: Celery, kind: JobKind, job_id: str, learnware_id: int | None) -> None:
    """Send the task of a check or search job again (its task id is the job's id)."""
    task, queue = RESENT[kind]
    args = [job_id, learnware_id] if kind == JobKind.check else [job_id]
    celery.send_task(task, args=args, queue=queue, task_id=job_id, ignore_result=True)
