"""Caps on request bodies, enforced while they stream in (a client can lie in Content-Length)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response


class _TooLarge(HTTPException):
    """An HTTPException, so body parsers re-raise it as is and it becomes a 413 answer."""

    def __init__(self, limit: int):
        super().__init__(413, _message(limit), headers={"Connection": "close"})


def _message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"


class BodySizeLimit:
    """Answer 413 for any request whose body exceeds ``max_bytes`` (or the limit ``paths``
    gives its exact path: a bulk import's bundle may be larger than one package)."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"].rstrip("/"), self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(413, _message(limit), headers={"Connection": "close"})
        await response(scope, receive, send)
