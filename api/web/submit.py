"""Submitting on the pages: a form built from the market's vocabulary (with the column
descriptions the heterogeneous market reads), the upload, then the check's progress live until
the learnware is accepted or rejected, with its log. Owners edit and delete their learnwares.

Every write goes through the code behind ``POST``, ``PATCH`` and ``DELETE /v1/learnwares``,
so the pages accept and refuse exactly what the API does.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from wharf.market.catalog import JobKind, Learnware, User, repo
from wharf.specification.semantic import (
    DEFAULT_LICENSE,
    DEFAULT_MODEL,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    VOCABULARIES,
)

from ..deps import Services, ServicesDep, SessionDep
from ..problems import Problem
from ..routes import learnwares as learnware_routes
from ..routes.jobs import ENDED, read_job, wait_for_job
from .owned import own_learnwares
from .render import PageError, page
from .session import CSRF_FIELD, SignedIn, can_see_private, check_csrf, page_user

router = APIRouter(include_in_schema=False)

SUBMIT_PATH = "/submit"
#: Edits may carry a new package too: every path under this one takes an upload.
EDIT_PREFIX = "/learnwares"
#: How long one poll of a check's state (``/checks/{job}/state?wait=``) may be held.
POLL_WAIT_S = 20.0
#: The most columns the form describes (a wider table is described in a package's own
#: semantic spec, through the API).
MAX_COLUMNS = 2000
#: The newest of one's learnwares that ``/mine`` lists.
MINE_LIMIT = 100

_CHOICES = {"data": "Data", "task": "Task", "model": "Model", "library": "Library"}
_FIELDS = {
    "name",
    "description",
    *_CHOICES,
    "scenario",
    "license",
    "input_dim",
    "input_columns",
    "output_dim",
    "output_columns",
    "package",
    CSRF_FIELD,
}


_SCENARIOS = frozenset(VOCABULARIES["Scenario"])


def _vocabulary() -> dict[str, tuple[str, ...]]:
    keys = {**_CHOICES, "scenario": "Scenario", "license": "License"}
    return {param: VOCABULARIES[key] for param, key in keys.items()}


def _blank() -> dict[str, Any]:
    return {
        "name": "",
        "description": "",
        "data": "Table",
        "task": "Classification",
        "model": DEFAULT_MODEL,
        "library": "Scikit-learn",
        "scenario": [],
        "license": DEFAULT_LICENSE,
        "input_dim": "",
        "input_columns": "",
        "output_dim": "",
        "output_columns": "",
    }


def _from_semantic(semantic: dict[str, Any]) -> dict[str, Any]:
    """The form's values for a stored semantic spec (to edit it)."""

    def value(key: str, default: str = "") -> str:
        values = (semantic.get(key) or {}).get("Values")
        if isinstance(values, list):
            return values[0] if values else default
        return values if isinstance(values, str) else default

    def side(key: str) -> tuple[str, str]:
        io = semantic.get(key) or {}
        dim = io.get("Dimension")
        described = io.get("Description") or {}
        lines = [str(described.get(str(i), "")) for i in range(int(dim or 0))]
        return (str(dim) if dim else ""), "\n".join(lines).rstrip("\n")

    form = _blank()
    form |= {"name": value("Name"), "description": value("Description")}
    for param, key in _CHOICES.items():
        form[param] = value(key, form[param])
    form["license"] = value("License", form["license"])
    form["scenario"] = list((semantic.get("Scenario") or {}).get("Values") or [])
    form["input_dim"], form["input_columns"] = side("Input")
    form["output_dim"], form["output_columns"] = side("Output")
    return form


def _columns(field: str, dim_text: str, lines_text: str) -> dict[str, Any] | None:
    """``{"Dimension": n, "Description": {...}}`` from the form: a dimension and one line per
    column in order (a blank line leaves that column undescribed); ``None`` without either."""
    lines = lines_text.replace("\r\n", "\n").split("\n") if lines_text.strip() else []
    while lines and not lines[-1].strip():
        lines.pop()
    if not dim_text.strip() and not lines:
        return None
    try:
        dim = int(dim_text) if dim_text.strip() else len(lines)
    except ValueError:
        raise PageError(422, f"The {field} dimension is a whole number.") from None
    if not 1 <= dim <= MAX_COLUMNS:
        raise PageError(422, f"The {field} dimension is between 1 and {MAX_COLUMNS}.")
    if len(lines) > dim:
        raise PageError(
            422, f"{len(lines)} {field} column descriptions for {dim} columns: one line a column."
        )
    described = {str(i): line.strip() for i, line in enumerate(lines) if line.strip()}
    return {"Dimension": dim, "Description": described}


