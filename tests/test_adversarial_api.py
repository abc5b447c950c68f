"""The API against a hostile client: a real market API process (uvicorn, started as ``wharf up``
starts it) and raw sockets that lie, dawdle and probe. Each case asserts the market's exact
answer and that an honest request still succeeds afterwards.

The server runs with short timeouts (2 s for headers, 2 s of grace for a body), a small
anonymous write budget, and trusts 127.0.0.1 as a proxy, so each case spends the budget of
an address of its own (``X-Forwarded-For``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from cli.serve import LocalMarket
from market.catalog import Catalog, Role, repo
from market.settings import Settings
from specification.semantic import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    MAX_REQUIREMENT_NAME_CHARS,
)
from tests.test_api import SEMANTIC, zip_bytes

pytestmark = pytest.mark.adversarial

MiB = 1024 * 1024
HEADER_TIMEOUT_S = 2
BODY_GRACE_S = 2
ANONYMOUS_WRITES = 3
#: How long a refusal may take to come back: it is sent before the body is read.
PROMPT_S = 1.5


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data, spool = root / "data", root / "tmp"
    data.mkdir()
    spool.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WHARF_")]:
            mp.delenv(name)  # the embedded market in `data`, whatever the caller has set
        catalog = Catalog.create(Settings(data_dir=data).catalog_url)
        with catalog.session() as s:
            tokens = {
                name: repo.create_token(s, repo.create_user(s, name, role).id, "t")[0]
                for name, role in (("alice", Role.user), ("bob", Role.user))
            }
        catalog.dispose()
        m = LocalMarket(data, workers=0)
        m.env |= {
            "TMPDIR": str(spool),  # where the API would spool an upload it read
            "WHARF_REQUEST_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "WHARF_REQUEST_BODY_TIMEOUT_S": str(BODY_GRACE_S),
            "WHARF_REQUEST_BODY_MIN_RATE": "1024",
            "WHARF_RATE_LIMIT_ANONYMOUS_WRITES_PER_MINUTE": str(ANONYMOUS_WRITES),
            "WHARF_TRUSTED_PROXIES": "127.0.0.1",
        }
        with m:
            m.tokens = {**tokens, "admin": m.token}
            m.spool, m.objects = spool, data / "objects"
            yield m


_addresses = iter(range(1, 250))


@pytest.fixture
def address() -> str:
    """A client address of this test's own: a fresh anonymous budget."""
    return f"203.0.113.{next(_addresses)}"


def bearer(market, who: str) -> str:
    return f"Authorization: Bearer {market.tokens[who]}\r\n"


def head(method: str, path: str, address: str, *lines: str, length: int | None = None) -> bytes:
    text = f"{method} {path} HTTP/1.1\r\nHost: wharf\r\nX-Forwarded-For: {address}\r\n"
    text += "".join(lines)
    if length is not None:
        text += f"Content-Length: {length}\r\n"
    return (text + "\r\n").encode()


MULTIPART = "Content-Type: multipart/form-data; boundary=xyz\r\n"


def form_start(field: str = "package", filename: str = "m.zip") -> bytes:
    """The opening of a multipart body whose file field goes on and on."""
    return (
        f'--xyz\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + bytes(16 * 1024)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, seconds: float):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def problem(self) -> dict:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        doc = json.loads(self.body)
        assert set(doc) >= {"type", "title", "status", "detail"}, doc
        assert doc["status"] == self.status and doc["type"] == "about:blank"
        return doc


def read_answer(sock: socket.socket, started: float) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed without an answer: {data!r}")
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body, time.monotonic() - started)


def exchange(market, request: bytes, timeout: float = 5.0) -> tuple[Answer, socket.socket]:
    """Send ``request`` (headers and perhaps the start of a body) and read the answer."""
    sock = socket.create_connection(("127.0.0.1", market.port), timeout=timeout)
    started = time.monotonic()
    sock.sendall(request)
    return read_answer(sock, started), sock


def assert_closed(sock: socket.socket) -> None:
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass
    sock.close()


def spooled(market) -> list[Path]:
    return sorted(p for root in (market.spool, market.objects) for p in root.rglob("*"))


def honest_submission(market, who: str = "alice", tag: bytes = b"") -> httpx.Response:
    package = zip_bytes({"learnware.yaml": b"model: {}\n", "__init__.py": tag})
    return httpx.post(
        f"{market.url}/v1/learnwares",
        headers={"Authorization": f"Bearer {market.tokens[who]}"},
        files={"package": ("m.zip", package, "application/zip")},
        data={"semantic_spec": json.dumps(SEMANTIC)},
    )


