"""Rate limits (api/ratelimit.py): the sliding-window counters on real Redis and in memory,
then the API with them: budgets per token and per address, reads apart from writes, 429
answers, exempt probes, proxies, made-up tokens, and failing open when Redis is down."""

import logging
import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from wharf.api.ratelimit import (
    KEY_PREFIX,
    MemoryCounters,
    RateLimiter,
    RedisCounters,
    client_address,
    retry_after,
)
from wharf.market.catalog import Catalog, Role, repo
from wharf.market.settings import Settings


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.services), "memory"])
def limiter(request):
    """A limiter on a fake clock that starts at the beginning of a minute."""
    clock = Clock(60.0 * 29_000_000)
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        counters = RedisCounters(request.getfixturevalue("redis_url"))
        return RateLimiter(counters, clock=clock, prefix=prefix)
    return RateLimiter(MemoryCounters(clock), clock=clock)


def test_a_budget_allows_its_limit_then_refuses_without_counting_refusals(limiter):
    for n in range(5):
        outcome = limiter.hit("b", 5)
        assert outcome.allowed and outcome.remaining == 4 - n and outcome.limit == 5
    limiter.clock.now += 10
    refused = limiter.hit("b", 5)
    assert not refused.allowed and refused.remaining == 0
    # this window is spent: it ends in 50 s, then its 5 requests weigh 5·(1 − t/60) until
    # 4 + 1 fit, at t = 12 s
    assert refused.reset_s == 62
    for _ in range(20):
        assert not limiter.hit("b", 5).allowed  # refusals are not counted...
    limiter.clock.now += 61
    assert not limiter.hit("b", 5).allowed
    limiter.clock.now += 1
    assert limiter.hit("b", 5).allowed  # ...so the wait that was announced is enough
    assert limiter.hit("other", 5).remaining == 4  # budgets are apart


def test_the_previous_minute_counts_by_the_share_still_in_the_window(limiter):
    limiter.clock.now += 59
    for _ in range(10):
        assert limiter.hit("b", 10).allowed
    limiter.clock.now += 16  # 15 s into the next minute: the last one weighs 0.75 → 7.5
    assert limiter.hit("b", 10).allowed
    assert limiter.hit("b", 10).allowed  # 9.5
    refused = limiter.hit("b", 10)
    assert not refused.allowed
    assert refused.reset_s == 3  # 10 · (1 − 18/60) + 2 + 1 = 10
    assert refused.reset_s == retry_after(2, 10, 10, 15.0)
    limiter.clock.now += 3
    assert limiter.hit("b", 10).allowed
    assert not limiter.hit("b", 10).allowed
    limiter.clock.now += 120  # two quiet minutes: nothing left
    assert limiter.hit("b", 10).remaining == 9


def test_a_closed_gate_refuses_without_touching_the_budget(limiter):
    assert limiter.hit("token", 100, gate=("bad", 3)).allowed
    for _ in range(3):
        limiter.charge("bad")  # charged whatever the limit
    refused = limiter.hit("token", 100, gate=("bad", 3))
    assert not refused.allowed and refused.gate and refused.limit == 3
    assert limiter.hit("token", 100).remaining == 98  # one counted so far, plus this one


def test_redis_counters_expire(redis_url, redis_prefix):
    limiter = RateLimiter(RedisCounters(redis_url), prefix=redis_prefix)
    limiter.hit("b", 5)
    client = redis.Redis.from_url(redis_url)
    (key,) = client.scan_iter(f"{redis_prefix}*")
    assert 60 < client.ttl(key) <= 121 and int(client.get(key)) == 1


# -- client addresses -----------------------------------------------------------------------


def scope(peer: str, *forwarded: str) -> dict:
    headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
    return {"client": (peer, 1234), "headers": headers}


