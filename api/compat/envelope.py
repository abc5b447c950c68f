"""The deployed market's answer shape: ``{"code": int, "msg": str, "data": {...}}``.

Code 0 is success. The error codes are the deployed market's (its blueprints' numbers), so
a client that tells them apart keeps working; a ``/v1`` status maps to the code the deployed
market gives for the same failure.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ..problems import Problem

OK = 0
UNAUTHORIZED = 11
ADMIN_REQUIRED = 12
BAD_PARAMETERS = 21
SYSTEM = 31
SPEC_ERROR = 41
ENGINE_ERROR = 42
NOT_FOUND = 51
BAD_CLIENT_TOKEN = 53
DUPLICATE = 61
UNKNOWN_LEARNWARE = 71

_BY_STATUS = {
    400: BAD_PARAMETERS,
    401: UNAUTHORIZED,
    403: SYSTEM,  # the deployed market's "permission error"
    404: NOT_FOUND,
    405: BAD_PARAMETERS,
    408: BAD_PARAMETERS,
    409: DUPLICATE,
    411: BAD_PARAMETERS,
    413: BAD_PARAMETERS,
    415: BAD_PARAMETERS,
    422: BAD_PARAMETERS,
}


class CompatError(Problem):
    """Raise in a compatible route to answer with a deployed-market ``code``."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict | None = None):
        super().__init__(status, msg, headers=headers, code=code)


def ok(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": OK, "msg": "Request succeeded.", "data": data if data is not None else {}}


def code_for(status: int, field: str | None = None) -> int:
    """The deployed market's code for a ``/v1`` failure of ``status`` (about ``field``)."""
    if status == 422 and field and field.startswith("semantic_spec"):
        return SPEC_ERROR
    return _BY_STATUS.get(status, SYSTEM)


def render(status: int, detail: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    """An error in the envelope (see :func:`api.problems.answer_elsewhere`)."""
    code = extra.get("code") or code_for(status, extra.get("field"))
    body = {"code": code, "msg": detail, "data": {}}
    return JSONResponse(body, status_code=status, headers=headers)
