"""uvicorn's HTTP protocol with the limits uvicorn lacks: ``uvicorn --factory
wharf.api.main:create_app --http wharf.api.server:HttpProtocol`` (what ``wharf up`` and the
container's ``api`` role run).

uvicorn keeps a connection open for as long as a request's headers trickle in, a byte every
few seconds, and (with httptools) buffers headers of any size. This protocol adds:

- a header timeout: a request's headers must be complete within
  ``WHARF_REQUEST_HEADER_TIMEOUT_S`` of the connection's start or of the previous answer on
  it, however they trickle in; else 408 and the connection is closed (one that sent nothing
  is closed quietly);
- a cap of ``MAX_HEADER_BYTES`` on a request's line and headers, counted before the parser
  buffers them, else 431;
- problem+json instead of uvicorn's plain-text 400 for a request it cannot parse.

A body's pace is the application's to watch (:class:`api.limits.BodyTimeout`), so that
holds under any server. A reverse proxy in front should set its own header and body timeouts
too (deploy/README.md).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol as _H11Protocol
from wharf.market.settings import get_settings

from .problems import PROBLEM_JSON, problem_document

#: The most bytes of request line and headers taken before they are complete (h11's default
#: cap; Node's too).
MAX_HEADER_BYTES = 16 * 1024


class _Limits:
    """Mixed in before a uvicorn protocol class; uses its ``loop``, ``transport`` and
    ``cycle`` (the request being answered, replaced when the next one's headers are in)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().request_header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._tail = b""
        self._before_headers: Any = None  # the cycle that the next request's will replace

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None:  # headers are in: the bytes are a body's
            super().data_received(data)  # type: ignore[misc]
            return
        # Counted before the parser sees them, up to the blank line that ends the headers
        # (which may begin in the previous chunk).
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        self._header_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
        self._tail = seen[-3:]
        if self._header_bytes > MAX_HEADER_BYTES:
            if not self.transport.is_closing():
                self._answer_and_close(
                    431, f"the request line and headers exceed {MAX_HEADER_BYTES} bytes"
                )
            return
        super().data_received(data)  # type: ignore[misc]
        if self._header_timer is not None and self.cycle is not self._before_headers:
            self._stop_header_timer()  # the request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._await_headers()

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, f"the request is not valid HTTP/1.1 ({msg.rstrip('.')})")

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self._header_bytes = 0
        self._tail = b""
        self._before_headers = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.cycle is not self._before_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered (pipelined): its end arms the timer again
        if self._header_bytes == 0:
            self.transport.close()  # nothing was asked: no answer is due
            return
        self._answer_and_close(
            408,
            f"the request's headers did not arrive within {self.header_timeout_s:g} s; "
            "send them at once",
        )

    def _answer_and_close(self, status: int, detail: str) -> None:
        body = json.dumps(problem_document(status, detail)).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"content-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


class H11Protocol(_Limits, _H11Protocol):
    """uvicorn's pure-Python HTTP/1.1 protocol, with the limits."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn's "auto" would pick h11 too
    HttpProtocol: type[asyncio.Protocol] = H11Protocol
else:

    class HttpToolsProtocol(_Limits, _HttpToolsProtocol):
        """uvicorn's httptools (llhttp) protocol, its default when installed, with the limits."""

    HttpProtocol = HttpToolsProtocol