def test_client_address_believes_only_trusted_proxies():
    proxies = Settings(trusted_proxies="10.0.0.0/8,fd00::/8").trusted_proxies
    assert client_address(scope("203.0.113.5", "198.51.100.1")) == "203.0.113.5"
    assert client_address(scope("203.0.113.5", "198.51.100.1"), proxies) == "203.0.113.5"
    assert client_address(scope("10.1.2.3", "198.51.100.1"), proxies) == "198.51.100.1"
    # what the client wrote itself, left of the address the proxy saw, is ignored
    spoofed = scope("10.1.2.3", "1.1.1.1, 198.51.100.1")
    assert client_address(spoofed, proxies) == "198.51.100.1"
    # a chain of trusted proxies, over two headers
    chain = scope("10.1.2.3", "1.1.1.1, 198.51.100.1", "10.9.9.9")
    assert client_address(chain, proxies) == "198.51.100.1"
    assert client_address(scope("10.1.2.3", "not-an-ip"), proxies) == "10.1.2.3"
    assert client_address(scope("10.1.2.3"), proxies) == "10.1.2.3"
    assert client_address(scope("fd00::1", "2001:db8:1:2:3::4"), proxies) == "2001:db8:1:2::/64"
    assert client_address(scope("::ffff:198.51.100.7")) == "198.51.100.7"
    assert client_address({"client": None, "headers": []}) == "unknown"


# -- the API --------------------------------------------------------------------------------


def make_api(tmp_path, peer="198.51.100.20", **settings):
    from wharf.api.app import create_app

    settings = Settings(data_dir=tmp_path, **settings)
    catalog = Catalog.create(settings.catalog_url)
    with catalog.session() as s:
        tokens = [
            repo.create_token(s, repo.create_user(s, name, Role.user).id, "t")[0]
            for name in ("alice", "bob")
        ]
    client = TestClient(create_app(settings), client=(peer, 40000))
    client.tokens = tokens
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path, redis_url, redis_prefix):
    client = make_api(
        tmp_path,
        rate_limit_redis_url=redis_url,
        rate_limit_per_minute=6,
        rate_limit_writes_per_minute=3,
        rate_limit_anonymous_per_minute=4,
        rate_limit_anonymous_writes_per_minute=2,
        trusted_proxies="198.51.100.20",
    )
    client.app.state.rate_limiter.prefix = redis_prefix
    return client


def assert_429(r, *phrases):
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 429 and body["title"] == "Too many requests"
    assert 1 <= int(r.headers["Retry-After"]) <= 120
    assert body["retry_after"] == int(r.headers["Retry-After"])
    assert r.headers["RateLimit-Remaining"] == "0"
    for phrase in phrases:
        assert phrase in body["detail"], body["detail"]


def test_a_token_has_a_read_and_a_smaller_write_budget(api):
    alice, bob = api.tokens
    for n in range(3):
        r = api.post("/v1/tokens", headers=bearer(alice), json={"name": f"t{n}"})
        assert r.status_code == 201, r.text
        assert r.headers["RateLimit-Limit"] == "3"
        assert r.headers["RateLimit-Remaining"] == str(2 - n)
        assert r.headers["RateLimit-Policy"] == "3;w=60"
    r = api.post("/v1/tokens", headers=bearer(alice), json={"name": "one too many"})
    assert_429(r, "an API token may make 3 writes")
    # a refused write did nothing
    names = [t["name"] for t in api.get("/v1/tokens", headers=bearer(alice)).json()]
    assert "one too many" not in names
    # reads are a budget of their own (one spent just now), and so is every other token
    for _ in range(5):
        assert api.get("/v1/learnwares", headers=bearer(alice)).status_code == 200
    assert_429(api.get("/v1/learnwares", headers=bearer(alice)), "6 reads")
    assert api.post("/v1/tokens", headers=bearer(bob), json={"name": "b"}).status_code == 201
    # a token's budget follows it to any address
    elsewhere = TestClient(api.app, client=("192.0.2.99", 1))
    assert_429(elsewhere.get("/v1/learnwares", headers=bearer(alice)))


