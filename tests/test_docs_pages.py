"""/docs and /redoc load every asset from the market itself: on a network with no way out
(where a CDN cannot be reached) both pages still work."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from wharf.api.app import create_app
from wharf.market.settings import Settings


class _Assets(HTMLParser):
    """Every URL a page makes the browser fetch: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


@pytest.fixture
def client(tmp_path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path)))


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
def test_the_api_pages_load_every_asset_from_the_market(client: TestClient, page: str, script):
    answer = client.get(page)
    assert answer.status_code == 200, answer.text
    parser = _Assets()
    parser.feed(answer.text)
    assert any(url.endswith(script) for url in parser.urls), parser.urls
    for url in parser.urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert "http://" not in answer.text and "https://" not in answer.text, answer.text


def test_the_pages_stay_out_of_the_openapi_document(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)
    assert client.get("/static/docs/../app.py").status_code == 404
