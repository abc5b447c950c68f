"""ASGI entry point: ``uvicorn --factory wharf.api.main:create_app`` (settings from ``WHARF_*``
variables).

Importing this module does nothing: the application, its catalog, store and broker connections
are made by :func:`create_app` when the server calls it. ``wharf.api.main:app`` still works for
servers that take an application object; it is built on first access.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app() -> FastAPI:
    """The API as configured by this process's ``WHARF_*`` settings."""
    from .app import create_app as build

    app = build()
    # The objects made at start-up (modules, the app, its routes and models) live as long as
    # the process: frozen, they are out of the cyclic collector's sight, so its full
    # collections, which pause whatever request is running, no longer walk them.
    gc.freeze()
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # uvicorn wharf.api.main:app
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
