"""Celery's Redis transport, with one Redis client per channel instead of one per message.

kombu's Redis channel builds a new ``redis.Redis`` around its connection pool for every
message it sends (``Channel._create_client``). The client is a thin object, but building it
fills a table of some 180 response callbacks, which cost more than the ``LPUSH`` itself: at
a hundred enqueues a second it was the largest part of the API's work per request. The
client it builds is the same each time (same pool, same options) and redis-py clients are
thread safe, so each channel keeps the first one it builds. Polling (the asynchronous
client) is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery
from kombu.transport import redis
from kombu.utils.json import loads


class Channel(redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._sync_client is None:
            self._sync_client = super()._create_client()
        return self._sync_client


class Transport(redis.Transport):
    Channel = Channel


def held_messages(celery: Celery, queues: Iterable[str]) -> list[dict]:
    """The messages the Redis broker of ``celery`` holds for ``queues``: waiting in them, and
    delivered to a worker but not yet acknowledged (any queue's). Names and layout are
    kombu's (its channel's priority lists and ``unacked`` hash)."""
    with celery.connection_for_read() as connection:
        channel = connection.default_channel
        keys = [channel._q_for_pri(q, pri) for q in queues for pri in channel.priority_steps]
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.hvals(channel.unacked_key)
            *waiting, unacked = pipe.execute()
    found = [loads(raw) for messages in waiting for raw in messages]
    found += [loads(raw)[0] for raw in unacked]
    return found
