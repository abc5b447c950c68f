"""``/docs`` (Swagger UI) and ``/redoc`` from assets shipped in the ``fastapi-offline`` package:
FastAPI's own pages load them from a public CDN, which leaves them blank on a network with no
way out. Only the package's static files are used; the pages are FastAPI's."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def _assets_folder() -> Path:
    spec = find_spec("fastapi_offline")  # its folder, without importing its FastAPI subclass
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed: pip install fastapi-offline")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install(app: FastAPI) -> None:
    """Serve the two pages; ``app`` must be made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=_assets_folder()), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} — API",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} — API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
