"""``/v1/learnwares``: submit, list, read, download, edit and delete learnwares."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session
from wharf.market.catalog import (
    DuplicateContent,
    JobKind,
    Learnware,
    LearnwareNotFound,
    LearnwareStatus,
    Role,
    User,
    repo,
)
from wharf.market.packages import (
    ServedRef,
    new_package_key,
    open_package,
    open_served_package,
    release_package,
    release_served,
)
from wharf.market.store import ObjectNotFound, ObjectTooLarge
from wharf.specification.errors import PackageError
from wharf.specification.semantic import MAX_REQUIREMENT_NAME_CHARS, SemanticSpec
from wharf.workers.app import HETERO_ACCEPTED_TASK, INDEX_QUEUE

from ..deps import (
    CurrentUser,
    FormFields,
    IdentityFirstRoute,
    Reader,
    Services,
    ServicesDep,
    SessionDep,
)
from ..enqueue import enqueue_check
from ..forms import semantic_spec_field
from ..problems import Problem
from ..schemas import LearnwareOut, LearnwarePage, SpecSummary, Submission

log = logging.getLogger("wharf.api")
PATH = "/v1/learnwares"
router = APIRouter(prefix=PATH, tags=["learnwares"], route_class=IdentityFirstRoute)


@router.post("", status_code=202, response_model=Submission, dependencies=[FormFields])
def submit(
    services: ServicesDep,
    session: SessionDep,
    user: CurrentUser,
    package: Annotated[UploadFile, File(description="the learnware zip")],
    semantic_spec: Annotated[str, Form(description="semantic specification (JSON)")],
) -> Submission:
    """Store the package and queue its check; poll the returned job for the outcome.

    The market holds each package once: content already here is ``409``, except the caller's
    own learnware that awaits a check, sent again (perhaps with a fixed semantic spec): a
    *rejected* one, or a *pending* one with no check under way (its submission's check could
    not be queued: the answer was 503). It is checked again under its id (``resubmitted``)."""
    semantic = semantic_spec_field(semantic_spec)
    sha256, size = _hash(package.file)
    own = _refuse_duplicate(services, sha256, user, resumable_ok=True)
    if own is not None:
        return _check_again(services, session, user, own, sha256, semantic)
    key = _store_package(services, session, package.file)
    try:
        lw = repo.create_learnware(session, user.id, semantic, sha256, key, size)
    except DuplicateContent as exc:
        services.store.delete(key)
        raise _conflict(services, exc.existing_id, user) from None
    job = repo.create_job(session, JobKind.check, owner_id=user.id, learnware_id=lw.id)
    session.commit()
    enqueue_check(services, session, job, lw.id)
    return Submission(learnware_id=repo.format_id(lw.id), job_id=job.id, status=lw.status)


def _check_again(
    services: Services,
    session: Session,
    user: User,
    learnware_id: int,
    sha256: str,
    semantic: dict[str, Any],
) -> Submission:
    """The owner's learnware that awaits a check (:func:`_resumable`), sent again with the
    same package: its semantic spec becomes the one sent, and it is (back) ``pending`` with
    a new check."""
    try:
        lw = repo.update_semantic(session, learnware_id, semantic)  # locks the row
    except LearnwareNotFound:  # deleted meanwhile: the sender may simply try again
        raise Problem(409, "an identical package was being deleted; try again") from None
    if not _resumable(session, lw) or lw.content_sha256 != sha256:
        session.rollback()  # changed meanwhile: answer as for any package already here
        raise _conflict(services, learnware_id, user)
    repo.replace_package(
        session, lw.id, lw.content_sha256, lw.package_key, lw.package_size, lw.package_offset
    )
    job = repo.create_job(session, JobKind.check, owner_id=user.id, learnware_id=lw.id)
    session.commit()
    enqueue_check(services, session, job, lw.id)
    return Submission(
        learnware_id=repo.format_id(lw.id), job_id=job.id, status=lw.status, resubmitted=True
    )


@router.get("", response_model=LearnwarePage)
def list_learnwares(
    session: SessionDep,
    user: Reader,
    status: LearnwareStatus | None = None,
    data_type: str | None = None,
    task_type: str | None = None,
    library: str | None = None,
    license: str | None = None,
    scenario: Annotated[list[str] | None, Query()] = None,
    name: str | None = Query(
        default=None,
        max_length=MAX_REQUIREMENT_NAME_CHARS,
        description="substring of name or description",
    ),
    mine: bool = Query(default=False, description="only the caller's learnwares"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=repo.MAX_ID),
) -> LearnwarePage:
    if mine and user is None:
        raise Problem(401, "'mine' needs an API token", headers={"WWW-Authenticate": "Bearer"})
    items, total = repo.list_learnwares(
        session,
        status=status,
        data_type=data_type,
        task_type=task_type,
        library=library,
        license=license,
        scenario=scenario,
        name=name,
        owner_id=user.id if mine else None,
        # Learnwares that are not accepted are visible to their owners and admins only.
        restricted=not _is_admin(user),
        viewer_id=user.id if user else None,
        limit=limit,
        offset=offset,
    )
    return LearnwarePage(
        items=[to_out(session, lw) for lw in items], total=total, limit=limit, offset=offset
    )


@router.get("/{learnware_id}", response_model=LearnwareOut)
def get_learnware(session: SessionDep, user: Reader, learnware_id: str) -> LearnwareOut:
    return to_out(session, _visible(session, learnware_id, user))


@router.get("/{learnware_id}/log", response_class=PlainTextResponse)
def get_log(session: SessionDep, user: CurrentUser, learnware_id: str) -> str:
    """The check log, for the owner (and admins)."""
    lw = _owned(session, learnware_id, user)
    return lw.check_log or f"no check has finished yet (status: {lw.status})\n"


@router.get("/{learnware_id}/package", responses={200: {"content": {"application/zip": {}}}})
def download(
    services: ServicesDep,
    session: SessionDep,
    user: Reader,
    learnware_id: str,
    redirect: bool = Query(default=True, description="S3: answer with a presigned URL"),
    original: bool = Query(
        default=False, description="the package as uploaded, not in the layout served"
    ),
) -> Response:
    """The package in the layout the reference loads (files at the root, ``id`` and the
    semantic spec in ``learnware.yaml``); with ``original=true``, the bytes as uploaded."""
    lw = _visible(session, learnware_id, user)
    return package_response(services, lw, redirect=redirect, original=original)


def package_response(
    services: Services, lw: Learnware, *, redirect: bool = False, original: bool = False
) -> Response:
    """A learnware's package as a download with its ``Content-Length`` (or a redirect to a
    presigned URL of it). The served layout falls back to the uploaded bytes for a package
    it cannot be made of (a rejected learnware's, which is shown to its owner)."""
    filename = f"learnware-{repo.format_id(lw.id)}.zip"
    ref = ServedRef.of(lw)
    stream = None
    if not original:
        try:
            stream, size = open_served_package(services.store, ref)
            key: str | None = ref.key
        except ObjectNotFound:
            raise Problem(404, "the package is missing from the object store") from None
        except PackageError:
            pass
    if stream is None:
        key = lw.package_key if lw.package_offset is None else None
        try:
            stream, size = open_package(services.store, lw), lw.package_size
        except ObjectNotFound:
            raise Problem(404, "the package is missing from the object store") from None
    if redirect and key is not None:
        url = services.store.presigned_url(key, services.settings.s3_presign_seconds)
        if url:
            stream.close()
            return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        _chunks(stream),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(size),
        },
    )