def test_anonymous_clients_are_limited_per_address(api):
    for _ in range(4):
        assert api.get("/v1/learnwares").status_code == 200
    r = api.get("/v1/learnwares")
    assert_429(r, "from 198.51.100.20 without an API token", "send an API token")
    # another address (behind the trusted proxy) has a budget of its own...
    other = {"X-Forwarded-For": "192.0.2.7"}
    assert api.get("/v1/learnwares", headers=other).headers["RateLimit-Remaining"] == "3"
    # ...which a spoofed hop left of it does not change
    spoofed = {"X-Forwarded-For": "203.0.113.1, 192.0.2.7"}
    assert api.get("/v1/learnwares", headers=spoofed).headers["RateLimit-Remaining"] == "2"
    # anonymous writes have the smallest budget
    for _ in range(2):
        assert api.post("/v1/searches", headers=other, data={}).status_code == 202
    assert_429(api.post("/v1/searches", headers=other, data={}), "2 writes")


def test_probes_and_metrics_are_exempt(api):
    for _ in range(6):
        api.get("/v1/learnwares")
    assert api.get("/v1/learnwares").status_code == 429
    for path in ("/healthz", "/readyz", "/metrics"):
        for _ in range(6):
            r = api.get(path)
            assert r.status_code == 200, (path, r.text)
            assert "RateLimit-Limit" not in r.headers
    text = api.get("/metrics").text
    assert 'wharf_rate_limited_requests_total{client="address",kind="read"} 3.0' in text


def test_made_up_tokens_do_not_buy_fresh_budgets(api):
    alice, _ = api.tokens
    for _ in range(4):  # the anonymous read budget of 401s
        r = api.get("/v1/tokens", headers=bearer(f"wharf_{uuid.uuid4().hex}"))
        assert r.status_code == 401
    r = api.get("/v1/tokens", headers=bearer(f"wharf_{uuid.uuid4().hex}"))
    assert_429(r, "unknown, revoked or expired API tokens")
    # from this address, until it cools down; elsewhere the token works
    assert_429(api.get("/v1/tokens", headers=bearer(alice)))
    elsewhere = {"X-Forwarded-For": "192.0.2.8"}
    assert api.get("/v1/tokens", headers={**bearer(alice), **elsewhere}).status_code == 200


def test_redis_down_fails_open_with_a_warning(tmp_path, closed_port, caplog):
    api = make_api(tmp_path, rate_limit_redis_url=f"redis://:pw@127.0.0.1:{closed_port}/0")
    with caplog.at_level(logging.WARNING, logger="wharf.ratelimit"):
        for _ in range(30):  # well past the anonymous budget
            r = api.get("/v1/learnwares")
            assert r.status_code == 200 and "RateLimit-Limit" not in r.headers
    warnings = [r.getMessage() for r in caplog.records if r.name == "wharf.ratelimit"]
    assert len(warnings) == 1, warnings  # once, not per request
    assert "rate limits are off" in warnings[0] and f":{closed_port}/0" in warnings[0]
    assert "pw" not in warnings[0]


def test_the_embedded_market_counts_in_memory(tmp_path):
    api = make_api(tmp_path, rate_limit_anonymous_per_minute=2)
    assert isinstance(api.app.state.rate_limiter.counters, MemoryCounters)
    assert api.get("/v1/learnwares").status_code == 200
    assert api.get("/v1/learnwares").status_code == 200
    assert_429(api.get("/v1/learnwares"))


def test_rate_limits_default_to_a_redis_broker_and_can_be_turned_off(tmp_path, redis_url):
    settings = Settings(data_dir=tmp_path, broker_url=redis_url)
    assert settings.rate_limit_redis == redis_url
    assert Settings(data_dir=tmp_path).rate_limit_redis is None
    api = make_api(tmp_path / "on", broker_url=redis_url)
    assert isinstance(api.app.state.rate_limiter.counters, RedisCounters)
    assert api.app.state.rate_limiter.prefix == KEY_PREFIX
    api = make_api(tmp_path / "off", rate_limit_enabled=False, rate_limit_anonymous_per_minute=1)
    assert api.app.state.rate_limiter is None
    for _ in range(3):
        r = api.get("/v1/learnwares")
        assert r.status_code == 200 and "RateLimit-Limit" not in r.headers
