"""``/v1/tokens``: API tokens (stored hashed, revocable), and the semantic vocabulary."""

from __future__ import annotations

from fastapi import APIRouter, Response
from wharf.market.catalog import ApiToken, EmailTaken, Role, User, repo
from wharf.specification import semantic

from ..deps import CurrentUser, IdentityFirstRoute, ServicesDep, SessionDep, forget_token
from ..problems import Problem
from ..schemas import TokenCreate, TokenOut

router = APIRouter(tags=["tokens"], route_class=IdentityFirstRoute)


@router.post("/v1/tokens", status_code=201, response_model=TokenOut)
def create_token(
    session: SessionDep, services: ServicesDep, user: CurrentUser, body: TokenCreate
) -> TokenOut:
    """A new token for yourself; admins may name another user (created if new).

    Tokens live ``expires_in_days``, or the market's maximum lifetime when none is given.
    """
    try:
        expires = repo.token_expiry(body.expires_in_days, services.settings.token_max_days)
    except ValueError as exc:
        raise Problem(422, str(exc), field="expires_in_days") from None
    owner = user
    if body.user is not None and body.user != user.name:
        if user.role != Role.admin:
            raise Problem(403, "only admins create tokens for other users")
        owner = repo.get_user_by_name(session, body.user)
        if owner is None:
            role = Role(body.role) if body.role in {r.value for r in Role} else None
            if body.role is not None and role is None:
                raise Problem(422, f"role must be one of {[r.value for r in Role]}", field="role")
            try:
                owner = repo.create_user(session, body.user, role or Role.user, email=body.email)
            except EmailTaken:
                raise Problem(409, "another user has this email", field="email") from None
            except ValueError as exc:
                raise Problem(422, f"email: {exc}", field="email") from None
        elif body.email is not None:
            raise Problem(422, "email applies only when an admin creates a token for a new user")
    elif body.role is not None:
        raise Problem(422, "role applies only when an admin creates a token for a new user")
    elif body.email is not None:
        raise Problem(422, "email applies only when an admin creates a token for a new user")
    plaintext, token = repo.create_token(session, owner.id, body.name, expires_at=expires)
    session.commit()
    return _out(token, owner, plaintext)


@router.get("/v1/tokens", response_model=list[TokenOut])
def list_tokens(session: SessionDep, user: CurrentUser) -> list[TokenOut]:
    return [_out(t, user) for t in repo.list_tokens(session, user.id)]


@router.delete("/v1/tokens/{token_id}", status_code=204)
def revoke_token(session: SessionDep, user: CurrentUser, token_id: int) -> Response:
    # Ids past the column's range are no token's (and would fail the query, not answer it).
    token = session.get(ApiToken, token_id) if 1 <= token_id <= repo.MAX_ID else None
    if token is None or (token.user_id != user.id and user.role != Role.admin):
        raise Problem(404, f"no token {token_id}")
    repo.revoke_token(session, token_id)
    session.commit()
    forget_token(token.token_hash)  # other API processes forget it within TOKEN_CACHE_S
    return Response(status_code=204)


@router.get("/v1/vocabulary", tags=["learnwares"])
def vocabulary() -> dict[str, list[str]]:
    """The allowed values of each semantic-spec tag."""
    return {key: list(values) for key, values in semantic.VOCABULARIES.items()}


def _out(token: ApiToken, user: User, plaintext: str | None = None) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        user=user.name,
        token=plaintext,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )
