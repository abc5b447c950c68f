"""``/v1/searches``: queue a search for learnwares that fit a requirement; with ``?wait=S``,
answer with the job once it has ended (200), or after ``S`` seconds with it still queued or
running (202), as ``GET /v1/jobs/{id}?wait=S`` does."""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
import uuid
import weakref
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from wharf.market.catalog import Catalog, JobKind, User, repo
from wharf.market.catalog.storable import storable_text
from wharf.market.settings import Settings
from wharf.market.store import ObjectTooLarge, StoreError
from wharf.specification.errors import SpecificationError
from wharf.specification.files import loads_spec
from wharf.specification.hetero import hetero_problem
from wharf.specification.rkme import RKME, same_gamma

from ..deps import FormFields, IdentityFirstRoute, Reader, Services, ServicesDep, SessionDep
from ..enqueue import enqueue_search, job_url
from ..forms import semantic_spec_field
from ..problems import Problem
from ..schemas import SearchAccepted
from .hetero import hetero_requirement
from .jobs import ENDED, Wait, read_job

PATH = "/v1/searches"
router = APIRouter(prefix=PATH, tags=["searches"], route_class=IdentityFirstRoute)


@router.post(
    "",
    status_code=202,
    response_model=SearchAccepted,
    dependencies=[FormFields],
    responses={200: {"model": SearchAccepted, "description": "with ?wait=S: the search ended"}},
)
async def create_search(
    request: Request,
    response: Response,
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
    hetero: Annotated[
        bool | None,
        Form(
            description="search the heterogeneous market (the requirement's columns mapped "
            "with the market's map): true, false, or absent to do so when the table spec "
            "matches no learnware's columns and every input column is described"
        ),
    ] = None,
    wait: Wait = 0,
) -> SearchAccepted:
    # Watched from before the job exists: the wait then reads the job once it has ended,
    # not once more while it is just queued (api.waiting).
    watch = services.job_waiter.watch() if wait > 0 else None
    try:
        job_id = await run_in_threadpool(
            _queue_search,
            services,
            session,
            user,
            semantic_spec,
            stat_spec,
            top,
            max_search_num,
            hetero,
        )
        accepted = SearchAccepted(job_id=job_id, status_url=job_url(request, job_id))
        if watch is not None:
            accepted.job = await services.job_waiter.wait(
                job_id,
                lambda: run_in_threadpool(read_job, services, job_id, user),
                lambda job: job.state in ENDED,
                min(wait, services.settings.job_wait_max_s),
                since=watch,
            )
            if accepted.job.state in ENDED:
                response.status_code = 200
    finally:
        if watch is not None:
            watch.close()
    return accepted


def _queue_search(
    services: Services,
    session: Session,
    user: User | None,
    semantic_spec: str | None,
    stat_spec: UploadFile | None,
    top: int | None,
    max_search_num: int,
    hetero: bool | None = None,
) -> str:
    """Check the requirement, store its spec, create the job and send it; the job's id."""
    semantic = semantic_spec_field(semantic_spec, requirement=True) if semantic_spec else None
    spec_text, spec = _read_spec(stat_spec, services.settings) if stat_spec else (None, None)
    if hetero and spec is None:
        raise Problem(
            422, "stat_spec: a heterogeneous search needs the table's RKME", field="stat_spec"
        )
    if spec is not None:
        hetero = search_hetero(services, session, spec, semantic, hetero)
    request_fields = {"semantic": semantic, "top": top, "max_search_num": max_search_num}
    if hetero:
        request_fields["hetero"] = True
    return create_search_job(services, session, user, request_fields, spec_text)


def search_hetero(
    services: Services, session: Session, spec, semantic: dict | None, asked: bool | None
) -> bool:
    """Whether to search the heterogeneous market: when ``asked``, or (``None``) when the spec
    matches no homogeneous partition and its columns are all described. A requirement that
    cannot be searched gets 422 naming the field, or 409 when the market has no map yet."""
    if asked:
        hetero_requirement(session, semantic or {}, spec)
        return True
    problem = unmatched_requirement(services, spec, semantic)
    if problem is None:
        return False
    if asked is None:
        width = math.prod(spec.feature_shape)
        why = hetero_problem(semantic or {}, spec.spec_type, width, requirement=True)
        if why is None:
            hetero_requirement(session, semantic or {}, spec)  # 409 without a ready map
            return True
        if why.field.startswith("Input") and why.field != "Input.Dimension":
            problem += (
                "; describe every input column (semantic_spec Input.Description) and the "
                "heterogeneous market can answer it"
            )
    raise Problem(422, f"stat_spec: {problem}", field="stat_spec")


def unmatched_requirement(services: Services, spec, semantic: dict | None) -> str | None:
    """Why no accepted learnware's spec compares with ``spec`` (:func:`requirement_problem`),
    against the cached partitions and then, before refusing, a fresh list of them."""
    problem = requirement_problem(spec, semantic, _partitions(services))
    if problem is not None:  # perhaps a partition newer than the cached list
        problem = requirement_problem(spec, semantic, _partitions(services, fresh=True))
    return problem