def honest_search(market, address: str, name: str = "sales") -> httpx.Response:
    semantic = {"Name": {"Type": "String", "Values": name}}
    return httpx.post(
        f"{market.url}/v1/searches",
        headers={"X-Forwarded-For": address},
        data={"semantic_spec": json.dumps(semantic)},
    )


# -- no body is read before the caller is known ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "size"),
    [
        ("POST", "/v1/bulk-imports", 300 * MiB),
        ("POST", "/v1/learnwares", 200 * MiB),
        ("PATCH", "/v1/learnwares/00000001", 200 * MiB),
    ],
)
def test_an_anonymous_upload_is_refused_before_its_body(market, address, method, path, size):
    before = spooled(market)
    request = head(method, path, address, MULTIPART, length=size) + form_start()
    answer, sock = exchange(market, request)
    assert answer.status == 401 and answer.seconds < PROMPT_S
    assert answer.problem()["detail"] == "this needs an API token: 'Authorization: Bearer <token>'"
    assert answer.headers["connection"] == "close"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert_closed(sock)
    assert spooled(market) == before  # nothing was spooled or stored
    assert honest_submission(market, tag=path.encode() + method.encode()).status_code == 202


def test_a_token_request_without_a_token_is_refused_before_its_body(market, address):
    request = head("POST", "/v1/tokens", address, "Content-Type: application/json\r\n", length=60)
    answer, sock = exchange(market, request + b'{"name": ')
    assert answer.status == 401 and answer.seconds < PROMPT_S
    assert answer.problem()["title"] == "Unauthorized"
    assert_closed(sock)
    r = httpx.post(
        f"{market.url}/v1/tokens",
        headers={"Authorization": f"Bearer {market.tokens['alice']}"},
        json={"name": "laptop"},
    )
    assert r.status_code == 201 and r.json()["user"] == "alice"


def test_a_made_up_token_is_refused_before_the_body(market, address):
    before = spooled(market)
    lines = ("Authorization: Bearer made-up\r\n", MULTIPART)
    request = head("POST", "/v1/learnwares", address, *lines, length=200 * MiB)
    answer, sock = exchange(market, request + form_start())
    assert answer.status == 401 and answer.seconds < PROMPT_S
    assert answer.problem()["detail"] == "the token is unknown to this market"
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_closed(sock)
    assert spooled(market) == before
    assert honest_submission(market, tag=b"made-up").status_code == 202


def test_a_user_is_refused_an_admin_upload_before_its_body(market, address):
    before = spooled(market)
    request = head(
        "POST", "/v1/bulk-imports", address, bearer(market, "bob"), MULTIPART, length=300 * MiB
    )
    answer, sock = exchange(market, request + form_start("bundle", "b.tar"))
    assert answer.status == 403 and answer.seconds < PROMPT_S
    assert answer.problem()["detail"] == "this needs an admin token"
    assert_closed(sock)
    assert spooled(market) == before
    assert honest_submission(market, who="bob", tag=b"bob").status_code == 202


# -- each route's size limit, before the body --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "who", "limit"),
    [
        ("/v1/searches", None, 64 * MiB + 2 * MiB),  # the spec limit and the form around it
        ("/v1/tokens", "alice", 64 * 1024),
    ],
)
def test_a_body_over_the_route_limit_is_413_before_it_is_read(market, address, path, who, limit):
    lines = (bearer(market, who),) if who else ()
    request = head("POST", path, address, *lines, MULTIPART, length=limit + 1)
    answer, sock = exchange(market, request + form_start("stat_spec", "spec.json"))
    assert answer.status == 413 and answer.seconds < PROMPT_S
    assert answer.problem()["detail"] == f"request body is larger than the limit of {limit} bytes"
    assert_closed(sock)
    assert honest_search(market, address).status_code == 202


def test_a_body_without_a_length_is_cut_at_the_route_limit(market, address):
    sock = socket.create_connection(("127.0.0.1", market.port), timeout=5)
    lines = (bearer(market, "alice"), "Content-Type: application/json\r\n")
    sock.sendall(head("POST", "/v1/tokens", address, *lines, "Transfer-Encoding: chunked\r\n"))
    started = time.monotonic()
    sock.sendall(b"4000\r\n" + b'{"name": "' + b"x" * (0x4000 - 10) + b"\r\n")
    with contextlib.suppress(OSError):  # the server may answer and close before the last
        for _ in range(4):
            sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
    answer = read_answer(sock, started)
    assert answer.status == 413
    assert answer.problem()["detail"] == "request body is larger than the limit of 65536 bytes"
    assert answer.headers["connection"] == "close"
    assert_closed(sock)
    r = httpx.post(
        f"{market.url}/v1/tokens",
        headers={"Authorization": f"Bearer {market.tokens['alice']}"},
        json={"name": "desktop"},
    )
    assert r.status_code == 201


