"""Rate limits: requests a minute per API token, or per client address for requests without one.

Each budget is a sliding-window counter: the requests of this minute plus those of the
previous minute, weighted by how much of it still lies within the last 60 s. Unlike a fixed
window it allows no double burst at the turn of a minute, and it costs two integers per
client. A refused request is not counted, so a client that waits ``Retry-After`` gets through.
Writes (POST, PUT, PATCH, DELETE) have budgets of their own, apart from reads.

The counters live in Redis so that every API process and replica shares one budget; a Lua
script checks and counts in one atomic step, sent from the event loop (redis.asyncio: no trip
through the thread pool per request). The embedded market, which has no Redis, counts
in the memory of its single API process. If Redis fails, requests pass and a warning is
logged: the limiter protects the market and must not take it down.

A request with a token spends that token's budget, from any address. So that made-up tokens
cannot buy fresh budgets, every 401 answer to a token is charged to the sending address, and
an address past the anonymous read budget of those gets 429 for any token until it cools down.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from types import MappingProxyType
from urllib.parse import urlsplit

import redis
import redis.asyncio
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wharf.market.settings import Settings

from .problems import problem_response_for

log = logging.getLogger("wharf.ratelimit")

WINDOW_S = 60
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Writes that spend the read budget: the reference client's chunks of at most 1 MiB, a
#: package of 256 MiB being 256 of them (their total is bounded by the upload's own limits).
READ_BUDGET_PATHS = frozenset({"/api/user/chunked_upload"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_PREFIX = "wharf:ratelimit:"
#: After Redis fails, requests pass unlimited this long before it is asked again, so a Redis
#: that is down costs one failed call per interval, not one per request.
RETRY_REDIS_S = 5.0
WARN_EVERY_S = 60.0
_UNLIMITED = 2**31
_SLACK = 1e-6

Network = IPv4Network | IPv6Network

# KEYS: a budget's counters of this window and of the previous one [, the same of a gate].
# ARGV: the limit, the previous window's weight, seconds a counter lives [, the gate's limit].
# Returns {1, this, previous} when counted, {0, this, previous} when over the limit, and
# {-1, this, previous} with the gate's counts when the gate is closed. (The slack keeps
# rounding from refusing a request that fits exactly.)
_LUA = """
local weight = tonumber(ARGV[2])
local slack = 1e-6
local function counts(a, b)
  return tonumber(redis.call('GET', a) or 0), tonumber(redis.call('GET', b) or 0)
end
if #KEYS == 4 then
  local this, prev = counts(KEYS[3], KEYS[4])
  if prev * weight + this + 1 > tonumber(ARGV[4]) + slack then return {-1, this, prev} end
end
local this, prev = counts(KEYS[1], KEYS[2])
if prev * weight + this + 1 > tonumber(ARGV[1]) + slack then return {0, this, prev} end
this = redis.call('INCR', KEYS[1])
if this == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, this, prev}
"""


class RedisCounters:
    """The counters in Redis, shared by every API process."""

    # Short timeouts and no retries: a slow Redis must not hold requests up.
    _OPTIONS = MappingProxyType({"socket_timeout": 0.5, "socket_connect_timeout": 0.5})

    def __init__(self, url: str):
        self.url = url
        self.client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._OPTIONS)
        self._script = self.client.register_script(_LUA)
        # An asyncio client is bound to the event loop it first ran in: one per loop.
        self._async_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"

    def hit(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, int, int]:
        status, this, prev = self._script(keys=list(keys), args=[repr(a) for a in args])
        return int(status), int(this), int(prev)

    async def ahit(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        script = self._async_scripts.get(loop)
        if script is None:
            client = redis.asyncio.Redis.from_url(
                self.url, retry=AsyncRetry(NoBackoff(), 0), **self._OPTIONS
            )
            script = self._async_scripts[loop] = client.register_script(_LUA)
        status, this, prev = await script(keys=list(keys), args=[repr(a) for a in args])
        return int(status), int(this), int(prev)


class MemoryCounters:
    """The same counters in this process's memory, for a market without Redis."""

    where = "process memory"

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}  # key → (count, expiry)

    def _get(self, key: str, now: float) -> int:
        count, expiry = self._counts.get(key, (0, 0.0))
        return count if expiry > now else 0

    def hit(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, int, int]:
        limit, weight, ttl = args[:3]
        with self._lock:
            now = self._clock()
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            if len(keys) == 4:
                this, prev = self._get(keys[2], now), self._get(keys[3], now)
                if prev * weight + this + 1 > args[3] + _SLACK:
                    return -1, this, prev
            this, prev = self._get(keys[0], now), self._get(keys[1], now)
            if prev * weight + this + 1 > limit + _SLACK:
                return 0, this, prev
            expiry = self._counts[keys[0]][1] if this else now + ttl
            self._counts[keys[0]] = (this + 1, expiry)
            return 1, this + 1, prev

    async def ahit(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, int, int]:
        return self.hit(keys, args)  # memory only: nothing to wait for


