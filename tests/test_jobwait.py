"""Waiting for a job's end: the catalog hook that announces ended jobs after their commit, the
workers' Redis announcer, and the API's waiter (api/waiting.py) on real Redis, without Redis,
and with Redis down."""

import asyncio
import contextlib
import logging
import time

import pytest
from wharf.api import waiting
from wharf.api.waiting import JobWaiter
from wharf.market.catalog import Catalog, JobKind, repo
from wharf.market.jobends import RedisAnnouncer, announcer
from wharf.market.settings import Settings


@pytest.fixture
def catalog(tmp_path):
    return Catalog.create(f"sqlite:///{tmp_path / 'c.db'}")


def new_job(catalog) -> str:
    with catalog.session() as s:
        return repo.create_job(s, JobKind.search).id


def test_ended_jobs_are_announced_after_their_commit_only(catalog):
    announced: list[list[str]] = []
    catalog.on_jobs_ended = announced.append
    a, b, c = new_job(catalog), new_job(catalog), new_job(catalog)
    with catalog.session() as s:
        repo.finish_job(s, a, {"singles": []})
        repo.fail_job(s, b, "broken")
        repo.set_progress(s, c, 0.5)  # not an end
        assert announced == []  # not before the commit
    assert announced == [sorted([a, b])]
    with catalog.session() as s:
        assert not repo.finish_job(s, a, {})  # already ended: nothing new
    with pytest.raises(RuntimeError), catalog.session() as s:
        repo.fail_job(s, c, "rolled back")
        raise RuntimeError
    with catalog.session() as s:
        repo.set_progress(s, c, 0.6)
    assert announced == [sorted([a, b])]  # neither the rolled-back end nor a later commit


def test_an_announcement_that_fails_does_not_undo_the_end(catalog, caplog):
    def broken(ids):
        raise OSError("no route")

    catalog.on_jobs_ended = broken
    job = new_job(catalog)
    with caplog.at_level(logging.WARNING), catalog.session() as s:
        repo.finish_job(s, job, {})
    with catalog.session() as s:
        assert repo.get_job(s, job).state == "succeeded"
    assert "could not announce the end of jobs" in caplog.text


def test_announcements_need_a_redis_broker(tmp_path, redis_url):
    assert announcer(Settings(data_dir=tmp_path)) is None  # the embedded file broker
    assert announcer(Settings(data_dir=tmp_path, broker_url=redis_url)).url == redis_url


class Job:
    """A job whose reads are counted; it ends when ``end`` is set."""

    def __init__(self):
        self.reads = 0
        self.ended = False

    async def read(self) -> dict:
        self.reads += 1
        return {"state": "succeeded" if self.ended else "running"}


def ended(job: dict) -> bool:
    return job["state"] == "succeeded"


def test_a_waiter_wakes_on_the_announcement_without_reading_meanwhile(redis_url, monkeypatch):
    monkeypatch.setattr(waiting, "RECHECK_S", 30.0)  # only the announcement can wake it early
    job, job_id = Job(), "a" * 32

    async def scenario():
        waiter = JobWaiter(redis_url)

        async def end_soon():
            await asyncio.sleep(0.3)
            job.ended = True
            await asyncio.to_thread(RedisAnnouncer(redis_url), [job_id])

        ender = asyncio.create_task(end_soon())
        t0 = time.monotonic()
        out = await waiter.wait(job_id, job.read, ended, 10.0)
        elapsed = time.monotonic() - t0
        await ender
        await waiter.close()
        return out, elapsed

    out, elapsed = asyncio.run(scenario())
    assert out == {"state": "succeeded"}
    assert job.reads == 2  # once before waiting, once when woken
    assert elapsed < 5.0  # woken, not timed out


async def _live(waiter: JobWaiter) -> None:
    """Bring the waiter's subscription up (its first wait does)."""
    done = Job()
    done.ended = True
    await waiter.wait("0" * 32, done.read, ended, 1.0)


