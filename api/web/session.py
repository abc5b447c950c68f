"""Who is looking at a page, and the CSRF token of the forms they post.

Pages do not take API tokens: a browser would have to keep one in script-readable storage.
Accounts (sign-up and login, server-side sessions in an HttpOnly cookie) will fill in
:func:`page_user` and :func:`csrf_token`; every page and form already goes through them. Until
then every visitor is anonymous: pages show what anyone may read (``WHARF_PUBLIC_READ``), and
the forms (a search) change nothing that belongs to anyone.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from wharf.market.catalog import Role, User

from ..deps import ServicesDep
from .render import PageError

#: Where the visitor is kept in the request's state once known (templates read it there).
_STATE_KEY = "wharf_page_user"
#: The hidden form field that carries the token.
CSRF_FIELD = "csrf_token"


async def page_user(request: Request) -> User | None:
    """The signed-in user of this browser, or ``None``: no one signs in yet."""
    user = None
    request.scope.setdefault("state", {})[_STATE_KEY] = user
    return user


PageUser = Annotated[User | None, Depends(page_user)]


async def page_reader(user: PageUser, services: ServicesDep) -> User | None:
    """The visitor, if they may read this market's pages (anyone, on a public market)."""
    if user is None and not services.settings.public_read:
        raise PageError(
            401,
            "This market is private: its learnwares are shown to its users only. Use the API "
            "with a token (wharf, the Python SDK), or ask this market's admins for access.",
        )
    return user


PageReader = Annotated[User | None, Depends(page_reader)]


def csrf_token(request: Request) -> str:
    """The token a form of this visitor's pages carries: the session's, once there are
    sessions; empty for an anonymous visitor, who has nothing a forged form could act on."""
    return ""


def check_csrf(request: Request, sent: str | None) -> None:
    """403 when a posted form's token is not the visitor's own (forms of signed-in users)."""
    expected = csrf_token(request)
    if expected and not hmac.compare_digest(expected, sent or ""):
        raise PageError(403, "This form has expired: reload the page and send it again.")


def can_see_private(user: User | None, owner_id: int) -> bool:
    """Whether ``user`` may see what only a learnware's owner and admins see (its check log,
    a learnware not accepted)."""
    return user is not None and (user.role == Role.admin or user.id == owner_id)