def test_anonymous_searches_spend_their_budget_before_the_body_is_read(market, address):
    for _ in range(ANONYMOUS_WRITES):
        assert honest_search(market, address).status_code == 202
    request = head("POST", "/v1/searches", address, MULTIPART, length=10 * MiB)
    answer, sock = exchange(market, request + form_start("stat_spec", "spec.json"))
    assert answer.status == 429 and answer.seconds < PROMPT_S
    doc = answer.problem()
    assert doc["detail"].startswith(f"too many requests from {address} without an API token")
    assert int(answer.headers["retry-after"]) == doc["retry_after"] >= 1
    assert answer.headers["connection"] == "close"  # the unread body is not waited for
    assert_closed(sock)
    assert honest_search(market, "203.0.113.250").status_code == 202  # another address


# -- slow clients ----------------------------------------------------------------------------


def trickle(sock: socket.socket, data: bytes, every_s: float, limit_s: float) -> Answer:
    """Send ``data`` a byte at a time until the server answers (or ``limit_s`` passes)."""
    started = time.monotonic()
    sock.settimeout(every_s)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break  # the server closed the connection: its answer is waiting
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            first = None
        if first or time.monotonic() - started > limit_s:
            break
    sock.settimeout(5)
    return read_answer(sock, started)


def test_a_body_trickled_a_byte_a_second_is_cut_off_with_408(market, address):
    sock = socket.create_connection(("127.0.0.1", market.port), timeout=5)
    sock.sendall(head("POST", "/v1/searches", address, MULTIPART, length=4000))
    answer = trickle(sock, form_start("stat_spec", "spec.json"), every_s=1.0, limit_s=10)
    assert answer.status == 408
    assert BODY_GRACE_S - 0.5 < answer.seconds < BODY_GRACE_S + 2
    detail = answer.problem()["detail"]
    assert detail.startswith("the request body came too slowly (")
    assert detail.endswith(f"send it within {BODY_GRACE_S} s, or at 1024 bytes a second on average")
    assert answer.headers["connection"] == "close"
    assert_closed(sock)
    assert honest_search(market, address).status_code == 202


def test_headers_trickled_a_byte_at_a_time_are_cut_off_with_408(market, address):
    sock = socket.create_connection(("127.0.0.1", market.port), timeout=5)
    request = head("GET", "/v1/learnwares", address, *[f"X-Pad-{i}: x\r\n" for i in range(50)])
    answer = trickle(sock, request, every_s=0.25, limit_s=10)
    assert answer.status == 408
    assert HEADER_TIMEOUT_S - 0.5 < answer.seconds < HEADER_TIMEOUT_S + 1.5
    assert answer.problem()["detail"] == (
        f"the request's headers did not arrive within {HEADER_TIMEOUT_S} s; send them at once"
    )
    assert_closed(sock)
    assert httpx.get(f"{market.url}/v1/learnwares").status_code == 200


def test_a_keep_alive_connection_cannot_trickle_its_next_request(market, address):
    sock = socket.create_connection(("127.0.0.1", market.port), timeout=5)
    sock.sendall(head("GET", "/v1/vocabulary", address))
    assert read_answer(sock, time.monotonic()).status == 200
    answer = trickle(sock, head("GET", "/v1/vocabulary", address), every_s=0.25, limit_s=10)
    assert answer.status == 408 and answer.seconds < HEADER_TIMEOUT_S + 1.5
    assert answer.problem()["title"] == "Request timeout"
    assert_closed(sock)
    assert httpx.get(f"{market.url}/v1/vocabulary").status_code == 200


def test_oversized_headers_are_431(market, address):
    request = head("GET", "/v1/learnwares", address, f"X-Pad: {'x' * 20_000}\r\n")
    answer, sock = exchange(market, request)
    assert answer.status == 431
    assert answer.problem()["detail"] == "the request line and headers exceed 16384 bytes"
    assert_closed(sock)
    assert httpx.get(f"{market.url}/v1/learnwares").status_code == 200


# -- every error is problem+json ---------------------------------------------------------------