@pytest.mark.parametrize("ends", ["before the wait", "during the wait"])
def test_a_watched_wait_reads_its_job_once_it_has_ended(redis_url, monkeypatch, ends):
    """POST /v1/searches?wait: a watch started before the job exists lets the wait skip the
    read that would find the job just queued; an end announced before the wait begins (a
    very quick job) is not missed."""
    monkeypatch.setattr(waiting, "RECHECK_S", 30.0)
    job, job_id = Job(), "1" * 32

    async def scenario():
        waiter = JobWaiter(redis_url)
        await _live(waiter)
        watch = waiter.watch()
        assert watch.unbroken()

        async def end(delay: float):
            await asyncio.sleep(delay)
            job.ended = True
            await asyncio.to_thread(RedisAnnouncer(redis_url), [job_id])

        if ends == "before the wait":
            await end(0.0)
            for _ in range(100):  # until the subscription has passed it on
                if job_id in watch.seen:
                    break
                await asyncio.sleep(0.01)
            ender = None
        else:
            ender = asyncio.create_task(end(0.3))
        t0 = time.monotonic()
        try:
            out = await waiter.wait(job_id, job.read, ended, 10.0, since=watch)
        finally:
            watch.close()
        elapsed = time.monotonic() - t0
        if ender is not None:
            await ender
        assert not waiter._watches
        await waiter.close()
        return out, elapsed

    out, elapsed = asyncio.run(scenario())
    assert out == {"state": "succeeded"}
    assert job.reads == 1  # only once it had ended
    assert elapsed < 5.0


def test_a_watch_without_a_live_subscription_reads_at_once():
    job = Job()
    job.ended = True

    async def scenario():
        waiter = JobWaiter(None)  # no Redis: nothing is announced
        watch = waiter.watch()
        assert not watch.unbroken()
        t0 = time.monotonic()
        out = await waiter.wait("2" * 32, job.read, ended, 10.0, since=watch)
        watch.close()
        return out, time.monotonic() - t0

    out, elapsed = asyncio.run(scenario())
    assert out == {"state": "succeeded"} and job.reads == 1 and elapsed < 0.5


def test_a_watch_spans_one_subscription(redis_url):
    async def scenario():
        waiter = JobWaiter(redis_url)
        await _live(waiter)
        watch = waiter.watch()
        assert watch.unbroken()
        waiter._listener.cancel()  # the subscription ends (as when Redis goes away)
        with contextlib.suppress(asyncio.CancelledError):
            await waiter._listener
        assert not watch.unbroken()
        watch.close()
        await waiter.close()

    asyncio.run(scenario())


def test_without_redis_a_waiter_reads_at_growing_pauses_until_the_end(monkeypatch):
    job = Job()

    async def scenario():
        waiter = JobWaiter(None)
        asyncio.get_running_loop().call_later(0.3, setattr, job, "ended", True)
        return await waiter.wait("b" * 32, job.read, ended, 10.0)

    assert asyncio.run(scenario()) == {"state": "succeeded"}
    # 5 ms, growing by half: about a dozen reads in 0.3 s, not one every few milliseconds
    assert 3 <= job.reads <= 20


def test_a_wait_that_runs_out_answers_with_the_job_as_it_is():
    job = Job()

    async def scenario():
        t0 = time.monotonic()
        out = await JobWaiter(None).wait("c" * 32, job.read, ended, 0.2)
        return out, time.monotonic() - t0

    out, elapsed = asyncio.run(scenario())
    assert out == {"state": "running"} and 0.2 <= elapsed < 2.0


def test_with_redis_down_a_waiter_reads_on_its_own(closed_port, caplog):
    job = Job()

    async def scenario():
        waiter = JobWaiter(f"redis://127.0.0.1:{closed_port}/0")
        asyncio.get_running_loop().call_later(0.3, setattr, job, "ended", True)
        out = await waiter.wait("d" * 32, job.read, ended, 10.0)
        await waiter.close()
        return out

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == {"state": "succeeded"}
    assert job.reads >= 2
    assert "no announcements of ended jobs from Redis" in caplog.text


def test_an_announcer_without_redis_warns_and_goes_on(closed_port, caplog):
    announce = RedisAnnouncer(f"redis://127.0.0.1:{closed_port}/0")
    with caplog.at_level(logging.WARNING):
        announce(["e" * 32])
        announce(["f" * 32])  # at most one warning a minute
    assert caplog.text.count("could not announce the end of job(s)") == 1
