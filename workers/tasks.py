"""Task bodies. Each takes a job id (and a learnware id), never large objects, and is
idempotent: a task that runs again after its worker died finds the catalog's state and either
finishes the work or does nothing.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path

from billiard.process import current_process
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)
from wharf.market import logs
from wharf.market.bulk_submit import settle
from wharf.market.catalog import Catalog, LearnwareStatus, repo
from wharf.market.catalog.models import utcnow
from wharf.market.checker import SandboxUnavailable, check_submission, unavailable_reason
from wharf.market.jobends import announcer
from wharf.market.packages import PackageRef, download_package
from wharf.market.settings import get_settings
from wharf.market.store import make_store
from wharf.specification.files import dumps_spec

from . import (
    bulk,  # noqa: F401 (registers the bulk-import tasks)
    bulk_submit,
    liveness,
    reconcile,
    scratch,
)
from .app import CHECK_QUEUE, CHECK_TASK, SEARCH_TASK, app
from .retry import RETRY, TRANSIENT
from .searching import run_search

# torch, the checker and the search are imported here, in the worker's parent process, so the
# forked pool processes share them and no first task pays for the imports.

log = logging.getLogger("wharf.worker")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger, **_) -> None:
    logs.configure(get_settings(), logger)


class SearchAbandoned(RuntimeError):
    """A search whose workers died too often running it."""


#: A check that finds no working sandbox goes back to the queue (another worker may have one)
#: this many times, this many seconds apart; then its job fails and the learnware stays pending.
SANDBOX_RETRIES = 2
SANDBOX_RETRY_S = 10


@worker_init.connect
def _refuse_checks_without_a_sandbox(sender, **_) -> None:
    """A worker that would take checks starts only where it can run submitted models in the
    sandbox: otherwise each check it took would fail for the worker's fault."""
    if CHECK_QUEUE not in sender.app.amqp.queues.consume_from:
        return
    problem = unavailable_reason(get_settings())
    if problem is not None:
        raise SystemExit(
            f"this worker cannot take checks (the {CHECK_QUEUE!r} queue): {problem}. Fix the "
            "sandbox (deploy/README.md, 'Check workers: the sandbox'), or give the worker "
            "other queues (--queues search,index)"
        )


@worker_process_init.connect
def _start_pool_process(**_) -> None:
    """Each pool process works in a scratch folder of its own (:mod:`.scratch`); the first
    pool process of each worker also runs the reconciler (:mod:`.reconcile`), which sends
    again the jobs whose worker died or whose message the broker lost, and sweeps what dead
    processes left on disk. Not the worker's parent process: it forks new pool processes at
    any moment, and a thread of its own caught inside the catalog's (or SQLite's) locks would
    leave them held in the child, which would then wait on them for ever."""
    settings = get_settings()
    scratch.enter(settings)
    if getattr(current_process(), "index", 0) == 0:  # billiard numbers pool processes from 0
        reconcile.start(catalog(), app, settings)


@worker_process_shutdown.connect
def _leave_scratch(**_) -> None:
    scratch.leave()


@cache
def catalog() -> Catalog:
    settings = get_settings()
    catalog = Catalog(settings.catalog_url)
    catalog.on_jobs_ended = announcer(settings)  # wakes the requests waiting for them
    return catalog


@cache
def store():
    return make_store(get_settings())


class JobTask(Task):
    """Marks the job failed (a terminal state) when the task gives up, and queued again before
    a retry is sent (a retry is not a lost worker)."""

    # A job reports through the catalog: nothing reads the task's own result (or state), so
    # storing it in the result backend would only cost a round trip after every job.
    ignore_result = True

    def retry(self, *args, **kwargs):
        countdown = kwargs.get("countdown")
        due = kwargs.get("eta") or utcnow() + timedelta(
            seconds=self.default_retry_delay if countdown is None else countdown
        )
        try:
            with catalog().session() as s:
                repo.requeue_job(
                    s, self.request.args[0], holder=liveness.this_worker(), lost=False, due=due
                )
        except TRANSIENT:  # the retry finds the job silent, and takes it over
            log.warning("job %s: could not mark it queued for its retry", self.request.id)
        return super().retry(*args, **kwargs)

    def begin(self, job_id: str):
        """The job to run, ``None`` if it has ended; a live holder puts this delivery off."""
        try:
            return liveness.begin(catalog(), job_id, get_settings())
        except liveness.HeldElsewhere as exc:
            raise Task.retry(
                self, exc=exc, countdown=liveness.recheck_s(get_settings()), max_retries=None
            ) from exc

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # A check's learnware goes back to pending, a search's uploaded spec is deleted.
        job_id = args[0] if args else task_id
        reconcile.fail(catalog(), store(), job_id, f"{type(exc).__name__}: {exc}")
        bulk_submit.forget_bundle()