def _semantic(form: dict[str, Any]) -> dict[str, Any]:
    """The semantic spec the form describes (checked further by the API's own rules)."""
    semantic: dict[str, Any] = {
        "Name": {"Type": "String", "Values": form["name"].strip()},
        "Description": {"Type": "String", "Values": form["description"].strip()},
        "Scenario": {"Type": "Tag", "Values": list(form["scenario"])},
        "License": {"Type": "Class", "Values": [form["license"]]},
    }
    for param, key in _CHOICES.items():
        kind = "Optional" if key == "Model" else "Class"
        semantic[key] = {"Type": kind, "Values": [form[param]]}
    for field, key in (("input", "Input"), ("output", "Output")):
        side = _columns(field, form[f"{field}_dim"], form[f"{field}_columns"])
        if side is not None:
            semantic[key] = side
    return semantic


async def _read(
    request: Request,
) -> tuple[dict[str, Any], UploadFile | None, FormData, str]:
    """The form's values, its package (``None`` when no file was chosen), the parsed form (to
    close) and what is wrong with a value, to show on the form. 4xx pages for a form of other
    fields or a wrong CSRF token."""
    try:
        form = await request.form(max_files=1, max_fields=len(_FIELDS) + 40)
    except StarletteHTTPException as exc:
        raise PageError(exc.status_code, f"The form could not be read: {exc.detail}") from None
    try:
        unknown = sorted(set(form) - _FIELDS)
        if unknown:
            raise PageError(422, f"Unknown form field {unknown[0][:40]!r}.")
        await page_user(request)
        token = form.get(CSRF_FIELD)
        check_csrf(request, token if isinstance(token, str) else None)
        values = _blank()
        for key in values:
            if key == "scenario":
                continue
            items = form.getlist(key)
            if len(items) > 1 or any(not isinstance(item, str) for item in items):
                raise PageError(422, f"The form field {key!r} is one text.")
            if items:
                values[key] = items[0]
        scenarios = form.getlist("scenario")
        values["scenario"] = [s for s in dict.fromkeys(scenarios) if s in _SCENARIOS]
        error = ""
        if len(values["scenario"]) != len(set(scenarios)):
            error = "A scenario is one of the market's scenarios."
        for param, key in {**_CHOICES, "license": "License"}.items():
            if values[param] not in VOCABULARIES[key]:
                error = f"{key} is one of the market's values, not {values[param][:40]!r}."
                values[param] = _blank()[param]
        upload = form.get("package")
        if not isinstance(upload, UploadFile) or not upload.filename:
            upload = None
        return values, upload, form, error
    except BaseException:
        await form.close()
        raise


def _form_page(
    request: Request,
    form: dict[str, Any],
    *,
    lw: Learnware | None = None,
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "submit.html",
        {
            "form": form,
            "lw": lw,
            "id": repo.format_id(lw.id) if lw is not None else "",
            "error": error,
            "vocabulary": _vocabulary(),
            "max_name": MAX_NAME_CHARS,
            "max_description": MAX_DESCRIPTION_CHARS,
            "max_mib": request.app.state.services.settings.max_upload_bytes // 2**20,
        },
        status=status,
    )


@router.get(SUBMIT_PATH, response_class=HTMLResponse)
async def submit_form(request: Request, user: SignedIn) -> HTMLResponse:
    return _form_page(request, _blank())


@router.post(SUBMIT_PATH, response_class=HTMLResponse)
async def submit(
    request: Request, services: ServicesDep, session: SessionDep, user: SignedIn
) -> Response:
    values, upload, form, error = await _read(request)
    try:
        if error:
            return _form_page(request, values, error=error, status=422)
        if upload is None:
            return _form_page(request, values, error="Choose the learnware's zip.", status=422)
        try:
            semantic = json.dumps(_semantic(values))
            done = await run_in_threadpool(
                learnware_routes.submit, services, session, user, upload, semantic
            )
        except PageError as exc:
            return _form_page(request, values, error=exc.message, status=exc.status)
        except Problem as exc:
            return _form_page(request, values, error=_said(exc), status=exc.status)
    finally:
        await form.close()
    return RedirectResponse(f"/checks/{done.job_id}", status_code=303)


def _said(exc: Problem) -> str:
    detail = exc.detail.removeprefix("semantic_spec: ")
    return f"The market cannot take this learnware: {detail}"


# -- a check's progress ---------------------------------------------------------------------


