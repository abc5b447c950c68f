"""ASGI entry point: ``uvicorn api.main:app`` (settings from ``WHARF_*`` variables)."""

from .app import create_app

app = create_app()
