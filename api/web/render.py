"""Rendering pages: one Jinja2 environment (autoescape on for every template), the security
headers every page carries, and HTML error pages for people (``/v1`` answers problem+json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

#: Nothing runs or loads but what the market serves itself: no inline script or style (the
#: spec picture is SVG markup with presentation attributes, which this policy allows), no
#: plug-ins, no framing by other sites, forms post back to the market only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Pages show a signed-in user's own learnwares and tokens: never kept by shared caches.
    "Cache-Control": "private, no-cache",
}

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=StrictUndefined,  # a misspelt variable is an error, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """The rendered page, with the security headers."""
    from .assets import VERSION
    from .session import CSRF_COOKIE, NEW_CSRF_KEY, csrf_token, set_cookie

    token = csrf_token(request)
    html = _env.get_template(template).render(
        request=request,
        user=request.scope.get("state", {}).get("wharf_page_user"),
        csrf_token=token,
        asset_version=VERSION,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    new_csrf = request.scope.get("state", {}).get(NEW_CSRF_KEY)
    if new_csrf:  # an anonymous visitor's first form: the cookie its token repeats
        set_cookie(request, response, CSRF_COOKIE, new_csrf, None)
    return response


class PageError(Exception):
    """Raise in a page route: the visitor gets an HTML page with this status and message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        sign_in: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        #: The page offers a link to sign in and come back.
        self.sign_in = sign_in


_TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Forbidden",
    404: "Not found",
    413: "Too large",
    422: "Cannot use this request",
    429: "Too many requests",
    503: "Unavailable",
}


async def page_error(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, PageError)
    title = _TITLES.get(exc.status, "Error")
    back = request.url.path if request.method == "GET" else "/"
    response = page(
        request,
        "error.html",
        {"title": title, "message": exc.message, "sign_in": exc.sign_in, "back": back},
        status=exc.status,
    )
    response.headers.update(exc.headers)
    return response