Counters = RedisCounters | MemoryCounters


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    limit: int
    remaining: int
    #: Allowed: seconds until this window ends. Refused: seconds until a request fits again.
    reset_s: int
    #: Refused because the address sent too many bad tokens, not for the budget itself.
    gate: bool = False


def retry_after(this: int, prev: int, limit: int, elapsed: float) -> int:
    """Whole seconds until one more request fits a budget whose counters are ``this`` and
    ``prev``, ``elapsed`` seconds into this window: the previous window's share must shrink
    first or, when this window alone is spent, this window must end and its share shrink."""
    if this + 1 <= limit:  # then prev > 0, or the request would have fitted
        wait = WINDOW_S * (1 - (limit - this - 1) / prev) - elapsed
    else:
        wait = WINDOW_S - elapsed + WINDOW_S * (1 - (limit - 1) / this)
    return max(1, math.ceil(wait - 1e-6))  # not a second more for rounding


class RateLimiter:
    """Checks and counts requests against named budgets; ``None`` when it cannot tell."""

    def __init__(
        self,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = KEY_PREFIX,
    ):
        self.counters = counters
        self.clock = clock
        self.prefix = prefix
        self._skip_until = 0.0
        self._next_warning = 0.0
        self._failing = False

    def hit(self, bucket: str, limit: int, gate: tuple[str, int] | None = None) -> Outcome | None:
        """Count one request against ``bucket`` if it fits ``limit`` (and, with ``gate``, only
        while that other bucket is within its own limit, which this does not count)."""
        call = self._call(bucket, limit, gate)
        if call is None:
            return None
        try:
            counts = self.counters.hit(call[0], call[1])
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        return self._outcome(counts, limit, gate, *call[2:])

    async def ahit(
        self, bucket: str, limit: int, gate: tuple[str, int] | None = None
    ) -> Outcome | None:
        """:meth:`hit` from the event loop."""
        call = self._call(bucket, limit, gate)
        if call is None:
            return None
        try:
            counts = await self.counters.ahit(call[0], call[1])
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        return self._outcome(counts, limit, gate, *call[2:])

    def _call(self, bucket: str, limit: int, gate: tuple[str, int] | None):
        """The counters' keys and arguments for a hit, with the window's weight and elapsed
        seconds; ``None`` while Redis is skipped after a failure."""
        if time.monotonic() < self._skip_until:
            return None
        index, elapsed = divmod(self.clock(), WINDOW_S)
        weight = 1 - elapsed / WINDOW_S
        keys = [self._key(bucket, index), self._key(bucket, index - 1)]
        args: list[float] = [limit, weight, 2 * WINDOW_S + 1]
        if gate is not None:
            keys += [self._key(gate[0], index), self._key(gate[0], index - 1)]
            args.append(gate[1])
        return keys, args, weight, elapsed

    def _outcome(
        self,
        counts: tuple[int, int, int],
        limit: int,
        gate: tuple[str, int] | None,
        weight: float,
        elapsed: float,
    ) -> Outcome:
        status, this, prev = counts
        if self._failing:
            self._failing = False
            log.warning("rate limits are on again: %s answers", self.counters.where)
        if status == 1:
            remaining = max(0, math.floor(limit - (prev * weight + this)))
            return Outcome(True, limit, remaining, math.ceil(WINDOW_S - elapsed))
        if status == -1 and gate is not None:
            limit = gate[1]
        return Outcome(False, limit, 0, retry_after(this, prev, limit, elapsed), gate=status == -1)

    def charge(self, bucket: str) -> None:
        """Count one request against ``bucket`` regardless of its limit."""
        self.hit(bucket, _UNLIMITED)

    async def acharge(self, bucket: str) -> None:
        await self.ahit(bucket, _UNLIMITED)

    def _key(self, bucket: str, index: float) -> str:
        return f"{self.prefix}{bucket}:{int(index)}"

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._skip_until = now + RETRY_REDIS_S
        self._failing = True
        if now >= self._next_warning:
            self._next_warning = now + WARN_EVERY_S
            log.warning(
                "rate limits are off: %s does not answer (%s); requests pass unlimited until "
                "it does",
                self.counters.where,
                exc,
            )


