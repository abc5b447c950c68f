"""Accounts on the pages: sign up, sign in and out, change one's password, and create and
revoke API tokens (the same tokens the CLI, the SDK and the reference client send).

Signing in answers the same for an unknown email and a wrong password, and costs the same
(one argon2 verification either way); it is limited per client address and per email. Only
a right password learns that an account awaits approval or is disabled.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import EmailTaken, NameTaken, User, UserState, repo
from wharf.market.catalog.repo.users import normal_email

from ..deps import Services, ServicesDep, forget_token
from ..ratelimit import MemoryCounters, RateLimiter, client_address
from .forms import local_path, read_form
from .render import PageError, page
from .session import SESSION_COOKIE, PageUser, SignedIn, cookie_name, sign_in, sign_out

router = APIRouter(include_in_schema=False)

#: What a failed sign-in says, whether the email is unknown or the password wrong.
WRONG = "The email or the password is wrong."


def _limiter(request: Request) -> RateLimiter:
    """The API's rate limiter (Redis, shared by every API process), or one in this process's
    memory when the API's limits are off: sign-ins are limited either way."""
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = getattr(state, "rate_limiter", None) or RateLimiter(MemoryCounters())
        state.login_limiter = limiter
    return limiter


async def _spend_attempt(request: Request, services: Services, email: str) -> None:
    """Count a sign-in (or sign-up) attempt against the address and the email; a 429 page
    when either budget is spent."""
    s = services.settings
    limiter = _limiter(request)
    address = client_address(request.scope, s.trusted_proxies)
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    for bucket, limit in (
        (f"login-address:{address}", s.login_per_minute),
        (f"login-account:{account}", s.login_per_account_per_minute),
    ):
        outcome = await limiter.ahit(bucket, limit)
        if outcome is not None and not outcome.allowed:
            raise PageError(
                429,
                f"Too many sign-in attempts: try again in {outcome.reset_s} s.",
                headers={"Retry-After": str(outcome.reset_s)},
            )


def _start(services: Services, user_id: int, old_secret: str | None) -> str:
    """A new session for ``user_id``, ending the one the browser had (never reused)."""
    with services.catalog.session() as s:
        if old_secret:
            repo.end_session(s, old_secret)
        repo.purge_sessions(s)  # the expired ones of everyone: one indexed DELETE
        days = services.settings.session_days
        return repo.start_session(s, user_id, timedelta(days=days))


def _signed_in(request: Request, secret: str, target: str) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    sign_in(request, response, secret)
    return response


# -- sign in and out ------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, user: PageUser, next: str = "") -> HTMLResponse:
    return page(request, "login.html", {"error": "", "email": "", "next": local_path(next, "")})


def _check(services: Services, email: str, password: str) -> User | None:
    with services.catalog.session() as s:  # read-write: an old hash is made anew
        user = repo.check_login(s, email, password)
        if user is not None:
            s.expunge(user)
        return user


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, services: ServicesDep) -> Response:
    form = await read_form(request, {"email", "password", "next"})
    email, target = form["email"].strip(), local_path(form["next"], "/account")

    def again(error: str, status: int) -> HTMLResponse:
        context = {"error": error, "email": email, "next": form["next"]}
        return page(request, "login.html", context, status=status)

    await _spend_attempt(request, services, email)
    user = await run_in_threadpool(_check, services, email, form["password"])
    if user is None:
        return again(WRONG, 401)
    if user.state == UserState.pending:
        return again("This account awaits an admin's approval.", 403)
    if user.state != UserState.active:
        return again("This account is disabled: ask this market's admins.", 403)
    secret = await run_in_threadpool(_start, services, user.id, _cookie_secret(request))
    return _signed_in(request, secret, target)


def _cookie_secret(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request, SESSION_COOKIE))


def _end(services: Services, secret: str) -> None:
    with services.catalog.session() as s:
        repo.end_session(s, secret)


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> RedirectResponse:
    await read_form(request, set())
    secret = _cookie_secret(request)
    if secret:
        await run_in_threadpool(_end, services, secret)
    response = RedirectResponse("/", status_code=303)
    sign_out(request, response)
    return response


# -- sign up --------------------------------------------------------------------------------


def _signup_open(services: Services) -> None:
    if services.settings.signup == "closed":
        raise PageError(403, "This market's admins create its accounts: ask them for one.")


@router.get("/signup", response_class=HTMLResponse)
async def signup_form(request: Request, services: ServicesDep, user: PageUser) -> HTMLResponse:
    _signup_open(services)
    return page(request, "signup.html", _signup_context(services, {}))


def _signup_context(services: Services, form: dict[str, str], error: str = "") -> dict:
    return {
        "error": error,
        "form": form,
        "approval": services.settings.signup == "approval",
        "password_min": repo.PASSWORD_MIN,
    }


def _create(services: Services, name: str, email: str, password: str) -> tuple[int, str | None]:
    """The new user's id and, when the account is active at once, a session's secret."""
    approval = services.settings.signup == "approval"
    with services.catalog.session() as s:
        user = repo.create_user(s, name, email=email)
        user.state = UserState.pending if approval else UserState.active
        repo.set_password(s, user, password)
        secret = (
            None
            if approval
            else repo.start_session(s, user.id, timedelta(days=services.settings.session_days))
        )
        return user.id, secret


