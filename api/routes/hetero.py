"""``/v1/hetero``: the heterogeneous market's map: its versions, training one (admins), and
whether a requirement can be searched there (its columns described, a map ready).

Training runs on the index queue (:mod:`workers.hetero`); a version becomes the one searches
use only once every eligible learnware's spec is computed with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session
from wharf.market.hetero import versions
from wharf.market.hetero.versions import NoHeteroMap
from wharf.market.settings import Settings
from wharf.market.store import ObjectNotFound
from wharf.specification.errors import SemanticSpecError, SpecificationError
from wharf.specification.files import loads_spec
from wharf.specification.hetero import check_hetero_input
from wharf.specification.rkme import RKME
from wharf.workers.app import HETERO_TRAIN_TASK, INDEX_QUEUE

from ..deps import AdminUser, FormFields, IdentityFirstRoute, Reader, ServicesDep, SessionDep
from ..forms import semantic_spec_field
from ..problems import Problem

router = APIRouter(prefix="/v1/hetero", tags=["hetero"], route_class=IdentityFirstRoute)


@router.post("/maps", status_code=202)
def train_map(
    response: Response, services: ServicesDep, session: SessionDep, admin: AdminUser
) -> dict[str, Any]:
    """Train a new map version on the accepted eligible learnwares (202); the version
    already being made, if any (200)."""
    row, created = versions.request_training(session, "admin")
    session.commit()
    if not created:
        response.status_code = 200
        return versions.version_view(row)
    try:
        services.celery.send_task(
            HETERO_TRAIN_TASK, args=[row.version], queue=INDEX_QUEUE, ignore_result=True
        )
    except OperationalError:
        versions.mark_failed(session, row.version, "the job queue was unreachable")
        session.commit()
        raise Problem(
            503,
            "the job queue (broker) is unreachable right now; ask again in a little while",
            headers={"Retry-After": "5"},
        ) from None
    return versions.version_view(row)


@router.get("/maps")
def list_maps(session: SessionDep, user: Reader) -> dict[str, Any]:
    """The version searches use (``current``, ``null`` before the first is ready) and the
    latest versions, newest first."""
    current = versions.current_version(session)
    return {
        "current": versions.version_view(current) if current is not None else None,
        "versions": [versions.version_view(v) for v in versions.list_versions(session)],
    }


@router.get("/maps/{version}")
def get_map(session: SessionDep, user: Reader, version: int) -> dict[str, Any]:
    row = versions.get_version(session, version) if 1 <= version <= 2**31 - 1 else None
    if row is None:
        raise Problem(404, f"no map version {version}")
    return versions.version_view(row, specs=versions.spec_count(session, version))


@router.get("/maps/{version}/file", responses={200: {"content": {"application/octet-stream": {}}}})
def download_map(
    services: ServicesDep, session: SessionDep, user: Reader, version: int
) -> StreamingResponse:
    """A trained version's map (what a user's ``HeteroMapAlign`` reads their columns with):
    a torch file of tensors only, loaded with ``HeteroMap.from_bytes``."""
    row = versions.get_version(session, version) if 1 <= version <= 2**31 - 1 else None
    if row is None or row.object_key is None:
        raise Problem(404, f"no trained map version {version}")
    try:
        size = services.store.size(row.object_key)
        stream = services.store.open(row.object_key)
    except ObjectNotFound:
        raise Problem(404, f"map version {version} is missing from the object store") from None
    return StreamingResponse(
        _chunks(stream),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="hetero-map-v{version}.pt"',
            "Content-Length": str(size),
        },
    )


def _chunks(stream) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(1 << 20):
            yield chunk


@router.post("/check", dependencies=[FormFields])
def check_requirement(
    services: ServicesDep,
    session: SessionDep,
    user: Reader,
    semantic_spec: Annotated[str, Form(description="the requirement's semantic spec (JSON)")],
    stat_spec: Annotated[UploadFile, File(description="the user's table RKME (JSON)")],
) -> dict[str, Any]:
    """Whether this requirement can be searched in the heterogeneous market: 422 naming the
    field when it cannot (an undescribed column, a dimension that is not the RKME's width),
    409 when the market has no map yet; else the map version it would be mapped with."""
    semantic = semantic_spec_field(semantic_spec, requirement=True)
    rkme = read_table_spec(stat_spec, services.settings)
    return {"map_version": hetero_requirement(session, semantic, rkme), "columns": len(rkme.z_[0])}


def read_table_spec(upload: UploadFile, settings: Settings) -> RKME:
    limit = settings.max_spec_bytes
    text = upload.file.read(limit + 1)
    if len(text) > limit:
        raise Problem(413, f"stat_spec is larger than the limit of {limit} bytes")
    try:
        return loads_spec(text, settings.spec_limits)
    except SpecificationError as exc:
        raise Problem(422, f"stat_spec: {exc}", field="stat_spec") from None


def hetero_requirement(session: Session, semantic: dict[str, Any], rkme: RKME) -> int:
    """The map version a requirement would be searched with: 422 naming the field when its
    columns cannot be mapped, 409 when there is no ready map."""
    try:
        width = math.prod(rkme.feature_shape)  # any spec type: the check names a non-table
        check_hetero_input(semantic, rkme.spec_type, width, requirement=True)
    except SemanticSpecError as exc:
        field = exc.field if exc.field == "stat_spec" else f"semantic_spec.{exc.field}"
        raise Problem(422, f"{field}: {exc.reason}", field=field) from None
    try:
        return versions.require_current_version(session).version
    except NoHeteroMap as exc:
        raise Problem(409, str(exc)) from None
