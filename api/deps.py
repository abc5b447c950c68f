"""Shared request dependencies: services, catalog session, the caller's identity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from market.catalog import Catalog, Role, User, repo
from market.settings import Settings
from market.store import ObjectStore

from .problems import Problem


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: ObjectStore
    celery: Celery


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(request: Request, services: ServicesDep) -> Iterator[Session]:
    """Reads get a read-only transaction; writes commit around their object-store I/O
    themselves, so no request holds the catalog's write lock while bytes stream."""
    read_only = request.method in ("GET", "HEAD")
    with services.catalog.session(read_only=read_only) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def optional_user(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> User | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "use 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    with services.catalog.session(read_only=True) as session:
        found = repo.find_token(session, token.strip())
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
        with services.catalog.session() as session:
            repo.record_token_use(session, api_token.id)
    return user


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# RFC 6750 §3: tell a client that its token, not its request, is the problem.
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_EXPIRED = {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'}
MaybeUser = Annotated[User | None, Depends(optional_user)]


def required_user(user: MaybeUser) -> User:
    if user is None:
        raise Problem(
            401, "this needs an API token: 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    return user


CurrentUser = Annotated[User, Depends(required_user)]


def reader(user: MaybeUser, services: ServicesDep) -> User | None:
    """Anyone may read when the market is public; otherwise a token is needed."""
    if user is None and not services.settings.public_read:
        raise Problem(401, "this market is private: send an API token", headers=_CHALLENGE)
    return user


Reader = Annotated[User | None, Depends(reader)]


def admin_user(user: CurrentUser) -> User:
    if user.role != Role.admin:
        raise Problem(403, "this needs an admin token")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