@router.post("/signup", response_class=HTMLResponse)
async def signup(request: Request, services: ServicesDep) -> Response:
    _signup_open(services)
    form = await read_form(request, {"name", "email", "password", "password2"})
    name, email = form["name"].strip(), form["email"].strip()
    shown = {"name": name, "email": email}

    def again(error: str, status: int = 422) -> HTMLResponse:
        return page(request, "signup.html", _signup_context(services, shown, error), status=status)

    try:
        email = normal_email(email)
    except ValueError:
        return again("Give an email such as alice@example.org.")
    if not name or len(name) > 100:
        return again("Choose a user name of 1 to 100 characters.")
    problem = repo.password_problem(form["password"], email)
    if problem:
        return again(problem[0].upper() + problem[1:] + ".")
    if form["password"] != form["password2"]:
        return again("The two passwords differ.")
    await _spend_attempt(request, services, email)
    try:
        _, secret = await run_in_threadpool(_create, services, name, email, form["password"])
    except NameTaken:
        return again("This user name is taken: choose another.", 409)
    except EmailTaken:
        return again("This email already has an account: sign in instead.", 409)
    except ValueError as exc:
        return again(str(exc))
    if secret is None:
        return page(
            request,
            "notice.html",
            {
                "title": "Account awaiting approval",
                "message": "Thank you. An admin of this market approves new accounts: you "
                "can sign in once yours is approved.",
            },
            status=202,
        )
    return _signed_in(request, secret, "/account")


# -- the account page: password and tokens --------------------------------------------------


def _tokens(services: Services, user_id: int) -> list[dict]:
    with services.catalog.session(read_only=True) as s:
        return [
            {
                "id": t.id,
                "name": t.name,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "last_used_at": t.last_used_at,
                "state": repo.token_state(t),
            }
            for t in repo.list_tokens(s, user_id)
        ]


async def _account(
    request: Request,
    services: Services,
    user: User,
    *,
    message: str = "",
    error: str = "",
    new_token: str = "",
    status: int = 200,
) -> HTMLResponse:
    tokens = await run_in_threadpool(_tokens, services, user.id)
    response = page(
        request,
        "account.html",
        {
            "account": user,
            "tokens": tokens,
            "message": message,
            "error": error,
            "new_token": new_token,
            "max_days": services.settings.token_max_days,
            "password_min": repo.PASSWORD_MIN,
            "base_url": str(request.base_url).rstrip("/"),
        },
        status=status,
    )
    if new_token:  # shown once: never kept by any cache
        response.headers["Cache-Control"] = "no-store"
    return response


#: What the account page says after a form that redirects to it.
_DONE = {
    "password": "Your password is changed; every other browser is signed out.",
    "revoked": "The token is revoked: it no longer works anywhere.",
}


@router.get("/account", response_class=HTMLResponse)
async def account(
    request: Request, services: ServicesDep, user: SignedIn, done: str = ""
) -> HTMLResponse:
    return await _account(request, services, user, message=_DONE.get(done, ""))


def _change_password(services: Services, user_id: int, current: str, new: str) -> str | None:
    """The new session's secret, or ``None`` when ``current`` is not the password."""
    with services.catalog.session() as s:
        user = repo.get_user(s, user_id)
        if user is None or repo.check_login(s, user.email or "", current) is None:
            return None
        repo.set_password(s, user, new)
        repo.end_sessions(s, user.id)  # every browser signed in with the old one
        return repo.start_session(s, user.id, timedelta(days=services.settings.session_days))


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(request: Request, services: ServicesDep, user: SignedIn) -> Response:
    form = await read_form(request, {"current", "password", "password2"})
    problem = repo.password_problem(form["password"], user.email or "")
    if problem or form["password"] != form["password2"]:
        error = (problem[0].upper() + problem[1:] + ".") if problem else "The passwords differ."
        return await _account(request, services, user, error=error, status=422)
    await _spend_attempt(request, services, user.email or "")
    secret = await run_in_threadpool(
        _change_password, services, user.id, form["current"], form["password"]
    )
    if secret is None:
        return await _account(
            request, services, user, error="The current password is wrong.", status=401
        )
    return _signed_in(request, secret, "/account?done=password")


def _new_token(services: Services, user_id: int, name: str, days: int | None) -> str:
    expires = repo.token_expiry(days, services.settings.token_max_days)
    with services.catalog.session() as s:
        return repo.create_token(s, user_id, name, expires)[0]


@router.post("/account/tokens", response_class=HTMLResponse)
async def create_token(request: Request, services: ServicesDep, user: SignedIn) -> HTMLResponse:
    form = await read_form(request, {"name", "days"})
    name = form["name"].strip()
    if not name or len(name) > 100:
        return await _account(
            request, services, user, error="Name the token (1 to 100 characters).", status=422
        )
    days = None
    if form["days"].strip():
        try:
            days = int(form["days"])
        except ValueError:
            return await _account(
                request, services, user, error="Its lifetime is a number of days.", status=422
            )
    try:
        plaintext = await run_in_threadpool(_new_token, services, user.id, name, days)
    except ValueError as exc:
        message = str(exc)
        return await _account(
            request, services, user, error=message[0].upper() + message[1:] + ".", status=422
        )
    return await _account(request, services, user, new_token=plaintext)


def _revoke(services: Services, user_id: int, token_id: int) -> str | None:
    with services.catalog.session() as s:
        token = repo.revoke_token(s, token_id, user_id=user_id)
        return token.token_hash if token is not None else None


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request, services: ServicesDep, user: SignedIn, token_id: int
) -> RedirectResponse:
    await read_form(request, set())
    token_hash = await run_in_threadpool(_revoke, services, user.id, token_id)
    if token_hash is None:
        raise PageError(404, "You have no such token.")
    forget_token(token_hash)
    return RedirectResponse("/account?done=revoked", status_code=303)