@router.patch("/{learnware_id}", response_model=Submission, dependencies=[FormFields])
def edit(
    services: ServicesDep,
    session: SessionDep,
    user: CurrentUser,
    learnware_id: str,
    semantic_spec: Annotated[str | None, Form()] = None,
    package: Annotated[UploadFile | None, File()] = None,
) -> Submission:
    """Edits of names, descriptions and tags keep the status. A new package, or a change of
    what the check validated (data and task type, input and output dimensions), is checked
    again; so is a rejected learnware after any edit (the same package sent again included)."""
    lw = _owned(session, learnware_id, user)
    if semantic_spec is None and package is None:
        raise Problem(400, "send 'semantic_spec', 'package' or both")
    semantic = semantic_spec_field(semantic_spec) if semantic_spec is not None else None
    new_package = None
    if package is not None:
        sha256, size = _hash(package.file)
        if sha256 != lw.content_sha256:
            _refuse_duplicate(services, sha256, user)
            # Stored before any catalog write, so a failed upload changes nothing.
            new_package = (sha256, _store_package(services, session, package.file), size)
    recheck = (
        new_package is not None
        or _resumable(session, lw)
        or (semantic is not None and _checked_fields(semantic) != _checked_fields(lw.semantic_spec))
    )
    if semantic is not None:
        repo.update_semantic(session, lw.id, semantic)
    old = None
    if new_package is not None:
        sha256, key, size = new_package
        try:
            _, *old = repo.replace_package(session, lw.id, sha256, key, size)
        except DuplicateContent as exc:
            session.rollback()
            services.store.delete(key)
            raise _conflict(services, exc.existing_id, user) from None
    elif recheck:  # the same package, checked again against the new semantic spec
        repo.replace_package(
            session,
            lw.id,
            lw.content_sha256,
            lw.package_key,
            lw.package_size,
            lw.package_offset,
        )
    job_id = ""
    if recheck:
        job_id = repo.create_job(session, JobKind.check, owner_id=user.id, learnware_id=lw.id).id
    session.commit()
    if old:
        _release(services, *old)
    if job_id:
        enqueue_check(services, session, repo.get_job(session, job_id), lw.id)
    elif semantic is not None:
        _remap_hetero(services, lw.id)
    session.refresh(lw)
    return Submission(learnware_id=repo.format_id(lw.id), job_id=job_id, status=lw.status)


