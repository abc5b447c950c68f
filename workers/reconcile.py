"""The reconciler: jobs whose broker message is gone are found and sent again; what dead
processes left on disk is removed.

The catalog is the record of every unfinished job; a broker only carries messages, and can
lose them: a Redis restarted without persistence forgets every message it held, and the
embedded file broker forgets a message once a worker has taken it. A worker that dies while
it runs a job is the reaper's case (:mod:`workers.liveness`); this module covers the jobs that
no worker holds:

- a **queued check or search** whose message was sent (or was due, after a retry's
  countdown) more than ``WHARF_JOB_LOST_AFTER_S`` ago, and that the broker holds no message
  for (neither waiting in a queue nor delivered and unacknowledged), is sent again
  (:func:`resend_lost`). Each time counts in the job's request (``lost_messages``); past
  ``WHARF_JOB_MAX_WORKER_LOSSES`` the job fails saying so, and a check's learnware stays
  ``pending`` (nothing was judged: ``wharf admin requeue`` or sending it again checks it);
- a **bulk submission** still staging, quiet as long, with no staging task in the broker,
  gets the staging tasks of its batches not yet staged again (each stages nothing twice).

Only brokers whose messages can be read are reconciled: Redis (its queues and its
``unacked`` hash) and the embedded file broker. Every worker runs :func:`start` in its first
pool process: a thread that, at the worker's start and then every third of
``WHARF_JOB_LOST_AFTER_S``, runs the reaper, the reconciler and the sweep of scratch folders
left by dead worker processes (:mod:`workers.scratch`), and every :data:`STORE_SWEEP_EVERY_S`
the sweep of partial uploads in the object store. Reconcilers on many workers agree through
the catalog: a job is sent again by whoever first marks it sent (a conditional ``UPDATE``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from wharf.market.bulk import release_staged
from wharf.market.bulk_submit import REQUEST_KEY, is_bulk_submission, settle
from wharf.market.catalog import Catalog, JobKind, JobState, repo
from wharf.market.catalog.models import utcnow
from wharf.market.settings import Settings
from wharf.market.store import ObjectStore, StoreError, make_store, sweep_partial_uploads

from . import fsbroker, liveness, redisbroker, scratch
from .app import BULK_BATCH_TASK, BULK_FINISH_TASK, BULK_SUBMIT_TASK, INDEX_QUEUE, QUEUES

log = logging.getLogger("wharf.worker")

#: Seconds between two sweeps of the object store's partial uploads by a worker.
STORE_SWEEP_EVERY_S = 600.0
_BULK_TASKS = (BULK_SUBMIT_TASK, BULK_BATCH_TASK, BULK_FINISH_TASK)


# -- what the broker holds ----------------------------------------------------------------------


def broker_jobs(celery: Celery, settings: Settings) -> set[str] | None:
    """The ids of the jobs the broker holds a message for (waiting, or delivered and not
    acknowledged; for a bulk task, the job it works on); ``None`` for a broker whose
    messages cannot be read (then nothing is taken for lost)."""
    broker = settings.broker
    if broker.startswith("filesystem"):
        messages = fsbroker.held_messages(settings.broker_folder / "queue", QUEUES)
    elif broker.startswith(("redis://", "rediss://")):
        messages = redisbroker.held_messages(celery, QUEUES)
    else:
        return None
    return {job_id for message in messages for job_id in _jobs_of(message)}


def send_staging(celery: Celery, job_id: str, batches: Iterable[int]) -> None:
    """Send again the staging tasks of a bulk submission's ``batches``."""
    for index in batches:
        celery.send_task(
            BULK_SUBMIT_TASK, args=[job_id, index], queue=INDEX_QUEUE, ignore_result=True
        )


def _jobs_of(message: dict[str, Any]) -> list[str]:
    headers = message.get("headers") or {}
    found = [headers.get("id")]
    task = headers.get("task")
    if task in _BULK_TASKS:
        args = _args(message)
        if args:
            found.append(args[-1] if task == BULK_FINISH_TASK else args[0])
    return [job_id for job_id in found if isinstance(job_id, str)]


def _args(message: dict[str, Any]) -> list[Any]:
    """A task message's positional arguments (Celery's message protocol 2)."""
    try:
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (KeyError, IndexError, TypeError, ValueError):
        return []
    return args if isinstance(args, list) else []


# -- lost messages ------------------------------------------------------------------------------


@dataclass
class Lost:
    """A queued job with no message in the broker."""

    id: str
    kind: JobKind
    learnware_id: int | None
    request: dict[str, Any]


def resend_lost(
    catalog: Catalog,
    celery: Celery,
    settings: Settings,
    *,
    store: ObjectStore | None = None,
    held: set[str] | None = None,
) -> list[str]:
    """Send again the queued checks and searches whose message the broker lost, and the
    staging tasks of bulk submissions it lost; returns the ids of the jobs sent again (or
    failed at the limit). ``held``: what the broker holds (default: read it now)."""
    before = utcnow() - timedelta(seconds=settings.job_lost_after_s)
    with catalog.session(read_only=True) as s:
        quiet = [
            Lost(j.id, JobKind(j.kind), j.learnware_id, dict(j.request or {}))
            for j in repo.quiet_queued_jobs(s, before, liveness.RESENT)
        ]
        staging = [
            (j.id, unstaged(j.request or {}))
            for j in repo.unfinished(s, [JobKind.index])
            if is_bulk_submission(j)
            and unstaged(j.request or {})
            and (j.heartbeat_at or j.created_at) < before
        ]
    if not quiet and not staging:
        return []
    if held is None:
        try:
            held = broker_jobs(celery, settings)
        except Exception as exc:  # the broker is down: nothing can be sent anyway
            log.warning("the reconciler cannot read the broker's messages: %s", exc)
            return []
        if held is None:
            return []
    done = [
        job.id
        for job in quiet
        if job.id not in held and _resend(catalog, celery, settings, job, before, store)
    ]
    for job_id, batches in staging:
        if job_id in held:
            continue
        with catalog.session() as s:
            if not repo.mark_sent(s, job_id, before=before, states=repo.UNFINISHED):
                continue
        send_staging(celery, job_id, batches)
        log.warning(
            "bulk submission %s: no staging task of it in the broker; sent batches %s again",
            job_id,
            ", ".join(str(i + 1) for i in batches),
            extra={"job_id": job_id},
        )
        done.append(job_id)
    return done


