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
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
#: ``armed``: the job the main thread may be stopped for now; ``target``: the job a signal was
#: sent for. The handler raises only when they agree, so a signal that arrives after its job
#: ended cannot stop the next one.
_cancelled: dict[str, str | None] = {"armed": None, "target": None}


def _on_cancel_signal(signum, frame) -> None:
    job_id = _cancelled["armed"]
    if job_id is not None and job_id == _cancelled["target"]:
        _cancelled["armed"] = None  # once: the clean-up that follows runs undisturbed
        raise JobCancelled(f"job {job_id} was cancelled")


def _can_interrupt() -> bool:
    """Whether the main thread can be stopped by :data:`CANCEL_SIGNAL` (installing its
    handler now if needed): only when called from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(CANCEL_SIGNAL) is not _on_cancel_signal:
        signal.signal(CANCEL_SIGNAL, _on_cancel_signal)
    return True


@dataclass(eq=False)
class _Running:
    """A job this process runs, as the heartbeat thread sees it."""

    catalog: Catalog
    job_id: str
    worker: str
    interval: float
    interrupt: bool
    due: float  # time.monotonic() of its next beat
    active: bool = True


class _Heartbeats:
    """One thread per process refreshes the heartbeat of every job the process runs.

    A thread of its own for each job cost a start and a join on every search (most of which
    end long before their first beat); this one is started once, sleeps until the next beat
    is due, and a job only adds and removes its entry.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[int, _Running] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, running: _Running) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # After a fork the parent's thread is not running here: start this process's.
                self._jobs = {}
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
            self._jobs[id(running)] = running
            self._cond.notify()

    def remove(self, running: _Running) -> None:
        with self._cond:
            running.active = False
            self._jobs.pop(id(running), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [r for r in self._jobs.values() if r.due <= now]
                if not due:
                    nearest = min((r.due for r in self._jobs.values()), default=now + 60.0)
                    self._cond.wait(nearest - now)
                    continue
                for r in due:
                    r.due = now + r.interval
            for r in due:
                self._beat(r)

    def _beat(self, r: _Running) -> None:
        try:
            with r.catalog.session() as s:
                if repo.beat(s, r.job_id, r.worker):
                    return
                job = repo.get_job(s, r.job_id)
                cancelled = job is not None and job.state == JobState.cancelled
        except Exception:  # a catalog hiccup must not end the task; the next beat retries
            log.warning("job %s: heartbeat failed", r.job_id, exc_info=True)
            return
        if not cancelled:
            return
        with self._cond:
            if not r.active:
                return
            self._jobs.pop(id(r), None)  # stopped once
            log.warning("job %s: cancelled; stopping it", r.job_id, extra={"job_id": r.job_id})
            if r.interrupt:
                _cancelled["target"] = r.job_id
                signal.pthread_kill(threading.main_thread().ident, CANCEL_SIGNAL)


_heartbeats = _Heartbeats()


@contextlib.contextmanager
def heartbeat(catalog: Catalog, job_id: str, settings: Settings) -> Iterator[None]:
    """Refresh the job's heartbeat every ``job_heartbeat_s`` while the block runs. If the job
    is cancelled meanwhile, the block is interrupted with :class:`JobCancelled` at the next
    beat (when it runs in the main thread; elsewhere it runs on, and its outcome is not
    recorded)."""
    interrupt = _can_interrupt()
    interval = settings.job_heartbeat_s
    running = _Running(
        catalog, job_id, this_worker(), interval, interrupt, time.monotonic() + interval
    )
    if interrupt:
        _cancelled["armed"] = job_id
    _heartbeats.add(running)
    try:
        yield
    finally:
        _heartbeats.remove(running)
        if interrupt:
            _cancelled["armed"] = None


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