def _remap_hetero(services: Services, learnware_id: int) -> None:
    """An edit kept the status: its column descriptions may have changed, so the learnware's
    heterogeneous spec is computed again (or dropped) by an index worker. A lost message leaves
    the old spec until the next map version."""
    try:
        services.celery.send_task(
            HETERO_ACCEPTED_TASK, args=[learnware_id], queue=INDEX_QUEUE, ignore_result=True
        )
    except OperationalError:
        log.warning("learnware %s: could not queue its hetero spec's update", learnware_id)


def _checked_fields(semantic: dict[str, Any]) -> tuple:
    """What the check validates of a semantic spec, besides the package itself."""
    spec = SemanticSpec.from_dict(semantic)
    return spec.data_type, spec.task_type, spec.input_dim, spec.output_dim


@router.delete("/{learnware_id}", status_code=204)
def delete(services: ServicesDep, session: SessionDep, user: CurrentUser, learnware_id: str):
    lw = _owned(session, learnware_id, user)
    key, offset, pk = lw.package_key, lw.package_offset, lw.id
    repo.delete_learnware(session, lw.id)
    session.commit()
    _release(services, key, offset)
    release_served(services.store, pk)
    return Response(status_code=204)


# -- helpers -------------------------------------------------------------------------------


def to_out(session: Session, lw: Learnware) -> LearnwareOut:
    spec = None
    if lw.spec_type:
        spec = SpecSummary(
            type=lw.spec_type,
            shape=list(lw.spec_shape or []),
            gamma=lw.spec_gamma,
            points=lw.spec_points,
            num_points=lw.num_points,
        )
    owner = session.get(User, lw.owner_id)
    return LearnwareOut(
        id=repo.format_id(lw.id),
        owner=owner.name if owner else "",
        status=lw.status,
        name=lw.name or "",
        description=lw.description or "",
        semantic_spec=lw.semantic_spec,
        spec=spec,
        content_sha256=lw.content_sha256,
        package_size=lw.package_size,
        created_at=lw.created_at,
        updated_at=lw.updated_at,
        checked_at=lw.checked_at,
    )


def _is_admin(user: User | None) -> bool:
    return user is not None and user.role == Role.admin


def _find(session: Session, learnware_id: str) -> Learnware:
    try:
        pk = repo.parse_id(learnware_id)
    except ValueError:
        raise Problem(
            404, f"no learnware {learnware_id!r}: ids are digits, e.g. 00000042"
        ) from None
    lw = repo.get_learnware(session, pk)
    if lw is None:
        raise Problem(404, f"no learnware {learnware_id}")
    return lw


def _visible(session: Session, learnware_id: str, user: User | None) -> Learnware:
    lw = _find(session, learnware_id)
    if lw.status != LearnwareStatus.accepted and not (
        _is_admin(user) or (user is not None and user.id == lw.owner_id)
    ):
        raise Problem(404, f"no learnware {learnware_id}")  # not accepted: private to its owner
    return lw


def _owned(session: Session, learnware_id: str, user: User) -> Learnware:
    lw = _visible(session, learnware_id, user)
    if lw.owner_id != user.id and not _is_admin(user):
        raise Problem(403, f"learnware {learnware_id} belongs to another user")
    return lw


