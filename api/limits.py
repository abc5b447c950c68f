"""Caps on request bodies, enforced while they stream in: their size (a client can lie in
Content-Length) and their pace (a client can trickle a byte a second)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response_for

#: Methods whose bodies the API never reads.
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


class _BodyRefused(HTTPException):
    """An HTTPException, so body parsers re-raise it as is and it becomes the answer."""


class CloseUnreadBody:
    """Close the connection after an answer sent before the request's body was all read (a
    401, 413, 429… refuses a request without reading it). The rest of that body would still
    have to come in and be thrown away before the connection could carry another request,
    for as long as the client cares to drag it out."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        read = False

        async def tracking_receive() -> Message:
            nonlocal read
            message = await receive()
            read = read or not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not read:
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"


class BodySizeLimit:
    """Answer 413 for any request whose body exceeds ``max_bytes``, or the limit of the first
    of ``paths`` its path lies under (``/v1/learnwares`` covers ``/v1/learnwares/42``): a
    package or a bundle may be far larger than a token request. A declared Content-Length
    over the limit is refused before a byte of the body is read; a body without one is
    counted as it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: Mapping[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    def limit(self, path: str) -> int:
        path = path.rstrip("/")
        for prefix, limit in self.paths.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response_for(scope, 413, _too_large(limit))
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyRefused(413, _too_large(limit))
            return message

        await _answering_refusals(self.app, scope, counting_receive, receive, send)


class BodyTimeout:
    """Answer 408 when a request body does not keep coming: it gets ``grace_s`` seconds, and
    each byte received buys ``1 / min_rate`` seconds more (Apache's mod_reqtimeout rule), so
    after the grace it must have averaged ``min_rate`` bytes a second. A client trickling a
    byte a second would otherwise hold its connection, and the request's memory, for ever.
    """

    def __init__(self, app: ASGIApp, grace_s: float, min_rate: int):
        self.app = app
        self.grace_s = grace_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        received = 0
        done = False

        async def timed_receive() -> Message:
            nonlocal received, done
            if done:  # the body is in: what follows is a wait for the client to go away
                return await receive()
            try:
                async with asyncio.timeout_at(start + self.grace_s + received / self.min_rate):
                    message = await receive()
            except TimeoutError:
                raise _BodyRefused(408, self._detail(received, loop.time() - start)) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await _answering_refusals(self.app, scope, timed_receive, receive, send)

    def _detail(self, received: int, elapsed: float) -> str:
        return (
            f"the request body came too slowly ({received} bytes in {elapsed:.0f} s): send it "
            f"within {self.grace_s:g} s, or at {self.min_rate} bytes a second on average"
        )


async def _answering_refusals(
    app: ASGIApp, scope: Scope, wrapped: Receive, receive: Receive, send: Send
) -> None:
    """Run ``app`` on the ``wrapped`` receive; answer a refusal it raised that nothing else
    answered (the exception handlers usually do)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, wrapped, tracking_send)
    except _BodyRefused as exc:
        if not started:
            response = problem_response_for(scope, exc.status_code, exc.detail)
            await response(scope, receive, send)
