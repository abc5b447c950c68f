"""Announcing the end of jobs, so that requests waiting for one answer as soon as it ends.

A worker that ends a job (:func:`repo.finish_job`, :func:`repo.fail_job`) publishes its id on
the Redis channel :data:`CHANNEL` once the transaction has committed
(:attr:`Catalog.on_jobs_ended`); every API process holds one subscription to it
(:mod:`api.waiting`) and wakes the requests waiting for that job, which then read it from the
catalog. The catalog stays the only record of a job: an announcement carries nothing but the
id, and a lost one (Redis restarted, a worker that could not reach it) only delays an answer
until the waiting request reads the catalog again on its own. Without Redis (the embedded
broker) nothing is announced and waiting requests read the catalog now and then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .settings import Settings

#: The channel of ended jobs: each message is one job's id.
CHANNEL = "wharf:job-ends"
#: Seconds between two warnings about a Redis that does not take announcements.
_WARN_EVERY_S = 60.0

log = logging.getLogger("wharf.jobends")


class RedisAnnouncer:
    """Publishes ended jobs' ids on :data:`CHANNEL` of the Redis at ``url``.

    Use as :attr:`Catalog.on_jobs_ended`. The client connects on first use (after a worker's
    fork, in the process that publishes); a Redis that does not answer within a second costs
    that announcement, and a warning at most once a minute.
    """

    def __init__(self, url: str):
        self.url = url
        self._client: Any = None
        self._warned_at = -_WARN_EVERY_S

    def __call__(self, job_ids: list[str]) -> None:
        import redis

        try:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=1.0, socket_connect_timeout=1.0
                )
            if len(job_ids) == 1:
                self._client.publish(CHANNEL, job_ids[0])
            else:
                with self._client.pipeline(transaction=False) as pipe:
                    for job_id in job_ids:
                        pipe.publish(CHANNEL, job_id)
                    pipe.execute()
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "could not announce the end of job(s) %s: %s; requests waiting for them "
                    "find it by reading the catalog",
                    ", ".join(job_ids),
                    exc,
                )


def announcer(settings: Settings) -> RedisAnnouncer | None:
    """What announces ended jobs under ``settings``: ``None`` without a Redis."""
    url = settings.job_ends_redis
    return RedisAnnouncer(url) if url else None