def _hash(f: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    f.seek(0)
    while chunk := f.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    f.seek(0)
    if size == 0:
        raise Problem(422, "the package is empty", field="package")
    return digest.hexdigest(), size


def _refuse_duplicate(
    services: Services, sha256: str, user: User, *, resumable_ok: bool = False
) -> int | None:
    """409 if the package is here already; with ``resumable_ok``, the id of the caller's own
    learnware that holds it and awaits a check (:func:`_resumable`) instead (to be checked
    again). A read-only look-up: on SQLite a read in the request's session would take the
    write lock (the insert still refuses a duplicate that arrives meanwhile)."""
    with services.catalog.session(read_only=True) as session:
        existing = repo.find_by_sha256(session, sha256)
        if existing is None:
            return None
        if resumable_ok and existing.owner_id == user.id and _resumable(session, existing):
            return existing.id
        raise _conflict_with(existing, user)


def _resumable(session: Session, lw: Learnware) -> bool:
    """Whether ``lw`` awaits a check that nothing will run unless it is asked for again: it
    was rejected (its check cancelled, perhaps), or it is pending with no check queued or
    running (its check could not be queued, or failed for the market's fault)."""
    if lw.status == LearnwareStatus.rejected:
        return True
    if lw.status != LearnwareStatus.pending:
        return False
    job = repo.latest_job_for(session, lw.id, JobKind.check)
    return job is None or job.state not in repo.UNFINISHED


def _conflict(services: Services, existing_id: int, user: User) -> Problem:
    with services.catalog.session(read_only=True) as session:
        existing = repo.get_learnware(session, existing_id)
        if existing is None:  # deleted meanwhile: the sender may simply try again
            return Problem(409, "an identical package was being submitted; try again")
        return _conflict_with(existing, user)


def _conflict_with(existing: Learnware, user: User) -> Problem:
    """The 409 for a package whose content the catalog holds already (it holds each once).

    The answer names the learnware that holds it only to whoever may see that learnware
    anyway: its owner, an admin, or anyone once it is accepted and public. Another user's
    package under check or rejected stays private: its sender learns neither its id nor its
    state, only that this content cannot be submitted again, so no one can probe the market
    for someone else's unpublished package beyond the fact that its bytes are here. A user
    who sent their own work and gets this answer has a copy of it in someone else's hands,
    which is a matter for the market's admins, so the answer says to ask them. Whoever may see
    the learnware is told what to do next.
    """
    if (
        existing.status == LearnwareStatus.accepted
        or _is_admin(user)
        or (existing.owner_id == user.id)
    ):
        lid = repo.format_id(existing.id)
        return Problem(
            409,
            f"this package was already submitted as learnware {lid}; {_next_step(existing, user)}",
            existing_learnware=lid,
        )
    return Problem(
        409,
        "a package with this exact content was already submitted by another user and is not "
        "public; the market holds each package once. Change the package, or if it is your "
        "own work, ask this market's admins",
    )


def _next_step(existing: Learnware, user: User) -> str:
    """What the sender of a package the catalog holds already can do about it."""
    lid = repo.format_id(existing.id)
    edit = f"PATCH /v1/learnwares/{lid} (wharf update {lid})"
    if existing.owner_id != user.id:
        if existing.status == LearnwareStatus.accepted:
            return "it is public: download or search it; the market holds each package once"
        return f"it is {existing.status} and belongs to another user"
    if existing.status == LearnwareStatus.accepted:
        return f"it is accepted: change its specification with {edit}"
    if existing.status == LearnwareStatus.rejected:
        return (
            f"it was rejected: send a fixed package or semantic spec for it with {edit}, "
            f"or delete it (wharf delete {lid}) and submit again"
        )
    return f"it is {existing.status}, waiting for its check: GET /v1/learnwares/{lid} follows it"


def _store_package(services: Services, session: Session, f: BinaryIO) -> str:
    """Stream the package to the object store under a fresh key (outside any transaction)."""
    session.commit()
    key = new_package_key()
    try:
        services.store.put(key, f, max_bytes=services.settings.max_upload_bytes)
    except ObjectTooLarge as exc:  # its message names the store's key, not the sender's file
        raise Problem(413, f"the package is {ObjectTooLarge.over(exc.limit)}") from None
    return key


def _release(services: Services, key: str, offset: int | None) -> None:
    """Remove a package no learnware points at any more (after the commit); the look-up is
    read-only, so it waits for no writer."""
    with services.catalog.session(read_only=True) as session:
        release_package(session, services.store, key, offset)


def _chunks(stream: Any):
    try:
        while chunk := stream.read(1 << 20):
            yield chunk
    finally:
        stream.close()
