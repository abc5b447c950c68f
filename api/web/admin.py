"""The admins' pages: the market's figures (learnwares by status, jobs, queue depths, with a
small chart drawn on the server), the users (approve, disable, enable, role), and the review
of rejected and pending submissions with their logs, where a learnware can be checked again.

Checking again is what ``wharf admin requeue`` does for a learnware left without a check: a
new check job, sent through the API's own queueing; the market-wide recovery (jobs lost by
the broker, workers gone) stays with that command and each worker's reconciler.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import JobKind, LearnwareStatus, Role, User, UserState, repo

from ..deps import Services, ServicesDep, forget_token
from ..enqueue import enqueue_check
from ..metrics import queue_depths
from ..problems import Problem
from .forms import read_form
from .owned import to_review
from .render import PageError, page
from .session import PageAdmin

log = logging.getLogger("wharf.api")
router = APIRouter(prefix="/admin", include_in_schema=False)

#: Learnwares of each status the review lists, newest first.
REVIEW_LIMIT = 100
#: Users the users page lists.
USERS_LIMIT = 500
STATUSES = ("pending", "checking", "accepted", "rejected")


# -- figures --------------------------------------------------------------------------------


def _figures(services: Services) -> dict[str, Any]:
    with services.catalog.session(read_only=True) as s:
        learnwares = repo.learnware_counts(s)
        jobs = repo.job_counts(s)
        users = {str(state): 0 for state in UserState}
        for state, n in s.execute(select(User.state, func.count()).group_by(User.state)):
            users[str(state)] = n
    try:
        queues: dict[str, int] | None = queue_depths(services)
    except Exception as exc:  # a broker that does not answer: the page still shows the rest
        log.warning("admin page: the broker's queues could not be read: %s", exc)
        queues = None
    kinds = sorted({kind for kind, _ in jobs})
    states = sorted({state for _, state in jobs})
    return {
        "learnwares": {status: learnwares.get(status, 0) for status in STATUSES},
        "jobs": {kind: {state: jobs.get((kind, state), 0) for state in states} for kind in kinds},
        "job_states": states,
        "queues": queues,
        "users": users,
    }


def bars(values: dict[str, int], *, width: int = 320, row: int = 26) -> dict[str, Any]:
    """A horizontal bar chart's geometry (drawn as SVG by the template: no script)."""
    top = max(values.values(), default=0) or 1
    label_w = 90
    span = width - label_w - 60
    return {
        "width": width,
        "height": row * len(values) + 4,
        "rows": [
            {
                "label": label,
                "value": value,
                "y": i * row + 2,
                "x": label_w,
                "w": max(1 if value else 0, round(span * value / top)),
                "h": row - 8,
            }
            for i, (label, value) in enumerate(values.items())
        ],
    }


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, services: ServicesDep, user: PageAdmin) -> HTMLResponse:
    figures = await run_in_threadpool(_figures, services)
    return page(
        request,
        "admin.html",
        {
            **figures,
            "chart": bars(figures["learnwares"]),
            "queue_chart": bars(figures["queues"]) if figures["queues"] is not None else None,
        },
    )


# -- users ----------------------------------------------------------------------------------


def _users(services: Services) -> list[User]:
    with services.catalog.session(read_only=True) as s:
        users = repo.list_users(s, limit=USERS_LIMIT)
        s.expunge_all()
        return users


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, services: ServicesDep, user: PageAdmin) -> HTMLResponse:
    listed = await run_in_threadpool(_users, services)
    done = request.query_params.get("done", "")
    return page(
        request,
        "admin_users.html",
        {"users": listed, "limit": USERS_LIMIT, "message": done[:200]},
    )


_ACTIONS = ("approve", "enable", "disable", "make-admin", "make-user")


