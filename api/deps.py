"""Shared request dependencies: services, catalog session, the caller's identity.

They are ``async`` and do no blocking I/O on the event loop: what touches the catalog runs in
the thread pool, and only when it must (not for a token looked up moments ago, nor to close a
session the endpoint committed itself). Each trip to the pool costs a thread hand-over, which
at a hundred requests a second on a small machine was a good part of an enqueue's time.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Header, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import ApiToken, Catalog, Role, User, repo
from wharf.market.catalog.models import utcnow
from wharf.market.catalog.storable import UNSTORABLE_TEXT, storable_text
from wharf.market.settings import Settings
from wharf.market.store import ObjectStore

from .problems import Problem
from .waiting import JobWaiter


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: ObjectStore
    celery: Celery
    job_waiter: JobWaiter


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(request: Request, services: ServicesDep) -> AsyncIterator[Session]:
    """Reads get a read-only transaction; writes commit around their object-store I/O
    themselves, so no request holds the catalog's write lock while bytes stream. What is
    still open when the endpoint returns is committed (rolled back after an error)."""
    read_only = request.method in ("GET", "HEAD")
    session = services.catalog.new_session(read_only=read_only)
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        session.close()  # no transaction is left open here: no I/O


SessionDep = Annotated[Session, Depends(get_session)]


#: Seconds a token's look-up is reused by an API process: a revoked token (or a user's new
#: role) takes effect in every process within this time, at once in the one that revoked it.
TOKEN_CACHE_S = 5.0
_TOKEN_CACHE_MAX = 10_000
_token_cache: dict[str, tuple[float, User, ApiToken]] = {}


def _find_token(services: Services, plaintext: str) -> tuple[User, ApiToken] | None:
    """Look the token up in the catalog and keep what was found (after a cache miss)."""
    with services.catalog.session(read_only=True) as session:
        found = repo.find_token(session, plaintext)
    if found is not None:  # unknown tokens are not kept: made-up ones cannot fill the cache
        if len(_token_cache) >= _TOKEN_CACHE_MAX:
            _token_cache.clear()
        # A random lifetime of 50–100 %: tokens first used together (a burst of clients, a
        # restart) would otherwise all be looked up again together, every TOKEN_CACHE_S.
        expiry = time.monotonic() + TOKEN_CACHE_S * random.uniform(0.5, 1.0)
        _token_cache[repo.hash_token(plaintext)] = (expiry, *found)
    return found


def forget_token(token_hash: str) -> None:
    """Drop a token from this process's cache (after its revocation)."""
    _token_cache.pop(token_hash, None)


def _cached_token(plaintext: str) -> tuple[User, ApiToken] | None:
    cached = _token_cache.get(repo.hash_token(plaintext))
    return (cached[1], cached[2]) if cached and cached[0] > time.monotonic() else None


#: Where a request's caller is kept once known (in the ASGI scope's state).
_CALLER = "wharf_caller"


async def optional_user(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> User | None:
    """The caller, or ``None`` without a token; 401 for a token that is not valid. Settled
    once per request: :class:`IdentityFirstRoute` runs it before the body is read."""
    state = request.scope.setdefault("state", {})
    if _CALLER in state:
        return state[_CALLER]
    user = await _authenticate(services, authorization)
    state[_CALLER] = user
    return user


async def _authenticate(services: Services, authorization: str | None) -> User | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "use 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    found = _cached_token(token) or await run_in_threadpool(_find_token, services, token)
    if found is None:
        raise Problem(401, "the token is unknown to this market", headers=_INVALID)
    user, api_token = found
    state = repo.token_state(api_token)
    if state == "expired":
        when = api_token.expires_at.isoformat(timespec="seconds")
        raise Problem(
            401,
            f"the token expired at {when}: ask for a new one (wharf admin token create, or an "
            "admin of this market)",
            headers=_EXPIRED,
        )
    if state == "revoked":
        raise Problem(401, "the token was revoked", headers=_INVALID)
    if repo.token_use_is_stale(api_token):  # a write at most once a minute per token
        api_token.last_used_at = utcnow()  # the cached copy: no second write meanwhile
        await run_in_threadpool(_record_token_use, services, api_token.id)
    return user


def _record_token_use(services: Services, token_id: int) -> None:
    with services.catalog.session() as session:
        repo.record_token_use(session, token_id)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# RFC 6750 §3: tell a client that its token, not its request, is the problem.
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_EXPIRED = {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'}
MaybeUser = Annotated[User | None, Depends(optional_user)]


async def required_user(user: MaybeUser) -> User:
    if user is None:
        raise Problem(
            401, "this needs an API token: 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    return user


CurrentUser = Annotated[User, Depends(required_user)]


async def reader(user: MaybeUser, services: ServicesDep) -> User | None:
    """Anyone may read when the market is public; otherwise a token is needed."""
    if user is None and not services.settings.public_read:
        raise Problem(401, "this market is private: send an API token", headers=_CHALLENGE)
    return user


Reader = Annotated[User | None, Depends(reader)]


async def admin_user(user: CurrentUser) -> User:
    if user.role != Role.admin:
        raise Problem(403, "this needs an admin token")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


async def storable_query(request: Request) -> None:
    """422 for a query parameter the catalog could not compare: PostgreSQL fails a query that
    holds a NUL character rather than answering it. (Starlette decodes the query string with
    replacement characters, so it holds no unpaired surrogates.)"""
    for key, value in request.query_params.multi_items():
        if not storable_text(value):
            raise Problem(422, f"query.{key}: {UNSTORABLE_TEXT}", field=f"query.{key}")


#: The media types a form route reads its fields from.
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def form_fields(request: Request) -> None:
    """For routes that take a form: 415 for a body of another media type (its fields would
    otherwise be reported missing), and 422 for a field sent more than once (which copy counts
    would be the parser's choice, and a proxy or a log may have read the other). FastAPI has
    parsed the form already; this reads its parse."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type not in _FORM_TYPES:
        raise Problem(
            415,
            f"send the fields as multipart/form-data (a form), not as {media_type[:100]}",
        )
    seen: dict[str, int] = {}
    for key, _ in (await request.form()).multi_items():
        seen[key] = seen.get(key, 0) + 1
    for key, count in seen.items():
        if count > 1:
            name = key[:100]
            raise Problem(422, f"{name}: sent {count} times; send each field once", field=name)


FormFields = Depends(form_fields)


class IdentityFirstRoute(APIRoute):
    """A route that settles who calls, and whether they may, before its body is read.

    FastAPI reads a form or JSON body before it runs any dependency, so a stranger's upload
    would be spooled to disk before it was told 401. This route runs the identity dependencies
    it has (:func:`optional_user`, :func:`required_user`, :func:`admin_user`, :func:`reader`)
    first, on the headers alone; the dependencies then find the caller already known.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        calls = _dependency_calls(self.dependant)
        if optional_user not in calls:
            return handler  # a public route: nothing to settle
        checks = [check for check in (required_user, admin_user, reader) if check in calls]

        async def identity_first(request: Request) -> Response:
            services: Services = request.app.state.services
            user = await optional_user(request, services, request.headers.get("authorization"))
            for check in checks:
                await (reader(user, services) if check is reader else check(user))
            return await handler(request)

        return identity_first


def _dependency_calls(dependant: Dependant) -> set[Callable[..., Any]]:
    calls, stack = set(), [dependant]
    while stack:
        current = stack.pop()
        calls.add(current.call)
        stack.extend(current.dependencies)
    return calls
