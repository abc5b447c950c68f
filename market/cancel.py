"""Cancelling a queued or running job (``DELETE /v1/jobs/{id}``, ``wharf cancel``).

The job ends ``cancelled`` at once, in the caller's transaction, with who cancelled it as its
``error``; nothing it would still do is kept:

- a **check**: its learnware, if still ``pending`` or ``checking`` under this check, becomes
  ``rejected`` with a log saying that the check was cancelled and nothing was judged. That is a
  state its owner can act on, as on any rejection: edit it or send its package again
  (``wharf update``, ``wharf submit``), and it is checked again; or delete it. A worker that
  runs the check stops at its next heartbeat (within ``WHARF_JOB_HEARTBEAT_S``): the sandbox
  running the model is killed, its scratch folder removed, and its outcome is not recorded.
  A check of a bulk submission counts as ``cancelled`` in that submission's result;
- a **search**: its requirement spec is deleted from the store, its result never stored;
- a **bulk submission**: its checks not yet ended are cancelled as above, its entries not yet
  staged are never staged, and its result lists the outcome of every entry so far; a **bulk
  import**: batches not yet imported are not imported (those imported stay).

:func:`cancel` changes the catalog; after the commit, :meth:`Cancellation.clean_up` removes
what the job left in the store.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from .bulk import release_staged
from .bulk_submit import is_bulk_submission, settle, summary
from .catalog import Catalog, Job, JobKind, JobState, repo
from .catalog.models import utcnow
from .store import ObjectStore, StoreError

log = logging.getLogger("wharf.market")


class JobEnded(Exception):
    """The job has ended already: there is nothing to cancel."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} has already {job.state}")
        self.state = JobState(job.state)


@dataclass
class Cancellation:
    """What a cancellation did, and what is left to clean up once it has committed."""

    job_id: str
    spec_keys: list[str] = field(default_factory=list)  # search specs to delete
    prefixes: list[str] = field(default_factory=list)  # staged bundles to release

    def clean_up(self, catalog: Catalog, store: ObjectStore) -> None:
        """After the commit: delete the searches' specs and release the staged bundles (a
        store that fails leaves an orphan object, which misleads nobody)."""
        for key in self.spec_keys:
            with suppress(StoreError):
                store.delete(key)
        for prefix in self.prefixes:
            try:
                with catalog.session(read_only=True) as s:
                    release_staged(s, store, prefix)
            except StoreError:
                log.warning("job %s: could not release its staged bundle %s", self.job_id, prefix)


def cancel(s: Session, job_id: str, *, by: str) -> Cancellation:
    """Cancel ``job_id`` (its row locked) and what depends on it; :class:`JobEnded` if it has
    ended. ``by`` names who cancelled it, for the job's ``error`` and the check log."""
    job = repo.lock_job(s, job_id)
    if job is None:
        raise LookupError(job_id)
    if job.state in repo.ENDED:
        raise JobEnded(job)
    done = Cancellation(job_id)
    reason = f"cancelled by {by}"
    request = job.request or {}
    if job.kind == JobKind.check:
        _cancel_check(s, job, reason)
        prefix = settle(s, job.id)  # the bulk submission it belongs to, which may end with it
        if prefix:
            done.prefixes.append(prefix)
    else:
        if is_bulk_submission(job):
            for child in repo.child_jobs(s, job.id):
                if child.state in repo.UNFINISHED:
                    _cancel_check(s, child, reason)
            job.result = summary(s, job)
        repo.cancel_job(s, job.id, reason)
        if request.get("spec_key"):  # a search's requirement
            done.spec_keys.append(request["spec_key"])
        if request.get("prefix"):  # a bulk job's staged bundle
            done.prefixes.append(request["prefix"])
    s.flush()
    return done


def _cancel_check(s: Session, job: Job, reason: str) -> None:
    """Cancel a check job; its learnware, unless a newer check has taken its place, becomes
    ``rejected`` with a log saying why and what to do."""
    if not repo.cancel_job(s, job.id, reason) or job.learnware_id is None:
        return
    latest = repo.latest_job_for(s, job.learnware_id, JobKind.check)
    if latest is not None and latest.id != job.id:
        return
    shown = repo.format_id(job.learnware_id)
    repo.reject_unchecked(
        s,
        job.learnware_id,
        f"rejected: its check was {reason} at {utcnow().isoformat(timespec='seconds')}, "
        "before it ended; nothing in the package was judged.\n"
        f"To have it checked, send it again: wharf update {shown} (PATCH "
        f"/v1/learnwares/{shown}) or submit the same package; or delete it: wharf delete "
        f"{shown}.\n",
    )