def unstaged(request: dict[str, Any]) -> list[int]:
    """The batches of a bulk submission (its job's request) not yet staged."""
    if not request.get(REQUEST_KEY):
        return []
    staged = set(request.get("staged_batches", []))
    return [i for i in range(len(request.get("batches", []))) if i not in staged]


def _resend(
    catalog: Catalog,
    celery: Celery,
    settings: Settings,
    job: Lost,
    before: datetime,
    store: ObjectStore | None,
) -> bool:
    """Send ``job`` again, or fail it past the limit; whether this process did either."""
    lost = int(job.request.get(repo.LOST_MESSAGES, 0)) + 1
    limit = settings.job_max_worker_losses
    if lost > limit:
        reason = (
            f"the broker lost this job's message {lost - 1} times (it was sent again each "
            "time: a broker that keeps no messages across restarts, or a worker that drops "
            "them); it is not sent again"
        )
        if job.kind == JobKind.check:
            reason += ". The learnware stays pending: wharf admin requeue, or sending it "
            reason += "again, has it checked"
        store = store or make_store(settings)
        if not fail(catalog, store, job.id, reason, only_queued_before=before):
            return False  # started, ended or failed meanwhile
        log.warning("job %s: %s", job.id, reason, extra={"job_id": job.id})
        return True
    with catalog.session() as s:
        if not repo.mark_sent(
            s, job.id, before=before, request={**job.request, repo.LOST_MESSAGES: lost}
        ):
            return False  # started, ended or sent again meanwhile
    try:
        liveness.send(celery, job.kind, job.id, job.learnware_id)
    except Exception:
        with catalog.session() as s:  # not sent: this one does not count
            repo.mark_sent(s, job.id, request=job.request)
        raise
    log.warning(
        "job %s (%s): its broker message is gone; sent again (%d of %d)",
        job.id,
        job.kind,
        lost,
        limit,
        extra={"job_id": job.id},
    )
    return True


def fail(
    catalog: Catalog,
    store: ObjectStore,
    job_id: str,
    reason: str,
    *,
    only_queued_before: datetime | None = None,
) -> bool:
    """Fail a check or search that will not run: a check's learnware goes back to
    ``pending`` (nothing judged) and its bulk submission counts it; a search's requirement
    spec is deleted. With ``only_queued_before``, only a job still queued and last sent
    before then. Whether the job was failed here."""
    ended = None
    with catalog.session() as s:
        job = repo.lock_job(s, job_id)
        if job is None or job.state not in repo.UNFINISHED:
            return False
        if only_queued_before is not None and (
            job.state != JobState.queued
            or (job.heartbeat_at or job.created_at) >= only_queued_before
        ):
            return False
        repo.fail_job(s, job_id, reason)
        if job.learnware_id is not None:
            repo.reset_to_pending(s, job.learnware_id)
            ended = settle(s, job_id)
        spec_key = (job.request or {}).get("spec_key")
    if spec_key:
        try:
            store.delete(spec_key)
        except StoreError:
            pass
    if ended:
        with catalog.session(read_only=True) as s:
            release_staged(s, store, ended)
    return True


# -- the periodic pass --------------------------------------------------------------------------


def upkeep(catalog: Catalog, celery: Celery, settings: Settings, store: ObjectStore | None) -> None:
    """One pass: the reaper, the reconciler and the sweep of dead processes' scratch."""
    for duty in (
        lambda: liveness.reap(catalog, celery, settings),
        lambda: resend_lost(catalog, celery, settings, store=store),
        lambda: scratch.sweep(settings),
    ):
        try:
            duty()
        except Exception:
            log.warning("a recovery pass failed; the next one tries again", exc_info=True)


def start(
    catalog: Catalog, celery: Celery, settings: Settings, *, every_s: float | None = None
) -> Callable[[], None]:
    """Run :func:`upkeep` now and then every ``every_s`` (default: a third of
    ``job_lost_after_s``), and the sweep of the store's partial uploads now and every
    :data:`STORE_SWEEP_EVERY_S`, in a daemon thread; returns a function that stops it."""
    interval = every_s if every_s is not None else max(1.0, settings.job_lost_after_s / 3)
    stop = threading.Event()

    def run() -> None:
        store = None
        swept_at = -STORE_SWEEP_EVERY_S
        while True:
            if store is None:
                try:
                    store = make_store(settings)
                except Exception:
                    log.warning("the reconciler cannot open the object store", exc_info=True)
            upkeep(catalog, celery, settings, store)
            if store is not None and time.monotonic() - swept_at >= STORE_SWEEP_EVERY_S:
                swept_at = time.monotonic()
                sweep_partial_uploads(store, settings)
            if stop.wait(interval):
                return

    threading.Thread(target=run, name="wharf-reconciler", daemon=True).start()
    return stop.set
