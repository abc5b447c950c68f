"""``/user``: chunked upload and submission, update, delete and the caller's list.

Each route calls what the matching ``/v1`` route does (submission, edit, delete, listing),
so the checks, quotas and duplicate rules are the same.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as FileUpload
from wharf.market.catalog import repo

from ..deps import CurrentUser, FormFields, IdentityFirstRoute, ServicesDep, SessionDep
from ..problems import Problem
from ..routes import learnwares
from . import uploads
from .envelope import BAD_PARAMETERS, UNKNOWN_LEARNWARE, CompatError, ok
from .views import VERIFY_STATUS, last_modify, semantic_specification

CHUNK_PATH = "/user/chunked_upload"
ADD_PATH = "/user/add_learnware_uploaded"
UPDATE_PATH = "/user/update_learnware"
CHUNK_BYTES = uploads.CHUNK_BYTES
#: The longest list one request returns (the reference client asks for 10,000).
MAX_LIST = repo.MAX_LIST_LIMIT

router = APIRouter(prefix="/user", tags=["learnware client"], route_class=IdentityFirstRoute)


@router.post("/chunked_upload", dependencies=[FormFields])
async def chunked_upload(
    services: ServicesDep,
    user: CurrentUser,
    chunk_file: Annotated[UploadFile, File()],
    file_hash: Annotated[str, Form(max_length=64)],
    chunk_begin: Annotated[int, Form(ge=0, le=2**40)],
) -> dict[str, Any]:
    """Stage one chunk (at most 1 MiB) of a zip; ``chunk_begin`` 0 starts an upload."""
    data = await chunk_file.read(CHUNK_BYTES + 1)
    await run_in_threadpool(
        uploads.add_chunk,
        services.store,
        user.id,
        file_hash,
        chunk_begin,
        data,
        services.settings.max_upload_bytes,
    )
    return ok()


class UploadedLearnware(BaseModel):
    file_hash: str = Field(max_length=64)
    semantic_specification: str


@router.post("/add_learnware_uploaded")
def add_learnware_uploaded(
    services: ServicesDep, session: SessionDep, user: CurrentUser, body: UploadedLearnware
) -> dict[str, Any]:
    """Submit a staged upload: ``data.learnware_id``; its check runs as for ``/v1``."""
    package = uploads.take_upload(services.store, user.id, body.file_hash)
    with package:
        sub = learnwares.submit(
            services,
            session,
            user,
            package=FileUpload(file=package, filename="package.zip"),
            semantic_spec=body.semantic_specification,
        )
    return ok({"learnware_id": sub.learnware_id})


@router.post("/update_learnware", dependencies=[FormFields])
def update_learnware(
    services: ServicesDep,
    session: SessionDep,
    user: CurrentUser,
    learnware_id: Annotated[str, Form(max_length=64)],
    semantic_specification: Annotated[str, Form()],
    learnware_file: Annotated[UploadFile | None, File()] = None,
) -> dict[str, Any]:
    """A new semantic spec, and a new package if one is sent; checked again when needed."""
    try:
        learnwares.edit(
            services,
            session,
            user,
            learnware_id,
            semantic_spec=semantic_specification,
            package=learnware_file,
        )
    except Problem as exc:
        if exc.status == 404:
            raise CompatError(UNKNOWN_LEARNWARE, exc.detail, status=404) from None
        raise
    return ok()


class LearnwareRef(BaseModel):
    learnware_id: str = Field(max_length=64)


@router.post("/delete_learnware")
def delete_learnware(
    services: ServicesDep, session: SessionDep, user: CurrentUser, body: LearnwareRef
) -> dict[str, Any]:
    learnwares.delete(services, session, user, body.learnware_id)
    return ok()


class Page(BaseModel):
    page: int = Field(default=0, ge=0, le=repo.MAX_ID)
    limit: int = Field(default=10, ge=1, le=MAX_LIST)
    is_verified: bool | None = None


@router.post("/list_learnware")
def list_learnware(session: SessionDep, user: CurrentUser, body: Page) -> dict[str, Any]:
    """The caller's learnwares, newest first, ``limit`` a page."""
    if body.page * body.limit > repo.MAX_ID:
        raise CompatError(BAD_PARAMETERS, "page is past the end of any list")
    status = None
    if body.is_verified is not None:
        status = ["accepted"] if body.is_verified else ["pending", "checking", "rejected"]
    items, total = repo.list_learnwares(
        session, status=status, owner_id=user.id, limit=body.limit, offset=body.page * body.limit
    )
    return ok(
        {
            "learnware_list": [
                {
                    "learnware_id": repo.format_id(lw.id),
                    "last_modify": last_modify(lw.updated_at),
                    "verify_status": VERIFY_STATUS[lw.status],
                    "semantic_specification": semantic_specification(lw.semantic_spec),
                }
                for lw in items
            ],
            "page": body.page,
            "limit": body.limit,
            "total_pages": math.ceil(total / body.limit),
        }
    )
