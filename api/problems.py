"""One error shape for every failure: RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope
from wharf.market.store import StoreUnavailable

PROBLEM_JSON = "application/problem+json"
#: What a 503 for an outage of the store or the catalog asks clients to wait.
RETRY_AFTER_S = 5

log = logging.getLogger("wharf.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    411: "Length required",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise in a handler to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, headers: dict | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_document(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    return body


def problem_response(
    status: int, detail: str, headers: dict | None = None, **extra: Any
) -> JSONResponse:
    body = problem_document(status, detail, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: Renders an error in another shape: ``(status, detail, headers, **extra) -> Response``.
Renderer = Callable[..., Response]


def answer_elsewhere(app: FastAPI, prefix: str, renderer: Renderer) -> None:
    """Answer every error at ``prefix`` and below with ``renderer`` instead of problem+json
    (the compatible API's envelope), the middlewares' refusals included."""
    renderers = getattr(app.state, "error_renderers", [])
    app.state.error_renderers = [*renderers, (prefix.rstrip("/"), renderer)]


def problem_response_for(
    scope: Scope, status: int, detail: str, headers: dict | None = None, **extra: Any
) -> Response:
    """:func:`problem_response`, or the shape the app answers with at the request's path."""
    state = getattr(scope.get("app"), "state", None)
    path = scope.get("path", "")
    for prefix, render in getattr(state, "error_renderers", ()):
        if path == prefix or path.startswith(prefix + "/"):
            return render(status, detail, headers, **extra)
    return problem_response(status, detail, headers, **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response_for(request.scope, exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = getattr(exc, "headers", None)
        asked = f"{request.method} {request.url.path}"
        if detail == HTTPStatus(exc.status_code).phrase:  # the router's bare word
            if exc.status_code == 404:
                detail = f"no endpoint answers {asked}: the API lives under /v1 (see /docs)"
            elif exc.status_code == 405:
                # The router's Allow names the methods of the path's first route only.
                allowed = ", ".join(_methods(request))
                headers = {**(headers or {}), "Allow": allowed}
                detail = f"{asked} is not allowed; this path takes {allowed}"
        return problem_response_for(request.scope, exc.status_code, detail, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Answered by the outermost middleware, which then lets the error reach the log.
        return problem_response_for(
            request.scope,
            500,
            "the market failed to answer this request; it was logged, try again later",
        )

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable):
        # The store client already retried with backoff; nothing was recorded in the catalog.
        # Why it failed names the endpoint and the bucket: for the log, not for clients.
        log.warning("the package store is unavailable: %s", exc)
        return problem_response_for(
            request.scope,
            503,
            "the package store is unavailable; nothing was saved, try again later",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(OperationalError)
    async def _catalog_down(request: Request, exc: OperationalError):
        return problem_response_for(
            request.scope,
            503,
            "the catalog database is unavailable; nothing was saved, try again later",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "message": _message(err),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response_for(request.scope, 422, detail, errors=errors)


def _message(error: dict[str, Any]) -> str:
    """A validation error's message in the client's terms (FastAPI names Python classes)."""
    message = error["msg"]
    if message.startswith("Value error, Expected UploadFile, received:"):
        return "must be a file: a multipart part with a filename, not a text field"
    if isinstance(error.get("input"), UploadFile):
        return "must be a text field, not a file (a multipart part without a filename)"
    return message


def _methods(request: Request) -> list[str]:
    """The methods some route of the app takes at the request's path."""
    routes = request.app.router.routes
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
