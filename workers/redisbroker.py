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

from kombu.transport import redis


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
