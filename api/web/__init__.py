"""Pages for people: browse and search the market, read a learnware's page, download it.

Served by the API process itself from Jinja2 templates and static files shipped in the
package (no JavaScript build, nothing fetched from elsewhere). Every page carries a strict
Content-Security-Policy: scripts and styles come from ``/static/web`` only. The pages read the
catalog through the same domain code as ``/v1`` and queue searches the same way.

Accounts (:mod:`.accounts`): sign-up, sign-in with a server-side session in an HttpOnly
cookie (:mod:`.session`, where a page learns who is looking and every form gets its CSRF
token), a password change, and the user's API tokens.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import accounts, admin, pages, submit
from .assets import STATIC, Assets
from .render import PageError, page_error

__all__ = ["SEARCH_PATH", "STATIC", "body_limits", "install"]

#: The page routes that take an upload, with the form's size cap set by the app.
SEARCH_PATH = pages.SEARCH_PATH


def body_limits(max_spec_bytes: int, max_upload_bytes: int, overhead: int) -> dict[str, int]:
    """The page routes that take an upload, each with its body's cap."""
    return {
        SEARCH_PATH: max_spec_bytes + overhead,
        submit.SUBMIT_PATH: max_upload_bytes + overhead,
        submit.EDIT_PREFIX: max_upload_bytes + overhead,  # /learnwares/{id}/edit
    }


def install(app: FastAPI) -> None:
    app.mount(STATIC, Assets(), name="web-assets")
    app.add_exception_handler(PageError, page_error)
    app.include_router(pages.router)
    app.include_router(accounts.router)
    app.include_router(submit.router)
    app.include_router(admin.router)