def _check_view(services: Services, job_id: str, user: User) -> dict[str, Any]:
    try:
        job = read_job(services, job_id, user)
    except Problem:
        job = None
    if job is None or job.kind != JobKind.check or not job.learnware_id:
        raise PageError(404, "There is no such check: its link may be mistyped.")
    with services.catalog.session(read_only=True) as s:
        lw = repo.get_learnware(s, repo.parse_id(job.learnware_id))
        learnware = None
        if lw is not None and can_see_private(user, lw.owner_id):
            learnware = {
                "id": repo.format_id(lw.id),
                "name": lw.name,
                "status": str(lw.status),
                "log": lw.check_log or "",
            }
    return {"job": job, "learnware": learnware, "ended": job.state in ENDED}


@router.get("/checks/{job_id}", response_class=HTMLResponse)
async def check_page(
    request: Request, services: ServicesDep, user: SignedIn, job_id: str
) -> HTMLResponse:
    view = await run_in_threadpool(_check_view, services, job_id[:64], user)
    return page(request, "check.html", view)


@router.get("/checks/{job_id}/state")
async def check_state(
    request: Request, services: ServicesDep, user: SignedIn, job_id: str, wait: float = 0
) -> JSONResponse:
    """The check's state as JSON for the page's script, held up to ``wait`` seconds until the
    check ends (the long poll of ``GET /v1/jobs/{id}?wait=``, with the session's cookie)."""
    job_id = job_id[:64]
    try:
        job = await run_in_threadpool(read_job, services, job_id, user)
        if job.kind != JobKind.check:
            raise Problem(404, "not a check")
        if job.state not in ENDED and wait > 0:
            job = await wait_for_job(services, job_id, user, min(wait, POLL_WAIT_S))
    except Problem:
        return JSONResponse({"error": "no such check"}, status_code=404)
    return JSONResponse(
        {
            "state": job.state,
            "stage": job.stage,
            "progress": job.progress,
            "ended": job.state in ENDED,
        },
        headers={"Cache-Control": "no-store"},
    )


# -- one's own learnwares: list, edit, delete -----------------------------------------------


def _mine(services: Services, user: User) -> list[dict[str, Any]]:
    with services.catalog.session(read_only=True) as s:
        return own_learnwares(s, user.id, MINE_LIMIT)


@router.get("/mine", response_class=HTMLResponse)
async def mine(request: Request, services: ServicesDep, user: SignedIn) -> HTMLResponse:
    items = await run_in_threadpool(_mine, services, user)
    done = "Your learnware is deleted." if request.query_params.get("deleted") else ""
    return page(request, "mine.html", {"items": items, "limit": MINE_LIMIT, "message": done})


def _owned(session: Session, learnware_id: str, user: User) -> Learnware:
    """The learnware if ``user`` owns it; a 404 page otherwise (as for no learnware, so that
    others' learnwares are not revealed), also for an admin: admins use the API."""
    try:
        lw = repo.get_learnware(session, repo.parse_id(learnware_id))
    except ValueError:
        lw = None
    if lw is None or lw.owner_id != user.id:
        raise PageError(404, f"You have no learnware {learnware_id[:20]!r}.")
    return lw


@router.get("/learnwares/{learnware_id}/edit", response_class=HTMLResponse)
def edit_form(
    request: Request, session: SessionDep, user: SignedIn, learnware_id: str
) -> HTMLResponse:
    lw = _owned(session, learnware_id, user)
    return _form_page(request, _from_semantic(lw.semantic_spec or {}), lw=lw)


@router.post("/learnwares/{learnware_id}/edit", response_class=HTMLResponse)
async def edit(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    user: SignedIn,
    learnware_id: str,
) -> Response:
    values, upload, form, error = await _read(request)
    try:
        lw = await run_in_threadpool(_owned, session, learnware_id, user)
        if error:
            return _form_page(request, values, lw=lw, error=error, status=422)
        try:
            semantic = json.dumps(_semantic(values))
            done = await run_in_threadpool(
                learnware_routes.edit, services, session, user, learnware_id, semantic, upload
            )
        except PageError as exc:
            return _form_page(request, values, lw=lw, error=exc.message, status=exc.status)
        except Problem as exc:
            return _form_page(request, values, lw=lw, error=_said(exc), status=exc.status)
    finally:
        await form.close()
    target = f"/checks/{done.job_id}" if done.job_id else f"/learnwares/{done.learnware_id}"
    return RedirectResponse(target, status_code=303)


@router.post("/learnwares/{learnware_id}/delete")
async def delete(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    user: SignedIn,
    learnware_id: str,
) -> RedirectResponse:
    from .forms import read_form

    await read_form(request, set())
    await run_in_threadpool(_owned, session, learnware_id, user)
    try:
        await run_in_threadpool(learnware_routes.delete, services, session, user, learnware_id)
    except Problem as exc:
        raise PageError(exc.status, exc.detail) from None
    return RedirectResponse("/mine?deleted=1", status_code=303)
