"""ASGI entry point: ``uvicorn wharf.api.main:app`` (settings from ``WHARF_*`` variables)."""

import gc

from .app import create_app

app = create_app()
# The objects made at start-up (modules, the app, its routes and models) live as long as the
# process: frozen, they are out of the cyclic collector's sight, so its full collections,
# which pause whatever request is running, no longer walk them.
gc.freeze()
