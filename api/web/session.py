"""Who is looking at a page, and the CSRF token of the forms they post.

Pages do not take API tokens: a browser would have to keep one in script-readable storage.
A signed-in browser holds a session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS, named
``__Host-…`` then) whose secret the catalog knows only by its SHA-256
(:mod:`wharf.market.catalog.repo.accounts`). A new secret is made at every sign-in, so a
secret planted before it (session fixation) never signs anyone in.

Every posted form carries a CSRF token. A signed-in visitor's is derived from the session's
secret (a page of another site can neither read it nor the cookie); an anonymous visitor's
(the sign-in and sign-up forms, a search) is a random value kept in a cookie of its own and
repeated in the form (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import Role, User, repo

from ..deps import Services, ServicesDep
from .render import PageError

#: Where the visitor is kept in the request's state once known (templates read it there).
_STATE_KEY = "wharf_page_user"
#: The session's secret, once read from the cookie (the CSRF token derives from it).
_SECRET_KEY = "wharf_page_session"
#: An anonymous visitor's new CSRF value, to be set as a cookie with the page.
NEW_CSRF_KEY = "wharf_new_csrf"
#: The hidden form field that carries the token.
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "wharf_session"
CSRF_COOKIE = "wharf_csrf"


def secure(request: Request) -> bool:
    """Whether cookies are marked Secure (and named ``__Host-``): the setting, or else
    whether this request came over HTTPS."""
    setting = request.app.state.services.settings.cookie_secure
    return setting if setting is not None else request.url.scheme == "https"


def cookie_name(request: Request, name: str) -> str:
    return f"__Host-{name}" if secure(request) else name


def _state(request: Request) -> dict:
    return request.scope.setdefault("state", {})


def _lookup(services: Services, secret: str) -> User | None:
    with services.catalog.session(read_only=True) as s:
        user = repo.session_user(s, secret)
        if user is not None:
            s.expunge(user)
        return user


async def page_user(request: Request) -> User | None:
    """The signed-in, active user of this browser, or ``None``."""
    state = _state(request)
    if _STATE_KEY in state:
        return state[_STATE_KEY]
    user = None
    secret = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    if secret:
        user = await run_in_threadpool(_lookup, request.app.state.services, secret)
        if user is not None:
            state[_SECRET_KEY] = secret
    state[_STATE_KEY] = user
    return user


PageUser = Annotated[User | None, Depends(page_user)]


async def page_reader(user: PageUser, services: ServicesDep) -> User | None:
    """The visitor, if they may read this market's pages (anyone, on a public market)."""
    if user is None and not services.settings.public_read:
        raise PageError(
            401,
            "This market is private: its learnwares are shown to its users only. Sign in, use "
            "the API with a token (wharf, the Python SDK), or ask this market's admins for "
            "access.",
        )
    return user


PageReader = Annotated[User | None, Depends(page_reader)]


async def signed_in(user: PageUser) -> User:
    """The signed-in user; a page asking to sign in otherwise."""
    if user is None:
        raise PageError(401, "Sign in to see this page.", sign_in=True)
    return user


SignedIn = Annotated[User, Depends(signed_in)]


async def page_admin(user: SignedIn) -> User:
    if user.role != Role.admin:
        raise PageError(403, "This page is for the market's admins.")
    return user


PageAdmin = Annotated[User, Depends(page_admin)]


def csrf_token(request: Request) -> str:
    """The token this visitor's forms carry: derived from the session's secret when signed
    in, else the anonymous CSRF cookie's value (a new one is made, and set with the page)."""
    state = _state(request)
    secret = state.get(_SECRET_KEY) if state.get(_STATE_KEY) is not None else None
    if secret:
        return hashlib.sha256(f"wharf-csrf:{secret}".encode()).hexdigest()
    value = request.cookies.get(cookie_name(request, CSRF_COOKIE), "")
    if not (16 <= len(value) <= 64 and value.isascii()):
        value = state.get(NEW_CSRF_KEY) or secrets.token_urlsafe(24)
        state[NEW_CSRF_KEY] = value
    return value


def check_csrf(request: Request, sent: str | None) -> None:
    """403 when a posted form's token is not the visitor's own. Run after :func:`page_user`."""
    expected = csrf_token(request)
    if not hmac.compare_digest(expected.encode(), (sent or "").encode()):
        raise PageError(403, "This form has expired: reload the page and send it again.")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None):
    response.set_cookie(
        cookie_name(request, name),
        value,
        max_age=max_age,
        path="/",
        secure=secure(request),
        httponly=True,
        samesite="lax",
    )


def sign_in(request: Request, response: Response, secret: str) -> None:
    """Give the browser a new session's secret (the caller made the session)."""
    days = request.app.state.services.settings.session_days
    set_cookie(request, response, SESSION_COOKIE, secret, int(timedelta(days=days).total_seconds()))
    # The anonymous CSRF value is not needed while signed in; a new one comes after.
    response.delete_cookie(cookie_name(request, CSRF_COOKIE), path="/", secure=secure(request))


def sign_out(request: Request, response: Response) -> None:
    response.delete_cookie(
        cookie_name(request, SESSION_COOKIE), path="/", secure=secure(request), httponly=True
    )


def session_secret(request: Request) -> str | None:
    """The cookie's session secret, when it signs someone in."""
    return _state(request).get(_SECRET_KEY)


def can_see_private(user: User | None, owner_id: int) -> bool:
    """Whether ``user`` may see what only a learnware's owner and admins see (its check log,
    a learnware not accepted)."""
    return user is not None and (user.role == Role.admin or user.id == owner_id)
