"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import ServicesDep

router = APIRouter(tags=["health"])
log = logging.getLogger("wharf.api")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """The catalog, the object store and the broker all answer."""
    checks: dict[str, str] = {}
    for name, probe in (
        ("catalog", services.catalog.check),
        ("store", services.store.check),
        ("broker", lambda: _broker(services)),
    ):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # a probe reports any failure; it never raises
            # The reason names hosts, paths and users: the log has it, not this public answer.
            log.warning("readiness: the %s is unavailable: %s", name, exc)
            checks[name] = "unavailable (the API's log says why)"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _broker(services) -> None:
    with services.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