def _act(services: Services, admin: User, user_id: int, action: str) -> tuple[str, list[str]]:
    """Apply ``action`` to a user: what was done, and the hashes of tokens it revoked."""
    with services.catalog.session() as s:
        user = repo.get_user(s, user_id)
        if user is None:
            raise PageError(404, "There is no such user.")
        if user.id == admin.id and action in ("disable", "make-user"):
            raise PageError(409, "Admins do not disable or demote themselves here: ask another.")
        revoked: list[str] = []
        if action in ("approve", "enable"):
            repo.set_state(s, user, UserState.active)
        elif action == "disable":
            revoked = [t.token_hash for t in repo.list_tokens(s, user.id, include_revoked=False)]
            repo.set_state(s, user, UserState.disabled)
        else:
            user.role = Role.admin if action == "make-admin" else Role.user
            repo.end_sessions(s, user.id)  # the new role applies from the next sign-in
        return f"{user.name}: {action.replace('-', ' ')}", revoked


@router.post("/users/{user_id}")
async def user_action(
    request: Request, services: ServicesDep, user: PageAdmin, user_id: int
) -> RedirectResponse:
    form = await read_form(request, {"action"})
    if form["action"] not in _ACTIONS:
        raise PageError(422, f"The action is one of {', '.join(_ACTIONS)}.")
    done, revoked = await run_in_threadpool(_act, services, user, user_id, form["action"])
    for token_hash in revoked:
        forget_token(token_hash)  # this process at once; the others within seconds
    return RedirectResponse(f"/admin/users?{urlencode({'done': done})}", status_code=303)


# -- review ---------------------------------------------------------------------------------


def _review(services: Services) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with services.catalog.session(read_only=True) as s:
        counts = repo.learnware_counts(s)
        for status in ("rejected", "pending", "checking"):
            out[status] = to_review(s, status, REVIEW_LIMIT)
            out[f"{status}_total"] = counts.get(status, 0)
    return out


@router.get("/review", response_class=HTMLResponse)
async def review(request: Request, services: ServicesDep, user: PageAdmin) -> HTMLResponse:
    listed = await run_in_threadpool(_review, services)
    done = request.query_params.get("done", "")
    return page(
        request,
        "admin_review.html",
        {"review": listed, "limit": REVIEW_LIMIT, "message": done[:200]},
    )


def _requeue(services: Services, learnware_id: str) -> tuple[Any, int]:
    """A new check of a rejected or pending learnware with none under way; the job and the
    learnware's id, to send after the commit."""
    try:
        lid = repo.parse_id(learnware_id)
    except ValueError:
        lid = 0
    session = services.catalog.new_session()
    try:
        lw = repo.get_learnware(session, lid) if lid else None
        if lw is None:
            raise PageError(404, "There is no such learnware.")
        job = repo.latest_job_for(session, lw.id, JobKind.check)
        if lw.status in (LearnwareStatus.accepted,) or (
            job is not None and job.state in repo.UNFINISHED
        ):
            raise PageError(409, f"{lw.name} is {lw.status} or its check is under way.")
        if lw.status == LearnwareStatus.checking:
            repo.reset_to_pending(session, lw.id)
        else:
            repo.replace_package(
                session,
                lw.id,
                lw.content_sha256,
                lw.package_key,
                lw.package_size,
                lw.package_offset,
            )
        job = repo.create_job(session, JobKind.check, owner_id=lw.owner_id, learnware_id=lw.id)
        session.commit()
        try:
            enqueue_check(services, session, job, lw.id)
        except Problem as exc:
            raise PageError(exc.status, exc.detail) from None
        return lw.name, job.id
    finally:
        session.close()


@router.post("/learnwares/{learnware_id}/requeue")
async def requeue(
    request: Request, services: ServicesDep, user: PageAdmin, learnware_id: str
) -> RedirectResponse:
    await read_form(request, set())
    name, job_id = await run_in_threadpool(_requeue, services, learnware_id[:32])
    log.info("admin %s sent learnware %s to be checked again (job %s)", user.name, name, job_id)
    done = urlencode({"done": f"{name}: sent to be checked again"})
    return RedirectResponse(f"/admin/review?{done}", status_code=303)