class RateLimit:
    """ASGI middleware: spend the request's budget, answer 429 when it is spent, and tell
    clients where they stand in ``RateLimit-*`` headers."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, settings: Settings, rejected: Counter):
        self.app = app
        self.limiter = limiter
        self.settings = settings
        self.rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        s = self.settings
        token = _bearer_token(scope)
        address = client_address(scope, s.trusted_proxies)
        write = scope["method"] in WRITE_METHODS and scope["path"] not in READ_BUDGET_PATHS
        kind = "write" if write else "read"
        bad_tokens = f"bad-token:{address}"
        if token is not None:
            client = "token"
            bucket = f"token-{kind}:{hashlib.sha256(token.encode()).hexdigest()[:32]}"
            limit = s.rate_limit_writes_per_minute if write else s.rate_limit_per_minute
            gate = (bad_tokens, s.rate_limit_anonymous_per_minute)
        else:
            client = "address"
            bucket = f"address-{kind}:{address}"
            limit = (
                s.rate_limit_anonymous_writes_per_minute
                if write
                else s.rate_limit_anonymous_per_minute
            )
            gate = None
        outcome = await self.limiter.ahit(bucket, limit, gate)
        if outcome is not None and not outcome.allowed:
            self.rejected.labels("bad-token" if outcome.gate else client, kind).inc()
            headers = {**_headers(outcome), "Retry-After": str(outcome.reset_s)}
            detail = _refusal(outcome, client, kind, address)
            response = problem_response_for(
                scope, 429, detail, headers, retry_after=outcome.reset_s
            )
            await response(scope, receive, send)
            return
        status = 0
        extra = [(k.lower().encode(), v.encode()) for k, v in _headers(outcome).items()]

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if token is not None and status == 401:
            await self.limiter.acharge(bad_tokens)


def _headers(outcome: Outcome | None) -> dict[str, str]:
    """The IETF draft's RateLimit fields (draft-ietf-httpapi-ratelimit-headers)."""
    if outcome is None:
        return {}
    return {
        "RateLimit-Limit": str(outcome.limit),
        "RateLimit-Remaining": str(outcome.remaining),
        "RateLimit-Reset": str(outcome.reset_s),
        "RateLimit-Policy": f"{outcome.limit};w={WINDOW_S}",
    }


def _refusal(outcome: Outcome, client: str, kind: str, address: str) -> str:
    wait = f"retry in {outcome.reset_s} s"
    if outcome.gate:
        return (
            f"too many requests from {address} with unknown, revoked or expired API tokens; {wait}"
        )
    what = "writes (POST, PUT, PATCH, DELETE)" if kind == "write" else "reads"
    if client == "token":
        return f"too many requests: an API token may make {outcome.limit} {what} a minute; {wait}"
    return (
        f"too many requests from {address} without an API token: {outcome.limit} {what} a "
        f"minute are allowed; {wait}, or send an API token for a larger budget"
    )


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def client_address(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    """Whom a request's budget belongs to: the socket peer or, when the peer is a trusted
    proxy, the nearest address in ``X-Forwarded-For`` that is not a trusted proxy itself.

    Each proxy appends the address it saw, so only the hops from the right up to the first
    untrusted one can be believed: whatever lies left of it, the client wrote. IPv6 clients
    are grouped by their /64, which one subscriber usually holds entirely.
    """
    peer = scope.get("client")
    address = peer[0] if peer else "unknown"
    if trusted and _is_trusted(address, trusted):
        hops = [
            hop.strip()
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                break  # garbage from a trusted proxy: keep the last address it vouched for
            if not _is_trusted(address, trusted):
                break
    return _group(address)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip.version == n.version and ip in n for n in trusted)


def _group(address: str) -> str:
    ip = _ip(address)
    if ip is None:
        return address[:100]  # not an IP (a test client, a Unix socket): as it is
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def install(app, settings: Settings, registry: CollectorRegistry) -> RateLimiter | None:
    """Add the rate limits to ``app`` (unless turned off); count refusals in ``registry``."""
    if not settings.rate_limit_enabled:
        return None
    url = settings.rate_limit_redis
    limiter = RateLimiter(RedisCounters(url) if url else MemoryCounters())
    rejected = Counter(
        "wharf_rate_limited_requests",
        "Requests refused with 429, by the budget they spent (token, address, bad-token)",
        ["client", "kind"],
        registry=registry,
    )
    app.add_middleware(RateLimit, limiter=limiter, settings=settings, rejected=rejected)
    return limiter
