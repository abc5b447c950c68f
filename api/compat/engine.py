"""``/engine``: a learnware's details and package, search, and the semantic vocabulary.

Search is one request here, as the reference client expects: the route queues the same
search job as ``POST /v1/searches`` and waits for it (at most ``WHARF_JOB_WAIT_MAX_S``), then
answers with one page of it in the deployed market's lists.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import Learnware, Role, User, repo
from wharf.specification import semantic
from wharf.specification.errors import SpecificationError
from wharf.specification.files import loads_spec

from ..deps import FormFields, IdentityFirstRoute, Reader, Services, ServicesDep, SessionDep
from ..forms import semantic_spec_field
from ..routes import learnwares
from ..routes.jobs import ENDED, wait_for_job
from ..routes.searches import create_search_job, unmatched_requirement
from .envelope import ADMIN_REQUIRED, BAD_PARAMETERS, ENGINE_ERROR, SPEC_ERROR, CompatError, ok
from .views import VERIFY_STATUS, last_modify, semantic_specification

SEARCH_PATH = "/engine/search_learnware"
#: The deepest result a search pages through (``(page + 1) * limit``), as ``/v1``'s ``top``.
MAX_RESULTS = 1000

router = APIRouter(prefix="/engine", tags=["learnware client"], route_class=IdentityFirstRoute)


@router.get("/semantic_specification")
def semantic_vocabulary() -> dict[str, Any]:
    """Every semantic-spec key with its ``Type`` and allowed ``Values`` (``null``: text)."""
    return ok(
        {
            "semantic_specification": {
                key: {"Values": list(semantic.VOCABULARIES.get(key, ())) or None, "Type": kind}
                for key, kind in semantic.FIELD_TYPES.items()
            }
        }
    )


@router.get("/learnware_info")
def learnware_info(
    session: SessionDep, user: Reader, learnware_id: Annotated[str, Query(max_length=64)]
) -> dict[str, Any]:
    """A learnware everyone may see (its owner and admins see it before it is accepted)."""
    learnwares.get_learnware(session, user, learnware_id)  # 404 unless the caller may see it
    lw = repo.get_learnware(session, repo.parse_id(learnware_id))
    return ok(
        {
            "learnware_info": {
                "user_id": lw.owner_id,
                "learnware_id": repo.format_id(lw.id),
                "last_modify": last_modify(lw.updated_at),
                "verify_status": VERIFY_STATUS[lw.status],
                "semantic_specification": semantic_specification(lw.semantic_spec),
            }
        }
    )


@router.get("/download_learnware")
def download_learnware(
    services: ServicesDep,
    session: SessionDep,
    user: Reader,
    learnware_id: Annotated[str, Query(max_length=64)],
) -> Response:
    """The package as ``/v1`` serves it (the reference's layout), with its Content-Length."""
    return learnwares.download(
        services, session, user, learnware_id, redirect=False, original=False
    )


@router.post(SEARCH_PATH.removeprefix("/engine"), dependencies=[FormFields])
async def search_learnware(
    services: ServicesDep,
    session: SessionDep,
    user: Reader,
    semantic_specification: Annotated[str, Form()] = "{}",
    statistical_specification: Annotated[UploadFile | None, File()] = None,
    limit: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 10,
    page: Annotated[int, Form(ge=0, le=MAX_RESULTS)] = 0,
    is_verified: Annotated[str | None, Form(max_length=8)] = None,
    learnware_id: Annotated[str | None, Form(max_length=64)] = None,
) -> dict[str, Any]:
    """``learnware_list_single`` (one page, best first, ``matching`` the score; 0 when no
    statistical spec was sent) and, on page 0, ``learnware_list_multi``: the mixture."""
    if (is_verified is not None or learnware_id is not None) and (
        user is None or user.role != Role.admin
    ):
        raise CompatError(ADMIN_REQUIRED, "is_verified and learnware_id are for admins")
    if is_verified is not None and is_verified.lower() != "true":
        raise CompatError(BAD_PARAMETERS, "Wharf searches accepted learnwares only")
    top = (page + 1) * limit
    if top > MAX_RESULTS:
        raise CompatError(BAD_PARAMETERS, f"a search pages through its first {MAX_RESULTS}")
    job_id = await run_in_threadpool(
        _queue_search,
        services,
        session,
        user,
        semantic_specification,
        statistical_specification,
        top,
    )
    job = await wait_for_job(services, job_id, user, services.settings.job_wait_max_s)
    if job.state not in ENDED:
        raise CompatError(
            ENGINE_ERROR,
            f"the search did not finish within {services.settings.job_wait_max_s:g} s "
            f"(job {job_id}: GET /v1/jobs/{job_id} follows it); try again",
            status=503,
            headers={"Retry-After": "5"},
        )
    if job.state != "succeeded":
        raise CompatError(ENGINE_ERROR, f"the search failed: {job.error}", status=500)
    return ok(
        await run_in_threadpool(_answer, services, job.result or {}, page, limit, learnware_id)
    )


def _queue_search(
    services: Services,
    session: Session,
    user: User | None,
    semantic_text: str,
    upload: UploadFile | None,
    top: int,
) -> str:
    """Check the requirement, store its spec, create the search job and send it (as
    ``POST /v1/searches`` does); the job's id."""
    requirement = semantic_spec_field(semantic_text or "{}", requirement=True)
    request: dict[str, Any] = {"semantic": requirement, "top": top, "max_search_num": 5}
    text = None
    if upload is not None:
        limit = services.settings.max_spec_bytes
        text = upload.file.read(limit + 1)
        if len(text) > limit:
            raise CompatError(
                BAD_PARAMETERS, f"the statistical specification is over {limit} bytes", status=413
            )
        try:
            spec = loads_spec(text, services.settings.spec_limits)
        except SpecificationError as exc:
            raise CompatError(SPEC_ERROR, f"statistical_specification: {exc}", status=422) from None
        problem = unmatched_requirement(services, spec, requirement)
        if problem is not None:
            raise CompatError(SPEC_ERROR, f"statistical_specification: {problem}", status=422)
    return create_search_job(services, session, user, request, text)


def _answer(
    services: Services, result: dict[str, Any], page: int, limit: int, id_filter: str | None
) -> dict[str, Any]:
    singles = result.get("singles") or []
    if id_filter:
        singles = [s for s in singles if id_filter in s["id"]]
    stats = result.get("stats") or {}
    total = len(singles) if id_filter else stats.get("semantic_matches", len(singles))
    if not result.get("semantic_only"):
        total = min(total, len(singles)) if id_filter else stats.get("scored", len(singles))
    shown = singles[page * limit : (page + 1) * limit]
    mixture = result.get("mixture") if page == 0 else None
    ids = {s["id"] for s in shown} | set((mixture or {}).get("ids", []))
    with services.catalog.session(read_only=True) as session:
        found = repo.get_learnwares(session, map(repo.parse_id, ids))
        rows = {repo.format_id(lw.id): lw for lw in found}
        owners = {lw.owner_id for lw in rows.values()}
        names = {u.id: u.name for u in (session.get(User, i) for i in owners) if u is not None}

        def item(lid: str, matching: float) -> dict[str, Any] | None:
            lw: Learnware | None = rows.get(lid)
            if lw is None:
                return None
            return {
                "learnware_id": lid,
                "semantic_specification": semantic_specification(lw.semantic_spec),
                "matching": matching,
                "last_modify": last_modify(lw.updated_at),
                "username": names.get(lw.owner_id, ""),
            }

        single = [item(s["id"], s.get("reference_score") or 0) for s in shown]
        multi = []
        if mixture:
            multi = [item(i, mixture["reference_score"]) for i in mixture["ids"]]
    single = [x for x in single if x is not None]
    multi = [x for x in multi if x is not None]
    if len(multi) != len((mixture or {}).get("ids", [])):
        multi = []  # a member went away: no mixture rather than part of one
    return {
        "learnware_list_single": single,
        "learnware_list_multi": multi,
        "is_hetero": False,
        "page": page,
        "limit": limit,
        "total_pages": math.ceil(total / limit) if total else 0,
    }
