"""Waiting for a job to end inside a request: ``GET /v1/jobs/{id}?wait=S`` and
``POST /v1/searches?wait=S`` answer as soon as the job ends, or after ``S`` seconds (at most
``WHARF_JOB_WAIT_MAX_S``) with the job still running.

A waiting request holds no thread and no catalog session while it waits: it reads the job
(a short read in the thread pool), then sleeps on an :class:`asyncio.Event`. With Redis, each
API process keeps one subscription to the channel where workers announce the jobs they end
(:mod:`market.jobends`) and sets the events of the requests waiting for them; a waiting
request also reads the job again every :data:`RECHECK_S` in case an announcement was lost.
Without Redis (the embedded broker), or while Redis is unreachable, it reads the job after
:data:`FIRST_PAUSE_S`, then at pauses growing by half up to :data:`LONGEST_PAUSE_S`.

A request that makes the job it waits for (``POST /v1/searches?wait=S``) starts a
:meth:`JobWaiter.watch` before the job exists: when the subscription stayed up from then on,
every end announced since is known to it, so the wait skips the read that would find the job
just queued, and reads it once it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wharf.market.jobends import CHANNEL

log = logging.getLogger("wharf.api")

#: With a live subscription: how often a waiting request reads its job anyway.
RECHECK_S = 1.0
#: Without one: the first pause between reads, and the longest.
FIRST_PAUSE_S = 0.005
LONGEST_PAUSE_S = 0.25
#: How long a request waits for the subscription's first connection before it reads on its own.
CONNECT_WAIT_S = 0.5
#: Pauses between attempts to subscribe again after Redis went away.
RECONNECT_S = (0.1, 0.5, 1.0, 2.0, 5.0)

T = TypeVar("T")


class Watch:
    """The ends announced while a request makes its job (:meth:`JobWaiter.watch`)."""

    def __init__(self, waiter: JobWaiter, epoch: int | None):
        self.waiter = waiter
        #: The subscription this watch started under (``None``: none was up).
        self.epoch = epoch
        self.seen: set[str] = set()

    def unbroken(self) -> bool:
        """Whether every end announced since the watch started has reached it."""
        return self.epoch is not None and self.waiter._live and self.epoch == self.waiter._epoch

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.waiter._watches.remove(self)


class JobWaiter:
    """The requests of one API process that wait for jobs, and their wake-up calls.

    ``redis_url`` is where workers announce ended jobs (``None``: nowhere, so waiting requests
    read the catalog now and then). The subscription starts with the first wait, in the event
    loop that serves it.
    """

    def __init__(self, redis_url: str | None):
        self.redis_url = redis_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._live = False  # subscribed: announcements arrive
        self._epoch = 0  # counts subscriptions: a watch spans one
        self._tried: asyncio.Event | None = None  # the first attempt to subscribe is over
        self._watches: list[Watch] = []

    async def wait(
        self,
        job_id: str,
        read: Callable[[], Awaitable[T]],
        ended: Callable[[T], bool],
        seconds: float,
        *,
        since: Watch | None = None,
    ) -> T:
        """``read()`` the job until ``ended`` says so or ``seconds`` have passed; returns the
        last read. ``since``: a watch started before the job was made; while it is unbroken
        and has not seen the job end, the job has not ended, and the first read waits for
        its announcement (or :data:`RECHECK_S`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        woken = asyncio.Event()
        self._bind(loop)
        self._waiting.setdefault(job_id, set()).add(woken)
        try:
            await self._subscribed()  # before the first read: no announcement falls between
            pause = FIRST_PAUSE_S
            if since is not None and since.unbroken() and job_id not in since.seen:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(seconds, RECHECK_S))
            while True:
                woken.clear()
                job = await read()
                left = deadline - loop.time()
                if ended(job) or left <= 0:
                    return job
                if self._live:
                    timeout = min(left, RECHECK_S)
                else:
                    timeout = min(left, pause)
                    pause = min(pause * 1.5, LONGEST_PAUSE_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout)
        finally:
            events = self._waiting.get(job_id)
            if events is not None:
                events.discard(woken)
                if not events:
                    del self._waiting[job_id]

    def watch(self) -> Watch:
        """Start recording the ends announced from now on (call it from the event loop that
        will wait, before the job exists); :meth:`Watch.close` it once the wait is over."""
        self._bind(asyncio.get_running_loop())
        watch = Watch(self, self._epoch if self._live else None)
        if watch.epoch is not None:
            self._watches.append(watch)
        return watch

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (a server has one; a test client may make one per request)."""
        if loop is self._loop:
            return
        if self._listener is not None:
            self._listener.cancel()
        self._loop, self._listener, self._live, self._tried = loop, None, False, None
        self._epoch += 1
        self._waiting.clear()
        self._watches.clear()

    async def _subscribed(self) -> None:
        if self.redis_url is None:
            return
        if self._listener is None:
            self._tried = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(), name="wharf-job-ends")
        if self._tried is not None and not self._tried.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tried.wait(), CONNECT_WAIT_S)

    async def _listen(self) -> None:
        """Keep a subscription to the announcements, and wake the requests they concern."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        failures = 0
        while True:
            client = aioredis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=2.0,
                socket_keepalive=True,
                health_check_interval=30,
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                # Subscribed once Redis confirms it: an announcement published from then on
                # arrives here.
                reply = await pubsub.get_message(timeout=2.0)
                if reply is None or reply["type"] != "subscribe":
                    raise ConnectionError("Redis did not confirm the subscription")
                if failures:
                    log.info("announcements of ended jobs arrive again")
                self._live, failures = True, 0
                self._epoch += 1
                self._tried_over()
                self._wake_all()  # what ended while nothing was subscribed is read now
                while True:
                    message = await pubsub.get_message(timeout=30.0)  # health checks between
                    if message is not None and message["type"] == "message":
                        self._wake(message["data"])
            except (RedisError, OSError) as exc:
                if failures == 0:
                    log.warning(
                        "no announcements of ended jobs from Redis (%s); waiting requests read "
                        "the catalog until they are back",
                        exc,
                    )
            finally:
                if self._live:
                    self._epoch += 1  # the watches of that subscription are broken
                self._live = False
                self._tried_over()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            self._wake_all()  # to read on their own from now on
            await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1

    def _tried_over(self) -> None:
        if self._tried is not None:
            self._tried.set()

    def _wake(self, data: Any) -> None:
        job_id = data.decode() if isinstance(data, bytes) else str(data)
        for watch in self._watches:
            watch.seen.add(job_id)
        for event in self._waiting.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()

    async def close(self) -> None:
        """Stop the subscription (at the application's shutdown)."""
        listener, self._listener = self._listener, None
        if listener is not None and self._loop is asyncio.get_running_loop():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