def test_unparsable_http_is_a_400_problem(market, address):
    answer, sock = exchange(market, b"GET /v1/learnwares HTTP/1.1\r\nHost wharf\r\n\r\n")
    assert answer.status == 400
    assert answer.problem()["detail"].startswith("the request is not valid HTTP/1.1 (")
    assert_closed(sock)
    assert httpx.get(f"{market.url}/v1/vocabulary").status_code == 200


def test_router_and_validation_errors_are_problems(market, address):
    url, auth = market.url, {"Authorization": f"Bearer {market.tokens['alice']}"}
    cases = [
        (
            httpx.get(f"{url}/v2/learnwares"),
            404,
            "no endpoint answers GET /v2/learnwares: the API lives under /v1 (see /docs)",
        ),
        (
            httpx.put(f"{url}/v1/learnwares", headers=auth),
            405,
            "PUT /v1/learnwares is not allowed; this path takes GET, POST",
        ),
        (
            httpx.get(f"{url}/v1/learnwares", params={"limit": "many"}),
            422,
            "query.limit: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            httpx.post(f"{url}/v1/tokens", headers=auth, content=b"{", timeout=5),
            422,
            None,
        ),
        (
            httpx.post(
                f"{url}/v1/learnwares",
                headers={**auth, "Content-Type": "multipart/form-data; boundary=xyz"},
                content=b'--xyz\r\nContent-Disposition: form-data; name="package"; filename=',
            ),
            422,
            "package: Field required; semantic_spec: Field required",
        ),
        (
            httpx.post(
                f"{url}/v1/learnwares",
                headers={**auth, "Content-Type": "multipart/form-data"},
                content=b"--xyz\r\n",
            ),
            400,
            "Missing boundary in multipart.",
        ),
    ]
    for r, status, detail in cases:
        assert r.status_code == status, (r.request.url, r.text)
        assert r.headers["content-type"] == "application/problem+json", r.text
        doc = r.json()
        assert doc["status"] == status and doc["type"] == "about:blank" and doc["title"]
        assert doc["detail"], doc
        if detail is not None:
            assert doc["detail"] == detail
    assert honest_submission(market, tag=b"errors").status_code == 202


# -- long texts and private packages ----------------------------------------------------------


def test_over_long_search_names_and_descriptions_are_422(market, address):
    name = "a" * 6000
    r = honest_search(market, address, name=name)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        "semantic_spec.Name.Values: is 6,000 characters long; a search requirement's Name may "
        f"have at most {MAX_REQUIREMENT_NAME_CHARS}"
    )
    r = httpx.get(f"{market.url}/v1/learnwares", params={"name": name})
    assert r.status_code == 422 and "at most 100 characters" in r.json()["detail"]
    assert honest_search(market, address, name="a" * MAX_REQUIREMENT_NAME_CHARS).status_code == 202


@pytest.mark.parametrize(
    ("key", "bound"), [("Name", MAX_NAME_CHARS), ("Description", MAX_DESCRIPTION_CHARS)]
)
def test_over_long_learnware_texts_are_422(market, key, bound):
    semantic = {**SEMANTIC, key: {"Type": "String", "Values": "x" * (bound + 1)}}
    r = httpx.post(
        f"{market.url}/v1/learnwares",
        headers={"Authorization": f"Bearer {market.tokens['alice']}"},
        files={"package": ("m.zip", zip_bytes({"learnware.yaml": key.encode()}), "x")},
        data={"semantic_spec": json.dumps(semantic)},
    )
    assert r.status_code == 422 and r.json()["field"] == f"semantic_spec.{key}.Values"
    assert r.json()["detail"].endswith(f"a learnware's {key} may have at most {bound:,}")
    assert honest_submission(market, tag=key.encode()).status_code == 202


def test_a_resubmission_does_not_reveal_another_users_private_learnware(market):
    first = honest_submission(market, who="alice", tag=b"private")
    assert first.status_code == 202
    lid = first.json()["learnware_id"]
    again = honest_submission(market, who="alice", tag=b"private")
    assert again.status_code == 409 and again.json()["existing_learnware"] == lid
    probe = honest_submission(market, who="bob", tag=b"private")
    assert probe.status_code == 409 and probe.headers["content-type"] == "application/problem+json"
    assert lid not in probe.text and "existing_learnware" not in probe.json()
    assert probe.json()["detail"].startswith(
        "a package with this exact content was already submitted by another user and is not public"
    )
    assert honest_submission(market, who="bob", tag=b"bob's own").status_code == 202
