"""The FastAPI application: thin — authenticate, validate, enqueue, read the catalog.

It never imports torch, faiss or submitted code, and never unpickles anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from wharf.market import logs
from wharf.market.catalog import Catalog
from wharf.market.jobends import announcer
from wharf.market.settings import Settings, get_settings
from wharf.market.store import make_store, sweep_partial_uploads
from wharf.workers.app import make_celery

from . import compat, docs_pages, metrics, problems, ratelimit, web
from .deps import Services, storable_query
from .limits import BodySizeLimit, BodyTimeout, CloseUnreadBody
from .routes import bulk, bulk_submissions, health, hetero, jobs, learnwares, searches, tokens
from .waiting import JobWaiter

#: A body's allowance beyond its file: the form's other fields (a semantic spec of up to
#: 1 MiB, multipart's own limit for a field) and its boundaries.
FORM_OVERHEAD_BYTES = 2 * 1024 * 1024
#: The largest body of a route that takes no file (a token request).
SMALL_BODY_BYTES = 64 * 1024


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = app.state.services
    # What an API process killed mid-upload left in the store goes (a thread: a large local
    # store takes a while to walk, and requests need not wait for it).
    threading.Thread(
        target=sweep_partial_uploads,
        args=(services.store, services.settings),
        name="wharf-store-sweep",
        daemon=True,
    ).start()
    yield
    await services.job_waiter.close()
    services.catalog.dispose()  # its pooled connections (open files on SQLite)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings, logging.getLogger("wharf"))
    app = FastAPI(
        title="Wharf",
        version="1",
        description="A learnware market: submit models with specifications, find and reuse them.",
        dependencies=[Depends(storable_query)],
        lifespan=_lifespan,
        docs_url=None,  # docs_pages serves both from local assets
        redoc_url=None,
    )
    catalog = Catalog.create(settings.catalog_url, migrate=settings.migrate_on_start)
    catalog.on_jobs_ended = announcer(settings)  # a job cancelled here wakes those waiting
    app.state.services = services = Services(
        settings=settings,
        catalog=catalog,
        store=make_store(settings, create_bucket=settings.s3_create_bucket),
        celery=make_celery(settings),
        job_waiter=JobWaiter(settings.job_ends_redis),
    )
    problems.install(app)
    docs_pages.install(app)
    web.install(app)  # pages for people: /, /learnwares/{id}, /search
    registry = metrics.install(app, services)
    app.add_middleware(
        BodyTimeout,
        grace_s=settings.request_body_timeout_s,
        min_rate=settings.request_body_min_rate,
    )
    # Each upload route its own cap (the file plus the multipart form around it); the rest
    # take small JSON bodies.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=SMALL_BODY_BYTES,
        paths={
            learnwares.PATH: settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
            bulk.PATH: settings.bulk_max_bytes + FORM_OVERHEAD_BYTES,
            bulk_submissions.PATH: settings.bulk_max_bytes + FORM_OVERHEAD_BYTES,
            searches.PATH: settings.max_spec_bytes + FORM_OVERHEAD_BYTES,
            **compat.body_limits(settings, FORM_OVERHEAD_BYTES),
            **web.body_limits(
                settings.max_spec_bytes, settings.max_upload_bytes, FORM_OVERHEAD_BYTES
            ),
        },
    )
    # Next to outermost: a refused request costs one counter look-up and nothing else.
    app.state.rate_limiter = ratelimit.install(app, settings, registry)
    # Around everything that may answer before reading a body.
    app.add_middleware(CloseUnreadBody)
    for module in (learnwares, jobs, searches, tokens, bulk, bulk_submissions, health, hetero):
        app.include_router(module.router)
    compat.install(app)  # /api: the deployed market's API, for the reference client
    return app
