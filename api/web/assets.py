"""The pages' static files, served with a day of browser caching.

Pages link them with ``?v=`` and a digest of their content, so a new version of the market is
fetched at once and an unchanged one is not asked again: a page view costs one request, which
matters under the anonymous rate limit (every request counts, assets included).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = "/static/web"
FOLDER = Path(__file__).parent / "static"
CACHE_CONTROL = "public, max-age=86400"


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(FOLDER.iterdir()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


#: The ``v`` of every asset URL in the pages (read once, when the module is imported).
VERSION = _digest()


class Assets(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=FOLDER)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = CACHE_CONTROL
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
