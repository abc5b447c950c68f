"""The page routes: browse (``/``), a learnware's page and its download, the statistical
search form and a search's result. They read the catalog as ``/v1`` does, queue searches
through the code behind ``POST /v1/searches`` and wait for them as ``?wait=`` does; what
they show follows the API's visibility rules."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from wharf.market.catalog import Learnware, User, repo
from wharf.specification.errors import SpecificationError
from wharf.specification.files import loads_spec
from wharf.specification.semantic import VOCABULARIES

from ..deps import ServicesDep, SessionDep
from ..problems import Problem
from ..routes import learnwares as learnware_routes
from ..routes import searches as search_routes
from ..routes.jobs import ENDED, read_job, wait_for_job
from . import query as browse_query
from . import specplot, views
from .listing import browse_page
from .render import PageError, page
from .session import CSRF_FIELD, PageReader, can_see_private, check_csrf

router = APIRouter(include_in_schema=False)

SEARCH_PATH = "/search"
#: How long a result page holds its request for a search to end before showing it running.
RESULT_WAIT_S = 15.0
#: Seconds between reloads of a result page whose search is still running.
REFRESH_S = 3
#: Singles a search from the page asks for.
SEARCH_TOP = 20


def _vocabulary() -> dict[str, tuple[str, ...]]:
    return {param: VOCABULARIES[key] for param, key in browse_query.FILTERS.items()}


@router.get("/", response_class=HTMLResponse)
def browse(request: Request, session: SessionDep, user: PageReader) -> HTMLResponse:
    q = browse_query.parse(request.query_params)
    items, total = browse_page(session, q, user)
    pages = max(1, -(-total // q.per_page))
    return page(
        request,
        "browse.html",
        {
            "query": q,
            "cards": [views.card(lw) for lw in items],
            "total": total,
            "pages": pages,
            "vocabulary": _vocabulary(),
            "page_sizes": browse_query.PAGE_SIZES,
        },
    )


def _learnware(session: Session, learnware_id: str, user: User | None) -> Learnware:
    """The learnware if this visitor may see it; a 404 page otherwise, as for no learnware."""
    try:
        lw = repo.get_learnware(session, repo.parse_id(learnware_id))
    except ValueError:
        lw = None
    if lw is None or (lw.status != "accepted" and not can_see_private(user, lw.owner_id)):
        raise PageError(404, f"There is no learnware {learnware_id[:20]!r} on this market.")
    return lw


def _picture(lw: Learnware) -> specplot.SpecPicture | None:
    if not lw.spec_type:
        return None
    key = (lw.id, lw.updated_at)
    found, picture = specplot.pictures.get(key)
    if found:
        return picture
    try:
        spec = loads_spec(lw.stat_spec or "")  # loaded only now: it may be megabytes
        picture = specplot.picture(spec.z_, spec.beta_)
    except (SpecificationError, ValueError, FloatingPointError):
        picture = None  # a spec the check accepted is readable; a page never fails on one
    specplot.pictures.put(key, picture)
    return picture


@router.get("/learnwares/{learnware_id}", response_class=HTMLResponse)
def learnware_page(
    request: Request, session: SessionDep, user: PageReader, learnware_id: str
) -> HTMLResponse:
    lw = _learnware(session, learnware_id, user)
    owner = session.get(User, lw.owner_id)
    semantic = lw.semantic_spec or {}
    lid = repo.format_id(lw.id)
    private = can_see_private(user, lw.owner_id)
    return page(
        request,
        "learnware.html",
        {
            "lw": lw,
            "id": lid,
            "owner": owner.name if owner else "",
            "tags": (tags := views.tags(semantic)),
            "licences": [value for key, value in tags if key == "License"],
            "inputs": views.io_side(semantic, "Input"),
            "outputs": views.io_side(semantic, "Output"),
            "spec": views.spec_line(lw),
            "spec_kind": views.SPEC_KINDS.get(lw.spec_type or "", lw.spec_type or ""),
            "picture": _picture(lw),
            "plot": specplot,
            "log": (lw.check_log or "no check has finished yet") if private else None,
            "snippets": views.snippets(str(request.base_url).rstrip("/"), lid),
        },
    )


@router.get("/learnwares/{learnware_id}/package")
def download(
    services: ServicesDep, session: SessionDep, user: PageReader, learnware_id: str
) -> Response:
    """The package, as ``GET /v1/learnwares/{id}/package`` sends it, for this visitor."""
    lw = _learnware(session, learnware_id, user)
    try:
        return learnware_routes.package_response(services, lw, redirect=True)
    except Problem as exc:
        raise PageError(exc.status, exc.detail) from None


# -- statistical search -------------------------------------------------------------------


def _search_form(
    request: Request, *, error: str = "", chosen: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    return page(
        request,
        "search.html",
        {"error": error, "chosen": chosen or {}, "vocabulary": _vocabulary()},
        status=status,
    )


@router.get(SEARCH_PATH, response_class=HTMLResponse)
def search_form(request: Request, user: PageReader) -> HTMLResponse:
    return _search_form(request)


#: The search form's fields: the spec file, the tag filters and the CSRF token.
_SEARCH_FIELDS = {"stat_spec", CSRF_FIELD, *browse_query.FILTERS}


def _requirement(form: FormData) -> tuple[str | None, dict[str, str]]:
    """The semantic requirement of the form's tag filters (JSON, or ``None`` for none) and the
    values chosen, to show the form again."""
    semantic: dict[str, Any] = {}
    chosen: dict[str, str] = {}
    for param, key in browse_query.FILTERS.items():
        value = form.get(param)
        if not value:
            continue
        if not isinstance(value, str) or value not in VOCABULARIES[key]:
            raise PageError(422, f"{param!r} must be one of the market's {key} values.")
        chosen[param] = value
        semantic[key] = {"Type": "Tag" if key == "Scenario" else "Class", "Values": [value]}
    return (json.dumps(semantic) if semantic else None), chosen


@router.post(SEARCH_PATH, response_class=HTMLResponse)
async def search(
    request: Request, services: ServicesDep, session: SessionDep, user: PageReader
) -> Response:
    """Queue a search with the uploaded spec and the chosen tags; 303 to its result page."""
    try:
        form = await request.form(max_files=1, max_fields=len(_SEARCH_FIELDS) + 1)
    except StarletteHTTPException as exc:  # a malformed body, or too many parts
        raise PageError(exc.status_code, f"The form could not be read: {exc.detail}") from None
    try:
        unknown = sorted(set(form) - _SEARCH_FIELDS)
        if unknown:
            raise PageError(422, f"Unknown form field {unknown[0][:40]!r}.")
        check_csrf(request, _text(form.get(CSRF_FIELD)))
        semantic, chosen = _requirement(form)
        upload = form.get("stat_spec")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _search_form(
                request,
                error="Choose a spec file: the JSON that `wharf spec fit` wrote.",
                chosen=chosen,
                status=422,
            )
        try:  # the checks, storage and queueing of POST /v1/searches, as they are there
            job_id = await run_in_threadpool(
                search_routes._queue_search,
                services,
                session,
                user,
                semantic,
                upload,
                SEARCH_TOP,
                5,
            )
        except Problem as exc:
            detail = exc.detail.removeprefix("stat_spec: ")
            return _search_form(
                request,
                error=f"The market cannot use this spec: {detail}",
                chosen=chosen,
                status=exc.status,
            )
    finally:
        await form.close()
    return RedirectResponse(f"/searches/{job_id}", status_code=303)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@router.get("/searches/{job_id}", response_class=HTMLResponse)
async def search_result(
    request: Request, services: ServicesDep, user: PageReader, job_id: str
) -> HTMLResponse:
    try:
        job = await run_in_threadpool(read_job, services, job_id, user)
        if job.kind != "search":
            raise Problem(404, "not a search")
        if job.state not in ENDED:
            job = await wait_for_job(services, job_id, user, RESULT_WAIT_S)
    except Problem:
        raise PageError(404, "There is no such search: its link may be mistyped.") from None
    result = job.result or {}
    return page(
        request,
        "result.html",
        {
            "job": job,
            "ended": job.state in ENDED,
            "refresh_s": REFRESH_S,
            "singles": result.get("singles") or [],
            "mixture": _mixture(result.get("mixture")),
            "withdrawn": result.get("withdrawn") or [],
            # A search answered in the heterogeneous partition marks its result so.
            "hetero": bool(result.get("hetero")),
            "semantic_only": bool(result.get("semantic_only")),
        },
    )


def _mixture(mixture: dict[str, Any] | None) -> dict[str, Any] | None:
    if not mixture:
        return None
    names = mixture.get("names") or mixture.get("ids", [])
    members = list(zip(mixture.get("ids", []), names, mixture.get("weights", []), strict=False))
    return {**mixture, "members": members}
