"""Reading a page's posted form: known fields only, each once, short text, and the CSRF token
checked before anything else is looked at."""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from .render import PageError
from .session import CSRF_FIELD, check_csrf, page_user

#: The longest text field a form of these pages takes (a description is longer: see callers).
MAX_FIELD = 1024


async def read_form(
    request: Request, fields: set[str], *, long: dict[str, int] | None = None
) -> dict[str, str]:
    """The form's text fields (missing ones as ``""``); a 400/403/422 page for a body that is
    not a form of these fields, a field sent twice or too long, or a wrong CSRF token."""
    long = long or {}
    try:
        form = await request.form(max_files=0, max_fields=len(fields) + 2)
    except StarletteHTTPException as exc:
        raise PageError(exc.status_code, f"The form could not be read: {exc.detail}") from None
    try:
        values: dict[str, str] = {}
        for key, value in form.multi_items():
            if key not in fields and key != CSRF_FIELD:
                raise PageError(422, f"Unknown form field {key[:40]!r}.")
            if key in values:
                raise PageError(422, f"The form field {key[:40]!r} was sent twice.")
            if not isinstance(value, str) or len(value) > long.get(key, MAX_FIELD):
                raise PageError(422, f"The form field {key[:40]!r} is too long.")
            values[key] = value
        await page_user(request)  # the CSRF token of a signed-in visitor is the session's
        check_csrf(request, values.pop(CSRF_FIELD, None))
        return {name: values.get(name, "") for name in fields}
    finally:
        await form.close()


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path of this site (where to go after signing in), else
    ``default``: never another site (``//host``, ``/\\host``, a scheme)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(c in target for c in "\\\r\n\t")
        or len(target) > 512
    ):
        return default
    return target
