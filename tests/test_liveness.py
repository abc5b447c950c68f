"""Knowing whether a job's worker is alive: takeovers, duplicates, the reaper and the loss limit
(a real catalog and a real Celery app on the embedded broker; the fault drills in
tests/test_faults.py kill real workers)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from wharf.market.catalog import Catalog, JobKind, JobState, repo
from wharf.market.catalog.models import utcnow
from wharf.market.settings import Settings
from wharf.workers import liveness
from wharf.workers.app import make_celery


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, job_lost_after_s=30, job_max_worker_losses=2)


@pytest.fixture
def catalog(settings) -> Catalog:
    return Catalog.create(settings.catalog_url)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _job(catalog: Catalog, kind: JobKind = JobKind.search) -> str:
    with catalog.session() as s:
        return repo.create_job(s, kind, request={}).id


def test_a_delivery_starts_a_queued_job_and_puts_off_a_duplicate_of_live_work(catalog, settings):
    job_id = _job(catalog)
    job = liveness.begin(catalog, job_id, settings)
    assert job.state == JobState.running and job.worker == liveness.this_worker()
    with pytest.raises(liveness.HeldElsewhere):  # its holder (us) is alive: look again later
        liveness.begin(catalog, job_id, settings)
    with catalog.session() as s:
        assert repo.get_job(s, job_id).worker_losses == 0


def test_a_delivery_takes_over_a_job_whose_process_died(catalog, settings):
    job_id = _job(catalog)
    with catalog.session() as s:
        repo.start_job(s, job_id, f"{liveness.HOST}:{_dead_pid()}")
    job = liveness.begin(catalog, job_id, settings)
    assert (job.worker, job.worker_losses, job.attempts) == (liveness.this_worker(), 1, 2)
    assert liveness.over_loss_limit(job, settings) is None
    with catalog.session() as s:
        repo.requeue_job(s, job_id, holder=job.worker, lost=True)
    job = liveness.begin(catalog, job_id, settings)
    assert "lost 2 times" in liveness.over_loss_limit(job, settings)


def test_a_silent_holder_on_another_host_is_gone_after_the_bound(catalog, settings):
    job_id = _job(catalog)
    with catalog.session() as s:
        repo.start_job(s, job_id, "elsewhere:1")
    with catalog.session() as s:
        job = repo.get_job(s, job_id)
        assert not liveness.holder_gone(job, settings)
        job.heartbeat_at = utcnow() - timedelta(seconds=31)
        assert liveness.holder_gone(job, settings)


def test_the_reaper_sends_again_only_jobs_whose_worker_is_gone(catalog, settings):
    celery = make_celery(settings)
    lost, alive, check = _job(catalog), _job(catalog), _job(catalog, JobKind.check)
    old = utcnow() - timedelta(seconds=10)
    with catalog.session() as s:
        repo.start_job(s, lost, f"{liveness.HOST}:{_dead_pid()}")
        repo.start_job(s, alive, liveness.this_worker())
        repo.start_job(s, check, "elsewhere:7")
        for job_id in (lost, alive, check):
            repo.get_job(s, job_id).heartbeat_at = old  # quiet for a while, not yet 30 s
    assert liveness.reap(catalog, celery, settings) == [lost]
    with catalog.session() as s:
        job = repo.get_job(s, lost)
        assert (job.state, job.worker, job.worker_losses) == (JobState.queued, None, 1)
        assert repo.get_job(s, alive).state == JobState.running
        repo.get_job(s, check).heartbeat_at = utcnow() - timedelta(seconds=31)
    assert liveness.reap(catalog, celery, settings) == [check]
    queued = list((settings.broker_folder / "queue").iterdir())
    assert len(queued) == 2  # one message per job sent again
    assert liveness.reap(catalog, celery, settings) == []  # nothing twice
