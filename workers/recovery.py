"""Sending again every unfinished job that no live worker holds: ``wharf admin requeue``, and
the start of a market (``wharf up``).

The workers' reconciler does this by itself within a minute (:mod:`workers.reconcile`);
:func:`requeue` is the operator's way to do it now, for every kind of job and every
unfinished state, saying what it did:

- a **queued check or search** whose message the broker does not hold (or every one, on a
  broker whose messages cannot be read) is sent again; one the broker holds is left there;
- a **running check or search** whose worker is gone (a dead process on this host, or silent
  for ``WHARF_JOB_LOST_AFTER_S``) is queued and sent again, counting a worker loss (none when
  the whole market was stopped: :func:`requeue` with ``market_stopped``); one under a live
  worker is left to it;
- a **pending or checking learnware with no check under way** (its check failed for the
  market's fault: the sandbox or the store unavailable, the broker unreachable when it was
  submitted, its message lost too often) gets a new check job, in its bulk submission if it
  was in one. A learnware whose last check was cancelled is its owner's to send again;
- a **bulk submission** still staging, that the broker holds no task of, gets the staging
  tasks of its batches not yet staged (each stages nothing twice);
- a **bulk import** that the broker holds no task of is sent again as a whole (a batch that
  ran already imports nothing twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import Celery, chord
from wharf.market.bulk_submit import is_bulk_submission
from wharf.market.catalog import Catalog, JobKind, JobState, LearnwareStatus, repo
from wharf.market.settings import Settings

from . import liveness, reconcile
from .app import BULK_BATCH_TASK, BULK_FINISH_TASK, INDEX_QUEUE


@dataclass
class Requeued:
    """What :func:`requeue` did: job ids (learnware ids for ``rechecked``)."""

    resent: list[str] = field(default_factory=list)  # queued, message missing: sent again
    in_broker: list[str] = field(default_factory=list)  # queued, message there: left alone
    taken_over: list[str] = field(default_factory=list)  # running, worker gone: sent again
    running: list[str] = field(default_factory=list)  # running under a live worker: left alone
    rechecked: list[str] = field(default_factory=list)  # learnwares given a new check
    staging: list[str] = field(default_factory=list)  # bulk submissions: staging sent again
    imports: list[str] = field(default_factory=list)  # bulk imports sent again
    broker_read: bool = True  # whether the broker's messages could be read

    @property
    def sent(self) -> int:
        """How many jobs were sent again, or made."""
        return sum(
            map(len, (self.resent, self.taken_over, self.rechecked, self.staging, self.imports))
        )

    def lines(self) -> list[str]:
        """What was done, for people (one line per kind of action, none for nothing)."""
        out = []
        where = "" if self.broker_read else " (the broker's messages cannot be read: all of them)"
        for ids, what in (
            (self.resent, f"queued jobs whose broker message was missing, sent again{where}"),
            (self.taken_over, "running jobs whose worker is gone, queued and sent again"),
            (self.rechecked, "learnwares pending with no check under way, checked again"),
            (self.staging, "bulk submissions still staging, staging tasks sent again"),
            (self.imports, "bulk imports, sent again"),
            (self.in_broker, "queued jobs whose message the broker holds, left there"),
            (self.running, "running jobs under a live worker, left to it"),
        ):
            if ids:
                shown = ", ".join(i[:8] for i in ids[:10]) + (", …" if len(ids) > 10 else "")
                out.append(f"{what}: {len(ids)} ({shown})")
        return out


def requeue(
    catalog: Catalog, celery: Celery, settings: Settings, *, market_stopped: bool = False
) -> Requeued:
    """Send again every unfinished job that no live worker holds (see the module).
    ``market_stopped``: every worker of the market has stopped (``wharf up`` starting), so a
    running job was interrupted, not lost: no worker loss is counted."""
    done = Requeued()
    held = reconcile.broker_jobs(celery, settings)
    done.broker_read = held is not None
    held = held or set()
    sends: list[tuple[JobKind, str, int | None]] = []
    with catalog.session() as s:
        for job in repo.unfinished(s, liveness.RESENT):
            kind = JobKind(job.kind)
            if job.state == JobState.queued:
                if job.id in held:
                    done.in_broker.append(job.id)
                elif repo.mark_sent(s, job.id):
                    done.resent.append(job.id)
                    sends.append((kind, job.id, job.learnware_id))
            elif market_stopped or liveness.holder_gone(job, settings):
                if repo.requeue_job(s, job.id, holder=job.worker, lost=not market_stopped):
                    done.taken_over.append(job.id)
                    sends.append((kind, job.id, job.learnware_id))
            else:
                done.running.append(job.id)
        for job_id, learnware_id in _recheck(s):
            done.rechecked.append(repo.format_id(learnware_id))
            sends.append((JobKind.check, job_id, learnware_id))
        bulk = [
            (job.id, is_bulk_submission(job), job.request or {})
            for job in repo.unfinished(s, [JobKind.index])
            if job.id not in held
        ]
    for kind, job_id, learnware_id in sends:
        liveness.send(celery, kind, job_id, learnware_id)
    for job_id, submission, request in bulk:
        if submission:
            batches = reconcile.unstaged(request)
            if batches:
                reconcile.send_staging(celery, job_id, batches)
                done.staging.append(job_id)
        else:
            _send_import(celery, job_id, len(request.get("batches", [])))
            done.imports.append(job_id)
    return done


def _recheck(s) -> list[tuple[str, int]]:
    """New check jobs for the learnwares pending or checking with no check under way:
    ``(job id, learnware id)`` pairs, to send after the commit."""
    made = []
    for status in (LearnwareStatus.checking, LearnwareStatus.pending):
        offset = 0
        while True:
            items, _ = repo.list_learnwares(s, status=status, limit=500, offset=offset)
            if not items:
                break
            offset += len(items)
            for lw in items:
                job = repo.latest_job_for(s, lw.id, JobKind.check)
                if job is not None and job.state in (*repo.UNFINISHED, JobState.cancelled):
                    continue  # under way (handled above), or cancelled by its owner
                repo.reset_to_pending(s, lw.id)
                # A check of a bulk submission stays one: the new job takes the old one's
                # place in it.
                new = repo.create_job(
                    s,
                    JobKind.check,
                    owner_id=lw.owner_id,
                    learnware_id=lw.id,
                    parent_id=job.parent_id if job is not None else None,
                    request=_without_count(job.request) if job is not None else None,
                )
                made.append((new.id, lw.id))
    return made


def _without_count(request: dict | None) -> dict:
    return {k: v for k, v in (request or {}).items() if k != repo.LOST_MESSAGES}


def _send_import(celery: Celery, job_id: str, batches: int) -> None:
    """A bulk import's chord: one task per batch, then the one that finishes the job."""
    header = [
        celery.signature(BULK_BATCH_TASK, args=[job_id, i], queue=INDEX_QUEUE)
        for i in range(batches)
    ]
    body = celery.signature(BULK_FINISH_TASK, args=[job_id], queue=INDEX_QUEUE)
    chord(header, body).apply_async(task_id=job_id)