def create_search_job(
    services: Services,
    session: Session,
    user: User | None,
    request_fields: dict[str, Any],
    spec_text: bytes | None,
) -> str:
    """Keep the checked requirement spec in the job's request (small) or the store, create the
    search job and send it; the job's id. Shared by ``/v1`` and the reference client's API."""
    if spec_text is not None:
        inline = _inline_spec(spec_text)
        if inline is not None:
            request_fields["spec"] = inline
        else:
            # Stored before the job's transaction, which then holds the catalog's write lock
            # (on SQLite) for an insert only, not for the store's fsyncs.
            key = request_fields["spec_key"] = f"searches/{uuid.uuid4().hex}.json"
            try:
                services.store.put(
                    key,
                    io.BytesIO(spec_text),
                    max_bytes=services.settings.max_spec_bytes,
                    durable=False,  # read once by the search; a lost one fails only that search
                )
            except ObjectTooLarge as exc:
                raise Problem(413, f"stat_spec is {ObjectTooLarge.over(exc.limit)}") from None
    try:
        job = repo.create_job(
            session, JobKind.search, owner_id=user.id if user else None, request=request_fields
        )
        session.commit()
    except BaseException:
        if "spec_key" in request_fields:
            with contextlib.suppress(StoreError):
                services.store.delete(request_fields["spec_key"])
        raise
    enqueue_search(services, session, job)
    return job.id


#: A requirement spec of at most this many bytes travels in its job's request (``spec``, the
#: JSON text) instead of the object store (``spec_key``): a K = 50, d = 10 spec is about 12 KB,
#: and in the store it cost a write here, and in the worker a read and a delete (three round
#: trips to S3), for one read. Larger ones would swell the job's row, which the worker
#: rewrites when it starts and ends the job.
INLINE_SPEC_BYTES = 64 * 1024


def _inline_spec(text: bytes) -> str | None:
    """The spec's JSON text to keep in the job's request, or ``None`` (to the store)."""
    if len(text) > INLINE_SPEC_BYTES:
        return None
    try:
        inline = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return inline if storable_text(inline) else None


def _read_spec(upload: UploadFile, settings: Settings) -> tuple[bytes, RKME]:
    limit = settings.max_spec_bytes
    text = upload.file.read(limit + 1)
    if len(text) > limit:
        raise Problem(413, f"stat_spec is larger than the limit of {limit} bytes")
    try:
        spec = loads_spec(text, settings.spec_limits)
    except SpecificationError as exc:
        raise Problem(422, f"stat_spec: {exc}", field="stat_spec") from None
    return text, spec


#: How long the market's partitions are reused before the catalog is asked again. A spec that
#: does not match the cached list is checked against a fresh one, so a new partition is never
#: refused because of the cache.
PARTITIONS_TTL_S = 30.0
#: Per catalog (an API process has one; tests make many, one after the other).
_cached: weakref.WeakKeyDictionary[Catalog, tuple[float, list]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _partitions(
    services: Services, *, fresh: bool = False
) -> list[tuple[str, tuple[int, ...], float | None]]:
    with _cache_lock:
        at, parts = _cached.get(services.catalog, (0.0, []))
        if fresh or time.monotonic() - at > PARTITIONS_TTL_S:
            with services.catalog.session(read_only=True) as session:
                parts = repo.spec_partitions(session)
            _cached[services.catalog] = (time.monotonic(), parts)
        return parts


def requirement_problem(spec, semantic: dict | None, partitions) -> str | None:
    """Why the market cannot compare this requirement spec with any learnware, or ``None``.

    A search compares specs of one type, feature shape and γ: a spec matching no accepted
    learnware's is a mistake to report (a wrong column count, a γ left at another default),
    not an empty result. An empty market accepts any spec.
    """
    shape = tuple(int(x) for x in spec.feature_shape)
    features = math.prod(shape)
    given = ((semantic or {}).get("Input") or {}).get("Dimension")
    if isinstance(given, int) and len(shape) == 1 and given != features:
        return (
            f"the spec has {features} features but the semantic spec's Input.Dimension is "
            f"{given}; they must describe the same data"
        )
    if not partitions:
        return None
    same_type = [p for p in partitions if p[0] == spec.spec_type]
    if not same_type:
        types = ", ".join(sorted({p[0] for p in partitions}))
        return f"no accepted learnware has a {spec.spec_type} spec (the market has: {types})"
    same_shape = [p for p in same_type if p[1] == shape]
    if not same_shape:
        shapes = ", ".join(_shape_text(p[1]) for p in same_type[:10])
        return (
            f"no accepted learnware has a spec of {_shape_text(shape)} (the market has "
            f"{shapes}); a search compares specs of the same feature shape"
        )
    gammas = sorted({p[2] for p in same_shape if p[2] is not None})
    if not any(same_gamma(spec.gamma, g) for g in gammas):
        listed = ", ".join(f"{g:g}" for g in gammas[:10])
        return (
            f"the spec has gamma {spec.gamma:g}, but learnwares of {_shape_text(shape)} use "
            f"gamma {listed}; fit the spec with one of them (wharf spec fit --gamma {gammas[0]:g})"
        )
    return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"{shape[0]} features" if len(shape) == 1 else "shape " + "×".join(map(str, shape))