@app.task(
    name=CHECK_TASK,
    base=JobTask,
    bind=True,
    **RETRY,
)
def check(self: JobTask, job_id: str, learnware_id: int) -> str:
    job = self.begin(job_id)
    if job is None:
        return "already finished"
    settings = get_settings()
    give_up = liveness.over_loss_limit(job, settings)
    ended = None
    with catalog().session() as s:
        lw = repo.get_learnware(s, learnware_id)
        if lw is None:
            repo.fail_job(s, job_id, "the learnware was deleted before its check ran")
            ended, early = settle(s, job_id), "deleted"
        elif give_up is not None:
            _reject_poison(s, job_id, lw, give_up)
            ended, early = settle(s, job_id), "gave up"
        elif lw.status in (LearnwareStatus.accepted, LearnwareStatus.rejected):
            repo.finish_job(s, job_id, {"status": lw.status, "learnware_id": repo.format_id(lw.id)})
            ended, early = settle(s, job_id), str(lw.status)
        elif not repo.claim_for_check(s, learnware_id) and lw.status != LearnwareStatus.checking:
            early = "not claimable"
        else:
            # A learnware already 'checking' here means an earlier run of this job died
            # mid-check.
            early = None
            package, semantic, sha256 = PackageRef.of(lw), lw.semantic_spec, lw.content_sha256
            repo.set_progress(s, job_id, 0.05, "downloading")
    if early is not None:
        bulk_submit.release(ended)
        return early

    try:
        report, accepted, text = _run_check(self, job_id, package, semantic, settings)
    except liveness.JobCancelled:
        log.info("job %s: cancelled during its check", job_id, extra={"job_id": job_id})
        return "cancelled"
    status = LearnwareStatus.accepted if accepted else LearnwareStatus.rejected
    with catalog().session() as s:
        result = {"status": status, "learnware_id": repo.format_id(learnware_id)}
        if not repo.finish_job(s, job_id, result):  # cancelled meanwhile: nothing is recorded
            return "ended meanwhile"
        repo.finish_check(
            s,
            learnware_id,
            accepted=accepted,
            log=text,
            spec_meta=_catalog_spec_meta(report.spec_meta) if accepted else None,
            stat_spec_json=dumps_spec(report.stat_spec) if accepted else None,
            sha256=sha256,  # a package replaced meanwhile is not overwritten by this result
        )
        ended = settle(s, job_id)  # the bulk submission it belongs to, if any
    bulk_submit.release(ended)
    log.info(
        "learnware %s %s",
        repo.format_id(learnware_id),
        status,
        extra={"job_id": job_id, "learnware_id": repo.format_id(learnware_id), "status": status},
    )
    return status


def _run_check(self: JobTask, job_id: str, package: PackageRef, semantic: dict, settings):
    """Download and check the package in a scratch folder of this process's (removed however
    the check ends); ``(report, accepted, log)``. :class:`liveness.JobCancelled` if the job is
    cancelled meanwhile (the sandbox is killed on the way out)."""
    with (
        liveness.heartbeat(catalog(), job_id, settings),
        tempfile.TemporaryDirectory(prefix="wharf-check-") as tmp,
    ):
        path = Path(tmp) / "package.zip"
        download_package(store(), package, path)
        with catalog().session() as s:
            repo.set_progress(s, job_id, 0.2, "checking")
        try:
            report = check_submission(
                path, semantic, settings=settings, work_dir=Path(tmp) / "work"
            )
            return report, report.accepted, report.log
        except SoftTimeLimitExceeded:
            text = f"rejected: the check exceeded {settings.check_soft_time_limit_s} s\n"
            return None, False, text
        except SandboxUnavailable as exc:
            retry = self.retry(exc=exc, countdown=SANDBOX_RETRY_S, max_retries=SANDBOX_RETRIES)
            raise retry from exc


def _reject_poison(s, job_id: str, lw, reason: str) -> None:
    """Give up on a check that keeps killing its workers: the job fails and the learnware is
    rejected, with the reason in its log."""
    repo.fail_job(s, job_id, reason)
    if repo.claim_for_check(s, lw.id) or lw.status == LearnwareStatus.checking:
        repo.finish_check(
            s,
            lw.id,
            accepted=False,
            log=f"rejected: {reason}. Nothing in the package was judged; this is what its "
            "check did to the market's workers.\n",
            spec_meta=None,
            stat_spec_json=None,
            sha256=lw.content_sha256,
        )
    log.warning("learnware %s: %s", repo.format_id(lw.id), reason, extra={"job_id": job_id})


def _catalog_spec_meta(meta: dict) -> dict:
    return {
        "type": meta["spec_type"],
        "shape": list(meta["spec_shape"]),
        "gamma": meta["spec_gamma"],
        "points": meta["spec_points"],
        "num_points": meta["num_points"],
    }


@app.task(
    name=SEARCH_TASK,
    base=JobTask,
    bind=True,
    **RETRY,
)
def search(self: JobTask, job_id: str) -> str:
    job = self.begin(job_id)
    if job is None:
        return "already finished"
    settings = get_settings()
    request = dict(job.request or {})
    give_up = liveness.over_loss_limit(job, settings)
    if give_up is not None:
        raise SearchAbandoned(give_up)  # JobTask.on_failure fails the job, removes its spec
    try:
        with liveness.heartbeat(catalog(), job_id, settings):
            result = run_search(catalog(), store(), settings, request)
    except liveness.JobCancelled:
        return "cancelled"  # its spec was deleted by the cancellation
    with catalog().session() as s:
        done = repo.finish_job(s, job_id, result)
    if request.get("spec_key"):
        store().delete(request["spec_key"])
    if not done:
        return "ended meanwhile"
    stats = result.get("stats", {})
    log.info(
        "search %s: %d results from %d candidates",
        job_id,
        len(result.get("singles", [])),
        stats.get("candidates", 0),
        extra={
            "job_id": job_id,
            "results": len(result.get("singles", [])),
            "ms": stats.get("timings_ms", {}).get("total"),
        },
    )
    return "done"
