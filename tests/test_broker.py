"""The Redis broker transport (workers/redisbroker.py): Celery's, with one client per channel."""

from __future__ import annotations

import uuid

import redis
from kombu import Connection
from wharf.market.settings import Settings
from wharf.workers.app import make_celery
from wharf.workers.redisbroker import Channel, Transport


def test_a_channel_reuses_its_client_and_messages_arrive(redis_url):
    queue = f"test-broker-{uuid.uuid4().hex[:8]}"
    with Connection(redis_url, transport=Transport) as conn:
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        producer = conn.Producer()
        for i in range(3):
            producer.publish({"n": i}, routing_key=queue, serializer="json")
        assert channel._create_client() is channel._create_client()
        assert channel._create_client(asynchronous=True) is not channel._create_client()
        received = conn.SimpleQueue(queue)
        try:
            got = []
            for _ in range(3):
                message = received.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
            assert sorted(got) == [0, 1, 2]
        finally:
            received.clear()
            received.close()
    redis.Redis.from_url(redis_url).delete(queue)


def test_the_celery_app_uses_it_for_plain_redis_only(tmp_path):
    # Only the URLs' schemes matter: nothing connects.
    plain = make_celery(Settings(data_dir=tmp_path, broker_url="redis://broker.invalid:6379/0"))
    assert plain.connection_for_write().transport_cls == "wharf.workers.redisbroker:Transport"
    tls = make_celery(Settings(data_dir=tmp_path, broker_url="rediss://127.0.0.1:6380/0"))
    assert tls.conf.broker_transport is None
