"""``/v1/searches``: queue a search for learnwares that fit a requirement."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from market.catalog import JobKind, repo
from market.store import ObjectTooLarge
from specification.errors import SpecificationError
from specification.files import loads_spec

from ..deps import Reader, ServicesDep, SessionDep
from ..enqueue import enqueue_search
from ..forms import semantic_spec_field
from ..problems import Problem
from ..schemas import SearchAccepted

router = APIRouter(prefix="/v1/searches", tags=["searches"])


@router.post("", status_code=202, response_model=SearchAccepted)
def create_search(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    user: Reader,
    semantic_spec: Annotated[
        str | None, Form(description="requirement's semantic spec (JSON); fields may be empty")
    ] = None,
    stat_spec: Annotated[
        UploadFile | None, File(description="the user's RKME (JSON), computed on their side")
    ] = None,
    top: Annotated[int | None, Form(ge=1, le=1000)] = None,
    max_search_num: Annotated[int, Form(ge=1, le=10, description="mixture size")] = 5,
) -> SearchAccepted:
    semantic = semantic_spec_field(semantic_spec, requirement=True) if semantic_spec else None
    spec_text = _read_spec(stat_spec, services.settings.max_spec_bytes) if stat_spec else None
    job = repo.create_job(
        session,
        JobKind.search,
        owner_id=user.id if user else None,
        request={"semantic": semantic, "top": top, "max_search_num": max_search_num},
    )
    if spec_text is not None:
        key = f"searches/{job.id}.json"
        try:
            services.store.put(
                key, io.BytesIO(spec_text), max_bytes=services.settings.max_spec_bytes
            )
        except ObjectTooLarge as exc:
            raise Problem(413, str(exc)) from None
        job.request = {**job.request, "spec_key": key}
    session.commit()
    enqueue_search(services, session, job)
    return SearchAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id)))


def _read_spec(upload: UploadFile, limit: int) -> bytes:
    text = upload.file.read(limit + 1)
    if len(text) > limit:
        raise Problem(413, f"stat_spec is larger than the limit of {limit} bytes")
    try:
        loads_spec(text)
    except SpecificationError as exc:
        raise Problem(422, f"stat_spec: {exc}", field="stat_spec") from None
    return text
