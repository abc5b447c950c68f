"""The FastAPI application: thin — authenticate, validate, enqueue, read the catalog.

It never imports torch, faiss or submitted code, and never unpickles anything.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from market import logs
from market.catalog import Catalog
from market.settings import Settings, get_settings
from market.store import make_store
from workers.app import make_celery

from . import metrics, problems, ratelimit
from .deps import Services
from .limits import BodySizeLimit
from .routes import bulk, health, jobs, learnwares, searches, tokens


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings, logging.getLogger("wharf"))
    app = FastAPI(
        title="Wharf",
        version="1",
        description="A learnware market: submit models with specifications, find and reuse them.",
    )
    app.state.services = services = Services(
        settings=settings,
        catalog=Catalog.create(settings.catalog_url, migrate=settings.migrate_on_start),
        store=make_store(settings, create_bucket=settings.s3_create_bucket),
        celery=make_celery(settings),
    )
    problems.install(app)
    registry = metrics.install(app, services)
    # Multipart overhead on top of the package itself.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes + 1024 * 1024,
        paths={bulk.PATH: settings.bulk_max_bytes + 1024 * 1024},
    )
    # Outermost: a refused request costs one counter look-up and nothing else.
    app.state.rate_limiter = ratelimit.install(app, settings, registry)
    for module in (learnwares, jobs, searches, tokens, bulk, health):
        app.include_router(module.router)
    return app
